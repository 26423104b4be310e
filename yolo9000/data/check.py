"""`yolo9000 data check`: scan a dataset and report every problem kind with counts and the first few files.

Two severities. Errors lose or corrupt training signal and make the exit code 1: missing files, unreadable,
truncated or too large images (more decoded pixels than `images.max_pixels()`, read from the header), boxes of
non-positive size or outside the image, image sizes that disagree with the annotation, unknown categories or wnids,
annotations of a missing image, images outside any wnid folder, duplicate ids or files, a training image that is
also in another split (evaluation leak; splits whose name starts with "train" are training splits), a source that
cannot be read at all (malformed annotations, a path leaving the dataset, a damaged pack) or holds no images.
Informational kinds are handled on load and only reported: grayscale/CMYK/alpha/16-bit/palette images (loaded as
RGB, "converted"), EXIF rotation (turned upright), crowd and difficult boxes (left out by design).

Images are fully decoded the way training decodes them, so a file the check passes is one training can read.
"""
from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from wordtree.tree import WordTree
from yolo9000.data.descriptor import DatasetDescriptor, build_source
from yolo9000.data.images import REASON_KINDS, ImageLoadError, inspect_image
from yolo9000.data.source import SkipLog, Source

INFO_KINDS = frozenset({"converted: grayscale", "converted: CMYK", "converted: alpha", "converted: 16-bit",
                        "converted: palette", "EXIF rotation", "crowd box", "difficult box"})
BOX_TOLERANCE = 1.0  # pixels: COCO's float boxes overshoot the border by rounding; that is not an error
_LOAD_KINDS = REASON_KINDS


def is_error(kind: str) -> bool:
    return kind not in INFO_KINDS


@dataclass
class CheckReport:
    """What a check found.

    Attributes:
        descriptor: the descriptor file checked.
        images: {"split/kind": number of images scanned}.
        problems: counts per kind, with the first few files of each in `problems.examples`.
    """

    descriptor: str
    images: dict[str, int] = field(default_factory=dict)
    problems: SkipLog = field(default_factory=SkipLog)

    @property
    def error_kinds(self) -> list[str]:
        return sorted(k for k, n in self.problems.items() if n and is_error(k))

    @property
    def exit_code(self) -> int:
        """0 when only informational kinds were found, else 1."""
        return 1 if self.error_kinds else 0

    def format(self) -> str:
        lines = [f"data check {self.descriptor}"]
        lines += [f"  {where}: {n} images" for where, n in self.images.items()]
        kinds = sorted(self.problems, key=lambda k: (not is_error(k), k))
        for kind in kinds:
            if not self.problems[kind]:
                continue
            label = "error" if is_error(kind) else "info "
            examples = self.problems.examples.get(kind, [])
            more = ", ..." if self.problems[kind] > len(examples) else ""
            lines.append(f"  {label}  {kind}: {self.problems[kind]}  ({', '.join(examples)}{more})")
        errors = self.error_kinds
        if errors:
            lines.append(f"{len(errors)} problem kind{'s' if len(errors) > 1 else ''} to fix: {', '.join(errors)}")
        else:
            info = sum(1 for k, n in self.problems.items() if n)
            lines.append("no errors" + (f" ({info} informational kind{'s' if info > 1 else ''})" if info else ""))
        return "\n".join(lines)

    def to_json(self) -> dict:
        return {"descriptor": self.descriptor, "images": self.images, "exit_code": self.exit_code,
                "problems": {k: {"count": n, "error": is_error(k), "examples": self.problems.examples.get(k, [])}
                             for k, n in sorted(self.problems.items()) if n}}


class _ScanImages(Dataset):
    """Per record: the problems its image and boxes show (run in DataLoader workers to use every core)."""

    def __init__(self, source: Source) -> None:
        self.source = source

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, index: int) -> list[tuple[str, str]]:
        record = self.source.records[index]
        file = record.file
        try:
            info = inspect_image(self.source.read_bytes(index), file)
        except ImageLoadError as err:
            return [(_LOAD_KINDS[err.reason], file)]
        found = [(f"converted: {c}", file) for c in info.conversions]
        if info.exif_rotated:
            found.append(("EXIF rotation", file))
        height, width = info.size
        if record.orig_size is not None and tuple(record.orig_size) != (height, width):
            found.append(("image size differs from annotation",
                          f"{file} (annotation {record.orig_size[0]}x{record.orig_size[1]}, image {height}x{width})"))
        if record.boxes is not None and len(record.boxes):
            boxes = record.boxes
            tol = BOX_TOLERANCE
            outside = ((boxes[:, 0] < -tol) | (boxes[:, 1] < -tol) | (boxes[:, 2] > width + tol)
                       | (boxes[:, 3] > height + tol))
            found += [("box outside the image", file)] * int(outside.sum())
        return found


def _scan(source: Source, problems: SkipLog, workers: int, progress: bool, desc: str) -> None:
    loader = DataLoader(_ScanImages(source), batch_size=None, num_workers=workers,
                        prefetch_factor=8 if workers else None)
    for found in tqdm(loader, total=len(source), desc=desc, unit="img", disable=not progress, leave=False):
        for kind, file in found:
            problems.add(kind, file)


def check_dataset(descriptor: DatasetDescriptor, tree: WordTree | None, splits: Iterable[str] | None = None,
                  workers: int = 0, progress: bool = True) -> CheckReport:
    """Scan the descriptor's splits (default: all) and collect every problem.

    Args:
        descriptor: the dataset (overrides applied).
        tree: the tree labels index (normally the descriptor's), None for flat labels.
        splits: which splits to scan.
        workers: DataLoader worker processes decoding images (0: in this process).
        progress: show progress bars.
    Returns:
        A CheckReport; `report.exit_code` is 1 when any error kind was found.
    """
    report = CheckReport(str(descriptor.source))
    problems = report.problems
    files_of: dict[str, set[str]] = {}
    for split in splits or list(descriptor.splits):
        spec = descriptor.split(split)
        for kind in ("detection", "classification"):
            for i, source_spec in enumerate(getattr(spec, kind)):
                where = f"splits.{split}.{kind}[{i}]"
                try:
                    source = build_source(source_spec, kind, tree)
                except (OSError, ValueError, KeyError) as err:
                    problems.add("source cannot be read", f"{where} ({source_spec.format}): {err}")
                    continue
                if source.kind != kind:
                    problems.add("source cannot be read", f"{where}: {source.name} holds {source.kind} images")
                    continue
                problems.merge(getattr(source, "skipped", SkipLog()))
                if not len(source):
                    problems.add("source holds no images", f"{where} ({source_spec.format}): {source.name}")
                files_of.setdefault(split, set()).update(r.file for r in source.records)
                key = f"{split}/{kind}"
                report.images[key] = report.images.get(key, 0) + len(source)
                _scan(source, problems, workers, progress, f"check {where}")
    # Evaluation splits may share images (e.g. fine and coarse labels of the same pictures); training may not.
    for train in (s for s in files_of if s.startswith("train")):
        for other in (s for s in files_of if s != train):
            for file in sorted(files_of[train] & files_of[other]):
                problems.add("training image also in another split", f"{file} ({train}, {other})")
    return report


def write_json(report: CheckReport, path: str | Path) -> None:
    Path(path).write_text(json.dumps(report.to_json(), indent=2))
