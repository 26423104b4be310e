"""Darknet compatibility: `.cfg` files to ModelConfigs (and back), `.weights` read and write.

A `.cfg` is parsed the way darknet's `read_cfg` does it (all whitespace removed, `#`/`;` comment lines, the first
occurrence of a repeated key wins), then recognised as one of our networks: the Darknet-19 classifier or the
YOLOv2/YOLO9000 detector (darknet_yolo9000.md sections 9-10). Recognition infers a candidate `ModelConfig` from the
cfg, writes that config back out as darknet layers (`cfg_layers`) and compares the two layer by layer, so a cfg our
model family cannot express fails at the first layer that differs, with both versions in the message.

`.weights` (darknet's `save_weights` / `load_weights`): int32 major, minor, revision; `seen` as uint64 when
`major*10 + minor >= 2` (and neither is >= 1000), else int32; then for every convolution in cfg order: biases,
for batch-normalised ones scales, rolling mean, rolling variance, then weights (out, in, kh, kw); float32
little-endian, nothing after. Our modules are registered in cfg order and `DarknetBatchNorm2d` normalises as
darknet does, so the values are copied as they are, bit for bit.
"""
from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from wordtree.errors import TreeError
from wordtree.io import load_tree
from yolo9000.builder import build_model
from yolo9000.config import ConfigError, ModelConfig
from yolo9000.errors import CfgError, DarknetError, WeightsError  # noqa: F401  (re-exported)
from yolo9000.model.darknet19 import darknet19_layers, scale_channels
from yolo9000.model.layers import ConvBNLeaky

# darknet's section names and their aliases (parser.c: string_to_layer_type), restricted to what we build.
SECTION_ALIASES = {
    "net": "net", "network": "net",
    "convolutional": "convolutional", "conv": "convolutional",
    "maxpool": "maxpool", "max": "maxpool",
    "avgpool": "avgpool", "avg": "avgpool",
    "softmax": "softmax", "soft": "softmax",
    "route": "route", "reorg": "reorg", "region": "region", "cost": "cost",
    "shortcut": "shortcut", "dropout": "dropout",
}
SUPPORTED = ("net", "convolutional", "maxpool", "route", "reorg", "region", "avgpool", "softmax", "cost",
             "shortcut", "dropout")
# Options each layer type may carry. [net], [region] and [cost] hold training settings (darknet reads dozens),
# so they accept anything; in the other layers an option we do not implement would change the network.
LAYER_OPTIONS = {
    "convolutional": {"filters", "size", "stride", "pad", "padding", "activation", "batch_normalize", "groups"},
    "maxpool": {"size", "stride", "padding"},
    "avgpool": set(),
    "softmax": {"groups", "tree", "temperature"},
    "route": {"layers"},
    "reorg": {"stride", "reverse", "flatten", "extra"},
    "shortcut": {"from", "activation", "alpha", "beta"},
    "dropout": {"probability"},
}
DARKNET_9K_TREE = "9k.tree"
DEFAULT_VERSION = (0, 2, 0)  # what darknet writes today: seen as uint64


# ----------------------------------------------------------------------------------------------------- .cfg parse
@dataclass(frozen=True)
class CfgSection:
    """One `[type]` block of a cfg.

    Attributes:
        type: canonical section type ("net", "convolutional", ...; aliases such as "conv" are resolved).
        line: 1-based line of the `[type]` header (0 for sections we generate).
        options: key -> raw string value, as darknet stores them (whitespace removed).
        option_lines: key -> 1-based line of that option.
        source: file the section came from, for messages.
    """

    type: str
    line: int = 0
    options: dict[str, str] = field(default_factory=dict)
    option_lines: dict[str, int] = field(default_factory=dict)
    source: str = "<generated>"

    def where(self, key: str | None = None) -> str:
        line = self.option_lines.get(key, self.line) if key else self.line
        return f"{self.source}:{line}: [{self.type}]" + (f" {key}" if key else "")

    def has(self, key: str) -> bool:
        return key in self.options

    def get_str(self, key: str, default: str | None = None) -> str | None:
        return self.options.get(key, default)

    def get_int(self, key: str, default: int | None = None) -> int:
        if key not in self.options:
            if default is None:
                raise CfgError(f"{self.where()}: missing required option {key!r}")
            return default
        try:
            return int(self.options[key])
        except ValueError:
            raise CfgError(f"{self.where(key)}={self.options[key]!r} is not an integer") from None

    def get_float(self, key: str, default: float | None = None) -> float:
        if key not in self.options:
            if default is None:
                raise CfgError(f"{self.where()}: missing required option {key!r}")
            return default
        try:
            return float(self.options[key])
        except ValueError:
            raise CfgError(f"{self.where(key)}={self.options[key]!r} is not a number") from None

    def get_list(self, key: str, kind: type = float) -> list:
        if key not in self.options:
            raise CfgError(f"{self.where()}: missing required option {key!r}")
        items = [s for s in self.options[key].split(",") if s]
        try:
            return [kind(s) for s in items]
        except ValueError:
            raise CfgError(f"{self.where(key)}={self.options[key]!r} is not a comma-separated list of "
                           f"{'integers' if kind is int else 'numbers'}") from None


