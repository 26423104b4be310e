"""Detection mAP per tree depth (issue 12 §6): ground truth relabelled at each depth, COCOeval per depth."""
from __future__ import annotations

import math

import pytest
import torch

from yolo9000.evaluate_depth import DepthScorer, depth_ground_truth, depth_nodes, per_depth_from_detections
from yolo9000.postprocess import PostProcess

# The conftest tiny tree:  a{a1, a2, a3{a3x, a3y}}  b{b1{b1x{b1x_p, b1x_q}}}
#   index: a 0, b 1, a1 2, a2 3, a3 4, b1 5, a3x 6, a3y 7, b1x 8, b1x_p 9, b1x_q 10
# One 64x64 image, stride 32: a 2x2 grid, one anchor of 1x1 cells, so cell (i, j) predicts exactly the box
# [32j, 32i, 32j + 32, 32i + 32] when tx = ty = tw = th = 0.
CELL_BOXES = {(0, 0): [0, 0, 32, 32], (0, 1): [32, 0, 32, 32], (1, 0): [0, 32, 32, 32], (1, 1): [32, 32, 32, 32]}
CATEGORIES = {1: 2, 2: 6, 3: 9, 4: 7}  # category id -> node: a1, a3x, b1x_p, a3y


def ground_truth(labels: dict[tuple[int, int], int]) -> dict:
    """One image; a box per cell in `labels` (cell -> category id)."""
    annotations = [{"id": k + 1, "image_id": 1, "category_id": c, "bbox": CELL_BOXES[cell], "area": 1024,
                    "iscrowd": 0} for k, (cell, c) in enumerate(labels.items())]
    return {"images": [{"id": 1, "width": 64, "height": 64}], "annotations": annotations,
            "categories": [{"id": c, "name": str(c)} for c in CATEGORIES]}


def raw_for(predicted: dict[tuple[int, int], int], tree) -> torch.Tensor:
    """Raw output [1, 1, 5+N, 2, 2] whose cell boxes are the grid cells, confident (objectness ~1) where `predicted`
    names a node, with tree logits that put all probability on that node's path."""
    raw = torch.zeros(1, 1, 5 + tree.num_nodes, 2, 2)
    raw[0, 0, 4] = -12.0
    for (i, j), node in predicted.items():
        raw[0, 0, 4, i, j] = 12.0
        raw[0, 0, 5 + torch.tensor(tree.path(node)), i, j] = 30.0
    return raw


def test_depth_ground_truth_relabels_with_ancestors(tiny_tree):
    gt = ground_truth({(0, 0): 1, (0, 1): 2, (1, 0): 3})
    assert depth_nodes(CATEGORIES, tiny_tree) == {0: [0, 1], 1: [2, 4, 5], 2: [6, 7, 8], 3: [9]}
    cats = {d: [a["category_id"] - 1 for a in depth_ground_truth(gt, CATEGORIES, tiny_tree, d)["annotations"]]
            for d in range(4)}
    # a1 (depth 1) has no label at depths 2 and 3; b1x_p is b at 0, b1 at 1, b1x at 2, itself at 3
    assert cats == {0: [0, 0, 1], 1: [2, 4, 5], 2: [6, 8], 3: [9]}


def test_scorer_matches_the_definition_on_one_hot_predictions(tiny_tree):
    gt = ground_truth({(0, 0): 1, (0, 1): 2, (1, 0): 3, (1, 1): 2})
    # cell (0,1) is right; cell (1,1) says a3y for an a3x box: right down to a3, wrong at depth 2
    predicted = {(0, 0): 2, (0, 1): 6, (1, 0): 9, (1, 1): 7}
    scorer = DepthScorer(gt, CATEGORIES, tiny_tree, PostProcess([[1.0, 1.0]], 32, tiny_tree))
    scorer.add(raw_for(predicted, tiny_tree), torch.tensor([1]), torch.tensor([[1.0, 0.0, 0.0]]),
               torch.tensor([[64, 64]]))
    result = scorer.result()
    got = {r["depth"]: r["map50"] for r in result["per_depth"]}
    # the slow reading: each predicted box is a detection of its category, mapped to the ancestor at each depth
    node_to_category = {n: c for c, n in CATEGORIES.items()}
    detections = [{"image_id": 1, "category_id": node_to_category[n], "bbox": CELL_BOXES[cell], "score": 0.99}
                  for cell, n in predicted.items()]
    expected = per_depth_from_detections(gt, CATEGORIES, tiny_tree, detections)
    assert got.keys() == expected.keys() == {0, 1, 2, 3}
    for d in got:
        assert got[d] == pytest.approx(expected[d], abs=1e-6), d
    assert got[0] == got[1] == pytest.approx(1.0) and got[3] == pytest.approx(1.0)
    # depth 2: a3x has 2 boxes, one found (AP .5); b1x found (AP 1); a3y has no ground truth, so it is not averaged
    assert got[2] == pytest.approx((0.5 + 1.0) / 2, abs=0.01)
    assert result["per_depth"][2]["categories"] == 2 and result["per_depth"][0]["num_gt"] == 4
    assert result["mean_map50"] == pytest.approx(sum(got.values()) / 4)


def test_no_detections_give_zero_not_nan(tiny_tree):
    scorer = DepthScorer(ground_truth({(0, 0): 1}), CATEGORIES, tiny_tree, PostProcess([[1.0, 1.0]], 32, tiny_tree))
    scorer.add(raw_for({}, tiny_tree), torch.tensor([1]), torch.tensor([[1.0, 0.0, 0.0]]), torch.tensor([[64, 64]]))
    rows = scorer.result()["per_depth"]
    assert [r["depth"] for r in rows] == [0, 1] and all(r["map50"] == 0.0 and not math.isnan(r["map"]) for r in rows)


@pytest.mark.usefixtures("one_thread")
def test_eval_per_depth_from_a_run(tmp_path, capsys):
    """End to end: train two steps, `eval --per-depth`. The eval categories are a1 and a3 (depth 1) and b1x
    (depth 2), so at depth 2 the only ground truth is b1x's, scored as the per-class evaluation scores it."""
    import json

    from engine_data import write_config, write_dataset

    from yolo9000.cli import main
    write_dataset(tmp_path)
    config = write_config(tmp_path, ["train.max_steps=2"])
    run = tmp_path / "run"
    assert main(["train", "--config", str(config), "--out", str(run)]) == 0
    capsys.readouterr()
    assert main(["eval", "--run", str(run), "--per-depth", "--json", str(tmp_path / "m.json")]) == 0
    text = capsys.readouterr().out
    assert "mAP@.5 per tree depth" in text
    detection = json.loads((tmp_path / "m.json").read_text())["detection"]
    rows = {r["depth"]: r for r in detection["per_depth"]["per_depth"]}
    assert set(rows) == {0, 1, 2} and rows[0]["categories"] == 2 and rows[1]["categories"] == 3
    b1x = next(row for row in detection["per_class"].values() if row["wnid"] == "b1x")
    assert rows[2]["categories"] == 1 and rows[2]["num_gt"] == b1x["num_gt"]
    assert rows[2]["map50"] == pytest.approx(b1x["ap50"], abs=1e-9)
    assert all(0.0 <= r["map50"] <= 1.0 for r in rows.values())
