"""Joint (image, target) transforms on torchvision.transforms.v2 (YOLOv2 section 2-3, darknet `data.c`).

Training: darknet-style jitter (each side of the image moves in or out by up to `jitter` of its size, i.e. a random
crop that may extend past the image, padded with gray), letterbox into the batch's square size, horizontal flip,
and HSV jitter as darknet's `distort_image` does it (hue shift in [-hue, hue] of the colour circle; saturation and
exposure scaled in HSV by a factor in [1, 1+s] or its inverse, darknet's `rand_scale`), fused into one pass because
the photometric step was the loader's largest cost; pixels are resized before they are jittered, and the letterbox
bars are added after it. Classification images get the same geometric and photometric jitter. Evaluation:
letterbox only, recording (scale, pad_x, pad_y) so detections map back to the original image.

Boxes ride along as `tv_tensors.BoundingBoxes`, so every geometric step moves them with the pixels; afterwards they
are clamped to the canvas and boxes narrower or shorter than `min_box_size` are dropped with their labels.
Inputs are never modified: every step returns new tensors and the target dict is copied.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor
from torchvision import tv_tensors
from torchvision.transforms.v2 import functional as F

from yolo9000.data.images import GRAY_FILL


def _uniform(low: float, high: float, generator: torch.Generator | None) -> float:
    return low + (high - low) * float(torch.rand((), generator=generator))


def _rand_scale(amount: float, generator: torch.Generator | None) -> float:
    """darknet's rand_scale: a factor in [1, 1 + amount], inverted half the time."""
    scale = _uniform(1.0, 1.0 + amount, generator)
    return scale if float(torch.rand((), generator=generator)) < 0.5 else 1.0 / scale


_HUE_SECTORS = torch.tensor([5.0, 3.0, 1.0]).view(3, 1, 1)


def hsv_jitter(image: Tensor, hue: float, saturation: float, exposure: float) -> Tensor:
    """darknet's `distort_image` in one pass: in HSV, shift hue (wrapping), scale saturation and value, then clamp.

    Args:
        image: Float[3, H, W] RGB in 0..1 (not modified).
        hue: shift as a fraction of the colour circle.
        saturation, exposure: factors for S and V (darknet does not clamp them before converting back).
    Returns:
        Float[3, H, W] RGB clamped to 0..1.
    """
    r, g, b = image.unbind(0)
    value = image.amax(dim=0)
    chroma = value - image.amin(dim=0)  # = V * S, so S itself (a division) is never needed
    is_r = value == r
    is_g = (value == g) & ~is_r
    # Hue in sixths of the circle: the largest channel picks the sector, the other two place the colour within it.
    sector = torch.where(is_r, g - b, torch.where(is_g, b - r + 2 * chroma, r - g + 4 * chroma))
    hue6 = sector / chroma.clamp_min(1e-12) + hue * 6.0
    # Back to RGB: channel n = V - V*S*clamp(min(k, 4 - k), 0, 1) with k = (n + 6H) mod 6, n = 5, 3, 1.
    k = (_HUE_SECTORS + hue6).remainder_(6.0)
    weight = torch.minimum(k, 4.0 - k).clamp_(0.0, 1.0)
    return weight.mul_(chroma * -saturation).add_(value).mul_(exposure).clamp_(0.0, 1.0)


def _wrap(image: Tensor, target: dict) -> tuple[Tensor, tv_tensors.BoundingBoxes | None]:
    if "boxes" not in target:
        return image, None
    boxes = tv_tensors.BoundingBoxes(torch.as_tensor(target["boxes"], dtype=torch.float32).reshape(-1, 4),
                                     format="XYXY", canvas_size=tuple(image.shape[-2:]))
    return image, boxes


def letterbox(image: Tensor, boxes: tv_tensors.BoundingBoxes | None, size: int
              ) -> tuple[Tensor, tv_tensors.BoundingBoxes | None, tuple[float, float, float]]:
    """Resize keeping the aspect ratio so the longer side is `size`, then pad to size x size with gray.

    Returns:
        image [C, size, size], boxes moved with it, and (scale, pad_x, pad_y): input = original * scale + pad.
    """
    height, width = image.shape[-2:]
    new_h, new_w, padding = _letterbox_layout(height, width, size)
    image = F.pad(F.resize(image, [new_h, new_w], antialias=True), padding, fill=GRAY_FILL)
    if boxes is not None:
        boxes = F.pad(F.resize(boxes, [new_h, new_w]), padding)
    # The effective per-axis scale differs from `scale` by rounding; report the x one (the boxes use both exactly).
    return image, boxes, (new_w / width, float(padding[0]), float(padding[1]))


def _letterbox_layout(height: int, width: int, size: int) -> tuple[int, int, list[int]]:
    """(new_h, new_w, [left, top, right, bottom] padding) fitting height x width into size x size."""
    scale = size / max(height, width)
    new_h, new_w = max(1, round(height * scale)), max(1, round(width * scale))
    pad_x, pad_y = (size - new_w) // 2, (size - new_h) // 2
    return new_h, new_w, [pad_x, pad_y, size - new_w - pad_x, size - new_h - pad_y]