def parse_cfg_text(text: str, source: str = "<cfg>") -> list[CfgSection]:
    """Parse cfg text into sections (see `parse_cfg`)."""
    sections: list[CfgSection] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = "".join(raw.split())  # darknet's strip(): every whitespace character goes, inside values too
        if not line or line[0] in "#;":
            continue
        if line[0] == "[":
            if not line.endswith("]"):
                raise CfgError(f"{source}:{number}: malformed section header {raw.strip()!r}")
            name = line[1:-1]
            if name not in SECTION_ALIASES:
                raise CfgError(f"{source}:{number}: [{name}] layers are not supported "
                               f"(supported: {', '.join(SUPPORTED)})")
            sections.append(CfgSection(SECTION_ALIASES[name], number, {}, {}, source))
            continue
        if not sections:
            raise CfgError(f"{source}:{number}: option {raw.strip()!r} comes before any [section]")
        key, sep, value = line.partition("=")
        if not sep or not key:
            raise CfgError(f"{source}:{number}: expected key=value, got {raw.strip()!r}")
        section = sections[-1]
        allowed = LAYER_OPTIONS.get(section.type)
        if allowed is not None and key not in allowed:
            raise CfgError(f"{source}:{number}: [{section.type}] option {key!r} is not supported "
                           f"(supported: {', '.join(sorted(allowed)) or 'none'})")
        if key not in section.options:  # darknet's option_find returns the first occurrence
            section.options[key] = value
            section.option_lines[key] = number
    if not sections:
        raise CfgError(f"{source}: no sections (an empty or non-cfg file)")
    if sections[0].type != "net":
        raise CfgError(f"{source}:{sections[0].line}: the first section must be [net], got [{sections[0].type}]")
    return sections


def parse_cfg(path: str | Path) -> list[CfgSection]:
    """Read a darknet `.cfg` into its sections, `[net]` first.

    Raises:
        CfgError: an unsupported layer type or option (naming the section and line), an option outside any
            section, a line that is not `key=value`, or a missing `[net]`.
    """
    path = Path(path)
    if not path.exists():
        raise CfgError(f"cfg file {path} does not exist")
    return parse_cfg_text(path.read_text(), str(path))


# -------------------------------------------------------------------------------- our networks as darknet layers
def _section(kind: str, **options: object) -> CfgSection:
    return CfgSection(kind, options={k: str(v) for k, v in options.items()})


def _conv(filters: int, size: int, bn: bool) -> CfgSection:
    if bn:
        return _section("convolutional", batch_normalize=1, filters=filters, size=size, stride=1, pad=1,
                        activation="leaky")
    return _section("convolutional", filters=filters, size=size, stride=1, pad=1, activation="linear")


def _num_outputs(cfg: ModelConfig) -> int:
    """Class logits of the network: the tree's node count, else `num_classes` (what `classes=` must say)."""
    tree = load_tree(cfg.tree)
    return tree.num_nodes if tree is not None else cfg.num_classes


def _fmt(x: float) -> str:
    return repr(float(x))  # shortest text that reads back to the same double


