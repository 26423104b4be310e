"""The common shape of every data source (COCO, ImageNet folders, VOC, darknet lists, HDF5 packs).

A source is a `torch.utils.data.Dataset` of `(image, target)`:
    image:  UInt8[3, H, W] RGB (transforms convert to float 0..1);
    target: {"labels": Long[T], "boxes": Float[T, 4] xyxy original pixels (detection sources only),
             "image_id": int, "orig_size": (h, w)}.
Classification samples have exactly one label and no "boxes" key: that is how `collate` flags them.

Annotations are parsed once, up front, into `Record`s, so packing, checking and `box_sizes` never decode pixels.
"""
from __future__ import annotations

import os
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from torch import Tensor
from torch.utils.data import Dataset

import wordtree.io
from yolo9000.data.images import ImageLoadError, decode_image, read_bytes
from yolo9000.errors import DatasetError

Kind = Literal["detection", "classification"]


def read_text(path: str | Path) -> str:
    """A text annotation file (list, label file, image set), UTF-8 with an optional BOM; DatasetError naming
    the file when it does not exist, is not UTF-8 or cannot be read."""
    return wordtree.io.read_text(path, DatasetError)


def annotation_path(base: Path, name: object, where: str, allow_outside: bool = False) -> Path:
    """The file an annotation names, kept under `base`: an absolute path or a `..` component is refused (an
    annotation must not make a pack or a training run read /etc/passwd) unless the descriptor source sets
    `allow_outside_root: true`.

    Args:
        base: the folder annotation paths are relative to (the image folder, the list file's folder).
        name: the path as the annotation writes it.
        where: the file (and entry) it comes from, for the message.
        allow_outside: accept absolute and `..` paths as they are.
    Raises:
        DatasetError: naming `where` and the path.
    """
    if not isinstance(name, str) or not name.strip():
        raise DatasetError(f"{where}: image path {name!r} is not a non-empty string")
    path = Path(name).expanduser() if allow_outside else Path(name)
    if not allow_outside and (path.is_absolute() or ".." in path.parts):
        raise DatasetError(f"{where}: image path {name!r} leaves the dataset folder {base} (absolute or '..'); "
                              "set allow_outside_root: true on the descriptor source to allow it")
    return path if path.is_absolute() else base / path


@dataclass(frozen=True)
class Record:
    """One image's annotation, without pixels.

    Attributes:
        file: image path (or the member name inside a pack).
        image_id: the dataset's id (COCO id, running index otherwise).
        labels: Long[T] tree-node (or flat class) indices.
        boxes: Float[T, 4] xyxy original pixels, or None for a classification image.
        orig_size: (height, width) when the annotation states it, else None (read from the image on load).
    """

    file: str
    image_id: int
    labels: Tensor
    boxes: Tensor | None
    orig_size: tuple[int, int] | None = None


class Source(Dataset):
    """A list of `Record`s plus a way to fetch each image's encoded bytes."""

    kind: Kind

    def __init__(self, records: list[Record], kind: Kind, name: str) -> None:
        self.records = records
        self.kind = kind
        self.name = name

    def __len__(self) -> int:
        return len(self.records)

    def read_bytes(self, index: int) -> bytes:
        """The image's encoded bytes as stored; ImageLoadError naming the file when it cannot be read."""
        return read_bytes(self.records[index].file)

    def byte_size(self, index: int) -> int:
        """Size of the encoded image in bytes without reading it; ImageLoadError (reason "missing") if absent."""
        file = self.records[index].file
        try:
            return os.stat(file).st_size
        except OSError as err:
            raise ImageLoadError(f"{file}: cannot read ({err.strerror or err})", reason="missing") from None

    def file_stat(self, index: int) -> tuple[int, int]:
        """(size in bytes, modification time in ns) of the encoded image, without reading it: what tells a resumed
        pack that a source file changed since the interrupted run. ImageLoadError (reason "missing") if absent."""
        file = self.records[index].file
        try:
            stat = os.stat(file)
        except OSError as err:
            raise ImageLoadError(f"{file}: cannot read ({err.strerror or err})", reason="missing") from None
        return stat.st_size, stat.st_mtime_ns

    def __getitem__(self, index: int) -> tuple[Tensor, dict]:
        image = decode_image(self.read_bytes(index), self.records[index].file)
        return image, self.target(index, tuple(image.shape[-2:]))

    def target(self, index: int, size: tuple[int, int]) -> dict:
        """The sample's target (module docstring) for an upright image of `size` (height, width)."""
        record = self.records[index]
        target: dict = {"labels": record.labels.clone(), "image_id": record.image_id, "orig_size": tuple(size)}
        if record.boxes is not None:
            target["boxes"] = record.boxes.clone()
        return target

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, {self.kind}, {len(self)} images)"


