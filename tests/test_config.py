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
])
def test_bad_configs_name_the_key(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_config(path)


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
