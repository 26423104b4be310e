"""darknet list files: one image path per line, labels in a `.txt` beside the image (darknet `data.c`).

Label lines are `class cx cy w h` normalised to the image. darknet's classification convention is the single line
`<tree index> 0 0 0 0` (its `correct_boxes` turns x = y = 0 into the 999999 "no box" marker): such images become
classification records whose label is already a tree index, never passed through the class map (as in darknet's
region layer). Detection class ids go through the map (e.g. `coco9k.map`) when one is given.
"""
from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

import torch

from wordtree.io import read_map
from wordtree.tree import WordTree
from yolo9000.data.images import REASON_KINDS, ImageLoadError, image_size
from yolo9000.data.source import (Kind, Record, SkipLog, Source, annotation_path, read_text,
                                  report_skipped)
from yolo9000.errors import DatasetError


def label_path(image: Path) -> Path:
    """The `.txt` beside the image, else darknet's substitution (images/JPEGImages -> labels)."""
    beside = image.with_suffix(".txt")
    if beside.exists():
        return beside
    parts = ["labels" if p in ("images", "JPEGImages") else p for p in image.parts]
    return Path(*parts).with_suffix(".txt")


def read_label_file(path: Path) -> list[tuple[int, float, float, float, float]]:
    rows = []
    for number, line in enumerate(read_text(path).splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 5:
            raise DatasetError(f"{path} line {number}: expected 'class x y w h', got {line!r}")
        try:
            row = (int(fields[0]), *map(float, fields[1:]))
        except ValueError:
            raise DatasetError(f"{path} line {number}: expected an integer class and 4 numbers, got "
                                  f"{line!r}") from None
        if not all(math.isfinite(v) for v in row[1:]):
            raise DatasetError(f"{path} line {number}: non-finite number in {line!r}")
        rows.append(row)
    return rows


class DarknetListSource(Source):
    """Records of one kind from a darknet list.

    Args:
        list_file: one image path per line (relative paths are relative to the list file).
        kind: "detection" keeps images with real boxes; "classification" keeps the `<index> 0 0 0 0` images.
        tree: checks indices against it (None: flat class ids).
        class_map: darknet `.map` applied to detection class ids (line k = node of class k).
        allow_outside_root: accept image paths that are absolute or contain `..` (refused by default; darknet's
            own `voc_label.py` writes absolute paths, so such lists need it).
    """

    def __init__(self, list_file: str | Path, kind: Kind, tree: WordTree | None = None,
                 class_map: str | Path | None = None, allow_outside_root: bool = False) -> None:
        list_file = Path(list_file)
        mapping = read_map(class_map, tree) if class_map else None
        num_labels = tree.num_nodes if tree is not None else None
        unknown: Counter = Counter()
        self.skipped = SkipLog()
        seen: set[str] = set()
        records = []
        for number, line in enumerate(read_text(list_file).splitlines(), 1):
            if not line.strip():
                continue
            image = annotation_path(list_file.parent, line.strip(), f"{list_file} line {number}", allow_outside_root)
            labels_file = label_path(image)
            rows = read_label_file(labels_file) if labels_file.exists() else []
            is_cls = len(rows) == 1 and rows[0][1] == 0 and rows[0][2] == 0
            if (kind == "classification") != is_cls:
                continue
            if str(image) in seen:
                self.skipped.add("duplicate file", str(image))
                continue
            seen.add(str(image))
            if is_cls:
                label = rows[0][0]
                if num_labels is not None and not 0 <= label < num_labels:
                    unknown[label] += 1
                    self.skipped.add("label outside the tree/class map", f"{labels_file} ({label})")
                    continue
                records.append(Record(str(image), len(records), torch.tensor([label]), None))
                continue
            height, width = 0, 0
            if rows:
                # Labels are normalised: without the image's size there are no boxes, so the image is left out.
                try:
                    height, width = image_size(image)
                except ImageLoadError as err:
                    self.skipped.add(REASON_KINDS[err.reason], str(image))
                    continue
            labels, boxes = [], []
            for cls, cx, cy, w, h in rows:
                label = cls if mapping is None else (mapping[cls] if 0 <= cls < len(mapping) else None)
                if label is None or (num_labels is not None and not 0 <= label < num_labels):
                    unknown[cls] += 1
                    self.skipped.add("label outside the tree/class map", f"{labels_file} ({cls})")
                    continue
                if w <= 0 or h <= 0:
                    self.skipped.add("box with non-positive size", str(labels_file))
                    continue
                labels.append(label)
                boxes.append([(cx - w / 2) * width, (cy - h / 2) * height, (cx + w / 2) * width, (cy + h / 2) * height])
            records.append(Record(str(image), len(records), torch.tensor(labels, dtype=torch.long),
                                  torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
                                  (height, width) if rows else None))
        report_skipped(str(list_file), "labels", unknown)
        super().__init__(records, kind, str(list_file))
