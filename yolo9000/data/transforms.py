"""Joint (image, target) transforms (YOLOv2 section 2-3, darknet `data.c`).

Training: darknet-style jitter (each side of the image moves in or out by up to `jitter` of its size, i.e. a random
crop that may extend past the image, padded with gray), letterbox into the batch's square size, horizontal flip,
and HSV jitter as darknet's `distort_image` does it (hue shift in [-hue, hue] of the colour circle; saturation and
exposure scaled in HSV by a factor in [1, 1+s] or its inverse, darknet's `rand_scale`), fused into one pass because
the photometric step was the loader's largest cost; pixels are resized before they are jittered. Classification
images get the same geometric and photometric jitter. Evaluation: letterbox only, recording (scale, pad_x, pad_y)
so detections map back to the original image.

Training augmentation is drawn and applied separately: `TrainTransform.sample` draws an `AugmentParams` from the
image size alone and moves the boxes (`transform_boxes`, pure box math), and `render` applies draws to decoded
pixels with device-agnostic tensor ops, batched. A CPU loader worker runs both on one image; with `data.decode:
device` the worker only draws, and `render` runs on the training device over the whole batch (data/device.py), so
the two paths share one implementation. Boxes are clamped to the crop and those narrower or shorter than
`min_box_size` are dropped with their labels. Evaluation moves boxes as `tv_tensors.BoundingBoxes` through
torchvision.transforms.v2. Inputs are never modified: every step returns new tensors and the target dict is copied.
"""
from __future__ import annotations

from collections.abc import Sequence
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


def hsv_jitter(image: Tensor, hue: float | Tensor, saturation: float | Tensor, exposure: float | Tensor) -> Tensor:
    """darknet's `distort_image` in one pass: in HSV, shift hue (wrapping), scale saturation and value, then clamp.

    Args:
        image: Float[..., 3, H, W] RGB in 0..1 (not modified), on any device.
        hue: shift as a fraction of the colour circle; a float, or a tensor broadcasting against [..., H, W]
            (e.g. Float[B, 1, 1]: one factor per image of a batch).
        saturation, exposure: factors for S and V (darknet does not clamp them before converting back), likewise.
    Returns:
        Float[..., 3, H, W] RGB clamped to 0..1.
    """
    r, g, b = image.unbind(-3)
    value = image.amax(dim=-3)
    chroma = value - image.amin(dim=-3)  # = V * S, so S itself (a division) is never needed
    is_r = value == r
    is_g = (value == g) & ~is_r
    # Hue in sixths of the circle: the largest channel picks the sector, the other two place the colour within it.
    sector = torch.where(is_r, g - b, torch.where(is_g, b - r + 2 * chroma, r - g + 4 * chroma))
    hue6 = sector / chroma.clamp_min(1e-12) + hue * 6.0
    # Back to RGB: channel n = V - V*S*clamp(min(k, 4 - k), 0, 1) with k = (n + 6H) mod 6, n = 5, 3, 1.
    sectors = torch.arange(5.0, 0.0, -2.0, device=image.device).view(3, 1, 1)  # made on the device: no copy
    k = (sectors + hue6.unsqueeze(-3)).remainder_(6.0)
    weight = torch.minimum(k, 4.0 - k).clamp_(0.0, 1.0)
    if isinstance(exposure, Tensor):
        exposure = exposure.unsqueeze(-3)
    return weight.mul_((chroma * -saturation).unsqueeze(-3)).add_(value.unsqueeze(-3)).mul_(exposure).clamp_(0.0, 1.0)


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
    # Not v2.SanitizeBoundingBoxes: it refuses min_size < 1, which evaluation needs (keep every visible box).
    clamped = F.clamp_bounding_boxes(boxes).as_subclass(Tensor) if boxes is not None else None
    return _keep_boxes(target, clamped, min_box_size)


@dataclass(frozen=True)
class AugmentParams:
    """One training sample's augmentation, drawn by `TrainTransform.sample` from the image size alone.

    Drawing is split from applying so a loader worker can draw (and move the boxes) without decoding, and the
    training device can then apply the same draw to the decoded pixels (`data.decode: device`, data/device.py).

    Attributes:
        crop: (x0, y0, x1, y1) source region in original pixels; it may extend past the image (gray there).
        resized: (height, width) of the picture once the crop is letterboxed into the canvas.
        offset: (x, y) of the picture's top-left corner in the canvas, after the flip.
        flip: mirror horizontally.
        hsv: (hue shift, saturation factor, exposure factor); (0, 1, 1) leaves colours alone.
        size: the square canvas side S.
    """

    crop: tuple[int, int, int, int]
    resized: tuple[int, int]
    offset: tuple[int, int]
    flip: bool
    hsv: tuple[float, float, float]
    size: int


def _crop_with_fill(image: Tensor, crop: tuple[int, int, int, int]) -> Tensor:
    """image[:, y0:y1, x0:x1] where the region may leave the image; outside pixels are gray. A view when inside."""
    height, width = image.shape[-2:]
    x0, y0, x1, y1 = crop
    if x0 >= 0 and y0 >= 0 and x1 <= width and y1 <= height:
        return image[..., y0:y1, x0:x1]
    out = image.new_full((*image.shape[:-2], y1 - y0, x1 - x0), GRAY_FILL)
    sx0, sy0, sx1, sy1 = max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)
    if sx1 > sx0 and sy1 > sy0:
        out[..., sy0 - y0:sy1 - y0, sx0 - x0:sx1 - x0] = image[..., sy0:sy1, sx0:sx1]
    return out


