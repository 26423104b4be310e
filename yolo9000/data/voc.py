"""Pascal VOC XML folders (`Annotations/*.xml` + `JPEGImages/`), for users coming from other tools.

VOC boxes are 1-based inclusive pixel corners; we keep darknet's `voc_label.py` reading (xmin-1, ymin-1, xmax, ymax)
as xyxy pixels. Class names map through a class map (name -> wnid) or, without a tree, to flat indices.
"""
from __future__ import annotations

import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

import torch

from wordtree.tree import WordTree
from yolo9000.data.labels import category_labels
from yolo9000.data.source import Record, Source, report_skipped

VOC_CLASSES = ("aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow", "diningtable",
               "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor")


def parse_voc_xml(path: Path) -> tuple[str, tuple[int, int] | None, list[tuple[str, list[float], bool]]]:
    """(image file name, (h, w) or None, [(class name, xyxy, difficult)]) from one annotation file."""
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as err:
        raise ValueError(f"{path}: not valid VOC XML ({err})") from None
    filename = root.findtext("filename") or path.with_suffix(".jpg").name
    size = root.find("size")
    hw = None
    if size is not None and size.findtext("height") and size.findtext("width"):
        hw = (int(float(size.findtext("height"))), int(float(size.findtext("width"))))
    objects = []
    for obj in root.iter("object"):
        box = obj.find("bndbox")
        if box is None:
            raise ValueError(f"{path}: object {obj.findtext('name')!r} has no bndbox")
        x1, y1, x2, y2 = (float(box.findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax"))
        objects.append((obj.findtext("name", "").strip(), [x1 - 1, y1 - 1, x2, y2], obj.findtext("difficult") == "1"))
    return filename, hw, objects


class VocSource(Source):
    """Detection records from a VOC folder.

    Args:
        root: folder holding `Annotations/` and `JPEGImages/`.
        image_set: optional `ImageSets/Main/<name>.txt` listing the ids to use (default: every XML).
        tree: labels index this tree (a class map is then needed: VOC names are not wnids), or None for flat.
        class_map: YAML/dict name -> wnid, or None.
        classes: class names in index order for flat labels (default: the 20 VOC classes).
        include_difficult: keep boxes flagged difficult.
    """

    def __init__(self, root: str | Path, image_set: str | None = None, tree: WordTree | None = None,
                 class_map: str | Path | dict | None = None, classes: tuple[str, ...] = VOC_CLASSES,
                 include_difficult: bool = True) -> None:
        root = Path(root)
        if image_set:
            ids = (root / "ImageSets" / "Main" / f"{image_set}.txt").read_text().split()
            xmls = [root / "Annotations" / f"{i}.xml" for i in ids]
        else:
            xmls = sorted((root / "Annotations").glob("*.xml"))
        lookup = category_labels(list(enumerate(classes)), tree, class_map)
        by_name = {classes[k]: label for k, label in lookup.items()}
        unknown: Counter = Counter()
        self.skipped: Counter = Counter()
        records = []
        for image_id, xml in enumerate(xmls):
            filename, hw, objects = parse_voc_xml(xml)
            boxes, labels = [], []
            for name, box, difficult in objects:
                if difficult and not include_difficult:
                    self.skipped["difficult box"] += 1
                elif name not in by_name:
                    unknown[name] += 1
                else:
                    boxes.append(box)
                    labels.append(by_name[name])
            records.append(Record(str(root / "JPEGImages" / filename), image_id, torch.tensor(labels, dtype=torch.long),
                                  torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4), hw))
        if unknown:
            self.skipped["box with unknown category"] += sum(unknown.values())
        report_skipped(str(root), "boxes", unknown)
        super().__init__(records, "detection", str(root))
