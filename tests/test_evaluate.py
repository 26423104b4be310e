"""Evaluation against hand-computed values: COCO AP through pycocotools, the split, top-k, per-depth accuracy."""
from __future__ import annotations

import math

import pytest
import torch

from yolo9000.evaluate import ancestor_rate, coco_map, coco_results, depth_accuracy, split_map, topk_accuracy
from yolo9000.postprocess import PostProcess


def _gt() -> dict:
    """Two images. Category 1 has two boxes, category 2 one box, category 3 none."""
    return {
        "images": [{"id": 10, "width": 100, "height": 80}, {"id": 11, "width": 100, "height": 80}],
        "annotations": [
            {"id": 1, "image_id": 10, "category_id": 1, "bbox": [10, 10, 20, 20], "area": 400, "iscrowd": 0},
            {"id": 2, "image_id": 11, "category_id": 1, "bbox": [50, 40, 30, 20], "area": 600, "iscrowd": 0},
            {"id": 3, "image_id": 10, "category_id": 2, "bbox": [60, 10, 20, 30], "area": 600, "iscrowd": 0},
        ],
        "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}, {"id": 3, "name": "c"}],
    }


def test_one_perfect_and_one_wrong_detection():
    # Category 1: the perfect box scores .9, a box far from the second truth (IoU 0) scores .8. The PR curve has
    # precision 1 up to recall .5 then never reaches more recall: COCO's 101-point interpolation gives 51/101.
    # Category 2: one perfect detection -> AP 1 at every IoU threshold.
    dets = [
        {"image_id": 10, "category_id": 1, "bbox": [10, 10, 20, 20], "score": 0.9},
        {"image_id": 11, "category_id": 1, "bbox": [0, 0, 20, 20], "score": 0.8},
        {"image_id": 10, "category_id": 2, "bbox": [60, 10, 20, 30], "score": 0.7},
    ]
    m = coco_map(_gt(), dets)
    assert m.per_class_ap50[1] == pytest.approx(51 / 101)
    assert m.per_class_ap[1] == pytest.approx(51 / 101)
    assert m.per_class_ap50[2] == pytest.approx(1.0)
    assert math.isnan(m.per_class_ap50[3])                       # no truth: left out of the mean
    assert m.map50 == pytest.approx((51 / 101 + 1) / 2)
    split = split_map(m.per_class_ap50, {"coarse": [2], "fine": [1, 3]})
    assert split == pytest.approx({"coarse": 1.0, "fine": 51 / 101})


def test_wrong_ranking_lowers_ap_and_loose_box_fails_high_iou():
    # The wrong box now outranks the perfect one: precision at recall .5 is 1/2 -> AP50 = 51/101 * 0.5.
    dets = [
        {"image_id": 10, "category_id": 1, "bbox": [10, 10, 20, 20], "score": 0.5},
        {"image_id": 11, "category_id": 1, "bbox": [0, 0, 20, 20], "score": 0.8},
        # IoU with the category-2 truth = (20*24)/(20*30) = 0.8: a hit at .5..8, a miss at .85..95
        {"image_id": 10, "category_id": 2, "bbox": [60, 10, 20, 24], "score": 0.7},
    ]
    m = coco_map(_gt(), dets, cat_ids=[1, 2])
    assert m.per_class_ap50[1] == pytest.approx(0.5 * 51 / 101)
    assert m.per_class_ap50[2] == pytest.approx(1.0)
    assert m.per_class_ap[2] == pytest.approx(7 / 10)           # thresholds .5,.55,...,.8 hit; .85,.9,.95 miss


def test_no_detections_gives_zero():
    m = coco_map(_gt(), [])
    assert m.map50 == 0.0 and m.per_class_ap50[1] == 0.0 and math.isnan(m.per_class_ap50[3])


def _logit(p: float) -> float:
    return math.log(p / (1 - p))


