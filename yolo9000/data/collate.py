"""The `Batch` every training and evaluation step consumes, and the collate that builds it."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields, replace

import torch
from torch import Tensor


@dataclass(frozen=True)
class Batch:
    """A mixed batch of detection and classification images, targets padded to T boxes per image.

    Attributes:
        images: Float[B, 3, S, S], RGB in 0..1, letterboxed/augmented to the batch's size S.
        is_detection: Bool[B]; False for classification images (one label, no box).
        boxes: Float[B, T, 4] xyxy in input pixels, -1 where padded (all -1 for classification images).
        labels: Long[B, T] class or tree-node index, -1 where padded; a classification image's label is labels[b, 0].
        image_ids: Long[B] the dataset's image ids (COCO ids for COCO sources).
        orig_sizes: Long[B, 2] original (height, width) before any resize.
        letterbox: Float[B, 3] (scale, pad_x, pad_y): input = original * scale + pad (for mapping detections back).
    """

    images: Tensor
    is_detection: Tensor
    boxes: Tensor
    labels: Tensor
    image_ids: Tensor
    orig_sizes: Tensor
    letterbox: Tensor

    @property
    def size(self) -> int:
        return self.images.shape[-1]

    def __len__(self) -> int:
        return self.images.shape[0]

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Batch:
        return replace(self, **{f.name: getattr(self, f.name).to(device, non_blocking=non_blocking)
                                for f in fields(self)})

    def pin_memory(self) -> Batch:
        return replace(self, **{f.name: getattr(self, f.name).pin_memory() for f in fields(self)})


def collate(samples: Sequence[tuple[Tensor, dict]]) -> Batch:
    """Stack (image, target) pairs of one size into a Batch.

    Each target holds "labels" Long[T] and, for detection images, "boxes" Float[T, 4] xyxy input pixels; optional
    "image_id", "orig_size" (h, w) and "letterbox" (scale, pad_x, pad_y).
    """
    images = torch.stack([img for img, _ in samples])
    return Batch(images=images, **collate_targets([t for _, t in samples], [img.shape[-2:] for img, _ in samples]))


def collate_targets(targets: Sequence[dict], image_sizes: Sequence[tuple[int, int]]) -> dict[str, Tensor]:
    """Every `Batch` field but `images`, from per-image targets (as `collate`); `image_sizes` stands in for a
    missing "orig_size"."""
    num = len(targets)
    max_boxes = max([1] + [len(t["labels"]) for t in targets])
    boxes = torch.full((num, max_boxes, 4), -1.0)
    labels = torch.full((num, max_boxes), -1, dtype=torch.long)
    is_det = torch.zeros(num, dtype=torch.bool)
    ids = torch.full((num,), -1, dtype=torch.long)
    sizes = torch.zeros((num, 2), dtype=torch.long)
    letterbox = torch.tensor([[1.0, 0.0, 0.0]]).repeat(num, 1)
    for i, (target, image_size) in enumerate(zip(targets, image_sizes)):
        n = len(target["labels"])
        labels[i, :n] = torch.as_tensor(target["labels"], dtype=torch.long)
        det = "boxes" in target
        is_det[i] = det
        if det and n:
            boxes[i, :n] = torch.as_tensor(target["boxes"], dtype=torch.float32).reshape(n, 4)
        ids[i] = int(target.get("image_id", i))
        sizes[i] = torch.as_tensor(target.get("orig_size", tuple(image_size)))
        if "letterbox" in target:
            letterbox[i] = torch.as_tensor(target["letterbox"], dtype=torch.float32)
    return {"is_detection": is_det, "boxes": boxes, "labels": labels, "image_ids": ids, "orig_sizes": sizes,
            "letterbox": letterbox}
