"""One decode for loss and inference (paper section 2, "Direct location prediction").

    bx = sigmoid(tx) + cx,  by = sigmoid(ty) + cy,  bw = pw * exp(tw),  bh = ph * exp(th),  objectness = sigmoid(to)

Grid units are multiplied by the stride to give input pixels. Nothing here modifies its input. Inference goes on in
`yolo9000.postprocess`.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class Decoded:
    """Predictions of a raw Float[B, A, 5+C, H, W] output, laid out [B, A, H, W, ...].

    Attributes:
        xy: Float[B, A, H, W, 2], sigmoid(tx, ty): the box centre's offset inside its cell, 0..1.
        twh: Float[B, A, H, W, 2], raw tw, th (what the coordinate loss compares with log(w / pw)).
        boxes: Float[B, A, H, W, 4], xyxy in input pixels.
        obj_logit: Float[B, A, H, W], raw objectness logit.
        objectness: Float[B, A, H, W], sigmoid(obj_logit).
        class_logits: Float[B, A, H, W, C], raw class (or tree node) logits.
        stride: pixels per grid cell.
    """

    xy: Tensor
    twh: Tensor
    boxes: Tensor
    obj_logit: Tensor
    objectness: Tensor
    class_logits: Tensor
    stride: float


def grid_offsets(height: int, width: int, device: torch.device, dtype: torch.dtype) -> Tensor:
    """Float[H, W, 2]: (cx, cy) of each cell's top-left corner in grid units."""
    ys, xs = torch.meshgrid(torch.arange(height, device=device, dtype=dtype),
                            torch.arange(width, device=device, dtype=dtype), indexing="ij")
    return torch.stack((xs, ys), dim=-1)


def decode(raw: Tensor, anchors: Tensor, stride: float) -> Decoded:
    """Decode a raw network output.

    Args:
        raw: Float[B, A, 5+C, H, W]: tx, ty, tw, th, objectness logit, C class logits.
        anchors: Float[A, 2] anchor (w, h) in grid units.
        stride: input pixels per grid cell (32 for every network here).
    Returns:
        Decoded, all fields laid out [B, A, H, W, ...]; boxes in input pixels.
    """
    B, A, _, H, W = raw.shape
    if anchors.shape != (A, 2):
        raise ValueError(f"decode: anchors have shape {tuple(anchors.shape)}, the output has {A} anchors")
    out = raw.permute(0, 1, 3, 4, 2)  # [B, A, H, W, 5+C]: last dim is what softmax and gathers work on
    xy = out[..., 0:2].sigmoid()
    twh = out[..., 2:4]
    anchors = anchors.to(device=raw.device, dtype=torch.float32)
    # exp in float32: under bf16 autocast exp(tw) loses too much precision for box sizes.
    wh = twh.float().exp() * anchors.view(1, A, 1, 1, 2)
    centre = xy.float() + grid_offsets(H, W, raw.device, torch.float32)
    boxes = torch.cat((centre - wh / 2, centre + wh / 2), dim=-1) * stride
    obj_logit = out[..., 4]
    return Decoded(xy=xy, twh=twh, boxes=boxes, obj_logit=obj_logit, objectness=obj_logit.sigmoid(),
                   class_logits=out[..., 5:], stride=float(stride))
