"""`yolo9000 data shapes | check | pack` end to end on a tiny shapes world, and `--set` descriptor overrides."""
from __future__ import annotations

from pathlib import Path

import pytest

from yolo9000.cli import main as cli_main
from yolo9000.data.descriptor import build_classification, build_detection, load_descriptor, load_descriptor_tree


@pytest.fixture(scope="module")
def shapes_world(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("world") / "shapes"
    assert cli_main(["data", "shapes", "--out", str(out), "--seed", "3", "--num-det", "4", "--num-cls", "6",
                     "--num-eval", "2"]) == 0
    return out / "shapes.yaml"


def test_shapes_writes_a_world_that_checks_clean(shapes_world, capsys):
    descriptor = load_descriptor(shapes_world)
    tree = load_descriptor_tree(descriptor)
    assert len(build_detection(descriptor, "train", tree)) == 4
    assert len(build_classification(descriptor, "train", tree)) == 6
    assert cli_main(["data", "check", str(shapes_world), "--workers", "0", "--no-progress"]) == 0
    assert "no errors" in capsys.readouterr().out


def test_set_overrides_reach_the_descriptor(shapes_world, tmp_path, capsys):
    status = cli_main(["data", "check", str(shapes_world), "--split", "eval", "--workers", "0", "--no-progress",
                       "--set", f"splits.eval.detection.images={tmp_path / 'elsewhere'}"])
    assert status == 1
    assert "missing file: 2" in capsys.readouterr().out
    assert cli_main(["data", "check", str(shapes_world), "--set", "splits.eval=[1"]) == 2
    assert "yolo9000 data check:" in capsys.readouterr().err


def test_pack_the_world_and_train_from_it(shapes_world, tmp_path, capsys):
    out = tmp_path / "train.h5"
    assert cli_main(["data", "pack", str(shapes_world), "--split", "train", "--out", str(out), "--no-progress"]) == 0
    capsys.readouterr()
    world = load_descriptor(shapes_world)
    packed = tmp_path / "packed.yaml"
    packed.write_text(f"tree: {world.tree}\nsplits:\n  train:\n    detection: {{format: pack, path: {out}}}\n"
                      f"    classification: {{format: pack, path: {out}}}\n")
    assert cli_main(["data", "check", str(packed), "--workers", "0", "--no-progress"]) == 0
    d = load_descriptor(packed)
    tree = load_descriptor_tree(d)
    original = build_classification(world, "train", tree)
    from_pack = build_classification(d, "train", tree)
    assert [r.labels.tolist() for r in from_pack.records] == [r.labels.tolist() for r in original.records]
