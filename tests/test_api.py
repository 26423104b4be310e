"""The Python Detector API and load_weights, on the tiny config with a tiny tree (random or saved weights)."""
from __future__ import annotations

import dataclasses
import math
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from wordtree.io import write_darknet
from wordtree.tree import WordTree
from yolo9000.api import AmbiguousNodeError, Detector, RandomWeightsWarning
from yolo9000.errors import CheckpointError
from yolo9000.checkpoint import save_checkpoint
from yolo9000.config import load_config, save_config, to_dict
from yolo9000.builder import build_model
from yolo9000.model.load import WeightsError, load_weights

TINY = Path(__file__).resolve().parent.parent / "yolo9000" / "configs" / "tiny.yaml"


@pytest.fixture(scope="module")
def tree_file(tmp_path_factory, tiny_tree) -> Path:
    return write_darknet(tiny_tree, tmp_path_factory.mktemp("tree") / "tiny")[0]


@pytest.fixture(scope="module")
def detector(tree_file) -> Detector:
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RandomWeightsWarning)
        # A low decision threshold makes the random model's walk go deep, so paths have several steps.
        return Detector.from_config(TINY, overrides=[f"model.tree={tree_file}"], device="cpu", conf_threshold=0.05,
                                    hier_threshold=0.05)


@pytest.fixture(scope="module")
def image() -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    return torch.randint(0, 256, (3, 96, 140), dtype=torch.uint8, generator=g)


def test_random_weights_warn(tree_file):
    with pytest.warns(RandomWeightsWarning, match="random weights"):
        Detector.from_config(TINY, overrides=[f"model.tree={tree_file}"], device="cpu")


def test_detections_carry_paths_whose_product_is_the_probability(detector, image, tiny_tree):
    detections = detector(image)
    assert detections, "the random tiny model should give boxes at conf .05"
    assert max(d.depth for d in detections) >= 1
    for d in detections:
        assert [s.node for s in d.path] == tiny_tree.path(d.label)
        assert d.path[-1].node == d.label and d.wnid == tiny_tree.wnids[d.label]
        assert math.prod(s.prob for s in d.path) == pytest.approx(d.prob, rel=1e-5)
        assert float(d.probs[d.label]) == pytest.approx(d.prob, rel=1e-5)   # the absolute probability
        assert not d.probs.is_inference()                                    # usable in ordinary autograd code
        assert d.score == pytest.approx(d.objectness * d.prob, rel=1e-5)
        x1, y1, x2, y2 = d.box
        assert 0 <= x1 <= x2 <= 140 and 0 <= y1 <= y2 <= 96                   # original pixels, clipped
    assert [d.score for d in detections] == sorted((d.score for d in detections), reverse=True)


def test_every_image_input_type_gives_the_same_detections(detector, image, tmp_path):
    path = tmp_path / "img.png"
    Image.fromarray(image.permute(1, 2, 0).numpy()).save(path)
    reference = detector(image)
    for other in (path, str(path), Image.open(path), image.float() / 255, image.permute(1, 2, 0).numpy()):
        got = detector(other)
        assert [d.label for d in got] == [d.label for d in reference]
        torch.testing.assert_close(torch.tensor([d.box for d in got]), torch.tensor([d.box for d in reference]))
    with pytest.raises(ValueError, match="expected \\[3, H, W\\]"):
        detector(torch.zeros(4, 10, 10))
    with pytest.raises(ValueError, match="numpy image"):
        detector(np.zeros((5, 5, 3), dtype=np.float32))


def test_batch_equals_single_calls(detector, image):
    other = image.flip(-1)[:, :80]
    batched = detector.batch([image, other])
    for single, got in zip((detector(image), detector(other)), batched):
        assert [d.label for d in got] == [d.label for d in single]
        assert [d.score for d in got] == pytest.approx([d.score for d in single], abs=1e-5)


def test_subtree_probability_is_sum_over_leaves_and_objectness_times_node(detector, image, tiny_tree):
    detections = detector(image)
    a = tiny_tree.index("a")
    leaves_of_a = [n for n in tiny_tree.subtree(a) if bool(tiny_tree.is_leaf[n])]
    assert leaves_of_a == [2, 3, 6, 7]
    got = detector.subtree_probability(detections, "a")
    for d, p in zip(detections, got):
        by_leaves = d.objectness * sum(float(d.probs[n]) for n in leaves_of_a)
        assert p == pytest.approx(by_leaves, rel=1e-5)
        assert p == pytest.approx(d.objectness * float(d.probs[a]), rel=1e-5)
    # The two roots partition every box: P(a) + P(b) = 1.
    both = [pa + pb for pa, pb in zip(got, detector.subtree_probability(detections, "b"))]
    assert both == pytest.approx([d.objectness for d in detections], rel=1e-5)
    # A node given by name, wnid or index is the same node; an image works as well as its detections.
    assert detector.subtree_probability(detections, "A3") == detector.subtree_probability(detections, 4)
    assert detector.subtree_probability(image, "a3") == pytest.approx(
        detector.subtree_probability(detections, "a3"), rel=1e-6)