def test_category_scores_undo_letterbox_nms_and_cap():
    # One image, original 100x50 letterboxed into 64x64: scale .64, pad_y (64 - 32) / 2 = 16. A 1x1 grid at stride
    # 64 with three anchors: centre = sigmoid(t) * 64, size = anchor * 64 (tw = th = 0).
    # box 0 [6.4, 22.4, 19.2, 35.2] objectness .9, P = (1, 0)      -> scores (.9, 0)
    # box 1 [6.4, 22.4, 19.2, 36.0] objectness .8, P = (.625, .375) -> scores (.5, .3)
    # box 2 [32, 16, 64, 48]        objectness 1,  P = (.3, .7)     -> scores (.3, .7)
    anchors = torch.tensor([[0.2, 0.2], [0.2, 0.2125], [0.5, 0.5]])
    raw = torch.zeros(1, 3, 7, 1, 1)
    for a, (sx, sy, obj, logits) in enumerate([(0.2, 0.45, _logit(0.9), (30.0, 0.0)),
                                               (0.2, 0.45625, _logit(0.8), (math.log(0.625), math.log(0.375))),
                                               (0.75, 0.5, 30.0, (math.log(0.3), math.log(0.7)))]):
        raw[0, a, :, 0, 0] = torch.tensor([_logit(sx), _logit(sy), 0.0, 0.0, obj, *logits])
    post = PostProcess(anchors, 64)
    scorer = post.categories(torch.tensor([0, 1]))
    options = dict(letterbox=torch.tensor([[0.64, 0.0, 16.0]]), orig_sizes=torch.tensor([[50, 100]]))
    dets = coco_results(post(raw, scorer, conf_threshold=0.005, nms_iou=0.45, **options), [5, 7], torch.tensor([42]))
    got = sorted((d["category_id"], round(d["score"], 4)) for d in dets)
    # box 1 is suppressed by box 0 in category 5 (IoU ~ .94); category 7 keeps both (box 0 scored below .005)
    assert got == [(5, 0.3), (5, 0.9), (7, 0.3), (7, 0.7)]
    assert all(d["image_id"] == 42 for d in dets)
    first = next(d for d in dets if d["score"] == pytest.approx(0.9))
    assert first["bbox"] == pytest.approx([10.0, 10.0, 20.0, 20.0], abs=0.01)
    big = next(d for d in dets if d["score"] == pytest.approx(0.7))
    assert big["bbox"] == pytest.approx([50.0, 0.0, 50.0, 50.0], abs=0.01)   # clipped to the original image
    capped = coco_results(post(raw, scorer, conf_threshold=0.005, max_detections=2, **options), [5, 7],
                          torch.tensor([42]))
    assert sorted(d["score"] for d in capped) == pytest.approx([0.7, 0.9])


def test_topk_over_leaves(tiny_tree):
    # Leaves of the tiny tree: a1 a2 a3x a3y b1x_p b1x_q (2, 3, 6, 7, 9, 10). Internal nodes never count.
    probs = torch.zeros(3, tiny_tree.num_nodes)
    probs[0, [0, 2, 3]] = torch.tensor([0.99, 0.6, 0.3])     # top leaf a1
    probs[1, [4, 6, 7]] = torch.tensor([0.9, 0.5, 0.4])      # top leaf a3x, a3y second
    probs[2, [9, 10, 2, 6, 7]] = torch.tensor([0.5, 0.4, 0.3, 0.2, 0.1])
    labels = torch.tensor([2, 7, 3])
    acc = topk_accuracy(probs, labels, tiny_tree, ks=(1, 2, 5))
    assert acc == pytest.approx({1: 1 / 3, 2: 2 / 3, 5: 2 / 3})  # a2 (3) is row 2's 6th leaf: not in its top 5
    only_a = topk_accuracy(probs, labels, tiny_tree, ks=(1,), leaves=torch.tensor([3, 7]))
    # best of {a2, a3y}: row 0 a2 (label a1, wrong), row 1 a3y (right), row 2 a3y (label a2, wrong)
    assert only_a[1] == pytest.approx(1 / 3)


def test_depth_accuracy_matches_loop(tiny_tree, generator):
    decided = torch.randint(0, tiny_tree.num_nodes, (200,), generator=generator)
    labels = torch.randint(0, tiny_tree.num_nodes, (200,), generator=generator)
    got = depth_accuracy(decided, labels, tiny_tree)
    for d in range(tiny_tree.max_depth + 1):
        hits = total = 0
        for p, t in zip(decided.tolist(), labels.tolist()):
            tp, pp = tiny_tree.path(t), tiny_tree.path(p)
            if len(tp) > d:
                total += 1
                hits += len(pp) > d and pp[d] == tp[d]
        assert got[d].item() == pytest.approx(hits / total)
    ref = sum(p in tiny_tree.path(t) for p, t in zip(decided.tolist(), labels.tolist())) / 200
    assert ancestor_rate(decided, labels, tiny_tree) == pytest.approx(ref)


