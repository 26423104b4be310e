"""HDF5 packs: one dataset split in one `.h5` file, for fast random access on network file systems (issue 5 §4).

`yolo9000 data pack DATASET.yaml --split train --out train.h5` stores, per part (`detection`, `classification`),
the encoded image bytes exactly as stored on disk, the annotations (labels as tree nodes, boxes as xyxy pixels, image
ids, sizes) and the original file names; the root records the source descriptor and the tree (its node list and a
SHA-256 of its `.tree` text). A descriptor source `{format: pack, path: train.h5}` reads it back through `PackSource`,
which refuses a pack built for another tree.

Layout:
    /                 attrs: format, version, split, descriptor (path and YAML text), sources (JSON), tree_digest, job
    /tree/wnids       the node list of the tree the labels index, with /tree/parents (absent for flat labels)
    /<kind>/files     original paths (Str[n]); image_ids Long[n]; orig_sizes Int[n, 2] (-1: unknown)
    /<kind>/labels    Long[T] with label_offsets Long[n + 1]; boxes Float[T, 4] (detection only)
    /<kind>/data      UInt8[total] every image's bytes back to back, with byte_offsets Long[n + 1]

Crash safety without a second copy of the bytes: the whole HDF5 structure (annotations, offsets, and `data`
allocated contiguously with no fill) is written and closed first, in `F.h5.partial`. The image bytes then go into
the preallocated region with plain positional writes that never touch HDF5 metadata, and `F.h5.progress` records
how many images of each part are on disk (written only after their bytes, replaced atomically). A SIGKILL at any
point leaves either a partial file whose structure is complete and whose progress file understates what is there,
or no progress file (then packing restarts). A rerun continues after the recorded images; the final rename to
`F.h5` happens only when every byte is written, and the result is byte-identical to an uninterrupted pack.
"""
from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
import torch
from tqdm import tqdm

from wordtree.io import tree_text
from wordtree.tree import WordTree
from yolo9000.data.images import ImageLoadError
from yolo9000.data.source import Kind, Record, Source
from yolo9000.errors import PackError  # noqa: F401  (re-exported)

FORMAT = "yolo9000-pack"
VERSION = 1
KINDS: tuple[Kind, ...] = ("detection", "classification")
_STR = h5py.string_dtype()


def tree_digest(tree: WordTree | None) -> str:
    """SHA-256 of the tree's darknet `.tree` text (node order and parents), or "flat" for flat class indices."""
    return "flat" if tree is None else hashlib.sha256(tree_text(tree).encode()).hexdigest()


def _describe_tree(digest: str, num_nodes: int) -> str:
    return "flat class indices (no tree)" if digest == "flat" else f"a {num_nodes}-node tree ({digest[:12]})"