def test_in_subtree_filters_by_decided_node(detector, image, tiny_tree):
    detections = detector(image)
    members = detector.in_subtree(detections, "a")
    assert members == [d for d in detections if tiny_tree.index("a") in tiny_tree.path(d.label)]
    assert len(members) + len(detector.in_subtree(detections, "b")) == len(detections)
    # With min_prob, membership is by subtree probability instead.
    probs = detector.subtree_probability(detections, "a3")
    assert detector.in_subtree(detections, "a3", min_prob=0.1) == [d for d, p in zip(detections, probs) if p >= 0.1]


def test_max_depth_caps_at_the_ancestor(detector, image, tiny_tree):
    # No NMS (IoU > 1 never happens) and no threshold, so both runs keep every box and can be matched by box.
    free = detector.with_options(nms_iou=1.0, conf_threshold=0.0)
    uncapped = {d.box: d for d in free(image)}
    capped = {d.box: d for d in free.with_options(max_depth=1)(image)}
    assert capped.keys() == uncapped.keys()
    assert any(d.depth >= 2 for d in uncapped.values())
    for box, d in capped.items():
        full = uncapped[box]
        assert d.depth == min(full.depth, 1)
        assert d.label == tiny_tree.path(full.label)[d.depth]
        assert d.path == full.path[:d.depth + 1]


def test_resolve_node_errors(tmp_path):
    tree = WordTree.from_parents(["v", "x", "c1", "c2"], [-1, -1, 0, 1], names=["vehicle", "rail", "car", "car"])
    path = write_darknet(tree, tmp_path / "cars")[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RandomWeightsWarning)
        det = Detector.from_config(TINY, overrides=[f"model.tree={path}"], device="cpu")
    with pytest.raises(AmbiguousNodeError, match="'car' names 2 nodes") as err:
        det.resolve_node("car")
    assert err.value.candidates == [2, 3] and "c1 car < vehicle" in str(err.value)
    assert det.resolve_node("c2") == 3
    with pytest.raises(KeyError, match="neither a wnid"):
        det.resolve_node("boat")


def test_options_are_checked(detector):
    with pytest.raises(ValueError, match="multiple of 16"):
        detector.with_options(size=100)
    with pytest.raises(ValueError, match="multiple of the model's stride 32"):
        detector.with_options(size=80)          # a whole number of stride-16 cells, not of this model's 32
    with pytest.raises(ValueError, match="mode"):
        detector.with_options(mode="greedy")


def test_bf16_autocast_stays_close(detector, image):
    batch, _, _ = detector.preprocess([image])
    fp32 = detector.forward_raw(batch)
    bf16 = detector.with_options(amp="bf16").forward_raw(batch)
    assert bf16.dtype == torch.float32 and bf16.shape == fp32.shape
    torch.testing.assert_close(bf16, fp32, atol=0.1, rtol=0.05)


# ------------------------------------------------------------------------------------------- weights
def _config(tree_file: Path):
    return load_config(TINY, [f"model.tree={tree_file}"])


def test_from_run_loads_config_and_last_checkpoint(tmp_path, tree_file, image):
    cfg = _config(tree_file)
    model = build_model(cfg.model)
    with torch.no_grad():
        model.pred.bias.add_(0.5)     # make it differ from any fresh initialisation
    run = tmp_path / "run"
    run.mkdir()
    save_config(cfg, run / "config.yaml")
    save_checkpoint({"model": model.state_dict(), "config": to_dict(cfg), "seen": 64, "step": 4}, run / "last.pt")
    with warnings.catch_warnings():
        warnings.simplefilter("error", RandomWeightsWarning)   # a trained run must not warn
        detector = Detector.from_run(run, device="cpu", conf_threshold=0.05)
    assert not detector.random_weights
    torch.testing.assert_close(detector.model.pred.bias, model.pred.bias)
    assert isinstance(detector(image), list)
    # Without config.yaml the checkpoint's own config is used.
    (run / "config.yaml").unlink()
    torch.testing.assert_close(Detector.from_run(run, device="cpu").model.pred.bias, model.pred.bias)


