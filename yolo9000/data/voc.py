"""Pascal VOC XML folders (`Annotations/*.xml` + `JPEGImages/`), for users coming from other tools.

VOC boxes are 1-based inclusive pixel corners; we keep darknet's `voc_label.py` reading (xmin-1, ymin-1, xmax, ymax)
as xyxy pixels. Class names map through a class map (name -> wnid) or, without a tree, to flat indices. ImageNet DET
ships the same XML with wnids as names (the paper's ImageNet detection evaluation): with a tree and no class map,
names are looked up as wnids.
"""
from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

import torch

from wordtree.tree import WordTree
from yolo9000.data.labels import category_labels
from yolo9000.data.source import Record, SkipLog, Source, annotation_path, read_text, report_skipped
from yolo9000.errors import DatasetError

VOC_CLASSES = ("aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow", "diningtable",
               "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor")


def _number(element: ET.Element, key: str, path: Path, what: str) -> float:
    """The finite number under `element/key`; DatasetError naming the file, the element and the key."""
    text = element.findtext(key)
    if text is None or not text.strip():
        raise DatasetError(f"{path}: {what} has no <{key}>")
    try:
        value = float(text)
    except ValueError:
        raise DatasetError(f"{path}: {what} <{key}> {text.strip()!r} is not a number") from None
    if not math.isfinite(value):
        raise DatasetError(f"{path}: {what} <{key}> {text.strip()!r} is not a finite number")
    return value


def parse_voc_xml(path: Path) -> tuple[str, tuple[int, int] | None, list[tuple[str, list[float], bool]]]:
    """(image file name, (h, w) or None, [(class name, xyxy, difficult)]) from one annotation file.

    Raises:
        DatasetError: naming the file and the element when the XML or a number in it is malformed.
    """
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as err:
        raise DatasetError(f"{path}: not valid VOC XML ({err})") from None
    except OSError as err:
        raise DatasetError(f"{path}: cannot read ({err.strerror or err})") from None
    filename = (root.findtext("filename") or "").strip() or path.with_suffix(".jpg").name
    size = root.find("size")
    hw = None
    if size is not None and size.findtext("height") and size.findtext("width"):
        height, width = (_number(size, k, path, "<size>") for k in ("height", "width"))
        if height < 0 or width < 0 or height != int(height) or width != int(width) or (height == 0) != (width == 0):
            raise DatasetError(f"{path}: <size> {height:g}x{width:g} is not a positive integer size")
        # 0 x 0 is what some labelling tools write when they did not read the image: the size is unknown.
        hw = (int(height), int(width)) if height and width else None
    objects = []
    for number, obj in enumerate(root.iter("object"), 1):
        what = f"object {number} ({obj.findtext('name', '').strip()!r})"
        box = obj.find("bndbox")
        if box is None:
            raise DatasetError(f"{path}: {what} has no bndbox")
        x1, y1, x2, y2 = (_number(box, k, path, f"{what} bndbox") for k in ("xmin", "ymin", "xmax", "ymax"))
        objects.append((obj.findtext("name", "").strip(), [x1 - 1, y1 - 1, x2, y2], obj.findtext("difficult") == "1"))
    return filename, hw, objects


def _image_file(image_dir: Path, filename: str, xml: Path, allow_outside_root: bool = False) -> Path:
    """The image an XML names (kept under `image_dir`); ImageNet DET writes the name without its suffix, so find it."""
    path = annotation_path(image_dir, filename, f"{xml}: <filename>", allow_outside_root)
    if path.suffix:
        return path
    for suffix in (".JPEG", ".jpg", ".jpeg", ".png"):
        if path.with_suffix(suffix).exists():
            return path.with_suffix(suffix)
    return image_dir / f"{xml.stem}.jpg"


