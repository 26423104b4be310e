"""`build_model(ModelConfig) -> nn.Module`: the only place a config becomes a network."""
from __future__ import annotations

from torch import nn

from yolo9000.config import ConfigError, ModelConfig
from yolo9000.model.darknet19 import Darknet19Classifier
from yolo9000.model.yolo import YOLODetector
from yolo9000.trees import load_tree


def num_outputs(cfg: ModelConfig) -> int:
    """N, the class logits per box (or per image for a classifier): the tree's node count when `cfg.tree` is set
    (the tree wins over `num_classes`, so `--set model.tree=...` alone retargets a config), else `num_classes`."""
    tree = load_tree(cfg.tree)
    return tree.num_nodes if tree is not None else cfg.num_classes


def validate(cfg: ModelConfig) -> None:
    """Raise ConfigError naming the key of any value the networks cannot be built with."""
    if cfg.stride != 32:
        raise ConfigError(f"model.stride: {cfg.stride} is not supported; Darknet-19 has 5 max-pools, stride 32")
    if not cfg.width > 0:
        raise ConfigError(f"model.width: {cfg.width} must be positive")
    if cfg.tree is None and cfg.num_classes < 1:
        raise ConfigError(f"model.num_classes: {cfg.num_classes} must be at least 1")
    if cfg.input_size <= 0 or cfg.input_size % cfg.stride:
        raise ConfigError(f"model.input_size: {cfg.input_size} is not a positive multiple of {cfg.stride}")
    if cfg.head_convs < 0:
        raise ConfigError(f"model.head_convs: {cfg.head_convs} must be >= 0")
    if cfg.kind != "darknet19":
        if not cfg.anchors:
            raise ConfigError("model.anchors: a detector needs at least one anchor")
        bad = [a for a in cfg.anchors if not (a[0] > 0 and a[1] > 0)]
        if bad:
            raise ConfigError(f"model.anchors: {bad[0]} is not a positive (w, h) in grid units")


def build_model(cfg: ModelConfig) -> nn.Module:
    """Build the network a ModelConfig describes, with fresh (PyTorch default) initialisation.

    Returns:
        kind "darknet19": a `Darknet19Classifier`, logits Float[B, N].
        kind "yolov2" / "yolo9000": a `YOLODetector`, raw Float[B, A, 5+N, H/32, W/32], with attributes
        `anchors` (Float[A, 2] grid units), `stride` (32), `num_classes` (N).
    Raises:
        ConfigError: naming the key of a value that cannot be built.
    """
    validate(cfg)
    n = num_outputs(cfg)
    if cfg.kind == "darknet19":
        return Darknet19Classifier(n, cfg.width, cfg.depth)
    return YOLODetector(n, cfg.anchors, cfg.width, cfg.depth, cfg.passthrough, cfg.head_convs)
