"""Darknet cfgs in the builder: a `[region]` cfg of any trunk builds as our region head on `darknet:CFG:LAYER` with
its own `.weights`, and a cfg classifier's layers, initialised from its darknet `.weights`, are a detector's trunk
under the YOLO9000 head that trains through the engine, evaluates and exports."""
from __future__ import annotations

import dataclasses
import json
import warnings

import pytest
import torch
from engine_data import write_config, write_dataset

from yolo9000 import compat_darknet as dn
from yolo9000.api import Detector, RandomWeightsWarning
from yolo9000.builder import build_model
from yolo9000.cli import main
from yolo9000.config import load_config
from wordtree.io import load_tree
from yolo9000.darknet import cfg_model_config, darknet_convs, load_darknet_weights, save_darknet_weights
from yolo9000.data.descriptor import build_detection, load_descriptor
from yolo9000.engine import build_trained_model
from yolo9000.errors import CfgError, ConfigError
from yolo9000.evaluate import detection_ground_truth
from yolo9000.model.darknet_net import darknet_net_from_cfg
from yolo9000.reference import darknet_file

pytestmark = pytest.mark.usefixtures("one_thread")

CLASSIFIER = """[net]
width=64
height=64
channels=3

[convolutional]
batch_normalize=1
filters=8
size=3
stride=1
pad=1
activation=leaky

[maxpool]
size=2
stride=2

[convolutional]
batch_normalize=1
filters=16
size=3
stride=2
pad=1
activation=leaky

[convolutional]
batch_normalize=1
filters=16
size=1
stride=1
pad=1
activation=leaky

[shortcut]
from=-2
activation=linear

[maxpool]
size=2
stride=2

[convolutional]
batch_normalize=1
filters=32
size=3
stride=2
pad=1
activation=leaky

[maxpool]
size=2
stride=2

[convolutional]
filters=10
size=1
stride=1
pad=1
activation=linear

[avgpool]

[softmax]
groups=1
"""


def test_region_cfg_of_any_trunk_builds_with_its_weights_and_darknets_detections(tmp_path):
    name = darknet_file("yolov2-tiny.cfg")
    cfg = cfg_model_config(name)
    assert cfg.trunk == f"darknet:{name.resolve()}:13" and (cfg.passthrough, cfg.head_convs) == (False, 0)
    assert cfg.num_classes == 80 and cfg.anchors[0] == (0.57273, 0.677385)
    torch.manual_seed(0)
    net = darknet_net_from_cfg(name).eval()
    with torch.no_grad():
        net.layers[-2].conv.weight.mul_(30)              # peaky class scores: some detections at thresh .2
    path = save_darknet_weights(net, tmp_path / "yolov2-tiny.weights")
    ours = build_model(cfg).eval()
    load_darknet_weights(ours, path)
    assert [e.conv.weight.shape for e in darknet_convs(ours)] == [e.conv.weight.shape for e in darknet_convs(net)]
    x = torch.rand(1, 3, 96, 96)
    with torch.no_grad():
        assert torch.equal(ours(x), net(x))
    detector = Detector.from_config(name, weights=path, device="cpu", compat="darknet", conf_threshold=0.2,
                                    size=416)
    image = darknet_file("dog.jpg")
    found = detector(image)
    expected = dn.detect(net, dn.load_image(image), 416, 416, thresh=0.2)
    assert [(d.anchor, d.row, d.col, d.label) for d in found] == [(e.anchor, e.row, e.col, e.label)
                                                                  for e in expected]
    assert [d.score for d in found] == pytest.approx([e.prob for e in expected], abs=1e-5)