class VocSource(Source):
    """Detection records from a VOC folder (or any folder of VOC-style XML, such as ImageNet DET).

    Args:
        root: folder holding `Annotations/` and `JPEGImages/` (None when `annotations` and `image_dir` are given).
        image_set: optional `ImageSets/Main/<name>.txt` listing the ids to use (default: every XML).
        tree: labels index this tree, or None for flat labels over `classes`.
        class_map: darknet `.map` (line k = node of `classes[k]`), YAML/dict name -> wnid, or None. With a tree and
            no class map, object names are wnids (ImageNet DET's XML).
        classes: class names in index order for flat labels and `.map` files (default: the 20 VOC classes).
        include_difficult: keep boxes flagged difficult.
        annotations: a folder of XML files, instead of `root/Annotations`.
        image_dir: the folder their images are in, instead of `root/JPEGImages`.
        allow_outside_root: accept `<filename>`s that are absolute or contain `..` (refused by default).
    Raises:
        DatasetError: an XML file is malformed or names an image outside `image_dir`.
    """

    def __init__(self, root: str | Path | None, image_set: str | None = None, tree: WordTree | None = None,
                 class_map: str | Path | dict | None = None, classes: tuple[str, ...] = VOC_CLASSES,
                 include_difficult: bool = True, annotations: str | Path | None = None,
                 image_dir: str | Path | None = None, allow_outside_root: bool = False) -> None:
        if root is None and (annotations is None or image_dir is None):
            raise ValueError("VocSource: give a VOC root, or both an annotations folder and an image folder")
        xml_dir = Path(annotations) if annotations is not None else Path(root) / "Annotations"
        image_dir = Path(image_dir) if image_dir is not None else Path(root) / "JPEGImages"
        if not xml_dir.is_dir():
            raise DatasetError(f"VOC annotations folder {xml_dir} does not exist")
        if image_set:
            if root is None:
                raise ValueError("VocSource: image_set needs a VOC root (ImageSets/Main/<image_set>.txt)")
            listing = Path(root) / "ImageSets" / "Main" / f"{image_set}.txt"
            if not listing.exists():
                raise DatasetError(f"VOC image set {listing} does not exist")
            xmls = [annotation_path(xml_dir, f"{line.split()[0]}.xml", f"{listing} line {number}")
                    for number, line in enumerate(read_text(listing).splitlines(), 1) if line.strip()]
        else:
            xmls = sorted(xml_dir.glob("*.xml"))
        self.skipped = SkipLog()
        parsed = []
        for xml in xmls:
            if not xml.exists():
                self.skipped.add("missing annotation file", str(xml))
                continue
            parsed.append((xml, *parse_voc_xml(xml)))
        by_name = self._label_lookup({name for *_, objects in parsed for name, _, _ in objects}, tree, class_map,
                                     classes)
        unknown: Counter = Counter()
        records = []
        for image_id, (xml, filename, hw, objects) in enumerate(parsed):
            file = str(_image_file(image_dir, filename, xml, allow_outside_root))
            boxes, labels = [], []
            for name, box, difficult in objects:
                if difficult and not include_difficult:
                    self.skipped.add("difficult box", file)
                elif box[2] <= box[0] or box[3] <= box[1]:
                    self.skipped.add("box with non-positive size", file)
                elif name not in by_name:
                    unknown[name] += 1
                    self.skipped.add("box with unknown category", f"{file} ({name})")
                else:
                    boxes.append(box)
                    labels.append(by_name[name])
            records.append(Record(file, image_id, torch.tensor(labels, dtype=torch.long),
                                  torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4), hw))
        name = str(root if root is not None else xml_dir)
        report_skipped(name, "boxes", unknown)
        super().__init__(records, "detection", name)

    @staticmethod
    def _label_lookup(names: set[str], tree: WordTree | None, class_map: str | Path | dict | None,
                      classes: tuple[str, ...]) -> dict[str, int]:
        if tree is not None and class_map is None:
            return {n: tree.index(n) for n in names if n in tree}
        by_name_map = class_map is not None and (isinstance(class_map, dict) or Path(class_map).suffix != ".map")
        # A name -> wnid map may name classes beyond `classes`; flat labels and `.map` lines follow `classes` only.
        categories = list(classes) + (sorted(names - set(classes)) if by_name_map else [])
        lookup = category_labels(list(enumerate(categories)), tree, class_map)
        return {categories[k]: label for k, label in lookup.items()}
