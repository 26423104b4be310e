"""Darknet-19 (YOLO9000 paper section 3, Table 6): 19 convolutions and 5 max-pools, BN + leaky ReLU everywhere.

The layer table below is the source of truth for the trunk; `width` scales every channel count and `depth="tiny"`
keeps only the first (3x3) convolution of each stage, which is what `configs/tiny.yaml` uses for tests and the
CPU demo. At 224x224 the full classifier costs 5.58 billion operations (2 x multiply-adds of its convolutions).
Sub-module names follow darknet's layer numbering (`stride32.18` is `yolov2.cfg` layer 18) so ported weights
and error messages line up with the cfg.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Literal

from torch import Tensor, nn

from yolo9000.model.layers import ConvBNLeaky, MaxPoolDarknet

# (kind, filters, kernel size) in darknet19.cfg order; "max" rows are 2x2 stride 2 max-pools.
LayerSpec = tuple[str, int, int]
DARKNET19_LAYERS: tuple[LayerSpec, ...] = (
    ("conv", 32, 3), ("max", 0, 2),
    ("conv", 64, 3), ("max", 0, 2),
    ("conv", 128, 3), ("conv", 64, 1), ("conv", 128, 3), ("max", 0, 2),
    ("conv", 256, 3), ("conv", 128, 1), ("conv", 256, 3), ("max", 0, 2),
    ("conv", 512, 3), ("conv", 256, 1), ("conv", 512, 3), ("conv", 256, 1), ("conv", 512, 3), ("max", 0, 2),
    ("conv", 1024, 3), ("conv", 512, 1), ("conv", 1024, 3), ("conv", 512, 1), ("conv", 1024, 3),
)


def scale_channels(channels: int, width: float) -> int:
    """Channel count under a width multiplier, rounded to a multiple of 4 (reorg needs C divisible by 4)."""
    return max(4, int(round(channels * width / 4)) * 4)


def darknet19_layers(depth: Literal["full", "tiny"] = "full") -> tuple[LayerSpec, ...]:
    """The trunk's layer table; "tiny" drops every convolution but the first of each stage (6 convs, 5 pools)."""
    if depth == "full":
        return DARKNET19_LAYERS
    if depth == "tiny":
        out, keep = [], True
        for spec in DARKNET19_LAYERS:
            if spec[0] == "max":
                out.append(spec)
                keep = True
            elif keep:
                out.append(spec)
                keep = False
        return tuple(out)
    raise ValueError(f"model.depth: {depth!r} is not one of 'full', 'tiny'")


class Darknet19(nn.Module):
    """Darknet-19 trunk without its classifier: features at stride 16 (the passthrough's input) and stride 32.

    Args:
        width: channel multiplier (1.0 = the paper).
        depth: "full" (18 convs) or "tiny" (6 convs).
        in_channels: image channels.
        stride: 32 (the paper), or 16: `stride32` (the last stage) then keeps the stride-16 resolution.
    Attributes:
        channels16, channels32: output channels of the two feature maps.
    """

    def __init__(self, width: float = 1.0, depth: Literal["full", "tiny"] = "full", in_channels: int = 3,
                 stride: Literal[16, 32] = 32) -> None:
        super().__init__()
        if stride not in (16, 32):
            raise ValueError(f"Darknet19: stride {stride} is not 16 or 32")
        layers = darknet19_layers(depth)
        last_pool = max(i for i, spec in enumerate(layers) if spec[0] == "max")
        blocks: list[tuple[str, nn.Module]] = []
        channels, channels16 = in_channels, in_channels
        for i, (kind, filters, size) in enumerate(layers):
            if kind == "max":
                # Stride 16: the last max-pool keeps the size (size 2, stride 1), as yolov2-tiny.cfg's sixth does,
                # so the last stage sees twice the resolution: a 128 px input gives an 8x8 grid.
                pool_stride = 1 if i == last_pool and stride == 16 else size
                blocks.append((str(i), MaxPoolDarknet(size, pool_stride)))
                if i == last_pool:
                    channels16 = channels
            else:
                out = scale_channels(filters, width)
                blocks.append((str(i), ConvBNLeaky(channels, out, size)))
                channels = out
        self.stride16 = nn.Sequential(OrderedDict(blocks[:last_pool]))
        self.stride32 = nn.Sequential(OrderedDict(blocks[last_pool:]))
        self.channels16, self.channels32 = channels16, channels
        self.num_layers = len(layers)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Float[B, 3, H, W] -> (Float[B, C16, H/16, W/16], Float[B, C32, H/s, W/s]), s the stride (32 or 16)."""
        c16 = self.stride16(x)
        return c16, self.stride32(c16)
