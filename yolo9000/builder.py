"""`build(cfg) -> (model, criterion, postprocess)`: the one place that decides what a config means (DETR's `build`).

A model is a trunk plus a head:

* trunks by name (`model.trunk`): "darknet19" (paper section 3, Table 6; `model.width`, `model.depth`) or
  "torchvision:<name>", any torchvision classification model (`torchvision.models.get_model(name, weights=None)`,
  with the user's state_dict from `model.trunk_weights`; nothing is downloaded). `TRUNKS` maps a name's prefix (the
  part before ":") to a factory, so another family (a darknet cfg's layers) plugs in with one entry;
* heads: `model.kind` "darknet19" is the classifier head (`Classifier`); "yolov2" and "yolo9000" the region head
  (`YOLODetector`, with the optional passthrough). `model.tree` makes the classes WordTree nodes: that is the
  YOLO9000 head (tree softmax in the loss, the decision walk in postprocessing); "yolo9000" requires it.

With a tree, the class count is the tree's: `resolve_model_config` derives `num_classes` from it, and a training
run records the resolved config, so the run's `config.yaml` agrees with the model.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor, nn

from wordtree.io import load_tree
from yolo9000.config import Config, ConfigError, LossConfig, ModelConfig
from yolo9000.criterion import ClassifierLoss
from yolo9000.loss import RegionLoss
from yolo9000.model.darknet19 import Darknet19
from yolo9000.model.yolo import Classifier, YOLODetector
from yolo9000.postprocess import PostProcess


# ----------------------------------------------------------------------------------------------------- trunks
class TorchvisionTrunk(nn.Module):
    """A torchvision classification model's body, cut at its last stride-16 and stride-32 feature maps.

    The two cut points are found by running a probe image through every node of the traced model
    (`torchvision.models.feature_extraction`): the last node whose output is at 1/16 and at 1/32 of the input
    (resnet18: `layer3.1.relu_1` and `layer4.1.relu_1`; mobilenet_v3_small: the expansion inside `features.9`,
    before its stride-2 depthwise conv, and `features.12`), so any family works without a table of names.

    Args:
        name: a torchvision classification model (`torchvision.models.list_models`).
        weights: the model's state_dict file (e.g. a torchvision checkpoint downloaded by the user); None: random.
    """

    PROBE = 128

    def __init__(self, name: str, weights: str | None = None) -> None:
        super().__init__()
        from torchvision.models import get_model
        from torchvision.models.feature_extraction import create_feature_extractor, get_graph_node_names

        try:
            net = get_model(name, weights=None)
        except ValueError as err:
            raise ConfigError(f"model.trunk: torchvision:{name}: {err}") from None
        if weights is not None:
            path = Path(weights)
            if not path.is_file():
                raise ConfigError(f"model.trunk_weights: {weights} does not exist")
            state = torch.load(path, map_location="cpu", weights_only=True)
            missing, unexpected = net.load_state_dict(state.get("state_dict", state), strict=False)
            if missing:
                raise ConfigError(f"model.trunk_weights: {weights} lacks {len(missing)} tensors of {name} "
                                  f"(first: {missing[0]})")
        train_nodes, eval_nodes = get_graph_node_names(net)
        nodes = [n for n in eval_nodes if n in set(train_nodes)]
        probe = create_feature_extractor(net.eval(), {n: n for n in nodes})
        with torch.no_grad():
            outputs = probe(torch.zeros(1, 3, self.PROBE, self.PROBE))
        cut = {}
        for node, out in outputs.items():
            if isinstance(out, Tensor) and out.ndim == 4:
                for stride in (16, 32):
                    if out.shape[-2:] == (self.PROBE // stride, self.PROBE // stride):
                        cut[stride] = (node, out.shape[1])
        if set(cut) != {16, 32}:
            raise ConfigError(f"model.trunk: torchvision:{name} has no feature maps at strides 16 and 32")
        self.body = create_feature_extractor(net.train(), {cut[16][0]: "c16", cut[32][0]: "c32"})
        self.channels16, self.channels32 = int(cut[16][1]), int(cut[32][1])

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Float[B, 3, H, W] -> (Float[B, C16, H/16, W/16], Float[B, C32, H/32, W/32])."""
        out = self.body(x)
        return out["c16"], out["c32"]


def _darknet19_trunk(cfg: ModelConfig, name: str) -> nn.Module:
    if name:
        raise ConfigError(f"model.trunk: darknet19 takes no name (got darknet19:{name})")
    if cfg.trunk_weights is not None:
        raise ConfigError("model.trunk_weights: Darknet-19 loads weights through train.init or --weights")
    return Darknet19(cfg.width, cfg.depth, stride=cfg.stride)


def _torchvision_trunk(cfg: ModelConfig, name: str) -> nn.Module:
    if not name:
        raise ConfigError("model.trunk: give torchvision:<name>, e.g. torchvision:resnet18")
    return TorchvisionTrunk(name, cfg.trunk_weights)