class SkipLog(Counter):
    """What a source left out while parsing its annotations: a Counter per problem kind, plus the first few files
    of each kind in `examples` (what `yolo9000 data check` prints)."""

    max_examples = 5

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.examples: dict[str, list[str]] = {}

    def add(self, kind: str, file: str, count: int = 1) -> None:
        self[kind] += count
        examples = self.examples.setdefault(kind, [])
        if len(examples) < self.max_examples and file not in examples:
            examples.append(file)

    def merge(self, other: Counter) -> SkipLog:
        for kind, count in other.items():
            self[kind] += count
            for file in getattr(other, "examples", {}).get(kind, []):
                examples = self.examples.setdefault(kind, [])
                if len(examples) < self.max_examples and file not in examples:
                    examples.append(file)
        return self

    def __reduce__(self):
        # Counter pickles as (class, (dict,)), which would drop the examples when a loader worker gets a copy.
        return type(self), (dict(self),), {"examples": self.examples}


# Left out by design (COCO crowd boxes, VOC difficult boxes) or already reported (`report_skipped`).
_QUIET_KINDS = frozenset({"crowd box", "difficult box", "box with unknown category"})


def report_problems(source: Source, stream=None) -> None:
    """One line per kind of annotation a source left out (annotation for a missing image, image outside any wnid
    folder, duplicate ids, ...), with counts and the first example, so training never drops data without a word."""
    skipped = getattr(source, "skipped", None)
    if not skipped:
        return
    stream = stream or sys.stderr
    for kind, count in sorted(skipped.items()):
        if count and kind not in _QUIET_KINDS:
            first = skipped.examples.get(kind, [])
            print(f"{source.name}: left out {count} x {kind}" + (f" (first: {first[0]})" if first else ""),
                  file=stream)


def report_skipped(source: str, what: str, counts: Counter, stream=None) -> None:
    """Say once, with counts, which labels were skipped (never silently relabelled)."""
    if not counts:
        return
    stream = stream or sys.stderr
    top = ", ".join(f"{key} ({n})" for key, n in counts.most_common(8))
    more = f" and {len(counts) - 8} more" if len(counts) > 8 else ""
    print(f"{source}: skipped {sum(counts.values())} {what} with {len(counts)} labels not in the tree/class map: "
          f"{top}{more}", file=stream)


def resolve(base: Path, path: str | Path) -> Path:
    """`path` relative to `base` unless absolute; `~` expanded."""
    path = Path(path).expanduser()
    return path if path.is_absolute() else base / path


def empty_boxes() -> Tensor:
    return torch.zeros((0, 4), dtype=torch.float32)


class ConcatSource(Source):
    """Several sources of one kind as one (records concatenated; bytes fetched from the owning source)."""

    def __init__(self, sources: list[Source]) -> None:
        kinds = {s.kind for s in sources}
        if len(kinds) != 1:
            raise ValueError(f"ConcatSource: mixed kinds {sorted(kinds)}")
        self.sources = sources
        self.offsets = torch.tensor([0] + [len(s) for s in sources]).cumsum(0)
        records = [r for s in sources for r in s.records]
        super().__init__(records, kinds.pop(), " + ".join(s.name for s in sources))

    def _locate(self, index: int) -> tuple[Source, int]:
        k = int(torch.searchsorted(self.offsets, index, right=True)) - 1
        return self.sources[k], index - int(self.offsets[k])

    def read_bytes(self, index: int) -> bytes:
        source, local = self._locate(index)
        return source.read_bytes(local)

    def byte_size(self, index: int) -> int:
        source, local = self._locate(index)
        return source.byte_size(local)

    def file_stat(self, index: int) -> tuple[int, int]:
        source, local = self._locate(index)
        return source.file_stat(local)

    def __getitem__(self, index: int) -> tuple[Tensor, dict]:
        source, local = self._locate(index)
        return source[local]

    @property
    def skipped(self) -> SkipLog:
        out = SkipLog()
        for source in self.sources:
            out.merge(getattr(source, "skipped", Counter()))
        return out
