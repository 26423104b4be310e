"""The heads on a trunk: YOLOv2 / YOLO9000 region head and the image classifier (paper sections 2-4; darknet
`yolov2.cfg`, `yolo9000.cfg`, `darknet19.cfg`).

A trunk is any module with `forward(x) -> (Float[B, C16, H/16, W/16], Float[B, C32, H/32, W/32])` and attributes
`channels16`, `channels32` (`yolo9000.builder` makes them: Darknet-19, a torchvision classifier's body, ...).
One detector class covers both YOLOv2 and YOLO9000. YOLOv2 = Darknet-19 trunk, three 3x3x1024 convs of which the
last follows the passthrough (1x1 conv to 64 on the stride-16 features, reorg, concatenated in front of the
stride-32 path), then a 1x1 conv to A*(5+C). YOLO9000 = the same trunk straight into the 1x1 prediction conv (no
extra convs, no passthrough), 3 anchors and C = 9418 WordTree nodes. The output is raw: no sigmoid, exp or softmax
here.

Sub-modules are registered in darknet cfg order (trunk, head convs, passthrough conv, fused conv, prediction),
so parameters and `.weights` line up one to one with the cfg's convolutional layers.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from yolo9000.model.darknet19 import scale_channels
from yolo9000.model.layers import ConvBNLeaky, Reorg


class YOLODetector(nn.Module):
    """A trunk + the YOLOv2 region head; returns raw Float[B, A, 5+N, H/s, W/s] (s = stride, 32 or 16).

    Args:
        trunk: features at stride 16 and 32 (see the module docstring).
        num_classes: N, flat classes or WordTree nodes.
        anchors: Float[A, 2] anchor (w, h) in grid units.
        width: channel multiplier of the head (1.0 = the paper).
        passthrough: YOLOv2's reorg route from the stride-16 features.
        head_convs: 3x3 convs at 1024*width channels after the trunk; with the passthrough the last of them
            comes after the concatenation (as in yolov2.cfg).
        stride: input pixels per output cell: 32, or 16 for a trunk whose last stage keeps the stride-16 size
            (then without the passthrough, which folds stride-16 features onto a stride-32 grid).
    Attributes:
        anchors: Float[A, 2] buffer, grid units.
        stride: input pixels per output cell.
        num_classes: N.
        num_anchors: A.
    """

    def __init__(self, trunk: nn.Module, num_classes: int, anchors: Tensor, width: float = 1.0,
                 passthrough: bool = True, head_convs: int = 3, stride: int = 32) -> None:
        super().__init__()
        self.stride = stride
        anchors = torch.as_tensor(anchors, dtype=torch.float32)
        self.register_buffer("anchors", anchors)
        self.num_classes = num_classes
        self.num_anchors = anchors.shape[0]
        self.passthrough = passthrough
        self.trunk = trunk
        head_channels = scale_channels(1024, width)
        # With the passthrough, yolov2.cfg puts the last of the three 3x3x1024 convs after the concatenation.
        after = 1 if passthrough and head_convs > 0 else 0
        channels = self.trunk.channels32
        head = []
        for _ in range(head_convs - after):
            head.append(ConvBNLeaky(channels, head_channels, 3))
            channels = head_channels
        self.head = nn.Sequential(*head)
        if passthrough:
            squeezed = scale_channels(64, width)
            self.squeeze = ConvBNLeaky(self.trunk.channels16, squeezed, 1)
            self.reorg = Reorg(2)
            channels += 4 * squeezed
        fuse = []
        for _ in range(after):
            fuse.append(ConvBNLeaky(channels, head_channels, 3))
            channels = head_channels
        self.fuse = nn.Sequential(*fuse)
        self.pred = nn.Conv2d(channels, self.num_anchors * (5 + num_classes), 1)

    def forward(self, x: Tensor) -> Tensor:
        """Float[B, 3, H, W] (H, W multiples of the stride) -> raw Float[B, A, 5+N, H/s, W/s]:
        tx, ty, tw, th, objectness logit, N class (or tree node) logits."""
        if x.shape[-1] % self.stride or x.shape[-2] % self.stride:
            raise ValueError(f"input size {tuple(x.shape[-2:])} is not a multiple of {self.stride}")
        c16, c32 = self.trunk(x)
        y = self.head(c32)
        if self.passthrough:
            # Reorg output first, then the deep path: yolov2.cfg's `[route] layers=-1,-4` order.
            y = torch.cat((self.reorg(self.squeeze(c16)), y), dim=1)
        out = self.pred(self.fuse(y))
        B, _, H, W = out.shape
        return out.view(B, self.num_anchors, 5 + self.num_classes, H, W)


class Classifier(nn.Module):
    """A trunk + darknet's classification head: 1x1 conv to C (linear, with bias), then global average pooling.

    Darknet's `[avgpool]` after the conv equals pooling first; we pool last to keep the cfg's order of operations.
    Returns logits; the softmax (flat or per WordTree group) belongs to the loss and to inference.

    Args:
        trunk: features at stride 16 and 32 (only the stride-32 map is used).
        num_classes: C, classes or tree nodes.
    """

    stride: int = 32

    def __init__(self, trunk: nn.Module, num_classes: int) -> None:
        super().__init__()
        self.trunk = trunk
        self.classifier = nn.Conv2d(trunk.channels32, num_classes, 1)
        self.num_classes = num_classes

    def forward(self, x: Tensor) -> Tensor:
        """Float[B, 3, H, W] -> logits Float[B, C]."""
        return self.classifier(self.trunk(x)[1]).mean(dim=(2, 3))
