"""Pure box math. Inside the code boxes are xyxy in input pixels; cxcywh exists only within decode and assign.

`torchvision.ops` provides `box_iou`, `box_convert`, `batched_nms`, `clip_boxes_to_image`; this module holds only
what it lacks.
"""
from __future__ import annotations

import torch
from torch import Tensor
from torchvision.ops import box_convert


def box_iou_wh(wh1: Tensor, wh2: Tensor) -> Tensor:
    """IoU of boxes sharing a centre (anchor matching, k-means distance).

    Args:
        wh1: Float[..., N, 2] widths and heights.
        wh2: Float[..., M, 2] in the same units.
    Returns:
        Float[..., N, M].
    """
    inter = torch.minimum(wh1[..., :, None, :], wh2[..., None, :, :]).prod(-1)
    return inter / (wh1.prod(-1)[..., :, None] + wh2.prod(-1)[..., None, :] - inter)


def box_iou_pairwise(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """IoU of matching rows (not all pairs), any leading dims. boxes: Float[..., 4] xyxy -> Float[...]."""
    lt = torch.maximum(boxes1[..., :2], boxes2[..., :2])
    rb = torch.minimum(boxes1[..., 2:], boxes2[..., 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    area1 = (boxes1[..., 2:] - boxes1[..., :2]).prod(-1)
    area2 = (boxes2[..., 2:] - boxes2[..., :2]).prod(-1)
    return inter / (area1 + area2 - inter).clamp(min=1e-12)


def box_iou_batched(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """All-pairs IoU per batch element. boxes1: Float[B, N, 4], boxes2: Float[B, M, 4] xyxy -> Float[B, N, M]."""
    lt = torch.maximum(boxes1[:, :, None, :2], boxes2[:, None, :, :2])
    rb = torch.minimum(boxes1[:, :, None, 2:], boxes2[:, None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    area1 = (boxes1[..., 2:] - boxes1[..., :2]).prod(-1)
    area2 = (boxes2[..., 2:] - boxes2[..., :2]).prod(-1)
    return inter / (area1[:, :, None] + area2[:, None, :] - inter).clamp(min=1e-12)


def cxcywh_to_xyxy(boxes: Tensor) -> Tensor:
    return box_convert(boxes, "cxcywh", "xyxy")


def xyxy_to_cxcywh(boxes: Tensor) -> Tensor:
    return box_convert(boxes, "xyxy", "cxcywh")