# ------------------------------------------------------------------------------------------------------ reading
class PackSource(Source):
    """One part of a pack as a `Source`; the file is opened lazily in each process (DataLoader workers).

    The annotations are read once through h5py. Image bytes sit in one contiguous, uncompressed dataset whose file
    offset HDF5 reports, so each image is a single positional read of the file: no HDF5 call per image, nothing
    shared between processes, and on a network file system one request per image.

    Args:
        path: the `.h5` written by `yolo9000 data pack`.
        tree: the tree labels must index (the descriptor's); None for flat labels. A pack built with another tree
            is refused (PackError naming both trees and the first node that differs).
        kind: which part to read; None when the pack holds exactly one.
    """

    def __init__(self, path: str | Path, tree: WordTree | None, kind: Kind | None = None) -> None:
        self.path = Path(path)
        if not self.path.exists():
            partial = self.path.with_name(self.path.name + ".partial")
            hint = f" ({partial.name} exists: packing was interrupted, rerun `yolo9000 data pack`)" \
                if partial.exists() else ""
            raise PackError(f"pack {self.path} does not exist{hint}")
        try:
            handle = h5py.File(self.path, "r")
        except OSError as err:
            raise PackError(f"{self.path}: not a readable HDF5 pack ({err})") from None
        try:
            with handle as f:
                records, kind = self._read(f, tree, kind)
        except PackError:
            raise
        except (KeyError, OSError, ValueError, TypeError) as err:
            # A damaged or foreign HDF5 file: a missing dataset or attribute, an unreadable chunk.
            raise PackError(f"{self.path}: damaged pack ({type(err).__name__}: {err}); repack it with "
                            "`yolo9000 data pack`") from None
        self._fd = -1
        self._pid = -1
        super().__init__(records, kind, f"{self.path}:{kind}")

    def _read(self, f: h5py.File, tree: WordTree | None, kind: Kind | None) -> tuple[list[Record], Kind]:
        if f.attrs.get("format") != FORMAT:
            raise PackError(f"{self.path}: not a yolo9000 pack (format attribute {f.attrs.get('format')!r})")
        if int(f.attrs["version"]) > VERSION:
            raise PackError(f"{self.path}: pack version {f.attrs['version']} is newer than this code ({VERSION})")
        _check_tree(f, tree, self.path)
        parts = [k for k in KINDS if k in f]
        if kind is None:
            if len(parts) != 1:
                raise PackError(f"{self.path} holds {' and '.join(parts) or 'no'} images: say which kind to read")
            kind = parts[0]
        if kind not in f:
            raise PackError(f"{self.path} holds no {kind} images (it has {', '.join(parts) or 'none'})")
        records, self._offsets = _read_part(f[kind], kind, self.path)
        self._base = f[kind]["data"].id.get_offset()  # None only for an empty part (nothing to read)
        _check_data_region(f[kind], kind, self._offsets, self._base, self.path)
        self.split = str(f.attrs["split"])
        self.descriptor = str(f.attrs["descriptor_path"])
        return records, kind

    def _file(self) -> int:
        # One descriptor per process: a DataLoader worker never reads through one inherited across fork.
        if self._pid != os.getpid():
            try:
                self._fd, self._pid = os.open(self.path, os.O_RDONLY), os.getpid()
            except OSError as err:
                raise ImageLoadError(f"{self.path}: cannot open pack ({err.strerror})", reason="missing") from None
        return self._fd

    def read_bytes(self, index: int) -> bytes:
        start, size = int(self._offsets[index]), self.byte_size(index)
        try:
            data = os.pread(self._file(), size, self._base + start) if size else b""
        except OSError as err:
            raise ImageLoadError(f"{self.path}: {self.records[index].file} cannot be read from the pack "
                                 f"({err.strerror or err})", reason="unreadable") from None
        if len(data) != size:
            raise ImageLoadError(f"{self.path}: {self.records[index].file} is cut short in the pack (file "
                                 "truncated after packing?)", reason="truncated")
        return data

    def byte_size(self, index: int) -> int:
        return int(self._offsets[index + 1] - self._offsets[index])

    def file_stat(self, index: int) -> tuple[int, int]:
        # The bytes live in the pack: it changing is what matters to a pack made from a pack.
        return self.byte_size(index), self.path.stat().st_mtime_ns

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_fd"], state["_pid"] = -1, -1
        return state

    def __del__(self) -> None:
        try:
            if getattr(self, "_pid", -1) == os.getpid():
                os.close(self._fd)
        except (OSError, AttributeError, TypeError):  # already closed, or interpreter shutdown
            pass


def _check_tree(f: h5py.File, tree: WordTree | None, path: Path) -> None:
    packed = str(f.attrs["tree_digest"])
    wanted = tree_digest(tree)
    if packed == wanted:
        return
    packed_nodes = len(f["tree/wnids"]) if "tree" in f else 0
    detail = ""
    if tree is not None and "tree" in f:
        wnids = [w.decode() if isinstance(w, bytes) else w for w in f["tree/wnids"][:]]
        parents = f["tree/parents"][:].tolist()
        theirs_rows = list(zip(wnids, parents))
        mine = list(zip(tree.wnids, tree.parent.tolist()))
        same = (a == b for a, b in zip(theirs_rows, mine))
        first = next((i for i, equal in enumerate(same) if not equal), min(len(mine), len(wnids)))
        theirs = f"{wnids[first]} (parent {parents[first]})" if first < len(wnids) else "nothing"
        ours = f"{mine[first][0]} (parent {mine[first][1]})" if first < len(mine) else "nothing"
        detail = f"; first difference at node {first}: the pack has {theirs}, this tree has {ours}"
    raise PackError(f"{path} was packed with {_describe_tree(packed, packed_nodes)} but this dataset uses "
                    f"{_describe_tree(wanted, tree.num_nodes if tree is not None else 0)}{detail}. Its labels would "
                    f"point at the wrong nodes: repack with `yolo9000 data pack` and the tree you train with.")


def _damaged(path: Path, what: str) -> PackError:
    return PackError(f"{path}: damaged pack: {what}; repack it with `yolo9000 data pack`")


def _offsets_ok(offsets: np.ndarray, count: int, total: int) -> bool:
    """Offsets Long[count + 1] from 0 to `total`, never decreasing."""
    return (offsets.ndim == 1 and len(offsets) == count + 1 and np.issubdtype(offsets.dtype, np.integer)
            and int(offsets[0]) == 0 and int(offsets[-1]) == total and bool((np.diff(offsets) >= 0).all()))