def cfg_layers(cfg: ModelConfig, tree_path: str | None = None) -> list[CfgSection]:
    """The darknet layers (no `[net]`) of the network `build_model(cfg)` builds, in darknet order.

    Args:
        cfg: the model config.
        tree_path: value written for `tree=` when `cfg.tree` is set (default: the config's tree spec,
            with "9k" written as darknet's `data/9k.tree`).
    Returns:
        Sections whose convolutions correspond one to one, in order, with the model's `darknet_convs`.
    """
    if cfg.trunk.startswith("darknet:"):
        layers, index16 = _darknet_trunk_layers(cfg)
    elif cfg.trunk != "darknet19":
        raise CfgError(f"model.trunk: {cfg.trunk} has no darknet cfg; only darknet19 and darknet:CFG trunks are "
                       "written")
    else:
        layers = []
        trunk = darknet19_layers(cfg.depth)
        index16 = max(i for i, spec in enumerate(trunk) if spec[0] == "max") - 1   # before the last max-pool
        for kind, filters, size in trunk:
            if kind == "max":
                layers.append(_section("maxpool", size=size, stride=size))
            else:
                layers.append(_conv(scale_channels(filters, cfg.width), size, True))
    n = _num_outputs(cfg)
    tree = None
    if cfg.tree is not None:
        tree = tree_path or ("data/9k.tree" if cfg.tree == "9k" else cfg.tree)
    if cfg.head == "classifier":
        layers += [_conv(n, 1, False), _section("avgpool")]
        layers.append(_section("softmax", groups=1, **({"tree": tree} if tree else {})))
        return layers
    head = scale_channels(1024, cfg.width)
    after = 1 if cfg.passthrough and cfg.head_convs > 0 else 0
    layers += [_conv(head, 3, True) for _ in range(cfg.head_convs - after)]
    if cfg.passthrough:
        deep = len(layers) - 1
        layers.append(_section("route", layers=index16 - len(layers)))  # the stride-16 features
        layers.append(_conv(scale_channels(64, cfg.width), 1, True))
        layers.append(_section("reorg", stride=2))
        layers.append(_section("route", layers=f"-1,{deep - len(layers)}"))  # reorg first, then the deep path
    layers += [_conv(head, 3, True) for _ in range(after)]
    layers.append(_conv(len(cfg.anchors) * (5 + n), 1, False))
    region = {"anchors": ",".join(_fmt(v) for a in cfg.anchors for v in a), "bias_match": 1, "classes": n,
              "coords": 4, "num": len(cfg.anchors), "softmax": 1}
    if tree:
        region["tree"] = tree
    layers.append(_section("region", **region))
    return layers


def _darknet_trunk_layers(cfg: ModelConfig) -> tuple[list[CfgSection], int | None]:
    """A `darknet:CFG[:END]` trunk's own cfg sections (layers 0..END) and its stride-16 layer."""
    from yolo9000.model.darknet_net import CfgTrunk, resolve_cfg_path, split_trunk_name

    name, end = split_trunk_name(cfg.trunk.partition(":")[2])
    path = resolve_cfg_path(name)
    with torch.device("meta"):
        trunk = CfgTrunk(parse_cfg(path), end, path)
    return list(trunk.net.sections), trunk.index16


def cfg_text(cfg: ModelConfig, tree_path: str | None = None) -> str:
    """A darknet `.cfg` for the network of `cfg` (test-time `[net]`: batch 1, the config's input size)."""
    size = cfg.input_size
    blocks = [f"[net]\nbatch=1\nsubdivisions=1\nwidth={size}\nheight={size}\nchannels=3\n"]
    for section in cfg_layers(cfg, tree_path):
        body = "".join(f"{k}={v}\n" for k, v in section.options.items())
        blocks.append(f"[{section.type}]\n{body}")
    return "\n".join(blocks)


