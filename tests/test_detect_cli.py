"""`yolo9000 detect` and `yolo9000 query` on the tiny config with a tiny tree written under tmp_path."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from PIL import Image

from wordtree.io import write_darknet
from wordtree.tree import WordTree
from yolo9000.checkpoint import save_checkpoint
from yolo9000.cli import main
from yolo9000.config import load_config, save_config, to_dict
from yolo9000.builder import build_model

TINY = str(Path(__file__).resolve().parent.parent / "yolo9000" / "configs" / "tiny.yaml")
# Low thresholds: the random tiny model's objectness is about .5 and its tree probabilities near uniform.
LOW = ["--conf", "0.05"]


@pytest.fixture(scope="module")
def tree_file(tmp_path_factory, tiny_tree) -> Path:
    return write_darknet(tiny_tree, tmp_path_factory.mktemp("tree") / "tiny")[0]


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> list[Path]:
    folder = tmp_path_factory.mktemp("images")
    g = torch.Generator().manual_seed(0)
    out = []
    for name, (h, w) in {"wide.png": (96, 160), "tall.jpg": (128, 72)}.items():
        pixels = torch.randint(0, 256, (h, w, 3), dtype=torch.uint8, generator=g).numpy()
        Image.fromarray(pixels).save(folder / name)
        out.append(folder / name)
    return out


def test_detect_writes_png_and_json_and_skips_bad_images(tmp_path, tree_file, images, capsys):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8 definitely not a jpeg")
    out = tmp_path / "out"
    status = main(["detect", "--config", TINY, "--set", f"model.tree={tree_file}", str(images[0]), str(broken),
                   str(tmp_path / "missing.png"), str(images[1]), "--out", str(out), "--device", "cpu", *LOW])
    err = capsys.readouterr().err
    assert status == 1       # something was skipped: a script can tell
    assert "RANDOM weights" in err and err.count("RANDOM weights") == 1
    assert "skipped 2 of 4 images" in err
    assert f"skipped: {broken}" in err and f"skipped: {tmp_path / 'missing.png'}" in err
    assert sorted(p.name for p in out.iterdir()) == ["detections.json", "tall.png", "wide.png"]
    with Image.open(out / "wide.png") as png:
        assert png.format == "PNG" and png.width >= 160    # small inputs are scaled up for readable labels
    report = json.loads((out / "detections.json").read_text())
    assert [Path(r["file"]).name for r in report["images"]] == ["wide.png", "tall.jpg"]
    assert [Path(s["file"]).name for s in report["skipped"]] == ["broken.jpg", "missing.png"]
    assert report["model"]["random_weights"] is True and report["model"]["tree"] == str(tree_file)
    first = report["images"][0]
    assert (first["width"], first["height"]) == (160, 96) and first["detections"]
    for det in first["detections"]:
        assert math.prod(step["prob"] for step in det["path"]) == pytest.approx(det["prob"], abs=1e-4)
        assert det["path"][-1]["wnid"] == det["wnid"]


def test_detect_fails_when_nothing_could_be_processed(tmp_path, tree_file, capsys):
    bad = tmp_path / "bad.png"
    bad.write_text("not an image")
    status = main(["detect", "--config", TINY, "--set", f"model.tree={tree_file}", str(bad), "--out",
                   str(tmp_path / "o"), "--device", "cpu"])
    assert status == 1
    assert "skipped 1 of 1 images" in capsys.readouterr().err


def test_detect_reports_a_bad_model_source(tmp_path, images, capsys):
    status = main(["detect", "--config", TINY, "--set", "model.tree=/nonexistent.tree", str(images[0]),
                   "--out", str(tmp_path)])
    assert status == 2 and "/nonexistent.tree" in capsys.readouterr().err
    status = main(["detect", "--config", TINY, "--weights", str(tmp_path / "none.pt"), str(images[0]),
                   "--out", str(tmp_path)])
    assert status == 2 and "none.pt does not exist" in capsys.readouterr().err


def test_query_prints_each_path_and_node_probabilities(tree_file, images, capsys):
    status = main(["query", "--config", TINY, "--set", f"model.tree={tree_file}", str(images[0]), "--node", "a",
                   "--hier", "0.05", "--device", "cpu", *LOW])
    out = capsys.readouterr().out
    assert status == 0
    assert "node" in out and "P(node|parent)" in out
    assert "P(box is A (a) or any descendant)" in out and "detections in the subtree of A (a):" in out
    # The table rows: root first, children indented by two spaces per level.
    assert any(line.startswith("      ") and line.strip().split()[0] in ("A1", "A2", "A3", "B1")
               for line in out.splitlines())


def test_query_json_matches_the_api(tree_file, images, capsys):
    status = main(["query", "--config", TINY, "--set", f"model.tree={tree_file}", *map(str, images), "--node", "a3",
                   "--depth", "1", "--json", "--device", "cpu", *LOW])
    data = json.loads(capsys.readouterr().out)
    assert status == 0
    assert data["options"]["max_depth"] == 1
    assert [Path(r["image"]).name for r in data["images"]] == [p.name for p in images]   # many images
    report = data["images"][0]
    assert report["node"] == {"index": 4, "wnid": "a3", "name": "A3"}
    detections = report["detections"]
    assert detections and all(len(d["path"]) <= 2 for d in detections)
    assert len(report["subtree_probability"]) == len(detections)
    assert all(0 <= p <= d["objectness"] + 1e-6 for p, d in zip(report["subtree_probability"], detections))
    assert [detections[i]["wnid"] for i in report["in_subtree"]] == [d["wnid"] for d in detections
                                                                     if "a3" in [s["wnid"] for s in d["path"]]]


def test_one_vocabulary_checked_where_parsed_and_json_to_stdout_or_file(tmp_path, tree_file, images, capsys):
    base = ["--config", TINY, "--set", f"model.tree={tree_file}", str(images[0]), "--device", "cpu"]
    for command in ("detect", "query"):
        for bad, message in ((["--conf", "2"], "--conf: 2.0 is not in [0, 1]"),
                             (["--size", "100"], "--size: 100 is not a positive multiple of 16"),
                             (["--batch", "0"], "--batch: 0 must be >= 1"), (["--mode", "best"], "invalid choice")):
            with pytest.raises(SystemExit) as exit_:
                main([command, *base, "--out", str(tmp_path / "o"), *bad] if command == "detect" else
                     [command, *base, *bad])
            assert exit_.value.code == 2 and message in capsys.readouterr().err, (command, bad)
    # --json without FILE: JSON on stdout instead of the text; with FILE: written there, the text on stdout.
    assert main(["detect", *base, "--out", str(tmp_path / "d"), "--json", *LOW]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads((tmp_path / "d" / "detections.json").read_text())
    assert main(["query", *base, "--json", str(tmp_path / "q.json"), "--max-detections", "1", *LOW]) == 0
    assert capsys.readouterr().out.startswith(str(images[0]))
    assert len(json.loads((tmp_path / "q.json").read_text())["images"][0]["detections"]) == 1


def test_query_ambiguous_or_unknown_node_exits_2(tmp_path, images, capsys):
    tree = WordTree.from_parents(["v", "x", "c1", "c2"], [-1, -1, 0, 1], names=["vehicle", "rail", "car", "car"])
    path = write_darknet(tree, tmp_path / "cars")[0]
    base = ["query", "--config", TINY, "--set", f"model.tree={path}", str(images[0]), "--device", "cpu"]
    assert main(base + ["--node", "car"]) == 2
    err = capsys.readouterr().err
    assert "'car' names 2 nodes" in err and "c1 car < vehicle, c2 car < rail); give a wnid" in err
    assert main(base + ["--node", "boat"]) == 2
    assert "neither a wnid" in capsys.readouterr().err
    assert main(base + ["--node", "c2"]) == 0


def test_query_from_a_run_directory(tmp_path, tree_file, images, capsys):
    cfg = load_config(TINY, [f"model.tree={tree_file}"])
    run = tmp_path / "run"
    run.mkdir()
    save_config(cfg, run / "config.yaml")
    save_checkpoint({"model": build_model(cfg.model).state_dict(), "config": to_dict(cfg)}, run / "last.pt")
    status = main(["query", "--run", str(run), str(images[1]), "--device", "cpu", *LOW])
    captured = capsys.readouterr()
    assert status == 0 and "RANDOM" not in captured.err
    assert captured.out.startswith(f"{images[1]} (72x128):")


# ------------------------------------------------------------------------------------------- pictures
def _detection(tree: WordTree, node: int, box=(10.0, 20.0, 60.0, 70.0), score=0.5):
    from yolo9000.postprocess import Detection, PathStep

    path = tuple(PathStep(n, tree.wnids[n], tree.names[n], 0.9) for n in tree.path(node))
    return Detection(box, score, score / 0.9 ** len(path), node, tree.wnids[node], tree.names[node],
                     0.9 ** len(path), path)


def test_colours_follow_the_top_level_node(tiny_tree, darknet_9k_tree):
    from yolo9000.draw import colour_of, top_level_nodes

    # Leaves: a1 a2 a3x a3y b1x_p b1x_q. Shares: a 4/6, a3 2/6, b 2/6. At .5 a is dominant, so a's subtree is
    # coloured by a's children; b's whole subtree by b.
    top = top_level_nodes(tiny_tree, 0.5)
    assert [tiny_tree.wnids[top[tiny_tree.index(w)]] for w in ("a", "a1", "a3", "a3x", "b", "b1x", "b1x_q")] == \
        ["a", "a1", "a3", "a3", "b", "b", "b"]
    # darknet's 9k tree (default share .3): dogs and horses are animals, people are people, cars instrumentality.
    t = darknet_9k_tree
    top = top_level_nodes(t)
    named = {w: t.names[top[t.find(w)[0]]] for w in ("dalmatian", "giraffe", "person")}
    assert named == {"dalmatian": "animal", "giraffe": "animal", "person": "person"}
    assert t.names[top[t.index("n02958343")]] == "instrumentality"
    dog, horse, man = (_detection(t, t.find(w)[0]) for w in ("dalmatian", "giraffe", "person"))
    assert colour_of(dog, t) == colour_of(horse, t) != colour_of(man, t)


def test_chain_text_truncates_and_marks_the_cut(darknet_9k_tree):
    from yolo9000.draw import _font, chain_text

    t = darknet_9k_tree
    dog = _detection(t, t.find("dalmatian")[0])
    font = _font(12, False)
    full = chain_text(dog, font, max_width=10_000, max_steps=100)
    assert full.startswith("dalmatian .90 < dog .90 < canine .90") and full.endswith("object .90")
    short = chain_text(dog, font, max_width=10_000, max_steps=3)
    assert short == "dalmatian .90 < dog .90 < canine .90 < …"
    narrow = chain_text(dog, font, max_width=150, max_steps=100)
    assert narrow.endswith(" < …") and font.getlength(narrow) <= 150 + font.getlength(" < …")
    root = _detection(t, 0)
    assert chain_text(root, font, 1000) == ""


def test_draw_does_not_modify_the_image_and_scales_small_ones(tiny_tree):
    from yolo9000.draw import colour_of, draw_detections

    image = torch.full((3, 100, 128), 200, dtype=torch.uint8)
    before = image.clone()
    det = _detection(tiny_tree, tiny_tree.index("a3x"), box=(10.0, 60.0, 100.0, 95.0))
    picture = draw_detections(image, [det], tiny_tree, min_side=384)
    assert torch.equal(image, before)
    assert picture.size == (128 * 4, 100 * 4)          # ceil(384 / 100) = 4
    # The box's bottom edge, scaled by 4, is drawn in the detection's colour.
    assert picture.getpixel((200, 95 * 4)) == colour_of(det, tiny_tree)
    assert draw_detections(image, [det], tiny_tree, min_side=0).size == (128, 100)


def test_node_and_leaf_on_detect_and_query(tmp_path, tree_file, images, tiny_tree, capsys):
    """--node X decides inside X's subtree, --leaf walks to a leaf (issue 12), on both commands."""
    base = ["--config", TINY, "--set", f"model.tree={tree_file}", "--device", "cpu", "--conf", "0.001"]
    a3_subtree = {"a3", "a3x", "a3y"}
    assert main(["detect", *base, *map(str, images), "--out", str(tmp_path / "d"), "--node", "a3", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    labels = [d["wnid"] for image in report["images"] for d in image["detections"]]
    assert labels and set(labels) <= a3_subtree
    assert main(["query", *base, str(images[0]), "--leaf", "--hier", "0.99", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    leaves = {tiny_tree.wnids[i] for i in tiny_tree.leaves()}
    found = [d["wnid"] for d in data["images"][0]["detections"]]
    assert found and set(found) <= leaves and data["options"]["leaf"] is True
    assert main(["query", *base, str(images[0]), "--node", "b", "--leaf"]) == 0
    out = capsys.readouterr().out
    assert "inside B, to a leaf" in out and "P(box is B (b) or any descendant)" in out
    assert main(["query", *base, str(images[0]), "--node", "zebra"]) == 2
    err = [line for line in capsys.readouterr().err.strip().splitlines() if "error:" in line]
    assert len(err) == 1 and "zebra" in err[0]   # (the other stderr line warns of the random weights)