def _read_part(group: h5py.Group, kind: Kind, path: Path = Path("pack")) -> tuple[list[Record], np.ndarray]:
    """The part's records and byte offsets, every array checked against the others before any is trusted."""
    files = [f.decode() if isinstance(f, bytes) else f for f in group["files"][:]]
    n = len(files)
    ids = group["image_ids"][:]
    sizes = group["orig_sizes"][:]
    label_offsets = group["label_offsets"][:]
    labels_array = group["labels"][:]
    byte_offsets = group["byte_offsets"][:]
    where = f"{kind}/"
    if ids.shape != (n,) or sizes.shape != (n, 2):
        raise _damaged(path, f"{where}image_ids or orig_sizes do not hold one entry per file ({n} files)")
    if labels_array.ndim != 1 or not _offsets_ok(label_offsets, n, len(labels_array)):
        raise _damaged(path, f"{where}label_offsets do not run from 0 to the {len(labels_array)} labels")
    labels = torch.from_numpy(labels_array.astype(np.int64))
    boxes = None
    if kind == "detection":
        boxes_array = group["boxes"][:]
        if boxes_array.shape != (len(labels_array), 4):
            raise _damaged(path, f"{where}boxes have shape {boxes_array.shape}, expected ({len(labels_array)}, 4)")
        if not np.isfinite(boxes_array).all():
            raise _damaged(path, f"{where}boxes hold non-finite values")
        boxes = torch.from_numpy(boxes_array.astype(np.float32))
    data = group["data"]
    if data.ndim != 1 or not _offsets_ok(byte_offsets, n, data.shape[0]):
        raise _damaged(path, f"{where}byte_offsets do not run from 0 to the {data.shape[0]} bytes of "
                       f"{where}data without going back")
    records = []
    for i, file in enumerate(files):
        a, b = int(label_offsets[i]), int(label_offsets[i + 1])
        size = tuple(int(v) for v in sizes[i]) if sizes[i][0] >= 0 else None
        records.append(Record(file, int(ids[i]), labels[a:b].clone(),
                              boxes[a:b].clone() if boxes is not None else None, size))
    return records, byte_offsets.astype(np.int64)


def _check_data_region(group: h5py.Group, kind: Kind, offsets: np.ndarray, base: int | None, path: Path) -> None:
    """The image bytes must lie inside the file: one contiguous region at `base`, `offsets[-1]` long."""
    total = int(offsets[-1])
    if total == 0:
        return
    if base is None:
        raise _damaged(path, f"{kind}/data is not stored contiguously (was it rewritten by another tool?)")
    if base < 0 or base + total > path.stat().st_size:
        raise _damaged(path, f"{kind}/data ({total} bytes at offset {base}) runs past the end of the "
                       f"{path.stat().st_size}-byte file (truncated after packing?)")


# ------------------------------------------------------------------------------------------------------ writing
@dataclass
class _Part:
    """What one part of the pack will hold: the source, the records kept (file found) and their byte sizes."""

    kind: Kind
    source: Source
    keep: list[int]
    sizes: np.ndarray
    mtimes: np.ndarray
    missing: list[str] = field(default_factory=list)

    @property
    def offsets(self) -> np.ndarray:
        return np.concatenate([[0], np.cumsum(self.sizes, dtype=np.int64)]).astype(np.int64)


@dataclass(frozen=True)
class PackSummary:
    """What `pack_split` did.

    Attributes:
        path: the finished pack.
        images: images packed per kind.
        bytes: encoded bytes packed (all parts).
        missing: files the annotations name but that do not exist (left out of the pack), per kind: the first few.
        num_missing: how many such files in all.
        resumed_at: images already on disk from an interrupted run (0 for a fresh pack).
        written: images whose bytes this run wrote (0 when the pack was already complete).
        restarted: an interrupted pack was found but its sources or annotations changed since (a file's size or
            modification time), so it was packed again from the start.
    """

    path: Path
    images: dict[str, int]
    bytes: int
    missing: dict[str, list[str]]
    num_missing: int
    resumed_at: int
    written: int
    restarted: bool = False