def write_cfg(cfg: ModelConfig, path: str | Path, tree_path: str | None = None) -> Path:
    """Write `cfg_text(cfg)` to `path`; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(cfg_text(cfg, tree_path))
    return path


# ---------------------------------------------------------------------------------------- .cfg -> ModelConfig
def _signature(section: CfgSection, index: int) -> tuple:
    """What about a layer decides the network, with darknet's defaults filled in (parser.c)."""
    s = section
    if s.type == "convolutional":
        size = s.get_int("size", 1)
        padding = size // 2 if s.get_int("pad", 0) else s.get_int("padding", 0)
        return (s.type, ("filters", s.get_int("filters", 1)), ("size", size), ("stride", s.get_int("stride", 1)),
                ("padding", padding), ("groups", s.get_int("groups", 1)),
                ("batch_normalize", s.get_int("batch_normalize", 0)),
                ("activation", s.get_str("activation", "logistic")))
    if s.type == "maxpool":
        stride = s.get_int("stride", 1)
        size = s.get_int("size", stride)
        return (s.type, ("size", size), ("stride", stride), ("padding", s.get_int("padding", size - 1)))
    if s.type == "route":
        return (s.type, ("layers", tuple(i + index if i < 0 else i for i in s.get_list("layers", int))))
    if s.type == "reorg":
        return (s.type, ("stride", s.get_int("stride", 1)), ("reverse", s.get_int("reverse", 0)),
                ("flatten", s.get_int("flatten", 0)), ("extra", s.get_int("extra", 0)))
    if s.type == "softmax":
        return (s.type, ("groups", s.get_int("groups", 1)), ("temperature", s.get_float("temperature", 1.0)))
    if s.type == "region":
        return (s.type, ("classes", s.get_int("classes", 20)), ("coords", s.get_int("coords", 4)),
                ("num", s.get_int("num", 1)))
    return (s.type,)


def _describe(signature: tuple) -> str:
    return f"[{signature[0]}] " + " ".join(f"{k}={v}" for k, v in signature[1:])


def _resolve_tree(section: CfgSection, key: str, cfg_path: Path) -> str:
    """A cfg's `tree=` as a ModelConfig tree spec: darknet's own 9k.tree becomes "9k", others a path."""
    value = section.get_str(key)
    if Path(value).name == DARKNET_9K_TREE:
        return "9k"
    for candidate in (Path(value), cfg_path.parent / value):
        if candidate.exists():
            return str(candidate)
    raise CfgError(f"{section.where(key)}={value}: tree file not found (also looked beside the cfg)")


def config_from_sections(sections: list[CfgSection], cfg_path: Path) -> ModelConfig:
    """Recognise parsed sections as one of our networks (see `config_from_cfg`)."""
    source = str(cfg_path)
    net, layers = sections[0], sections[1:]
    if net.get_int("channels", 3) != 3:
        raise CfgError(f"{net.where('channels')}={net.get_int('channels')}: only 3-channel inputs are supported")
    width_px, height_px = net.get_int("width", 416), net.get_int("height", 416)
    if width_px != height_px:
        raise CfgError(f"{net.where('width')}: width={width_px} and height={height_px} differ; model.input_size "
                       "is square (the network itself runs on any multiple of 32 at run time)")
    if not layers:
        raise CfgError(f"{source}: the cfg has a [net] section but no layers")
    types = [s.type for s in layers]
    pools = [i for i, t in enumerate(types) if t == "maxpool"]
    if len(pools) != 5:
        raise CfgError(f"{source}: found {len(pools)} [maxpool] layers; a Darknet-19 trunk (the only trunk we build) "
                       "has 5")
    convs_in_stage3 = sum(t == "convolutional" for t in types[pools[1] + 1:pools[2]])
    depth = "full" if convs_in_stage3 > 1 else "tiny"
    first_deep = next((s for s in layers[pools[-1] + 1:] if s.type == "convolutional"), None)
    if first_deep is None:
        raise CfgError(f"{source}: no [convolutional] layer after the last [maxpool]")
    width = first_deep.get_int("filters", 1) / 1024  # the widest layer gives the most precise multiplier
    regions = [s for s in layers if s.type == "region"]
    trunk_len = len(darknet19_layers(depth))
    if regions:
        region = regions[-1]
        if region is not layers[-1]:
            raise CfgError(f"{region.where()}: [region] must be the last layer")
        num, classes = region.get_int("num", 1), region.get_int("classes", 20)
        values = region.get_list("anchors", float)
        if len(values) != 2 * num:
            raise CfgError(f"{region.where('anchors')}: {len(values)} values for num={num} anchors "
                           f"(expected {2 * num}: w,h pairs)")
        anchors = tuple((values[2 * i], values[2 * i + 1]) for i in range(num))
        tree = _resolve_tree(region, "tree", cfg_path) if region.has("tree") else None
        passthrough = "reorg" in types
        extra_convs = sum(t == "convolutional" for t in types[trunk_len:]) - 1  # minus the prediction conv
        head_convs = max(0, extra_convs - (1 if passthrough else 0))
        fields = dict(kind="yolo9000" if tree else "yolov2", num_classes=classes, tree=tree, anchors=anchors,
                      passthrough=passthrough, head_convs=head_convs)
    else:
        convs = [s for s in layers if s.type == "convolutional"]
        softmax = next((s for s in layers if s.type == "softmax"), None)
        tree = _resolve_tree(softmax, "tree", cfg_path) if softmax is not None and softmax.has("tree") else None
        fields = dict(kind="darknet19", num_classes=convs[-1].get_int("filters", 1), tree=tree)
    try:
        cfg = ModelConfig(width=width, depth=depth, input_size=width_px, **fields)
        n = _num_outputs(cfg)
    except (ConfigError, TreeError) as err:
        raise CfgError(f"{source}: the network it describes is not buildable: {err}") from None
    if cfg.tree is not None and n != cfg.num_classes:
        where = regions[-1].where("classes") if regions else source
        raise CfgError(f"{where}: classes={cfg.num_classes} but the tree has {n} nodes")
    _check_layers(layers, cfg, source)
    return cfg


