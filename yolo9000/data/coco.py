"""COCO detection through pycocotools: boxes as xyxy pixels, categories -> tree nodes (YOLO9000 section 4).

Crowd boxes are ignored by default (they mark groups, not objects), and boxes of non-positive size are dropped:
both are counted in `skipped`, which `yolo9000 data check` reports, as are repeated image or annotation ids.
"""
from __future__ import annotations

import contextlib
import io
import json
import math
from collections import Counter
from pathlib import Path

import torch
from pycocotools.coco import COCO

from wordtree.tree import WordTree
from yolo9000.data.labels import category_labels
from yolo9000.data.source import Record, SkipLog, Source, annotation_path, report_skipped
from yolo9000.errors import DatasetError


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def read_coco_json(annotations: str | Path) -> dict:
    """The COCO json as a dict, checked before pycocotools sees it (pycocotools asserts, or fails with a bare
    KeyError or TypeError, on malformed files).

    Checked: the file is UTF-8 JSON holding an object with `images`, `annotations` and `categories` lists; every
    image has an integer `id`, a `file_name` string and, when given, positive integer `height`/`width`; every
    category an integer `id` and a `name`; every annotation an integer `id`, `image_id` and `category_id` and a
    `bbox` of 4 finite numbers.

    Raises:
        DatasetError: the file does not exist, or naming the file and the line (JSON syntax) or the image/annotation id and key.
    """
    path = Path(annotations)
    if not path.exists():
        raise DatasetError(f"COCO annotations {path} do not exist")
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise DatasetError(f"{path}: cannot read ({err.strerror or err})") from None
    if not raw.strip():
        raise DatasetError(f"{path}: empty file, expected COCO JSON")
    try:
        data = json.loads(raw.decode("utf-8-sig"))
    except UnicodeDecodeError as err:
        raise DatasetError(f"{path}: not UTF-8 text (byte {err.start}), expected COCO JSON") from None
    except json.JSONDecodeError as err:
        raise DatasetError(f"{path} line {err.lineno}: not valid JSON ({err.msg})") from None
    except RecursionError:
        raise DatasetError(f"{path}: JSON nested too deeply to be COCO annotations") from None
    if not isinstance(data, dict):
        raise DatasetError(f"{path}: expected a JSON object with 'images', 'annotations' and 'categories', got "
                              f"a {type(data).__name__}")
    for key in ("images", "annotations", "categories"):
        if key not in data:
            raise DatasetError(f"{path}: no {key!r} list (a COCO detection file has 'images', 'annotations' "
                                  "and 'categories')")
        if not isinstance(data[key], list):
            raise DatasetError(f"{path}: {key!r} is a {type(data[key]).__name__}, expected a list")
    if not data["images"]:
        raise DatasetError(f"{path}: 'images' is empty: the file describes no image")
    for i, info in enumerate(data["images"]):
        where = f"{path}: images[{i}]"
        if not isinstance(info, dict):
            raise DatasetError(f"{where} is a {type(info).__name__}, expected an object")
        if "id" not in info or not _is_int(info["id"]):
            raise DatasetError(f"{where}: 'id' {info.get('id')!r} is not an integer" if "id" in info
                                  else f"{where} has no 'id'")
        where = f"{path}: image {info['id']}"
        if "file_name" not in info:
            raise DatasetError(f"{where} has no 'file_name'")
        if not isinstance(info["file_name"], str) or not info["file_name"].strip():
            raise DatasetError(f"{where}: 'file_name' {info['file_name']!r} is not a file name")
        for key in ("height", "width"):
            value = info.get(key)
            if value is not None and not (_is_number(value) and math.isfinite(value) and value > 0
                                          and value == int(value)):
                raise DatasetError(f"{where}: {key!r} {value!r} is not a positive integer")
    for i, category in enumerate(data["categories"]):
        if not isinstance(category, dict) or not _is_int(category.get("id")) or not isinstance(category.get("name"),
                                                                                                   str):
            raise DatasetError(f"{path}: categories[{i}] {category!r} needs an integer 'id' and a 'name' string")
    for i, ann in enumerate(data["annotations"]):
        if not isinstance(ann, dict):
            raise DatasetError(f"{path}: annotations[{i}] is a {type(ann).__name__}, expected an object")
        where = f"{path}: annotation {ann['id']}" if _is_int(ann.get("id")) else f"{path}: annotations[{i}]"
        for key in ("id", "image_id", "category_id", "bbox"):
            if key not in ann:
                raise DatasetError(f"{where} has no {key!r}")
        for key in ("id", "image_id", "category_id"):
            if not _is_int(ann[key]):
                raise DatasetError(f"{where}: {key!r} {ann[key]!r} is not an integer")
        bbox = ann["bbox"]
        if not isinstance(bbox, list) or len(bbox) != 4 or not all(_is_number(v) for v in bbox):
            raise DatasetError(f"{where}: 'bbox' {bbox!r} is not 4 numbers [x, y, width, height]")
        if not all(math.isfinite(v) for v in bbox):
            raise DatasetError(f"{where}: 'bbox' {bbox!r} holds a non-finite number")
    return data


def load_coco(annotations: str | Path, data: dict | None = None) -> COCO:
    """pycocotools' COCO object over a checked file (`read_coco_json`), without its chatty prints."""
    data = read_coco_json(annotations) if data is None else data
    coco = COCO()
    coco.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


class CocoSource(Source):
    """COCO json + image folder -> detection records.

    Args:
        annotations: instances_*.json path.
        images: folder holding the `file_name`s.
        tree: labels index this tree, or None for flat labels (0..C-1 in category-id order).
        class_map: darknet `.map` (line k = node of the k-th category by id), YAML category -> wnid, or None.
        include_crowd: keep `iscrowd` boxes (darknet's COCO lists drop them).
        allow_outside_root: accept `file_name`s that are absolute or contain `..` (refused by default).
    Raises:
        DatasetError: the json is malformed (see `read_coco_json`) or a `file_name` leaves `images`.
    """

    def __init__(self, annotations: str | Path, images: str | Path, tree: WordTree | None = None,
                 class_map: str | Path | dict | None = None, include_crowd: bool = False,
                 allow_outside_root: bool = False) -> None:
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
            file = str(annotation_path(images, info["file_name"], f"{annotations}: image {image_id}",
                                       allow_outside_root))
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
            known = info.get("height") is not None and info.get("width") is not None
            size = (int(info["height"]), int(info["width"])) if known else None
            records.append(Record(file, int(image_id), torch.tensor(labels, dtype=torch.long),
                                  torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4), size))
        for ann in coco.dataset["annotations"]:
            if ann["image_id"] not in coco.imgs:
                self.skipped.add("annotation for a missing image",
                                 f"{annotations} (annotation {ann['id']}, image_id {ann['image_id']})")
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