# ----------------------------------------------------------------------------------- engine-level: a model on files
def _logit(p: float) -> float:
    return math.log(p / (1 - p))


class _Oracle(torch.nn.Module):
    """A flat 2-class 'detector' with one confident box per image: exactly on the truth [8, 8, 40, 40] for a bright
    image (objectness .9), in the opposite corner (IoU 0) for a dark one (objectness .8). One anchor of 1x1 cells."""

    stride = 32

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("anchors", torch.tensor([[1.0, 1.0]]))
        self.num_classes = 2
        self.unused = torch.nn.Parameter(torch.zeros(()))

    def forward(self, x):
        B, H, W = x.shape[0], x.shape[-2] // 32, x.shape[-1] // 32
        raw = torch.zeros(B, 1, 7, H, W)
        raw[:, 0, 4] = -20.0                                   # no object anywhere ...
        raw[:, 0, 5] = 10.0                                    # ... and every box is class 0 if anything
        bright = x.mean(dim=(1, 2, 3)) > 0.5
        for b in range(B):
            cell = 0 if bright[b] else 1                       # centre (.75 + cell) * 32 px: 24 px or 56 px
            raw[b, 0, 0:2, cell, cell] = _logit(0.75)
            raw[b, 0, 4, cell, cell] = _logit(0.9 if bright[b] else 0.8)
        return raw


def test_evaluate_detection_on_files_matches_hand_computed_ap(tmp_path):
    import json

    import numpy as np
    from PIL import Image

    from yolo9000.config import load_config
    from yolo9000.evaluate import evaluate_detection

    (tmp_path / "images").mkdir()
    for name, value in (("bright.png", 255), ("dark.png", 0)):
        Image.fromarray(np.full((64, 64, 3), value, dtype=np.uint8)).save(tmp_path / "images" / name)
    gt = {"images": [{"id": 1, "file_name": "bright.png", "width": 64, "height": 64},
                     {"id": 2, "file_name": "dark.png", "width": 64, "height": 64}],
          "annotations": [{"id": i, "image_id": i, "category_id": 7, "bbox": [8, 8, 32, 32], "area": 1024,
                           "iscrowd": 0} for i in (1, 2)],
          "categories": [{"id": 7, "name": "thing"}, {"id": 9, "name": "other"}]}
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "d.yaml").write_text("splits:\n  eval:\n    detection: {format: coco, annotations: gt.json, "
                                     "images: images}\n")
    cfg = load_config(None, ["model.num_classes=2", "model.anchors=[[1.0, 1.0]]", "data.eval_size=64",
                             "data.workers=0"])
    result = evaluate_detection(_Oracle(), cfg, tmp_path / "d.yaml", "eval")
    # Category 7: the .9 box is a hit (IoU 1 at every threshold), the .8 box a miss; 2 truths. Precision 1 up to
    # recall .5, no recall beyond: COCO's 101-point AP = 51/101 at every IoU threshold. Category 9 has no truth.
    assert result["per_class"][7]["ap50"] == pytest.approx(51 / 101)
    assert result["per_class"][7]["ap"] == pytest.approx(51 / 101)
    assert result["per_class"][7]["num_gt"] == 2 and math.isnan(result["per_class"][9]["ap50"])
    assert result["map50"] == pytest.approx(51 / 101) and result["images"] == 2
    assert result["detections"] == 2                        # class-1 scores (~.9 * e^-10) fall under .005
    # Evaluating category 9 through class 0 instead: it has no truth, so the mean is category 7's alone.
    again = evaluate_detection(_Oracle(), cfg, tmp_path / "d.yaml", "eval", categories={7: 0, 9: 0},
                               groups={"mine": [7]})
    assert again["groups"]["mine"]["map50"] == pytest.approx(51 / 101)
    with pytest.raises(ValueError, match="category id 5 is not in the ground truth"):
        evaluate_detection(_Oracle(), cfg, tmp_path / "d.yaml", "eval", categories={5: 0})