def _check_layers(layers: list[CfgSection], cfg: ModelConfig, source: str) -> None:
    """Compare the cfg's layers with the ones `cfg` builds; raise at the first that differs."""
    expected = cfg_layers(cfg)
    if layers[-1].type == "cost" and expected[-1].type != "cost":  # training-only, after the softmax
        expected.append(_section("cost"))
    summary = (f"kind={cfg.kind} depth={cfg.depth} width={cfg.width:g}" +
               (f" passthrough={cfg.passthrough} head_convs={cfg.head_convs}" if cfg.head == "region" else ""))
    for index in range(max(len(layers), len(expected))):
        got = _signature(layers[index], index) if index < len(layers) else None
        want = _signature(expected[index], index) if index < len(expected) else None
        if got == want:
            continue
        if got is None:
            raise CfgError(f"{source}: the cfg ends after {len(layers)} layers; our {summary} network continues "
                           f"with layer {index} {_describe(want)}")
        where = f"{source}:{layers[index].line}: layer {index} {_describe(got)}"
        if want is None:
            raise CfgError(f"{where}: our {summary} network has only {len(expected)} layers")
        raise CfgError(f"{where}: our {summary} network has {_describe(want)} here; "
                       "this cfg is not expressible as a ModelConfig")


def config_from_cfg(path: str | Path) -> ModelConfig:
    """The ModelConfig whose `build_model` is the network of a darknet cfg.

    Reads `darknet19.cfg`, `darknet19_448.cfg`, `darknet9000.cfg` (kind darknet19; the 9k tree from
    `[softmax] tree=`), `yolov2.cfg` and `yolo9000.cfg` (detectors; anchors and classes from `[region]`, tree
    "9k" when `tree=` names darknet's 9k.tree), and the tiny/width variants `write_cfg` produces. The input size
    comes from `[net] width`.

    Raises:
        CfgError: unsupported layers or options (section and line), bad values (key and line), or a network that
            differs from every one we build (the first differing layer, as found and as expected).
    """
    path = Path(path)
    return config_from_sections(parse_cfg(path), path)


