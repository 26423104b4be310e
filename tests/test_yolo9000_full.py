"""The real YOLO9000 path, not a tiny stand-in: configs/yolo9000.yaml (Darknet-19 trunk, 3 anchors, darknet's
9418-node tree) at 320 px on a handful of generated COCO-format and wnid-folder images. One joint training step
through the engine, every parameter's gradient, an evaluation, and detections that carry their tree paths."""
from __future__ import annotations

import json
import math

import pytest
import torch
from engine_data import REPO, tiny_config, write_dataset

from yolo9000 import engine
from yolo9000.builder import build_criterion
from yolo9000.data.descriptor import load_descriptor
from yolo9000.data.loader import build_train_loader
from yolo9000.builder import build_model
from wordtree.io import load_tree

DOG, CAT, CAR = "n02084071", "n02121808", "n02958343"          # internal nodes: COCO-like coarse boxes
HUSKY, TABBY, RACER = "n02110185", "n02123045", "n04037443"   # leaves: ImageNet-like fine labels


@pytest.fixture(scope="module")
def full(tmp_path_factory):
    root = tmp_path_factory.mktemp("y9k")
    tree = load_tree("9k")
    write_dataset(root, det_images=2, cls_per_class=1, eval_images=2, size=96, tree=tree,
                  detection_classes=[DOG, CAT, CAR], classification_classes=[HUSKY, TABBY, RACER])
    cfg = tiny_config(root, ["model.tree=9k", "data.multiscale=[320]", "data.eval_size=320", "data.det_per_batch=1",
                             "data.cls_per_batch=1", "train.max_steps=1", "train.lr=0.0001",
                             "train.amp=auto"],
                      base=REPO / "yolo9000" / "configs" / "yolo9000.yaml")
    return root, cfg, tree


def test_every_parameter_gets_a_finite_gradient(full):
    _, cfg, tree = full
    assert cfg.model.kind == "yolo9000" and tree.num_nodes == 9418
    torch.manual_seed(0)
    model = build_model(cfg.model)
    loader = build_train_loader(load_descriptor(cfg.data.dataset), tree, cfg.data)
    batch = next(iter(loader))
    assert batch.is_detection.tolist() == [True, False] and batch.images.shape == (2, 3, 320, 320)
    raw = model(batch.images)
    assert raw.shape == (2, 3, 5 + 9418, 10, 10)
    criterion = build_criterion(cfg.model, cfg.loss)
    terms = criterion(raw, batch)
    total = criterion.total(terms)
    assert math.isfinite(total.item()) and terms["cls"].item() > 0
    total.backward()
    for name, param in model.named_parameters():
        assert param.grad is not None, f"no gradient for {name}"
        assert torch.isfinite(param.grad).all(), name
        assert param.grad.abs().sum() > 0, f"zero gradient for {name}"


def test_joint_step_evaluation_and_tree_paths(full, tmp_path):
    root, cfg, tree = full
    result = engine.train(cfg, tmp_path / "run", log=lambda m: None)
    assert result.steps == 1 and result.seen == 2 and math.isfinite(result.scalars["loss"])
    assert result.scalars["loss/cls"] > 0 and result.scalars["loss/coord"] > 0

    model = engine.build_trained_model(cfg, result.checkpoint)
    metrics = engine.evaluate_detection(model, cfg, cfg.data.dataset, "eval", size=320, train_split="train")
    assert {row["wnid"] for row in metrics["per_class"].values()} == {DOG, CAT, CAR}
    assert all(row["node"] == tree.index(row["wnid"]) for row in metrics["per_class"].values())
    assert metrics["images"] == 2 and 0.0 <= metrics["map50"] <= 1.0
    # The paper's split: categories whose node has boxes in the training images vs the rest.
    trained = {a["category_id"] for a in json.loads((root / "det" / "annotations.json").read_text())["annotations"]}
    assert set(metrics["groups"]["detection"]["categories"]) == trained
    assert set(metrics["groups"]["classification_only"]["categories"]) == {1, 2, 3} - trained
    top = engine.evaluate_classification(model, cfg, cfg.data.dataset, "eval", size=320)
    assert top["images"] == 3 and len(top["depth_accuracy"]) == tree.max_depth + 1

    from yolo9000.api import Detector
    detector = Detector.from_run(tmp_path / "run", device="cpu", conf_threshold=0.0, size=320)
    detections = detector(root / "eval" / "images" / "000.jpg")
    assert detections
    for d in detections[:10]:
        nodes = [step.node for step in d.path]
        assert tree.parent[nodes[0]] == -1 and nodes[-1] == d.label and nodes == tree.path(d.label)
        assert math.prod(step.prob for step in d.path) == pytest.approx(d.prob, rel=1e-4)
        assert d.wnid == tree.wnids[d.label]
