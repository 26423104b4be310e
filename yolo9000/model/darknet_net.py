"""Any darknet cfg of the YOLOv2 family and its classifiers as one nn.Module, with darknet's layer semantics.

`DarknetNet(sections)` builds the layers of a parsed cfg (`yolo9000.darknet.parse_cfg`) one module per darknet
layer, numbered as darknet numbers them (`layers.0`, `layers.1`, ...), so `[route] layers=-1,-4`, `[shortcut]
from=-3` and `.weights` offsets line up with the cfg. Supported: `[convolutional]` (size, stride, pad/padding, groups,
batch_normalize, activation linear/leaky/relu/logistic), `[maxpool]` (size, stride, padding), `[avgpool]`,
`[route]`, `[reorg]` (stride, reverse), `[shortcut]` (from, activation, alpha, beta), `[dropout]`, `[region]`,
`[softmax]` (groups, temperature, tree) and `[cost]`. The semantics follow darknet's C code (pjreddie/darknet
61c9d02e, the Debian package's snapshot; darknet_yolo9000.md section 10):

* convolution: `out = (in + 2*padding - size) / stride + 1`, `pad=1` means `padding = size / 2`; with batch norm the
  conv has no bias and inference divides by `sqrt(var) + 1e-6` (`DarknetBatchNorm2d`); leaky slope 0.1.
* maxpool: `padding` defaults to `size - 1`, the window starts at `-padding / 2`, output `(in + padding - size) /
  stride + 1`; padded cells never win.
* reorg: darknet's `reorg_cpu`, which reinterprets memory (not `pixel_unshuffle`); `reverse=1` runs the loop the
  other way.
* route: channel concatenation in the listed order; shortcut: `alpha * x + beta * from` on the overlapping
  channels and (sub/super-sampled) cells, then the activation; avgpool: global mean; dropout: inverted dropout
  (identity in eval mode); cost: zeros (darknet never writes it at inference; the network output skips it).
* region: x, y, objectness through the logistic, w, h raw, classes through one softmax per cell (`softmax=1`),
  one softmax per sibling group of the tree (`tree=`), or the logistic; softmax: one per group of
  `inputs / groups` values, or per tree group, with `temperature`.

`forward` returns raw tensors like our own models (STYLE A.2.1): for a cfg ending in `[region]` the region's input
as Float[B, A, 5+N, H, W]; for one ending in `[softmax]` (and `[cost]`) the softmax's input, Float[B, N] logits;
otherwise the last layer's output. `forward_layers` returns every layer's output as darknet computes it,
activations of `[region]` and `[softmax]` included, for comparison with darknet's own layer outputs.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from wordtree.ops import grouped_log_softmax
from wordtree.tree import WordTree
from yolo9000.darknet import CfgError, CfgSection, parse_cfg
from yolo9000.model.layers import LEAKY_SLOPE, DarknetBatchNorm2d

ACTIVATIONS = ("linear", "leaky", "relu", "logistic")
HEADS = ("region", "softmax")


def make_activation(name: str, inplace: bool = False) -> nn.Module:
    """The module of a darknet activation name (linear, leaky, relu, logistic)."""
    if name == "leaky":
        return nn.LeakyReLU(LEAKY_SLOPE, inplace=inplace)
    if name == "relu":
        return nn.ReLU(inplace=inplace)
    if name == "logistic":
        return nn.Sigmoid()
    if name == "linear":
        return nn.Identity()
    raise ValueError(f"activation {name!r} is not one of {', '.join(ACTIVATIONS)}")


# ------------------------------------------------------------------------------------------------------- layers
class DarknetConv(nn.Module):
    """`[convolutional]`: conv, optional batch norm (darknet's inference epsilon), activation.

    With batch norm the conv has no bias: darknet's `biases` are the BN shift. `.weights` order: biases,
    [scales, rolling mean, rolling variance], weights (out, in/groups, kh, kw).
    """

    def __init__(self, in_channels: int, filters: int, size: int, stride: int = 1, padding: int = 0,
                 groups: int = 1, batch_normalize: bool = False, activation: str = "logistic") -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, filters, size, stride, padding, groups=groups, bias=not batch_normalize)
        self.bn = DarknetBatchNorm2d(filters) if batch_normalize else None
        self.act = make_activation(activation, inplace=True)  # on the conv's (or BN's) fresh output
        self.activation = activation

    @property
    def summary_kind(self) -> str:
        c = self.conv
        groups = f" g{c.groups}" if c.groups > 1 else ""
        return (f"conv {c.out_channels} {c.kernel_size[0]}x{c.kernel_size[1]}/{c.stride[0]}{groups}"
                f"{' bn' if self.bn is not None else ''} {self.activation}")

    def forward(self, x: Tensor) -> Tensor:
        """Float[B, Cin, H, W] -> Float[B, filters, H', W']."""
        x = self.conv(x)
        if self.bn is not None:
            x = self.bn(x)
        return self.act(x)


def maxpool_out(size_in: int, size: int, stride: int, padding: int) -> int:
    """Darknet's maxpool output side: (in + padding - size) / stride + 1 (C integer division)."""
    return (size_in + padding - size) // stride + 1


class DarknetMaxPool(nn.Module):
    """`[maxpool] size stride padding`: the window starts at `-padding // 2`; padded cells never win.

    Size 2 stride 2 maps 27 -> 14 (PyTorch's floor mode gives 13); size 2 stride 1 keeps the size (tiny cfgs).
    """

    def __init__(self, size: int, stride: int, padding: int) -> None:
        super().__init__()
        self.size, self.stride, self.padding = size, stride, padding
        self.summary_kind = f"max {size}x{size}/{stride}" + (f" pad {padding}" if padding != size - 1 else "")

    def forward(self, x: Tensor) -> Tensor:
        """Float[B, C, H, W] -> Float[B, C, (H + padding - size) // stride + 1, (W + ...) // stride + 1]."""
        H, W = x.shape[-2:]
        left = self.padding // 2
        # Pad (or crop, where the last window stops short of the edge) so that plain max_pool2d sees exactly the
        # cells darknet's windows cover.
        bottom = (maxpool_out(H, self.size, self.stride, self.padding) - 1) * self.stride + self.size - H - left
        right = (maxpool_out(W, self.size, self.stride, self.padding) - 1) * self.stride + self.size - W - left
        if left or bottom or right:
            x = F.pad(x, (left, right, left, bottom), value=float("-inf"))
        return F.max_pool2d(x, self.size, self.stride)


class GlobalAvgPool(nn.Module):
    """`[avgpool]`: mean over all cells, Float[B, C, H, W] -> Float[B, C, 1, 1]."""

    summary_kind = "avg"

    def forward(self, x: Tensor) -> Tensor:
        return x.mean(dim=(2, 3), keepdim=True)


class DarknetReorg(nn.Module):
    """`[reorg] stride=s [reverse=1]`: darknet's `reorg_cpu`, which reinterprets memory.

    Forward (no `reverse`), input (C, H, W): output channel `k = (dy*s + dx) * C/s² + c2` at (j, i) is the input
    memory viewed as (C/s², sH, sW) at (c2, j*s + dy, i*s + dx); the (C, H, W) buffer is then read as
    (s²C, H/s, W/s). Reverse, input (C, H, W): the loop the other way, output (C/s², sH, sW). Neither is
    `pixel_unshuffle` / `pixel_shuffle`, and reverse is not the inverse of forward on the same tensor.
    """

    def __init__(self, stride: int, reverse: bool = False) -> None:
        super().__init__()
        self.stride, self.reverse = stride, reverse
        self.summary_kind = f"reorg /{stride}" + (" reverse" if reverse else "")

    def forward(self, x: Tensor) -> Tensor:
        B, C, H, W = x.shape
        s = self.stride
        if C % (s * s) or (not self.reverse and (H % s or W % s)):
            raise ValueError(f"reorg stride={s}: input {tuple(x.shape[1:])} needs channels divisible by {s * s}"
                             + ("" if self.reverse else f" and height, width by {s}"))
        if self.reverse:
            out = x.reshape(B, s, s, C // (s * s), H, W).permute(0, 3, 4, 1, 5, 2)
            return out.reshape(B, C // (s * s), H * s, W * s)
        out = x.reshape(B, C // (s * s), H, s, W, s).permute(0, 3, 5, 1, 2, 4)
        return out.reshape(B, s * s * C, H // s, W // s)


class Route(nn.Module):
    """`[route] layers=...`: the listed layers' outputs concatenated along channels, in the listed order."""

    def __init__(self, sources: Sequence[int]) -> None:
        super().__init__()
        self.sources = tuple(sources)
        self.summary_kind = "route " + " ".join(map(str, self.sources))

    def forward(self, inputs: list[Tensor]) -> Tensor:
        return inputs[0] if len(inputs) == 1 else torch.cat(inputs, dim=1)


class Shortcut(nn.Module):
    """`[shortcut] from=k activation alpha beta`: `act(alpha * x + beta * layer_k)`, darknet's `shortcut_cpu`.

    Where the shapes differ, darknet adds over the first min(C) channels, reading every (W_from / W)-th cell of
    the source or writing every (W / W_from)-th cell of the output.
    """

    def __init__(self, source: int, activation: str = "linear", alpha: float = 1.0, beta: float = 1.0) -> None:
        super().__init__()
        self.source, self.alpha, self.beta = source, alpha, beta
        self.act = make_activation(activation)
        self.summary_kind = f"shortcut {source} {activation}"

    def forward(self, x: Tensor, add: Tensor) -> Tensor:
        if x.shape == add.shape:
            out = x if self.alpha == 1 else self.alpha * x
            return self.act(out + (add if self.beta == 1 else self.beta * add))
        (c1, h1, w1), (c2, h2, w2) = add.shape[1:], x.shape[1:]
        stride, sample = max(w1 // w2, 1), max(w2 // w1, 1)
        c, h, w = min(c1, c2), min(h1, h2), min(w1, w2)
        # Only the overlapping cells are combined (alpha included); the others keep the input as it is.
        at = (slice(None), slice(0, c), slice(0, h * sample, sample), slice(0, w * sample, sample))
        out = x.clone()
        out[at] = self.alpha * x[at] + self.beta * add[:, :c, :h * stride:stride, :w * stride:stride]
        return self.act(out)


class Cost(nn.Module):
    """`[cost]`: training only. At inference darknet never writes its output (zeros) and the network's output
    skips it, so `DarknetNet.forward` does not run it."""

    summary_kind = "cost"

    def forward(self, x: Tensor) -> Tensor:
        return torch.zeros_like(x)


class Dropout(nn.Dropout):
    """`[dropout] probability=p`: inverted dropout (scale 1/(1-p) in training), identity in eval mode."""

    @property
    def summary_kind(self) -> str:
        return f"dropout {self.p:g}"


def softmax_groups(x: Tensor, tree: WordTree | None, groups: int = 1, temperature: float = 1.0) -> Tensor:
    """Darknet's softmax over the last dimension: per sibling group of `tree`, or per `groups` equal chunks."""
    x = x / temperature if temperature != 1 else x
    if tree is not None:
        return grouped_log_softmax(x, tree).exp()
    n = x.shape[-1]
    return x.reshape(*x.shape[:-1], groups, n // groups).softmax(-1).reshape(x.shape)


class Region(nn.Module):
    """`[region]`: darknet's activations of the detector output (the loss and decode take the raw input).

    Attributes:
        num_anchors, num_classes: A and N (N = the tree's nodes for a tree region).
        tree: WordTree for `tree=`, else None.
        softmax: classes through a softmax per cell (`softmax=1`) rather than the logistic.
        options: every `[region]` option as written (thresh, object_scale, ...), for training code.
    """

    def __init__(self, num_anchors: int, num_classes: int, softmax: bool, tree: WordTree | None,
                 options: dict[str, str]) -> None:
        super().__init__()
        self.num_anchors, self.num_classes = num_anchors, num_classes
        self.softmax, self.tree, self.options = softmax, tree, dict(options)
        self.summary_kind = f"region {self.num_anchors}x{5 + num_classes}" + (" tree" if tree is not None else "")

    def forward(self, x: Tensor) -> Tensor:
        """Float[B, A*(5+N), H, W] raw -> the same layout, activated as darknet's region layer output."""
        B, _, H, W = x.shape
        raw = x.view(B, self.num_anchors, 5 + self.num_classes, H, W)
        xy, wh, obj, cls = raw[:, :, 0:2], raw[:, :, 2:4], raw[:, :, 4:5], raw[:, :, 5:]
        if self.tree is not None:
            cls = softmax_groups(cls.movedim(2, -1), self.tree).movedim(-1, 2)
        elif self.softmax:
            cls = cls.softmax(dim=2)
        else:
            cls = cls.sigmoid()
        return torch.cat((xy.sigmoid(), wh, obj.sigmoid(), cls), dim=2).view_as(x)


class Softmax(nn.Module):
    """`[softmax] groups temperature tree`: Float[B, ...] -> Float[B, inputs] probabilities (flattened)."""

    def __init__(self, groups: int, temperature: float, tree: WordTree | None) -> None:
        super().__init__()
        self.groups, self.temperature, self.tree = groups, temperature, tree
        self.summary_kind = "softmax" + (" tree" if tree is not None else f" {groups}" if groups > 1 else "")

    def forward(self, x: Tensor) -> Tensor:
        return softmax_groups(x.flatten(1), self.tree, self.groups, self.temperature)


# ------------------------------------------------------------------------------------------------------ network
@dataclass(frozen=True)
class LayerShape:
    """A layer's output shape for one image, as darknet computes it at build time (c, h, w)."""

    c: int
    h: int
    w: int


def _tree_from(section: CfgSection, key: str, cfg_path: Path | None) -> WordTree:
    # Imported here: yolo9000.darknet's recogniser resolves "9k" and paths beside the cfg the same way.
    from wordtree.errors import TreeError
    from wordtree.io import load_tree
    from yolo9000.darknet import _resolve_tree

    spec = _resolve_tree(section, key, cfg_path or Path(section.source))
    try:
        return load_tree(spec)
    except TreeError as err:
        raise CfgError(f"{section.where(key)}: {err}") from None


def _anchor_values(section: CfgSection, num: int) -> list[float]:
    """`[region] anchors` as floats; darknet's default is .5 for every value."""
    return section.get_list("anchors", float) if section.has("anchors") else [0.5] * (2 * num)


def _shortcut_fits(source: LayerShape, target: LayerShape) -> bool:
    """Darknet's `shortcut_cpu` asserts: the same whole ratio between the maps' widths and their heights."""
    if min(source.h, source.w, target.h, target.w) < 1:
        return False
    return source.w // target.w == source.h // target.h and target.w // source.w == target.h // source.h


def _check_options(section: CfgSection, key: str, allowed: Sequence[str], default: str) -> str:
    value = section.get_str(key, default)
    if value not in allowed:
        raise CfgError(f"{section.where(key)}={value}: supported values are {', '.join(allowed)}")
    return value


def _zero_or_error(section: CfgSection, key: str) -> None:
    if section.get_int(key, 0):
        raise CfgError(f"{section.where(key)}={section.get_str(key)}: not supported (only {key}=0)")



def apply_layer(module: nn.Module, x: Tensor, outputs: dict[int, Tensor]) -> Tensor:
    """One cfg layer on the previous output `x`; routes and shortcuts read earlier outputs by layer index."""
    if isinstance(module, Route):
        return module([outputs[i] for i in module.sources])
    if isinstance(module, Shortcut):
        return module(x, outputs[module.source])
    return module(x)


class DarknetNet(nn.Module):
    """The network of a darknet cfg; raw outputs (see the module docstring).

    Args:
        sections: parsed cfg sections, `[net]` first (`parse_cfg`).
        cfg_path: where the cfg lives, to find `tree=` files beside it (default: the sections' source).
    Attributes:
        layers: one module per darknet layer, in cfg order.
        in_channels: `[net] channels`.
        net_size: (height, width) of `[net]`.
        shapes: each layer's output LayerShape at the `[net]` size.
        head: "region", "softmax" or None: what the raw output is the input of.
        anchors (Float[A, 2] buffer, grid units), num_anchors, num_classes, stride, tree: for a `[region]`
            network, as `YOLODetector` has them (stride = input pixels per output cell); a `[softmax]` network
            has num_classes and tree.
    Raises:
        CfgError: a value we cannot build (naming the section's line and key), a route or shortcut to a layer
            that does not exist, shapes darknet would reject at the `[net]` size.
    """

    def __init__(self, sections: Sequence[CfgSection], cfg_path: str | Path | None = None) -> None:
        super().__init__()
        if not sections or sections[0].type != "net":
            raise CfgError("a darknet network needs its [net] section first")
        net, body = sections[0], list(sections[1:])
        if not body:
            raise CfgError(f"{net.where()}: the cfg has a [net] section but no layers")
        self.source = net.source
        cfg_path = Path(cfg_path) if cfg_path is not None else None
        self.in_channels = net.get_int("channels", 3)
        self.net_size = (net.get_int("height", 416), net.get_int("width", 416))
        self.sections = tuple(body)
        layers: list[nn.Module] = []
        shapes: list[LayerShape] = []
        shape = LayerShape(self.in_channels, *self.net_size)
        self.head: str | None = None
        self.tree: WordTree | None = None
        self.num_classes: int | None = None
        self.num_anchors = 0
        for index, section in enumerate(body):
            module, shape = self._build_layer(index, section, shape, shapes, cfg_path)
            layers.append(module)
            shapes.append(shape)
        self.layers = nn.ModuleList(layers)
        self.shapes = tuple(shapes)
        # Outputs a later route or shortcut reads: forward keeps only these (densenet201 routes 98 times).
        self.keep = frozenset(s for m in layers for s in getattr(m, "sources", ()) if s >= 0) | frozenset(
            m.source for m in layers if isinstance(m, Shortcut))
        self.stride = self._stride()

    # ---------------------------------------------------------------------------------------------- building
    def _build_layer(self, index: int, s: CfgSection, shape: LayerShape, shapes: list[LayerShape],
                     cfg_path: Path | None) -> tuple[nn.Module, LayerShape]:
        if self.head is not None and s.type != "cost":
            raise CfgError(f"{s.where()}: layer {index} follows the [{self.head}] layer; only [cost] may")
        c, h, w = shape.c, shape.h, shape.w
        if s.type == "convolutional":
            filters, size, stride = s.get_int("filters", 1), s.get_int("size", 1), s.get_int("stride", 1)
            padding = size // 2 if s.get_int("pad", 0) else s.get_int("padding", 0)
            groups = s.get_int("groups", 1)
            activation = _check_options(s, "activation", ACTIVATIONS, "logistic")
            if filters < 1 or size < 1 or stride < 1 or groups < 1:
                raise CfgError(f"{s.where()}: filters, size, stride and groups must be positive")
            if c % groups or filters % groups:
                raise CfgError(f"{s.where('groups')}={groups}: the {c} input channels and {filters} filters must "
                               "both be divisible by groups")
            out = LayerShape(filters, (h + 2 * padding - size) // stride + 1, (w + 2 * padding - size) // stride + 1)
            module = DarknetConv(c, filters, size, stride, padding, groups, bool(s.get_int("batch_normalize", 0)),
                                 activation)
        elif s.type == "maxpool":
            stride = s.get_int("stride", 1)
            size = s.get_int("size", stride)
            padding = s.get_int("padding", size - 1)
            if size < 1 or stride < 1 or padding < 0:
                raise CfgError(f"{s.where()}: size and stride must be positive, padding >= 0")
            out = LayerShape(c, maxpool_out(h, size, stride, padding), maxpool_out(w, size, stride, padding))
            module = DarknetMaxPool(size, stride, padding)
        elif s.type == "avgpool":
            out, module = LayerShape(c, 1, 1), GlobalAvgPool()
        elif s.type == "dropout":
            p = s.get_float("probability", 0.5)
            if not 0 <= p < 1:
                raise CfgError(f"{s.where('probability')}={p}: must be in [0, 1)")
            out, module = shape, Dropout(p)
        elif s.type == "cost":
            out, module = shape, Cost()
        elif s.type == "reorg":
            _zero_or_error(s, "flatten")
            _zero_or_error(s, "extra")
            stride, reverse = s.get_int("stride", 1), bool(s.get_int("reverse", 0))
            if stride < 1 or c % (stride * stride):
                raise CfgError(f"{s.where('stride')}={stride}: the {c} input channels must be divisible by "
                               f"{stride * stride}")
            out = (LayerShape(c // stride ** 2, h * stride, w * stride) if reverse
                   else LayerShape(c * stride ** 2, h // stride, w // stride))
            module = DarknetReorg(stride, reverse)
        elif s.type == "route":
            sources = [i + index if i < 0 else i for i in s.get_list("layers", int)]
            for i in sources:
                if not 0 <= i < index:
                    raise CfgError(f"{s.where('layers')}: layer {i} is not an earlier layer of layer {index}")
            first = shapes[sources[0]]
            out = LayerShape(sum(shapes[i].c for i in sources), first.h, first.w)
            module = Route(sources)
        elif s.type == "shortcut":
            source = s.get_int("from")
            source = source + index if source < 0 else source
            if not 0 <= source < index:
                raise CfgError(f"{s.where('from')}: layer {source} is not an earlier layer of layer {index}")
            module = Shortcut(source, _check_options(s, "activation", ACTIVATIONS, "linear"),
                              s.get_float("alpha", 1.0), s.get_float("beta", 1.0))
            if not _shortcut_fits(shapes[source], shape):
                raise CfgError(f"{s.where('from')}: layer {source}'s {shapes[source].h}x{shapes[source].w} map "
                               f"cannot be added to a {shape.h}x{shape.w} map (darknet needs a whole ratio)")
            out = shape
        elif s.type == "region":
            module = self._region(s, shape, cfg_path)
            out = shape
        elif s.type == "softmax":
            _zero_or_error(s, "spatial")
            groups, temperature = s.get_int("groups", 1), s.get_float("temperature", 1.0)
            inputs = c * h * w
            tree = _tree_from(s, "tree", cfg_path) if s.has("tree") else None
            if tree is not None and tree.num_nodes != inputs:
                raise CfgError(f"{s.where('tree')}: the tree has {tree.num_nodes} nodes, the layer's input "
                               f"{inputs} values")
            if tree is None and (groups < 1 or inputs % groups):
                raise CfgError(f"{s.where('groups')}={groups}: the input's {inputs} values are not divisible by it")
            self.head, self.tree, self.num_classes = "softmax", tree, inputs
            out, module = LayerShape(inputs, 1, 1), Softmax(groups, temperature, tree)
        else:  # parse_cfg refuses other section types already
            raise CfgError(f"{s.where()}: [{s.type}] layers are not supported")
        if s.type == "route" and any((shapes[i].h, shapes[i].w) != (first.h, first.w) for i in sources):
            sizes = ", ".join(f"{i}: {shapes[i].h}x{shapes[i].w}" for i in sources)
            raise CfgError(f"{s.where('layers')}: routed layers differ in size at the [net] size ({sizes})")
        if min(out.c, out.h, out.w) < 1:
            raise CfgError(f"{s.where()}: layer {index} has an empty output ({out.c}x{out.h}x{out.w}) at the "
                           f"[net] size {self.net_size[0]}x{self.net_size[1]}")
        return module, out

    def _region(self, s: CfgSection, shape: LayerShape, cfg_path: Path | None) -> Region:
        num, classes, coords = s.get_int("num", 1), s.get_int("classes", 20), s.get_int("coords", 4)
        if coords != 4:
            raise CfgError(f"{s.where('coords')}={coords}: only coords=4 (boxes without masks) is supported")
        _zero_or_error(s, "background")
        values = _anchor_values(s, num)
        if len(values) != 2 * num:
            raise CfgError(f"{s.where('anchors')}: {len(values)} values for num={num} anchors (expected {2 * num})")
        tree = _tree_from(s, "tree", cfg_path) if s.has("tree") else None
        if tree is not None and tree.num_nodes != classes:
            raise CfgError(f"{s.where('classes')}: classes={classes} but the tree has {tree.num_nodes} nodes")
        if shape.c != num * (5 + classes):
            raise CfgError(f"{s.where()}: its input has {shape.c} channels; num={num} anchors x (5 + classes="
                           f"{classes}) needs {num * (5 + classes)}")
        self.head, self.tree, self.num_classes, self.num_anchors = "region", tree, classes, num
        self.register_buffer("anchors", torch.tensor(values, dtype=torch.float32).view(num, 2))
        return Region(num, classes, bool(s.get_int("softmax", 0)), tree, s.options)

    def _stride(self) -> int:
        """Input pixels per cell of the last spatial output (the region's grid, the map a classifier pools)."""
        height = self.net_size[0]
        last = height
        for section, shape in zip(self.sections, self.shapes):
            if section.type in ("avgpool", "softmax", "region", "cost"):
                break
            last = shape.h
        return max(1, round(height / last))

    # ---------------------------------------------------------------------------------------------- attributes
    @property
    def region(self) -> Region | None:
        return next((m for m in self.layers if isinstance(m, Region)), None)

    def reset_anchors(self) -> None:
        """Set the anchors buffer from the cfg again (after `to_empty`, which leaves buffers uninitialised)."""
        section = next(s for s in self.sections if s.type == "region")
        with torch.no_grad():
            self.anchors.copy_(torch.tensor(_anchor_values(section, self.num_anchors)).view(-1, 2))

    def layer_shapes(self, height: int, width: int) -> list[LayerShape]:
        """Each layer's output shape at another input size (pure arithmetic, as darknet's `resize_network`).

        Raises:
            CfgError: naming the first layer darknet cannot run at that size (an empty output, a reorg of a
                side not divisible by its stride, routed layers of different sizes).
        """
        shapes: list[LayerShape] = []
        c, h, w = self.in_channels, height, width
        for index, (section, module) in enumerate(zip(self.sections, self.layers)):
            where = f"{section.where()} (layer {index}) at {height}x{width}"
            if isinstance(module, DarknetConv):
                conv = module.conv
                k, st, p = conv.kernel_size[0], conv.stride[0], conv.padding[0]
                c, h, w = conv.out_channels, (h + 2 * p - k) // st + 1, (w + 2 * p - k) // st + 1
            elif isinstance(module, DarknetMaxPool):
                h, w = (maxpool_out(h, module.size, module.stride, module.padding),
                        maxpool_out(w, module.size, module.stride, module.padding))
            elif isinstance(module, GlobalAvgPool):
                h = w = 1
            elif isinstance(module, DarknetReorg):
                s = module.stride
                if module.reverse:
                    c, h, w = c // (s * s), h * s, w * s
                else:
                    if h % s or w % s:
                        raise CfgError(f"{where}: reorg of a {h}x{w} map by {s}")
                    c, h, w = c * s * s, h // s, w // s
            elif isinstance(module, Route):
                first = shapes[module.sources[0]]
                if any((shapes[i].h, shapes[i].w) != (first.h, first.w) for i in module.sources):
                    raise CfgError(f"{where}: routed layers differ in size")
                c, h, w = sum(shapes[i].c for i in module.sources), first.h, first.w
            elif isinstance(module, Shortcut):
                if not _shortcut_fits(shapes[module.source], LayerShape(c, h, w)):
                    src = shapes[module.source]
                    raise CfgError(f"{where}: shortcut from a {src.h}x{src.w} map to a {h}x{w} map")
            elif isinstance(module, Softmax):
                c, h, w = c * h * w, 1, 1
            if min(c, h, w) < 1:
                raise CfgError(f"{where}: empty output {c}x{h}x{w}")
            shapes.append(LayerShape(c, h, w))
        return shapes

    def input_sizes(self, count: int = 2, limit: int = 4096) -> list[int]:
        """The `count` smallest square input sides the network runs at: multiples of `stride` whose last
        spatial map has exactly side / stride cells (so the grid maps back onto the input)."""
        sizes = []
        for side in range(self.stride, limit + 1, self.stride):
            try:
                shapes = self.layer_shapes(side, side)
            except CfgError:
                continue
            last = side
            for section, shape in zip(self.sections, shapes):
                if section.type in ("avgpool", "softmax", "region", "cost"):
                    break
                last = shape.h
            if last * self.stride == side:
                sizes.append(side)
                if len(sizes) == count:
                    break
        return sizes

    # ---------------------------------------------------------------------------------------------- forward
    def _run(self, x: Tensor, collect: bool, stop: int | None = None) -> tuple[Tensor, list[Tensor]]:
        """Run layers [0, stop); returns (the head's raw input, else the last output; every output if collect)."""
        outputs: dict[int, Tensor] = {}
        every: list[Tensor] = []
        raw = None
        for index in range(len(self.layers) if stop is None else stop):
            module = self.layers[index]
            if isinstance(module, (Region, Softmax)):
                raw = x
                if not collect:
                    break
            if isinstance(module, Cost) and not collect:
                continue
            x = apply_layer(module, x, outputs)
            if index in self.keep:
                outputs[index] = x
            if collect:
                every.append(x)
        return (x if raw is None else raw), every

    def forward(self, x: Tensor) -> Tensor:
        """Raw output: Float[B, A, 5+N, H, W] ([region]), Float[B, N] logits ([softmax]), else the last layer's."""
        if x.shape[1] != self.in_channels:
            raise ValueError(f"{self.source}: expected {self.in_channels}-channel input, got {tuple(x.shape)}")
        raw, _ = self._run(x, collect=False)
        if self.head == "region":
            B, _, H, W = raw.shape
            return raw.view(B, self.num_anchors, 5 + self.num_classes, H, W)
        if self.head == "softmax":
            return raw.flatten(1)
        return raw

    def forward_layers(self, x: Tensor) -> list[Tensor]:
        """Every layer's output as darknet computes it (region and softmax activated, cost zeros)."""
        return self._run(x, collect=True)[1]

    def features(self, x: Tensor, upto: int) -> Tensor:
        """The output of layer `upto` (inclusive), running nothing after it."""
        if not 0 <= upto < len(self.layers):
            raise ValueError(f"{self.source}: layer {upto} does not exist (the cfg has {len(self.layers)})")
        raw, _ = self._run(x, collect=False, stop=upto + 1)
        return raw

    def extra_repr(self) -> str:
        return f"source={self.source!r}, head={self.head}"


def default_trunk_end(net: DarknetNet) -> int:
    """The last trunk layer of a classifier cfg: the layer before its first [avgpool], or before the 1x1
    classifier conv (one filter per class) that precedes the pool (darknet19.cfg: layer 22; resnet50.cfg: the
    last shortcut)."""
    pool = next((i for i, s in enumerate(net.sections) if s.type in ("avgpool", "softmax", "region")),
                len(net.sections))
    end = pool - 1
    layer = net.layers[end] if end >= 0 else None
    if (isinstance(layer, DarknetConv) and layer.conv.kernel_size == (1, 1)
            and layer.conv.out_channels == net.num_classes):
        end -= 1
    if end < 0:
        raise CfgError(f"{net.source}: no layers before the classifier to use as a trunk")
    return end


class CfgTrunk(nn.Module):
    """A darknet cfg's layers 0..`end` as a detector trunk: features at stride 16 and at the last layer.

    The stride-16 map (YOLOv2's passthrough input) is the output of the last layer whose cells are input/16;
    `channels16` is None when the cfg has none. Convolutions keep darknet's order, so `load_darknet_prefix(trunk,
    classifier.weights, longer_file=True)` initialises it from the classifier's darknet weights.

    Args:
        sections: the parsed cfg.
        end: the last layer kept (darknet numbering; negative counts from the cfg's end); default
            `default_trunk_end`.
    Attributes:
        net: the DarknetNet holding layers 0..end.
        channels16, channels32: output channels of the two maps; stride: input pixels per output cell.
    """

    def __init__(self, sections: Sequence[CfgSection], end: int | None = None,
                 cfg_path: str | Path | None = None) -> None:
        super().__init__()
        full = DarknetNet(sections, cfg_path) if end is None or end < 0 else None
        if end is None:
            end = default_trunk_end(full)
        elif end < 0:
            end += len(full.layers)
        if not 0 <= end < len(sections) - 1:
            raise CfgError(f"{sections[0].source}: trunk end layer {end} is not a layer of the cfg")
        kept = sections[1:end + 2]
        bad = next((s for s in kept if s.type in ("region", "softmax", "cost", "avgpool")), None)
        if bad is not None:
            raise CfgError(f"{bad.where()}: a trunk ends before [{bad.type}] (end layer {end})")
        self.net = DarknetNet([sections[0], *kept], cfg_path)
        self.end = end
        height = self.net.net_size[0]
        self.stride = self.net.stride
        at16 = [i for i, shape in enumerate(self.net.shapes) if shape.h * 16 == height]
        self.index16 = at16[-1] if at16 and self.stride == 32 else None
        self.channels16 = self.net.shapes[self.index16].c if self.index16 is not None else None
        self.channels32 = self.net.shapes[-1].c
        if self.index16 is not None:
            self.net.keep = self.net.keep | {self.index16}

    def forward(self, x: Tensor) -> tuple[Tensor | None, Tensor]:
        """Float[B, C, H, W] -> (stride-16 features or None, the last layer's features)."""
        outputs: dict[int, Tensor] = {}
        for index, module in enumerate(self.net.layers):
            x = apply_layer(module, x, outputs)
            if index in self.net.keep:
                outputs[index] = x
        return (outputs[self.index16] if self.index16 is not None else None), x


def resolve_cfg_path(name: str) -> Path:
    """A cfg path as given, or one of the package's cfgs by file name (`yolov2-tiny.cfg`, from `yolo9000 setup`)."""
    from yolo9000.reference import darknet_dir

    path = Path(name).expanduser()
    if path.is_file():
        return path
    cached = darknet_dir() / Path(name).name
    if path.parent == Path(".") and cached.is_file():
        return cached
    raise CfgError(f"cfg file {name} does not exist (nor among the package's cfgs in {darknet_dir()})")


def split_trunk_name(name: str) -> tuple[str, int | None]:
    """`model.trunk`'s part after "darknet:": "CFG" or "CFG:END" (END: the last layer kept, darknet numbering)."""
    head, sep, tail = name.rpartition(":")
    if sep and tail.lstrip("-").isdigit():
        return head, int(tail)
    return name, None


def darknet_trunk(cfg, name: str) -> CfgTrunk:
    """`yolo9000.builder`'s trunk factory for `model.trunk: darknet:CFG[:END]`, initialised from
    `model.trunk_weights` (a darknet `.weights` of the whole cfg, or a partial file such as
    darknet19_448.conv.23) when given."""
    from yolo9000.config import ConfigError
    from yolo9000.darknet import load_darknet_prefix, parse_cfg

    if not name:
        raise ConfigError("model.trunk: give darknet:<cfg>[:<last layer>], e.g. darknet:darknet19.cfg:22")
    cfg_name, end = split_trunk_name(name)
    path = resolve_cfg_path(cfg_name)
    trunk = CfgTrunk(parse_cfg(path), end, path)
    if trunk.stride != cfg.stride:
        raise ConfigError(f"model.trunk: {name} ends at stride {trunk.stride}; the heads need stride {cfg.stride}")
    if cfg.head == "region" and cfg.passthrough and trunk.channels16 is None:
        raise ConfigError(f"model.passthrough: {name} has no stride-16 layer to route from; set it to false")
    if cfg.trunk_weights is not None:
        load_darknet_prefix(trunk, cfg.trunk_weights, longer_file=True)
    return trunk


def darknet_net_from_cfg(path: str | Path) -> DarknetNet:
    """Parse a darknet `.cfg` and build its network (fresh PyTorch initialisation).

    Raises:
        CfgError: a layer or option we do not build (the section and line), a bad value, an invalid network.
    """
    path = Path(path)
    return DarknetNet(parse_cfg(path), path)