def generic_config_from_sections(sections: list[CfgSection], cfg_path: Path) -> ModelConfig:
    """A `[region]` cfg of any trunk as a ModelConfig: `model.trunk: darknet:<cfg>:<layer>` holds every layer up to
    the prediction conv, the region head (no extra convs, no passthrough) adds that 1x1 conv; anchors, classes and
    tree come from `[region]`. Its convolutions are the cfg's in order, so the cfg's `.weights` load unchanged.

    Raises:
        CfgError: not a region cfg, or its last conv is not the 1x1 linear prediction conv the head builds.
    """
    from yolo9000.model.darknet_net import DarknetNet

    with torch.device("meta"):
        net = DarknetNet(sections, cfg_path)
    body = list(net.sections)
    if net.head != "region":
        raise CfgError(f"{cfg_path}: only [region] cfgs build as a detector of any trunk (this one ends in "
                       f"[{body[-1].type}])")
    region = next(i for i, s in enumerate(body) if s.type == "region")
    pred = net.layers[region - 1] if region else None
    conv = getattr(pred, "conv", None)
    if conv is None or conv.kernel_size != (1, 1) or conv.stride != (1, 1) or conv.groups != 1 \
            or pred.bn is not None or pred.activation != "linear":
        raise CfgError(f"{body[region - 1].where()}: the layer before [region] must be a 1x1 linear conv with "
                       "bias (the region head's prediction conv)")
    height, width = net.net_size
    if height != width:
        raise CfgError(f"{sections[0].where('width')}: width={width} and height={height} differ; model.input_size "
                       "is square")
    region_section = body[region]
    tree = _resolve_tree(region_section, "tree", cfg_path) if region_section.has("tree") else None
    return ModelConfig(kind="yolo9000" if tree else "yolov2", num_classes=net.num_classes, tree=tree,
                       trunk=f"darknet:{Path(cfg_path).resolve()}:{region - 2}",
                       anchors=_region_anchors(region_section, net.num_anchors), passthrough=False, head_convs=0,
                       input_size=width)


def _region_anchors(section: CfgSection, num: int) -> tuple[tuple[float, float], ...]:
    values = section.get_list("anchors", float) if section.has("anchors") else [0.5] * (2 * num)
    return tuple((values[2 * i], values[2 * i + 1]) for i in range(num))


def cfg_model_config(path: str | Path) -> ModelConfig:
    """The ModelConfig of a darknet cfg: one of our networks (`config_from_cfg`) when it is one, else, for a
    `[region]` cfg of any trunk (yolov2-tiny.cfg, ...), `generic_config_from_sections`."""
    path = Path(path)
    sections = parse_cfg(path)
    try:
        return config_from_sections(sections, path)
    except CfgError as ours:
        try:
            return generic_config_from_sections(sections, path)
        except CfgError as generic:
            raise CfgError(f"{generic} (and not one of our networks either: {ours})") from None


# ------------------------------------------------------------------------------------------------------ .weights
@dataclass(frozen=True)
class ConvEntry:
    """One darknet convolutional layer of a model: the conv and, if batch-normalised, its BN."""

    name: str
    conv: nn.Conv2d
    bn: nn.BatchNorm2d | None

    @property
    def num_floats(self) -> int:
        n = self.conv.out_channels
        return n * (4 if self.bn is not None else 1) + self.conv.weight.numel()

    def tensors(self) -> list[torch.Tensor]:
        """The layer's tensors in `.weights` order: biases, [scales, rolling mean, rolling variance], weights."""
        if self.bn is not None:
            return [self.bn.bias, self.bn.weight, self.bn.running_mean, self.bn.running_var, self.conv.weight]
        if self.conv.bias is None:
            raise WeightsError(f"{self.name}: a convolution without batch norm needs a bias for darknet's format")
        return [self.conv.bias, self.conv.weight]

    def describe(self) -> str:
        c = self.conv
        return (f"{self.name} (conv {c.in_channels}->{c.out_channels} {c.kernel_size[0]}x{c.kernel_size[1]}"
                f"{' bn' if self.bn is not None else ''}, {self.num_floats} floats)")


def darknet_convs(model: nn.Module) -> list[ConvEntry]:
    """The model's convolutions in darknet cfg order (module registration order), with their batch norms."""
    from yolo9000.model.darknet_net import DarknetConv  # imported here: darknet_net imports this module

    entries: list[ConvEntry] = []
    inside = set()
    for name, module in model.named_modules():
        if isinstance(module, (ConvBNLeaky, DarknetConv)):
            entries.append(ConvEntry(name, module.conv, module.bn))
            inside.add(id(module.conv))
        elif isinstance(module, nn.Conv2d) and id(module) not in inside:
            entries.append(ConvEntry(name, module, None))
    if not entries:
        raise WeightsError(f"{type(model).__name__} has no convolutions to read or write darknet weights for")
    return entries


def expected_floats(model: nn.Module) -> int:
    """Number of float32 values after the header of the model's `.weights` file (works on the meta device)."""
    return sum(e.num_floats for e in darknet_convs(model))


def header_size(major: int, minor: int) -> int:
    """Bytes of the header: 3 int32 + seen (uint64 from version 0.2 on, else int32)."""
    return 12 + (8 if _seen_is_64bit(major, minor) else 4)