def test_from_run_errors_name_the_problem(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        Detector.from_run(tmp_path / "nope")
    with pytest.raises(CheckpointError, match="no last.pt"):
        Detector.from_run(tmp_path)


def test_load_weights_checkpoint_and_mismatch(tmp_path, tree_file):
    cfg = _config(tree_file)
    source = build_model(cfg.model)
    path = save_checkpoint({"model": source.state_dict(), "config": to_dict(cfg), "seen": 10, "step": 2},
                           tmp_path / "a.pt")
    target = build_model(cfg.model)
    info = load_weights(target, path)
    assert info["format"] == "checkpoint" and info["seen"] == 10 and info["step"] == 2
    for (k, v), w in zip(source.state_dict().items(), target.state_dict().values()):
        assert torch.equal(v, w), k
    # A checkpoint trained for 5 flat classes does not fit an 11-node tree model.
    flat = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, tree=None, num_classes=5))
    other = save_checkpoint({"model": build_model(flat.model).state_dict(), "config": to_dict(flat)},
                            tmp_path / "b.pt")
    with pytest.raises(WeightsError, match=r"pred.weight has shape \(30, .*\) in the checkpoint but \(48, .*\) in "
                                           r"the model; the checkpoint was trained for kind=yolov2, num_classes=5"):
        load_weights(target, other)


def test_load_weights_strips_wrapper_prefixes_and_trunk_only(tmp_path, tree_file):
    cfg = _config(tree_file)
    source = build_model(cfg.model)
    wrapped = {f"module.{k}": v for k, v in source.state_dict().items()}
    target = build_model(cfg.model)
    load_weights(target, save_checkpoint({"model": wrapped}, tmp_path / "ddp.pt"))
    torch.testing.assert_close(target.pred.weight, source.pred.weight)
    # trunk_only: the trunk comes from the file, the head keeps its own initialisation.
    fresh = build_model(cfg.model)
    head_before = fresh.pred.weight.clone()
    info = load_weights(fresh, tmp_path / "ddp.pt", trunk_only=True)
    assert info["trunk_only"]
    for a, b in zip(fresh.trunk.state_dict().values(), source.trunk.state_dict().values()):
        assert torch.equal(a, b)
    assert torch.equal(fresh.pred.weight, head_before)


def test_load_weights_darknet_file_by_suffix(tmp_path, tree_file):
    from yolo9000.darknet import save_darknet_weights

    cfg = _config(tree_file)
    source = build_model(cfg.model)
    path = save_darknet_weights(source, tmp_path / "tiny.weights", seen=1234)
    target = build_model(cfg.model)
    info = load_weights(target, path)
    assert info["format"] == "darknet" and info["seen"] == 1234
    torch.testing.assert_close(target.pred.weight, source.pred.weight)
    torch.testing.assert_close(target.trunk.state_dict(), source.trunk.state_dict())


def test_node_restricts_the_decision_to_a_subtree(detector, image, tiny_tree):
    """--node X (issue 12): the walk starts at X with P(.|X); score = objectness x P(X) x P(node|X)."""
    from wordtree.ops import decide, grouped_log_softmax
    a3 = tiny_tree.index("a3")
    inside = detector.with_options(node="a3", nms_by="label", conf_threshold=0.001)
    everywhere = detector.with_options(nms_by="label", conf_threshold=0.001)
    batch, _, _ = detector.preprocess([image])
    raw = detector.forward_raw(batch)
    logits = raw[0].permute(0, 2, 3, 1).reshape(-1, raw.shape[2])[:, 5:]
    cond = grouped_log_softmax(logits, tiny_tree).exp()
    expected = decide(cond, tiny_tree, detector.options.hier_threshold, start=a3)
    found = inside(image)
    assert found and all(d.label in {a3, *tiny_tree.subtree(a3)} for d in found)
    assert {d.label for d in found} <= set(expected.node.tolist())
    for d in found:
        # the path still runs from the root; its product P(a) P(a3|a) P(node|a3) is the score's probability
        assert [s.node for s in d.path] == tiny_tree.path(d.label)
        assert d.score == pytest.approx(d.objectness * d.prob, rel=1e-5)
        assert d.prob == pytest.approx(float(d.probs[a3]) * float(d.probs[d.label] / d.probs[a3]), rel=1e-5)
    # without --node the same boxes may be decided anywhere in the tree
    assert any(d.label not in {a3, *tiny_tree.subtree(a3)} for d in everywhere(image))


def test_leaf_walks_to_a_leaf_whatever_the_threshold(detector, image, tiny_tree):
    strict = detector.with_options(hier_threshold=0.99)
    leafward = strict.with_options(leaf=True)
    assert all(not tiny_tree.is_leaf[d.label] for d in strict(image))   # .99: nothing passes, the best root
    found = leafward(image)
    assert found and all(bool(tiny_tree.is_leaf[d.label]) for d in found)
    below = leafward.with_options(node="b")(image)
    assert below and all(tiny_tree.names[d.label] in ("B1X_P", "B1X_Q") for d in below)


def test_node_errors_are_one_line(detector, image):
    from yolo9000.errors import NodeError
    with pytest.raises(NodeError, match="no node named 'zebra'|'zebra'"):
        detector.with_options(node="zebra")(image)
