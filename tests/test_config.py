"""Configs: frozen dataclasses from YAML; unknown keys and bad values name the key."""
from __future__ import annotations

import dataclasses

import pytest

from yolo9000.config import Config, ConfigError, load_config, save_config


def test_defaults_and_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("model:\n  kind: yolo9000\n  num_classes: 9418\ntrain:\n  lr: 0.01\n")
    cfg = load_config(path, ["train.lr=0.02", "data.multiscale=[320, 416]", "loss.max_boxes=30"])
    assert cfg.model.kind == "yolo9000" and cfg.model.num_classes == 9418
    assert cfg.train.lr == 0.02
    assert cfg.data.multiscale == (320, 416)
    assert cfg.loss.max_boxes == 30
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.train.lr = 1.0  # type: ignore[misc]


@pytest.mark.parametrize("text, message", [
    ("model:\n  kindd: yolov2\n", "unknown config key model.kindd"),
    ("trian:\n  lr: 1\n", "unknown config key trian"),
    ("model:\n  kind: yolov7\n", "model.kind: 'yolov7' is not one of"),
    ("train:\n  epochs: two\n", "train.epochs: expected an integer"),
    ("data:\n  multiscale: 320\n", "data.multiscale: expected a list"),
    ("model:\n  anchors: [[1, 2], [3]]\n", r"model.anchors\[1\]: expected 2 values"),
    ("loss:\n  rescore: 1\n", "loss.rescore: expected true or false"),
    ("train:\n  optimizer: lion\n", "train.optimizer: 'lion' is not one of 'sgd', 'adamw'"),
    ("loss:\n  ignore_iou: 1.5\n", r"loss.ignore_iou: 1.5 must lie in \[0, 1\]"),
    ("train:\n  subdivisions: 0\n", "train.subdivisions: 0 must be >= 1"),
    ("train:\n  momentum: 1.0\n", r"train.momentum: 1.0 must lie in \[0, 1\)"),
    ("data:\n  multiscale: [320, 330]\n", "data.multiscale: 330 is not a multiple of model.stride 32"),
    ("data:\n  det_per_batch: 0\n  cls_per_batch: 0\n", "images per batch"),
])
def test_bad_configs_name_the_key(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_config(path)


def test_sections_built_in_python_are_checked_like_yaml():
    from yolo9000.config import DataConfig, LossConfig, TrainConfig
    with pytest.raises(ConfigError, match="loss.classification_match: 'box' is not one of"):
        LossConfig(classification_match="box")
    with pytest.raises(ConfigError, match="data.jitter"):
        DataConfig(jitter=1.0)
    with pytest.raises(ConfigError, match=r"train.steps: \(1, 2\) has 2 entries but train.scales has 1"):
        TrainConfig(steps=(1, 2), scales=(0.1,))
    with pytest.raises(ConfigError, match="train.max_steps"):
        dataclasses.replace(TrainConfig(), max_steps=-1)


@pytest.mark.parametrize("content, message", [
    (b"model: [unclosed\n", r"bad.yaml line 2: not valid YAML \("),
    (b"model: !!python/object/apply:os.system [echo hi]\n",
     r"bad.yaml line 1: the tag !!python/object/apply:os.system is not allowed"),
    (b"\x89PNG\r\n\x1a\n\x00\xff\xfe", "bad.yaml: not UTF-8 text"),
])
def test_unreadable_config_files_are_one_line_errors_naming_the_file(tmp_path, content, message):
    path = tmp_path / "bad.yaml"
    path.write_bytes(content)
    with pytest.raises(ConfigError, match=message) as err:
        load_config(path)
    assert "\n" not in str(err.value)
    with pytest.raises(ConfigError, match="cannot be read|does not exist"):
        load_config(tmp_path)  # a folder


def test_bad_override_names_the_key():
    with pytest.raises(ConfigError, match="unknown config key train.learning_rate"):
        load_config(None, ["train.learning_rate=0.1"])
    with pytest.raises(ConfigError, match="expected key=value"):
        load_config(None, ["train.lr"])


def test_save_and_reload_round_trip(tmp_path):
    cfg = load_config(None, ["model.kind=yolo9000", "train.steps=[100, 200]", "train.scales=[0.1, 0.1]"])
    save_config(cfg, tmp_path / "resolved.yaml")
    assert load_config(tmp_path / "resolved.yaml") == cfg
    assert isinstance(Config(), Config)