def _seen_is_64bit(major: int, minor: int) -> bool:
    return major * 10 + minor >= 2 and major < 1000 and minor < 1000


def read_weights_file(path: str | Path) -> tuple[tuple[int, int, int], int, np.ndarray]:
    """Read a `.weights` file: ((major, minor, revision), seen, Float32 values after the header).

    Raises:
        WeightsError: a missing, empty or truncated-header file, or a body that is not whole float32 values.
    """
    path = Path(path)
    if not path.exists():
        raise WeightsError(f"weights file {path} does not exist")
    total = path.stat().st_size
    if total == 0:
        raise WeightsError(f"{path}: empty file (no darknet header)")
    with open(path, "rb") as f:
        head = f.read(20)
    if total < 12:
        raise WeightsError(f"{path}: {total} bytes, shorter than the 12-byte version header")
    major, minor, revision = struct.unpack_from("<3i", head, 0)
    size = header_size(major, minor)
    if total < size:
        raise WeightsError(f"{path}: {total} bytes, shorter than the {size}-byte header of version "
                           f"{major}.{minor}.{revision}")
    seen = struct.unpack_from("<Q" if size == 20 else "<i", head, 12)[0]
    body = total - size
    if body % 4:
        raise WeightsError(f"{path}: {body} bytes after the header is not a whole number of float32 values "
                           "(truncated file?)")
    # np.fromfile gives a writable array straight from the file: one copy of a 200 MB network, not two.
    return (major, minor, revision), int(seen), np.fromfile(path, dtype="<f4", offset=size)


def _fit_message(path: Path, entries: list[ConvEntry], actual: int, what: str) -> str:
    expected = sum(e.num_floats for e in entries)
    head = f"{path}: {what} needs {expected} floats after the header, the file has {actual}"
    offset = 0
    for index, entry in enumerate(entries):
        if offset + entry.num_floats > actual:
            return (f"{head}; the first layer that does not fit is convolution {index} {entry.describe()}, "
                    f"which needs floats {offset}..{offset + entry.num_floats} but the file ends at {actual}")
        offset += entry.num_floats
    return (f"{head}; all {len(entries)} convolutions fit and {actual - expected} floats are left over "
            "(a file for a different network?)")


def _copy_into(entries: list[ConvEntry], values: np.ndarray) -> None:
    flat = torch.from_numpy(values)
    offset = 0
    with torch.no_grad():
        for entry in entries:
            for tensor in entry.tensors():
                n = tensor.numel()
                tensor.copy_(flat[offset:offset + n].view(tensor.shape))
                offset += n


def load_darknet_weights(model: nn.Module, path: str | Path) -> int:
    """Load a darknet `.weights` file into a model built for the same cfg.

    Args:
        model: a network from `build_model` (any device and dtype; values are copied and cast).
        path: the `.weights` file.
    Returns:
        `seen`, the number of images the network was trained on (from the header).
    Raises:
        WeightsError: empty, truncated or wrong-size file: expected and actual floats and the first layer that
            does not fit.
    """
    path = Path(path)
    entries = darknet_convs(model)
    _, seen, values = read_weights_file(path)
    if len(values) != sum(e.num_floats for e in entries):
        raise WeightsError(_fit_message(path, entries, len(values), f"{type(model).__name__}"))
    _copy_into(entries, values)
    return seen


def load_darknet_prefix(model: nn.Module, path: str | Path, longer_file: bool = False) -> tuple[int, int]:
    """Load a `.weights` file that holds the first k convolutions of the model's (darknet `partial` files such
    as `darknet19_448.conv.23`, or a whole file); the other convolutions keep their values.

    Darknet's `load_weights` reads until the file ends; here the file must end exactly after a convolution, so a
    file for another network fails instead of loading half a layer.

    Args:
        model: a network whose convolutions are in darknet order (`DarknetNet`, `build_model`'s).
        path: the `.weights` file.
        longer_file: the file may also hold convolutions after the model's (a whole classifier's weights into
            a trunk of its first layers): those are ignored.
    Returns:
        (seen, k): the header's `seen` and how many convolutions were loaded.
    Raises:
        WeightsError: the file ends inside a convolution (naming it and the offsets) or has more values than
            the model's convolutions take.
    """
    path = Path(path)
    entries = darknet_convs(model)
    _, seen, values = read_weights_file(path)
    offset = 0
    for count, entry in enumerate(entries):
        if offset == len(values):
            _copy_into(entries[:count], values)
            return seen, count
        if offset + entry.num_floats > len(values):
            raise WeightsError(f"{path}: the file ends at float {len(values)}, inside convolution {count} "
                               f"{entry.describe()}, which needs floats {offset}..{offset + entry.num_floats}")
        offset += entry.num_floats
    if offset != len(values) and not longer_file:
        raise WeightsError(_fit_message(path, entries, len(values), type(model).__name__))
    _copy_into(entries, values[:offset])
    return seen, len(entries)