def test_cfg_classifier_trunk_under_the_yolo9000_head_trains_evaluates_and_exports(tmp_path, capsys):
    cfg_path = tmp_path / "small.cfg"
    cfg_path.write_text(CLASSIFIER)
    torch.manual_seed(0)
    classifier = darknet_net_from_cfg(cfg_path)
    weights = save_darknet_weights(classifier, tmp_path / "small.weights", seen=640)
    write_dataset(tmp_path)
    overrides = ["train.max_steps=2", f"model.trunk=darknet:{cfg_path}", f"model.trunk_weights={weights}",
                 "model.head_convs=1", "model.passthrough=true"]
    config = write_config(tmp_path, overrides)
    # The trunk is the classifier's layers 0..7 (up to the last max-pool, before its 1x1 classifier conv),
    # initialised from its .weights; the tree head comes on top.
    model = build_model(load_config(config).model)
    assert model.trunk.end == 7 and model.trunk.channels16 == 32 and model.trunk.channels32 == 32
    for a, b in zip(darknet_convs(classifier)[:4], darknet_convs(model.trunk)):
        for ta, tb in zip(a.tensors(), b.tensors()):
            assert torch.equal(ta, tb)
    run = tmp_path / "run"
    assert main(["train", "--config", str(config), "--out", str(run)]) == 0
    assert main(["eval", "--run", str(run), "--train-split", "train"]) == 0
    assert "mAP@[.5:.95]" in capsys.readouterr().out
    # darknet's validation scoring: every category over .005, do_nms_sort, boxes clipped; the same count by hand.
    metrics = tmp_path / "darknet.json"
    assert main(["eval", "--run", str(run), "--compat", "darknet", "--conf", "0.05", "--json", str(metrics)]) == 0
    result = json.loads(metrics.read_text())["detection"]
    trained = build_trained_model(load_config(run / "config.yaml"), run / "last.pt", "cpu")
    run_cfg = load_config(run / "config.yaml")
    tree = load_tree(run_cfg.model.tree)
    _, mapping, _ = detection_ground_truth(load_descriptor(run_cfg.data.dataset), "eval", tree)
    expected = 0
    for record in build_detection(load_descriptor(run_cfg.data.dataset), "eval", tree).records:
        pixels = dn.load_image(record.file)
        size = run_cfg.data.eval_size
        with torch.no_grad():
            raw = trained.eval()(torch.from_numpy(dn.letterbox_image(pixels, size, size))[None])[0]
        dets = dn.get_region_detections(dn.region_activations(raw, tree), trained.anchors, pixels.shape[2],
                                        pixels.shape[1], size, size, 0.05, tree=tree,
                                        class_map=[mapping[c] for c in sorted(mapping)])
        expected += int((dn.do_nms_sort(dets, 0.45).probs > 0).sum())
    assert result["images"] == 4 and result["detections"] == expected > 0
    out = tmp_path / "model.onnx"
    assert main(["export", "--config", str(run / "config.yaml"), "--weights", str(run / "last.pt"), "--out",
                 str(out), "--verify"]) == 0
    assert out.stat().st_size > 0
    # --format darknet writes the trunk's own cfg layers, then the head: darknet's network of it is ours.
    prefix = tmp_path / "exported"
    assert main(["export", "--config", str(run / "config.yaml"), "--weights", str(run / "last.pt"), "--format",
                 "darknet", "--out", str(prefix)]) == 0
    exported = darknet_net_from_cfg(tmp_path / "exported.cfg").eval()
    load_darknet_weights(exported, tmp_path / "exported.weights")
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(exported(x), trained.eval()(x), rtol=1e-5, atol=1e-5)


def test_darknet_trunk_errors_name_the_key(tmp_path):
    cfg_path = tmp_path / "small.cfg"
    cfg_path.write_text(CLASSIFIER)
    base = load_config("tiny").model
    with pytest.raises(ConfigError, match="model.trunk: .* ends at stride 8"):   # layer 5, the second max-pool
        build_model(dataclasses.replace(base, trunk=f"darknet:{cfg_path}:5"))
    with pytest.raises(CfgError, match="cfg file nowhere.cfg does not exist"):
        build_model(dataclasses.replace(base, trunk="darknet:nowhere.cfg"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RandomWeightsWarning)
        with pytest.raises(Exception, match=r"only \[region\] cfgs build as a detector"):
            Detector.from_config(darknet_file("resnet18.cfg"), device="cpu")