def _picture(image: Tensor, params: AugmentParams) -> Tensor:
    """UInt8[3, h, w] the cropped, resized and flipped picture (no colour change yet)."""
    picture = F.resize(_crop_with_fill(image, params.crop), list(params.resized), antialias=True)
    return picture.flip(-1) if params.flip else picture


def render(images: Sequence[Tensor], params: Sequence[AugmentParams]) -> Tensor:
    """Apply drawn augmentations to decoded images, batched: the one implementation both data paths run.

    Device-agnostic tensor ops only, so the same code runs in a CPU loader worker (one image) and on the
    training device (a whole batch, `data.decode: device`). Geometry is per image (every source size differs);
    the photometric jitter, the costly part, runs once over the whole batch with per-image factors.

    Args:
        images: B tensors UInt8[3, H_b, W_b] RGB on one device (not modified).
        params: B draws from `TrainTransform.sample`, all with the same `size` S.
    Returns:
        Float[B, 3, S, S] RGB in 0..1 on the images' device.
    """
    size = params[0].size
    device = images[0].device
    canvas = torch.full((len(images), 3, size, size), GRAY_FILL, dtype=torch.uint8, device=device)
    for b, (image, p) in enumerate(zip(images, params)):
        (x, y), (h, w) = p.offset, p.resized
        canvas[b, :, y:y + h, x:x + w] = _picture(image, p)
    out = canvas.float().div_(255)
    if all(p.hsv == (0.0, 1.0, 1.0) for p in params):
        return out
    if len(params) == 1:
        # One image (a CPU worker): jitter the picture only and give the bars the jittered gray, which is what
        # jittering them would give; for 4:3 photos a quarter fewer pixels through the costliest step. Gray has
        # no chroma, so hue and saturation leave it alone: jittered, it is the gray times the exposure.
        (x, y), (h, w), hsv = params[0].offset, params[0].resized, params[0].hsv
        picture = hsv_jitter(out[0, :, y:y + h, x:x + w], *hsv)
        out[0] = min(GRAY_FILL / 255 * hsv[2], 1.0)
        out[0, :, y:y + h, x:x + w] = picture
        return out
    factors = torch.tensor([p.hsv for p in params], dtype=torch.float32).to(device, non_blocking=True)
    hue, saturation, exposure = (factors[:, i].view(-1, 1, 1) for i in range(3))
    return hsv_jitter(out, hue, saturation, exposure)


def transform_boxes(boxes: Tensor, params: AugmentParams) -> Tensor:
    """Move boxes as `render` moves the pixels: clamp to the crop, scale, flip, offset.

    Args:
        boxes: Float[T, 4] xyxy original pixels.
    Returns:
        Float[T, 4] xyxy canvas pixels (boxes cut away by the crop come back with zero width or height).
    """
    x0, y0, x1, y1 = params.crop
    (h, w), (off_x, off_y) = params.resized, params.offset
    scale = boxes.new_tensor([w / (x1 - x0), h / (y1 - y0)]).repeat(2)
    low, high = boxes.new_tensor([x0, y0]).repeat(2), boxes.new_tensor([x1, y1]).repeat(2)
    out = (torch.minimum(torch.maximum(boxes, low), high) - low) * scale
    if params.flip:
        out = torch.stack([w - out[:, 2], out[:, 1], w - out[:, 0], out[:, 3]], dim=1)
    return out + boxes.new_tensor([off_x, off_y]).repeat(2)


def _keep_boxes(target: dict, boxes: Tensor | None, min_box_size: float) -> dict:
    out = dict(target)
    if boxes is not None:
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

    def sample(self, height: int, width: int, size: int, generator: torch.Generator | None = None
               ) -> AugmentParams:
        """Draw one sample's augmentation for an upright image of height x width, letterboxed to size x size."""
        dw, dh = self.jitter * width, self.jitter * height
        left, right = (round(_uniform(-dw, dw, generator)) for _ in range(2))
        top, bottom = (round(_uniform(-dh, dh, generator)) for _ in range(2))
        # Keep at least one pixel: extreme jitter on a tiny image must not produce an empty crop.
        right = min(right, width - left - 1)
        bottom = min(bottom, height - top - 1)
        crop = (left, top, width - right, height - bottom)
        new_h, new_w, padding = _letterbox_layout(crop[3] - crop[1], crop[2] - crop[0], size)
        flip = self.flip and float(torch.rand((), generator=generator)) < 0.5
        hsv = (0.0, 1.0, 1.0)
        if self.hue or self.saturation or self.exposure:
            hsv = (_uniform(-self.hue, self.hue, generator), _rand_scale(self.saturation, generator),
                   _rand_scale(self.exposure, generator))
        # The flipped canvas mirrors the bars.
        offset = (padding[2] if flip else padding[0], padding[1])
        return AugmentParams(crop, (new_h, new_w), offset, flip, hsv, size)

    def target(self, target: dict, params: AugmentParams) -> dict:
        """A new target with boxes moved by `params` (input pixels) and those below `min_box_size` dropped."""
        if "boxes" not in target:
            return dict(target)
        boxes = torch.as_tensor(target["boxes"], dtype=torch.float32).reshape(-1, 4)
        return _keep_boxes(target, transform_boxes(boxes, params), self.min_box_size)

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
        params = self.sample(*image.shape[-2:], size, generator)
        return render([image], [params])[0], self.target(target, params)


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
