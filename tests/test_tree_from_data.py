"""The tree comes from the data (issue 12 §3): a descriptor's `tree:` is the model's tree unless the config sets
another, and a tree that does not fit the data is a one-line error naming both."""
from __future__ import annotations

import pytest
from engine_data import TEST_SETTINGS, WNIDS, tiny_tree, write_dataset

from wordtree.io import write_json
from wordtree.tree import WordTree
from yolo9000.checkpoint import load_checkpoint
from yolo9000.cli import main
from yolo9000.config import load_config

pytestmark = pytest.mark.usefixtures("one_thread")


def train(tmp_path, *settings: str) -> int:
    args = ["train", "--config", "tiny", "--out", str(tmp_path / "run"), "--force"]
    for s in (f"data.dataset={tmp_path / 'tiny.yaml'}", *TEST_SETTINGS, "train.max_steps=1", *settings):
        args += ["--set", s]
    return main(args)


def test_descriptor_tree_is_the_model_tree(tmp_path, capsys):
    write_dataset(tmp_path)
    assert train(tmp_path) == 0  # tiny.yaml has num_classes 11 and no tree; the descriptor names tree.json
    recorded = load_config(tmp_path / "run" / "config.yaml").model
    assert recorded.tree == str(tmp_path / "tree.json") and recorded.num_classes == len(WNIDS)
    assert load_checkpoint(tmp_path / "run" / "last.pt")["config"]["model"]["tree"] == str(tmp_path / "tree.json")


def test_config_tree_wins_when_it_fits(tmp_path, capsys):
    write_dataset(tmp_path)
    # the same tree with one more leaf, in another file: every label of the data is a node of it
    tree = tiny_tree()
    bigger = WordTree.from_parents(list(tree.wnids) + ["b1x_r"], tree.parent.tolist() + [8])
    write_json(bigger, tmp_path / "bigger.json")
    assert train(tmp_path, f"model.tree={tmp_path / 'bigger.json'}") == 0
    assert load_config(tmp_path / "run" / "config.yaml").model.num_classes == len(WNIDS) + 1


def test_a_tree_that_does_not_fit_is_one_line_naming_both(tmp_path, capsys):
    write_dataset(tmp_path)
    small = WordTree.from_parents(["a", "b", "a1", "a3"], [-1, -1, 0, 0])  # no b1x (boxes) nor a3x... (images)
    write_json(small, tmp_path / "small.json")
    capsys.readouterr()
    assert train(tmp_path, f"model.tree={tmp_path / 'small.json'}") == 2
    lines = capsys.readouterr().err.strip().splitlines()
    # the sources report what they skipped (one line each), then the error: one line
    err = [line for line in lines if "error:" in line]
    assert len(err) == 1 and err[0] == lines[-1] and "Traceback" not in "".join(lines)
    assert f"model.tree {tmp_path / 'small.json'} does not fit {tmp_path / 'tiny.yaml'}, whose tree is " \
           f"{tmp_path / 'tree.json'}" in err[0]
    # Every classification image misses the small tree, so that source is empty and stops the build: the error
    # gives that reason.
    assert "holds no images (left out: image with wnid not in the tree" in err[0]


def test_a_class_map_naming_nodes_the_tree_lacks(tmp_path, capsys):
    descriptor = write_dataset(tmp_path)
    (tmp_path / "names.yaml").write_text("a1: a1\na3: a3\nb1x: b1x\n")
    descriptor.write_text(descriptor.read_text().replace(
        "images: det/images}", "images: det/images, class_map: names.yaml}", 1))
    small = WordTree.from_parents(["a", "b", "a1", "a3"], [-1, -1, 0, 0])
    write_json(small, tmp_path / "small.json")
    capsys.readouterr()
    assert train(tmp_path, f"model.tree={tmp_path / 'small.json'}") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "does not fit" in err[0] and str(tmp_path / "tree.json") in err[0]
    assert "'b1x' is not in the tree" in err[0]


def test_an_index_map_is_refused_on_another_tree(tmp_path, capsys):
    descriptor = write_dataset(tmp_path)
    (tmp_path / "det.map").write_text("2\n4\n8\n")
    descriptor.write_text(descriptor.read_text().replace(
        "images: det/images}", "images: det/images, class_map: det.map}", 1))
    tree = tiny_tree()
    bigger = WordTree.from_parents(list(tree.wnids) + ["b1x_r"], tree.parent.tolist() + [8])
    write_json(bigger, tmp_path / "bigger.json")
    capsys.readouterr()
    assert train(tmp_path, f"model.tree={tmp_path / 'bigger.json'}") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "splits.train labels through det.map, a darknet .map" in err[0]
    # on the dataset's own tree the same map is fine
    assert train(tmp_path) == 0