def load_darknet_trunk(model: nn.Module, classifier_weights_path: str | Path) -> int:
    """Load a Darknet-19 classifier's weights into a model's trunk (the YOLO9000 recipe: detector from classifier).

    The file is either a whole classifier (the trunk's convolutions, then the 1x1 classifier conv with bias from
    the trunk's last channels) or a darknet `partial` cut holding the trunk alone (`darknet19_448.conv.23`).
    Anything else is an error: a trunk for another width or depth, a truncated file.

    Args:
        model: a `YOLODetector` or `Classifier` on the darknet19 trunk (anything with a `trunk` attribute).
        classifier_weights_path: darknet `.weights` of the classifier.
    Returns:
        `seen` from the file's header (darknet resets it to 0 when training a detector from it).
    """
    path = Path(classifier_weights_path)
    trunk = getattr(model, "trunk", None)
    if trunk is None:
        raise WeightsError(f"{type(model).__name__} has no `trunk` to load {path} into")
    entries = darknet_convs(trunk)
    need = sum(e.num_floats for e in entries)
    _, seen, values = read_weights_file(path)
    if len(values) < need:
        raise WeightsError(_fit_message(path, entries, len(values), "the Darknet-19 trunk"))
    rest = len(values) - need
    channels = trunk.channels32
    if rest % (channels + 1):
        raise WeightsError(f"{path}: {rest} floats follow the trunk's {need}; a classifier head (1x1 conv from "
                           f"{channels} channels, with bias) needs a multiple of {channels + 1}: the file is not a "
                           "Darknet-19 classifier of this width and depth")
    _copy_into(entries, values[:need])
    return seen


def save_darknet_weights(model: nn.Module, path: str | Path, seen: int = 0,
                         version: tuple[int, int, int] = DEFAULT_VERSION, max_convs: int | None = None) -> Path:
    """Write the model as a darknet `.weights` file (atomically: a temporary file, then a rename).

    Args:
        model: a network from `build_model`.
        path: destination.
        seen: images trained on, stored in the header.
        version: (major, minor, revision); (0, 2, 0) and later store `seen` as uint64, older ones as int32.
        max_convs: write only the first this many convolutions (darknet's `partial`; None: all).
    Returns:
        The path written.
    """
    path = Path(path)
    major, minor, revision = version
    wide = _seen_is_64bit(major, minor)
    if seen < 0 or seen >= (1 << 64 if wide else 1 << 31):
        raise WeightsError(f"seen={seen} does not fit the {'uint64' if wide else 'int32'} field of version "
                           f"{major}.{minor}.{revision}")
    header = struct.pack("<3i", major, minor, revision) + struct.pack("<Q" if wide else "<i", seen)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with torch.no_grad(), open(tmp, "wb") as f:
        f.write(header)
        for entry in darknet_convs(model)[:max_convs]:
            for tensor in entry.tensors():
                # astype(copy=False) is free on little-endian machines: the array's buffer is written as it is.
                f.write(tensor.detach().to("cpu", torch.float32).contiguous().numpy().astype("<f4", copy=False).data)
    os.replace(tmp, path)
    return path


def model_from_cfg(path: str | Path, weights: str | Path | None = None) -> tuple[nn.Module, ModelConfig]:
    """Build the network of a darknet cfg, with darknet weights if given (eval mode then)."""
    cfg = config_from_cfg(path)
    model = build_model(cfg)
    if weights is not None:
        load_darknet_weights(model, weights)
        model.eval()
    return model, cfg
