"""yolo9000.builder: what a config means (trunk + head, the tree's class count, anchors checked on load), and the
YOLO9000 tree head on a torchvision trunk trained through the engine and evaluated (random weights, 64 px)."""
from __future__ import annotations

import math
import warnings

import pytest
import torch
from engine_data import tiny_config, write_dataset

from yolo9000 import engine
from yolo9000.api import Detector, RandomWeightsWarning
from yolo9000.builder import TorchvisionTrunk, build, build_model, resolve_model_config
from yolo9000.checkpoint import load_checkpoint, save_checkpoint
from yolo9000.config import ConfigError, ModelConfig, load_config
from yolo9000.criterion import ClassifierLoss
from yolo9000.loss import RegionLoss
from yolo9000.model.load import WeightsError, load_weights
from yolo9000.postprocess import PostProcess

pytestmark = pytest.mark.usefixtures("one_thread")
RESNET = ["model.trunk=torchvision:resnet18", "model.width=0.25", "model.head_convs=1"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    write_dataset(root)
    return root


def test_torchvision_trunk_cuts_at_strides_16_and_32():
    trunk = TorchvisionTrunk("mobilenet_v3_small")
    c16, c32 = trunk(torch.rand(2, 3, 64, 96))
    assert c16.shape == (2, trunk.channels16, 4, 6) and c32.shape == (2, trunk.channels32, 2, 3)
    # The last stride-16 map is the expansion (to 288) inside features.9, before its stride-2 depthwise conv;
    # the last stride-32 map is features.12 (576), before the pooling.
    assert (trunk.channels16, trunk.channels32) == (288, 576)


def test_trunk_weights_are_loaded_from_the_users_file(tmp_path):
    from torchvision.models import get_model
    source = get_model("resnet18", weights=None)
    torch.save(source.state_dict(), tmp_path / "r18.pth")
    trunk = TorchvisionTrunk("resnet18", str(tmp_path / "r18.pth"))
    torch.testing.assert_close(trunk.body.conv1.weight, source.conv1.weight, rtol=0, atol=0)
    with pytest.raises(ConfigError, match="model.trunk_weights: .*nope.pth does not exist"):
        TorchvisionTrunk("resnet18", str(tmp_path / "nope.pth"))


@pytest.mark.parametrize("trunk, message", [
    ("vgg:11", "model.trunk: 'vgg:11' is not one of darknet19"),
    ("torchvision", "give torchvision:<name>"),
    ("torchvision:no_such_net", "torchvision:no_such_net"),
    ("darknet19:tiny", "darknet19 takes no name"),
])
def test_bad_trunks_name_the_key(trunk, message):
    with pytest.raises(ConfigError, match=message):
        build_model(ModelConfig(trunk=trunk, num_classes=3))


def test_config_validates_itself_and_the_tree_decides_the_class_count(data):
    with pytest.raises(ConfigError, match="model.width"):
        ModelConfig(width=0)
    with pytest.raises(ConfigError, match="model.anchors"):
        ModelConfig(anchors=((1.0, -1.0),))
    ModelConfig(kind="darknet19", anchors=())               # a classifier has no anchors to check
    with pytest.raises(ConfigError, match="yolo9000 classifies over a WordTree"):
        build_model(ModelConfig(kind="yolo9000", num_classes=7))
    cfg = tiny_config(data).model
    other = resolve_model_config(ModelConfig(tree=cfg.tree, num_classes=999))
    assert other.num_classes == 11                           # the tree's node count, whatever was stated
    model, criterion, postprocess = build(tiny_config(data))
    assert model.num_classes == 11 and isinstance(criterion, RegionLoss) and isinstance(postprocess, PostProcess)
    classifier, loss, none = build(ModelConfig(kind="darknet19", num_classes=5, width=0.25, depth="tiny"))
    assert classifier(torch.rand(1, 3, 64, 64)).shape == (1, 5) and isinstance(loss, ClassifierLoss) and none is None


def test_tree_buffers_move_with_their_module(data):
    _, criterion, postprocess = build(tiny_config(data))
    assert postprocess.tree.parent.device.type == "cpu"
    meta = postprocess.to("meta")
    assert meta.tree.paths.device.type == "meta" and meta.anchors.device.type == "meta"
    assert "tree_buffers.parent" not in criterion.state_dict()   # the tree comes from the config, not checkpoints


def test_checkpoint_with_other_anchors_is_refused(data, tmp_path):
    cfg = tiny_config(data)
    model = build_model(cfg.model)
    save_checkpoint({"model": model.state_dict()}, tmp_path / "a.pt")
    moved = load_config(None, [f"model.tree={cfg.model.tree}", "model.width=0.25", "model.depth=tiny",
                               "model.head_convs=2", "model.anchors=[[0.5, 0.5], [1.2, 1.2], [2.4, 2.4]]"]).model
    with pytest.raises(WeightsError, match=r"anchors \[\[0.6, 0.6\].*model.anchors are \[\[0.5, 0.5\]"):
        load_weights(build_model(moved), tmp_path / "a.pt")
    assert load_weights(build_model(moved), tmp_path / "a.pt", trunk_only=True)["trunk_only"]


def test_tree_detector_on_a_torchvision_trunk_trains_and_evaluates(data, tmp_path):
    cfg = tiny_config(data, RESNET + ["train.max_steps=3", "train.freeze_bn=true"])
    result = engine.train(cfg, tmp_path / "run", log=lambda message: None)
    assert result.steps == 3 and math.isfinite(result.scalars["loss"]) and result.scalars["loss/cls"] > 0
    state = load_checkpoint(result.checkpoint)["model"]
    assert "trunk.body.layer4.1.conv2.weight" in state and "pred.weight" in state
    assert load_config(tmp_path / "run" / "config.yaml").model.num_classes == 11   # the tree's node count
    model = build_model(cfg.model)
    load_weights(model, result.checkpoint)
    metrics = engine.evaluate_detection(model, cfg, cfg.data.dataset, "eval", conf_threshold=0.0)
    assert metrics["images"] == 4 and metrics["detections"] > 0 and 0.0 <= metrics["map50"] <= 1.0
    assert set(metrics["per_class"]) and all(e["num_gt"] >= 0 for e in metrics["per_class"].values())
    with warnings.catch_warnings():
        warnings.simplefilter("error", RandomWeightsWarning)   # trained weights: no warning
        detector = Detector.from_run(tmp_path / "run", device="cpu", conf_threshold=0.0, size=64)
    detections = detector(torch.rand(3, 80, 64))
    assert detections and all(d.path[-1].node == d.label and d.wnid == detector.tree.wnids[d.label]
                              for d in detections)


def test_public_api_names_resolve_and_imports_stay_light():
    import subprocess
    import sys

    import wordtree
    import yolo9000
    for package in (wordtree, yolo9000):
        assert all(getattr(package, name) is not None for name in package.__all__)
    assert yolo9000.build is build and yolo9000.Detector is Detector and wordtree.load_tree(None) is None
    lazy = "import sys, wordtree, yolo9000; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", lazy], capture_output=True, text=True).stdout.strip() == "False"
