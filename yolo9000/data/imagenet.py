"""ImageNet-style classification: one folder per wnid, or a list file of `path wnid` lines (YOLO9000 section 4).

Every image gets its wnid's tree node. Wnids absent from the tree are reported once with counts and skipped,
never relabelled. Without a tree, wnids get flat indices in sorted order.
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import torch

from wordtree.tree import WordTree
from yolo9000.data.source import Record, SkipLog, Source, annotation_path, read_text, report_skipped
from yolo9000.errors import DatasetError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm"}


def scan_folders(root: Path) -> tuple[list[tuple[str, str]], list[str]]:
    """(path, wnid) for every image under `root/<wnid>/`, sorted for determinism, and the images lying directly
    in `root` (outside any wnid folder: they have no label, so they are reported, not used)."""
    if not root.is_dir():
        raise DatasetError(f"ImageNet folder {root} does not exist")
    out = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        out += [(str(f), folder.name) for f in sorted(folder.rglob("*")) if f.suffix.lower() in IMAGE_SUFFIXES]
    stray = sorted(str(f) for f in root.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
    return out, stray


def read_list(path: Path, allow_outside_root: bool = False) -> list[tuple[str, str]]:
    """(path, wnid) from a `path wnid` list; paths are relative to the list file and stay under its folder
    (absolute and `..` paths only with `allow_outside_root`)."""
    out = []
    for number, line in enumerate(read_text(path).splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        fields = line.rsplit(maxsplit=1)
        if len(fields) != 2:
            raise DatasetError(f"{path} line {number}: expected '<image path> <wnid>', got {line!r}")
        out.append((str(annotation_path(path.parent, fields[0].strip(), f"{path} line {number}",
                                        allow_outside_root)), fields[1]))
    return out


class ImageNetSource(Source):
    """Classification records from wnid folders (`images`) or a list file (`list`).

    Args:
        images: root holding one sub-folder per wnid (ImageNet-1k, -22k or any subset).
        list_file: alternatively, a file of `path wnid` lines.
        tree: the tree labels index; None gives flat labels over the sorted wnids found.
        allow_outside_root: accept list paths that are absolute or contain `..` (refused by default).
    """

    def __init__(self, images: str | Path | None = None, list_file: str | Path | None = None,
                 tree: WordTree | None = None, allow_outside_root: bool = False) -> None:
        if (images is None) == (list_file is None):
            raise ValueError("ImageNetSource: give exactly one of images (wnid folders) or list_file")
        stray: list[str] = []
        if images is not None:
            items, stray = scan_folders(Path(images))
        else:
            items = read_list(Path(list_file), allow_outside_root)
        if tree is None:
            flat = {w: i for i, w in enumerate(sorted({w for _, w in items}))}
        unknown: Counter = Counter()
        self.skipped = SkipLog()
        for path in stray:
            self.skipped.add("image outside any wnid folder", path)
        seen: set[str] = set()
        records = []
        for path, wnid in items:
            if path in seen:
                # A list naming one file twice (often under two wnids) would train it twice with clashing labels.
                self.skipped.add("duplicate file", f"{path} ({wnid})")
                continue
            seen.add(path)
            if tree is not None and wnid not in tree:
                unknown[wnid] += 1
                self.skipped.add("image with wnid not in the tree", f"{path} ({wnid})")
                continue
            label = tree.index(wnid) if tree is not None else flat[wnid]
            records.append(Record(path, len(records), torch.tensor([label], dtype=torch.long), None))
        self.unknown_wnids = unknown
        name = str(images if images is not None else list_file)
        report_skipped(name, "images", unknown)
        super().__init__(records, "classification", name)