def _plan(kind: Kind, source: Source, progress: bool) -> _Part:
    keep, sizes, mtimes, missing = [], [], [], []
    for i in tqdm(range(len(source)), desc=f"scan {kind}", unit="img", disable=not progress, leave=False):
        try:
            size, mtime = source.file_stat(i)
        except ImageLoadError:
            missing.append(source.records[i].file)
            continue
        sizes.append(size)
        mtimes.append(mtime)
        keep.append(i)
    return _Part(kind, source, keep, np.asarray(sizes, dtype=np.int64), np.asarray(mtimes, dtype=np.int64),
                 missing)


def _annotation_arrays(part: _Part) -> dict[str, np.ndarray]:
    records = [part.source.records[i] for i in part.keep]
    counts = [len(r.labels) for r in records]
    out = {
        "files": np.array([r.file for r in records], dtype=object),
        "image_ids": np.array([r.image_id for r in records], dtype=np.int64),
        "orig_sizes": np.array([r.orig_size or (-1, -1) for r in records], dtype=np.int32).reshape(-1, 2),
        "label_offsets": np.concatenate([[0], np.cumsum(counts, dtype=np.int64)]).astype(np.int64),
        "labels": (torch.cat([r.labels for r in records]) if records else torch.zeros(0)).long().numpy(),
        "byte_offsets": part.offsets,
    }
    if part.kind == "detection":
        boxes = [r.boxes if r.boxes is not None else torch.zeros((0, 4)) for r in records]
        out["boxes"] = (torch.cat(boxes) if boxes else torch.zeros((0, 4))).float().reshape(-1, 4).numpy()
    return out


def _job_digest(header: dict, arrays: dict[str, dict[str, np.ndarray]], mtimes: dict[str, np.ndarray]) -> str:
    """Identity of a packing job: same resolved sources, tree, files, sizes, modification times and annotations
    -> same digest. The times make a rerun after an edit that kept a file's size start over instead of keeping
    the stale bytes of an interrupted run.

    The descriptor's path and text are left out: editing a comment or moving the YAML changes no packed byte.
    """
    identity = {k: v for k, v in header.items() if k not in ("descriptor_path", "descriptor_yaml")}
    h = hashlib.sha256(json.dumps(identity, sort_keys=True).encode())
    for kind in sorted(mtimes):
        h.update(f"{kind}/mtimes".encode())
        h.update(mtimes[kind].tobytes())
    for kind in sorted(arrays):
        for name in sorted(arrays[kind]):
            array = arrays[kind][name]
            h.update(f"{kind}/{name}".encode())
            h.update("\n".join(array.tolist()).encode() if array.dtype == object else array.tobytes())
    return h.hexdigest()


def _write_structure(path: Path, header: dict, tree: WordTree | None, arrays: dict[str, dict[str, np.ndarray]],
                     job: str) -> None:
    with h5py.File(path, "w") as f:
        for key, value in header.items():
            f.attrs[key] = value
        f.attrs["job"] = job
        if tree is not None:
            f.create_dataset("tree/wnids", data=np.array(tree.wnids, dtype=object), dtype=_STR)
            f.create_dataset("tree/parents", data=tree.parent.numpy())
        for kind, part_arrays in arrays.items():
            group = f.create_group(kind)
            for name, array in part_arrays.items():
                group.create_dataset(name, data=array, dtype=_STR if array.dtype == object else array.dtype)
            group.attrs["num_images"] = len(part_arrays["image_ids"])
            # Contiguous, allocated now, never filled: bytes land at a fixed file offset with no metadata update.
            dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
            dcpl.set_alloc_time(h5py.h5d.ALLOC_TIME_EARLY)
            dcpl.set_fill_time(h5py.h5d.FILL_TIME_NEVER)
            group.create_dataset("data", shape=(int(part_arrays["byte_offsets"][-1]),), dtype=np.uint8, dcpl=dcpl)


def _data_offsets(path: Path, kinds: list[str]) -> dict[str, int]:
    with h5py.File(path, "r") as f:
        return {k: int(f[k]["data"].id.get_offset() or 0) for k in kinds}


def _read_progress(path: Path, job: str) -> dict[str, int] | None:
    try:
        state = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return {k: int(v) for k, v in state["done"].items()} if state.get("job") == job else None


def _write_progress(path: Path, job: str, done: dict[str, int]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps({"job": job, "done": done}))
    os.replace(tmp, path)


def _read_file(source: Source, index: int) -> bytes:
    """The bytes of one record (a module-level function so tests can interrupt a pack at a chosen image)."""
    return source.read_bytes(index)


