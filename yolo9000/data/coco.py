"""COCO detection through pycocotools: boxes as xyxy pixels, categories -> tree nodes (YOLO9000 section 4).

Crowd boxes are ignored by default (they mark groups, not objects), and boxes of non-positive size are dropped:
both are counted in `skipped`, which `yolo9000 data check` reports, as are repeated image or annotation ids.
"""
from __future__ import annotations

import contextlib
import io
from collections import Counter
from pathlib import Path

import torch
from pycocotools.coco import COCO

from wordtree.tree import WordTree
from yolo9000.data.labels import category_labels
from yolo9000.data.source import Record, SkipLog, Source, report_skipped
from yolo9000.errors import DatasetError


def load_coco(annotations: str | Path) -> COCO:
    """pycocotools' COCO object, without its chatty prints."""
    annotations = Path(annotations)
    if not annotations.exists():
        raise DatasetError(f"COCO annotations {annotations} do not exist")
    with contextlib.redirect_stdout(io.StringIO()):
        return COCO(str(annotations))


class CocoSource(Source):
    """COCO json + image folder -> detection records.

    Args:
        annotations: instances_*.json path.
        images: folder holding the `file_name`s.
        tree: labels index this tree, or None for flat labels (0..C-1 in category-id order).
        class_map: darknet `.map` (line k = node of the k-th category by id), YAML category -> wnid, or None.
        include_crowd: keep `iscrowd` boxes (darknet's COCO lists drop them).
    """

    def __init__(self, annotations: str | Path, images: str | Path, tree: WordTree | None = None,
                 class_map: str | Path | dict | None = None, include_crowd: bool = False) -> None:
        coco = load_coco(annotations)
        categories = [(c["id"], c["name"]) for c in sorted(coco.dataset.get("categories", []), key=lambda c: c["id"])]
        self.category_names = dict(categories)
        lookup = category_labels(categories, tree, class_map)
        self.skipped = SkipLog()
        unknown: Counter = Counter()
        images = Path(images)
        self._check_duplicates(coco, images)
        records = []
        for image_id in sorted(coco.imgs):
            info = coco.imgs[image_id]
            file = str(images / info["file_name"])
            boxes, labels = [], []
            for ann in coco.imgToAnns.get(image_id, []):
                x, y, w, h = ann["bbox"]
                if ann.get("iscrowd", 0) and not include_crowd:
                    self.skipped.add("crowd box", file)
                    continue
                if w <= 0 or h <= 0:
                    self.skipped.add("box with non-positive size", file)
                    continue
                if ann["category_id"] not in lookup:
                    unknown[self.category_names.get(ann["category_id"], ann["category_id"])] += 1
                    self.skipped.add("box with unknown category", file)
                    continue
                boxes.append([x, y, x + w, y + h])
                labels.append(lookup[ann["category_id"]])
            size = (int(info["height"]), int(info["width"])) if "height" in info and "width" in info else None
            records.append(Record(file, int(image_id), torch.tensor(labels, dtype=torch.long),
                                  torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4), size))
        report_skipped(str(annotations), "boxes", unknown)
        super().__init__(records, "detection", str(annotations))

    def _check_duplicates(self, coco: COCO, images: Path) -> None:
        """pycocotools keeps one entry per image id (the last), so a repeated id silently drops an image: count it."""
        seen: dict[int, str] = {}
        for info in coco.dataset.get("images", []):
            if info["id"] in seen:
                self.skipped.add("duplicate image id", f"{images / info['file_name']} (id {info['id']}, also "
                                 f"{seen[info['id']]})")
            seen.setdefault(info["id"], info.get("file_name", "?"))
        ids: set[int] = set()
        for ann in coco.dataset.get("annotations", []):
            if "id" in ann and ann["id"] in ids:
                file = coco.imgs.get(ann.get("image_id"), {}).get("file_name", f"image {ann.get('image_id')}")
                self.skipped.add("duplicate annotation id", f"{images / file} (annotation {ann['id']})")
            ids.add(ann.get("id"))