def _finish(image: Tensor, boxes: tv_tensors.BoundingBoxes | None, target: dict, min_box_size: float) -> dict:
    out = dict(target)
    if boxes is not None:
        boxes = F.clamp_bounding_boxes(boxes).as_subclass(Tensor)
        # Not v2.SanitizeBoundingBoxes: it refuses min_size < 1, which evaluation needs (keep every visible box).
        size = boxes[:, 2:] - boxes[:, :2]
        keep = (size > 0).all(dim=1) & (size >= min_box_size).all(dim=1)
        out["boxes"] = boxes[keep]
        out["labels"] = torch.as_tensor(target["labels"])[keep]
    return out


@dataclass(frozen=True)
class TrainTransform:
    """Augmentation for training; call as `transform(image, target, size)`.

    Args (fields):
        jitter: crop/pad fraction per side (darknet `jitter`, .2 for YOLO9000).
        hue: hue shift range as a fraction of the colour circle (.1).
        saturation, exposure: scale ranges (.75 -> factor in [1, 1.75] or its inverse).
        flip: random horizontal flip.
        min_box_size: boxes narrower or shorter than this (input pixels) are dropped.
    """

    jitter: float = 0.2
    hue: float = 0.1
    saturation: float = 0.75
    exposure: float = 0.75
    flip: bool = True
    min_box_size: float = 2.0

    def __call__(self, image: Tensor, target: dict, size: int, generator: torch.Generator | None = None
                 ) -> tuple[Tensor, dict]:
        """Augment one sample.

        Args:
            image: UInt8[3, H, W] RGB.
            target: {"labels": Long[T], optional "boxes": Float[T, 4] xyxy pixels, ...}; not modified.
            size: the batch's square input size S.
            generator: random source (None: torch's global RNG, seeded per loader worker).
        Returns:
            Float[3, S, S] RGB in 0..1, and a new target with boxes in input pixels.
        """
        image, boxes = _wrap(image, target)
        height, width = image.shape[-2:]
        dw, dh = self.jitter * width, self.jitter * height
        left, right = (round(_uniform(-dw, dw, generator)) for _ in range(2))
        top, bottom = (round(_uniform(-dh, dh, generator)) for _ in range(2))
        # Keep at least one pixel: extreme jitter on a tiny image must not produce an empty crop.
        right = min(right, width - left - 1)
        bottom = min(bottom, height - top - 1)
        padding = [max(0, -left), max(0, -top), max(0, -right), max(0, -bottom)]
        if any(padding):
            image = F.pad(image, padding, fill=GRAY_FILL)
            boxes = F.pad(boxes, padding) if boxes is not None else None
        crop = (max(0, top), max(0, left), height - top - bottom, width - left - right)
        image = F.crop(image, *crop)
        boxes = F.crop(boxes, *crop) if boxes is not None else None
        # Letterbox, flip and HSV as darknet orders them, but the gray bars are added last: the photometric
        # jitter then runs on the picture only (a quarter fewer pixels for 4:3 photos) and the bars get the
        # jittered gray, which is what jittering them would give.
        new_h, new_w, padding = _letterbox_layout(*image.shape[-2:], size)
        image = F.resize(image, [new_h, new_w], antialias=True)
        boxes = F.resize(boxes, [new_h, new_w]) if boxes is not None else None
        if self.flip and float(torch.rand((), generator=generator)) < 0.5:
            image = F.horizontal_flip(image)
            boxes = F.horizontal_flip(boxes) if boxes is not None else None
            padding = [padding[2], padding[1], padding[0], padding[3]]  # the flipped canvas mirrors the bars
        image = F.to_dtype(image, torch.float32, scale=True)
        fill = GRAY_FILL / 255
        if self.hue or self.saturation or self.exposure:
            hsv = (_uniform(-self.hue, self.hue, generator), _rand_scale(self.saturation, generator),
                   _rand_scale(self.exposure, generator))
            image = hsv_jitter(image, *hsv)
            fill = float(hsv_jitter(torch.full((3, 1, 1), fill), *hsv)[0, 0, 0])
        image = F.pad(image, padding, fill=fill)
        boxes = F.pad(boxes, padding) if boxes is not None else None
        return image, _finish(image, boxes, target, self.min_box_size)


@dataclass(frozen=True)
class EvalTransform:
    """Letterbox only; fills target["letterbox"] = (scale, pad_x, pad_y) with input = original * scale + pad."""

    min_box_size: float = 0.0

    def __call__(self, image: Tensor, target: dict, size: int, generator: torch.Generator | None = None
                 ) -> tuple[Tensor, dict]:
        image, boxes = _wrap(image, target)
        image, boxes, lb = letterbox(image, boxes, size)
        out = _finish(image, boxes, target, self.min_box_size)
        out["letterbox"] = lb
        return F.to_dtype(image, torch.float32, scale=True), out