def _ordered_reads(part: _Part, start: int, threads: int) -> Iterator[bytes]:
    """Bytes of part.keep[start:], in order; threads overlap file-system latency (reads release the GIL)."""
    todo = part.keep[start:]
    if threads <= 1:
        yield from (_read_file(part.source, i) for i in todo)
        return
    with ThreadPoolExecutor(threads) as pool:
        window = 4 * threads
        for first in range(0, len(todo), window):
            yield from pool.map(lambda i: _read_file(part.source, i), todo[first:first + window])


def pack_sources(sources: dict[Kind, Source], out: str | Path, tree: WordTree | None, header: dict | None = None,
                 progress: bool = True, commit_bytes: int = 64 << 20, threads: int = 4,
                 overwrite: bool = False) -> PackSummary:
    """Pack sources (at most one per kind) into `out`; resumable, see the module docstring.

    Args:
        sources: {"detection": Source, "classification": Source}; either may be absent.
        out: the `.h5` to write.
        tree: the tree the sources' labels index (recorded in the pack), None for flat labels.
        header: extra root attributes (the descriptor path and text, split, resolved source specs).
        progress: show progress bars.
        commit_bytes: record progress after about this many bytes (what a rerun after a crash may redo).
        threads: parallel file reads.
        overwrite: replace an existing finished pack built from other inputs (otherwise PackError).
    Returns:
        A PackSummary.
    """
    out = Path(out)
    partial = out.with_name(out.name + ".partial")
    progress_file = out.with_name(out.name + ".progress")
    parts = [_plan(kind, source, progress) for kind, source in sources.items() if source is not None]
    if not parts:
        raise PackError(f"nothing to pack into {out}: the split has no detection or classification images")
    header = {"format": FORMAT, "version": VERSION, "tree_digest": tree_digest(tree), **(header or {})}
    arrays = {p.kind: _annotation_arrays(p) for p in parts}
    job = _job_digest(header, arrays, {p.kind: p.mtimes for p in parts})
    missing = {p.kind: p.missing[:5] for p in parts if p.missing}
    num_missing = sum(len(p.missing) for p in parts)
    images = {p.kind: len(p.keep) for p in parts}
    total = int(sum(p.sizes.sum() for p in parts))

    def summary(resumed: int, written: int, restarted: bool = False) -> PackSummary:
        return PackSummary(out, images, total, missing, num_missing, resumed, written, restarted)

    if out.exists():
        try:
            with h5py.File(out, "r") as f:
                existing = f.attrs.get("job")
        except OSError:
            existing = None
        if existing == job:
            progress_file.unlink(missing_ok=True)
            return summary(sum(images.values()), 0)
        if not overwrite:
            raise PackError(f"{out} already exists and was packed from other inputs (another split, descriptor, "
                            "tree or changed files): pass --overwrite to replace it, or choose another --out")
    done = _read_progress(progress_file, job) if partial.exists() else None
    restarted = done is None and partial.exists() and progress_file.exists()
    if done is None:
        # No valid progress means no trusted partial: forget both before the structure is rewritten, so a crash
        # while writing it can never pair a half-written file with an older progress record.
        progress_file.unlink(missing_ok=True)
        out.parent.mkdir(parents=True, exist_ok=True)
        _write_structure(partial, header, tree, arrays, job)
        done = {p.kind: 0 for p in parts}
        _write_progress(progress_file, job, done)
    resumed = sum(done.values())
    bases = _data_offsets(partial, [p.kind for p in parts])
    written = 0
    bar = tqdm(total=total, initial=int(sum(p.offsets[done[p.kind]] for p in parts)), unit="B", unit_scale=True,
               desc=f"pack {out.name}", disable=not progress)
    fd = os.open(partial, os.O_WRONLY)
    try:
        for part in parts:
            offsets, start = part.offsets, done[part.kind]
            pending = 0
            for n, data in enumerate(_ordered_reads(part, start, threads), start):
                if len(data) != part.sizes[n]:
                    raise PackError(f"{part.source.records[part.keep[n]].file} changed while packing "
                                    f"({part.sizes[n]} bytes when scanned, {len(data)} now): rerun the pack")
                os.pwrite(fd, data, bases[part.kind] + int(offsets[n]))
                written += 1
                pending += len(data)
                bar.update(len(data))
                if pending >= commit_bytes:
                    # Bytes reach the disk before the progress that vouches for them (power loss, not just kill).
                    os.fsync(fd)
                    done[part.kind] = n + 1
                    _write_progress(progress_file, job, done)
                    pending = 0
            done[part.kind] = len(part.keep)
        os.fsync(fd)
    finally:
        os.close(fd)
        bar.close()
    os.replace(partial, out)
    progress_file.unlink(missing_ok=True)
    return summary(resumed, written, restarted)