def _darknet_cfg_trunk(cfg: ModelConfig, name: str) -> nn.Module:
    # Imported here: darknet_net imports yolo9000.darknet, which imports this module.
    from yolo9000.model.darknet_net import darknet_trunk

    return darknet_trunk(cfg, name)


# A trunk factory takes the model config and the part of `model.trunk` after "<prefix>:" and returns a module with
# `forward(x) -> (c16, c32)`, `channels16` and `channels32` (`yolo9000.model.yolo`). Issue 13's darknet-cfg network
# plugs in here as one more prefix.
TrunkFactory = Callable[[ModelConfig, str], nn.Module]
TRUNKS: dict[str, TrunkFactory] = {"darknet19": _darknet19_trunk, "torchvision": _torchvision_trunk,
                                    "darknet": _darknet_cfg_trunk}   # darknet:CFG[:END], a cfg's layers


def build_trunk(cfg: ModelConfig) -> nn.Module:
    """The trunk `model.trunk` names (module docstring)."""
    prefix, _, name = cfg.trunk.partition(":")
    if prefix not in TRUNKS:
        raise ConfigError(f"model.trunk: {cfg.trunk!r} is not one of {', '.join(f'{p}[:name]' for p in TRUNKS)}")
    return TRUNKS[prefix](cfg, name)


# ----------------------------------------------------------------------------------------------------- configs
def resolve_model_config(cfg: ModelConfig) -> ModelConfig:
    """`cfg` with what the tree decides filled in: `num_classes` is the tree's node count when `tree` is set.

    Raises:
        ConfigError: kind "yolo9000" without a tree.
        TreeError: the tree file is missing or malformed.
    """
    tree = load_tree(cfg.tree)
    if tree is None:
        if cfg.kind == "yolo9000":
            raise ConfigError("model.kind: yolo9000 classifies over a WordTree; set model.tree (e.g. 9k)")
        return cfg
    return dataclasses.replace(cfg, num_classes=tree.num_nodes)


def resolve_config(cfg: Config) -> Config:
    """`cfg` with its model section resolved (`resolve_model_config`): what a run records in `config.yaml`."""
    return dataclasses.replace(cfg, model=resolve_model_config(cfg.model))


# ----------------------------------------------------------------------------------------------------- builders
def build_model(cfg: ModelConfig) -> nn.Module:
    """The network a ModelConfig describes, with fresh (PyTorch default) initialisation.

    Returns:
        the classifier head: a `Classifier`, logits Float[B, N].
        the region head: a `YOLODetector`, raw Float[B, A, 5+N, H/32, W/32], with attributes `anchors`
        (Float[A, 2] grid units, a buffer: checked against a checkpoint's when weights are loaded), `stride` (32),
        `num_classes` (N).
    Raises:
        ConfigError: naming the key of a value that cannot be built.
    """
    cfg = resolve_model_config(cfg)
    trunk = build_trunk(cfg)
    if cfg.head == "classifier":
        return Classifier(trunk, cfg.num_classes)
    return YOLODetector(trunk, cfg.num_classes, cfg.anchors, cfg.width, cfg.passthrough, cfg.head_convs,
                        stride=cfg.stride)


def build_criterion(cfg: ModelConfig, loss: LossConfig) -> nn.Module:
    """The loss of the head: `RegionLoss` (detection and classification images) or `ClassifierLoss`, with the
    config's anchors. Returns an nn.Module with `forward(output, batch, seen) -> dict[str, Tensor]` and
    `total(terms) -> Tensor`; move it with the model (`.to(device)`: it holds the tree as buffers)."""
    cfg = resolve_model_config(cfg)
    tree = load_tree(cfg.tree)
    if cfg.head == "classifier":
        return ClassifierLoss(loss, tree, cfg.num_classes)
    return RegionLoss(torch.tensor(cfg.anchors), loss, tree=tree, num_classes=None if tree else cfg.num_classes,
                      stride=cfg.stride)


def build_postprocess(cfg: ModelConfig) -> PostProcess | None:
    """The region head's `PostProcess` (config anchors, tree as buffers); None for the classifier head."""
    if cfg.head == "classifier":
        return None
    return PostProcess(cfg.anchors, cfg.stride, load_tree(cfg.tree))


def build(cfg: Config | ModelConfig) -> tuple[nn.Module, nn.Module, PostProcess | None]:
    """(model, criterion, postprocess) for a config; a bare ModelConfig takes the default LossConfig.

    The model returns raw tensors, the criterion returns unweighted named terms (its `total` weights them), and the
    postprocess turns raw outputs into detections (None for a classifier).
    """
    model_cfg, loss_cfg = (cfg.model, cfg.loss) if isinstance(cfg, Config) else (cfg, LossConfig())
    return build_model(model_cfg), build_criterion(model_cfg, loss_cfg), build_postprocess(model_cfg)

