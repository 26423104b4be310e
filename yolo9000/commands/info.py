"""`yolo9000 info`: a network's layer table, output shape, parameter count and darknet's operation count.

    yolo9000 info --config configs/yolov2.yaml [--size 416] [--set model.num_classes=20]
    yolo9000 info --cfg yolo9000.cfg [--size 544]

`--cfg` builds any darknet cfg of the layers `DarknetNet` knows (resnet50.cfg, yolov2-tiny.cfg, ...); the default
size is its `[net]` size. The model is built on the meta device (shapes only), so even YOLO9000's 28269-filter
head is summarised at once.
The last two lines are `params: <int>` and `flops: <int>`. `add_model_arguments` and `model_config_from_args`
are shared with `yolo9000 export`.
"""
from __future__ import annotations

import argparse

import torch

from yolo9000.config import ConfigError, ModelConfig, load_config
from yolo9000.builder import build_model
from yolo9000.darknet import cfg_model_config
from yolo9000.model.darknet_net import darknet_net_from_cfg
from yolo9000.model.summary import format_summary, summarize


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """`--config X.yaml [--set key=value ...]` or `--cfg F.cfg` (exactly one of them), and `--size N`."""
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--config", help="our YAML config (its `model` section is used)")
    source.add_argument("--cfg", help="a darknet .cfg (yolov2.cfg, yolo9000.cfg, darknet19.cfg, ...)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value, e.g. model.num_classes=20 (with --config)")
    parser.add_argument("--size", type=int, help="square input side in pixels (default: the config's input size)")


def model_config_from_args(args: argparse.Namespace) -> ModelConfig:
    """The ModelConfig named on the command line. Raises ConfigError / DarknetError with the key or line."""
    if args.cfg:
        if args.set:
            raise ConfigError("--set applies to --config files; edit the .cfg instead")
        return cfg_model_config(args.cfg)
    return load_config(args.config, args.set).model


def input_size(args: argparse.Namespace, cfg: ModelConfig) -> int:
    size = args.size if args.size is not None else cfg.input_size
    if size <= 0 or size % cfg.stride:
        raise ConfigError(f"--size {size}: must be a positive multiple of {cfg.stride}")
    return size


def register(parser: argparse.ArgumentParser) -> None:
    add_model_arguments(parser)
    parser.set_defaults(func=run)


def run_cfg(args: argparse.Namespace) -> int:
    """`info --cfg`: the generic darknet network of the cfg, at `--size` or the cfg's `[net]` size."""
    if args.set:
        raise ConfigError("--set applies to --config files; edit the .cfg instead")
    with torch.device("meta"):
        net = darknet_net_from_cfg(args.cfg)
    height, width = (args.size, args.size) if args.size is not None else net.net_size
    net.layer_shapes(height, width)
    what = {"region": f"detector, {net.num_anchors} anchors x {net.num_classes} classes",
            "softmax": f"classifier, {net.num_classes} outputs"}.get(net.head, "features")
    print(f"{args.cfg}: darknet cfg, {what}{', tree' if net.tree is not None else ''}, {len(net.layers)} layers, "
          f"{width}x{height} input")
    print(format_summary(summarize(net, (height, width), net.in_channels)))
    return 0


def run(args: argparse.Namespace) -> int:
    if args.cfg:
        return run_cfg(args)
    cfg = model_config_from_args(args)
    size = input_size(args, cfg)
    with torch.device("meta"):
        model = build_model(cfg)
    source = args.cfg or args.config
    print(f"{source}: {cfg.kind}, {size}x{size} input")
    print(format_summary(summarize(model, size)))
    return 0
