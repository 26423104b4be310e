"""Dataset descriptors: `datasets/*.yaml` says where each split's images and annotations are (no Python there).

    name: shapes
    root: ${YOLO9000_HOME}/shapes       # optional; paths are relative to it, else to the yaml file's folder
    tree: shapes.tree                   # optional: a .tree/.json (relative to root) or "9k" for darknet's
    splits:
      train:
        detection:      {format: coco, annotations: det/annotations.json, images: det/images}
        classification: {format: imagenet, images: cls}      # or a list of such entries, concatenated
      eval:
        detection:      {format: coco, annotations: eval/annotations.json, images: eval/images}

Image paths inside annotations (COCO `file_name`, VOC `<filename>`, list lines) must stay under their folder:
absolute and `..` paths are refused unless the source sets `allow_outside_root: true`.
Formats: `coco` (annotations, images, class_map, include_crowd), `imagenet` (images = wnid folders, or list),
`voc` (images = VOC root, image_set, class_map; or annotations = XML folder and images = image folder, as for
ImageNet DET), `darknet` (list, class_map), `pack` (path of a `yolo9000 data pack` file; the part of the split's
kind is read, and a pack built for another tree is refused). A `class_map` that is not found under root is looked
up in the reference data (`coco9k.map`).
Overrides use dotted keys: `root=/data/coco`, `splits.train.detection.annotations=/x.json`, list entries by index
(`splits.train.classification.0.images=/imagenet/train`). `${VAR}` expands environment variables;
`${YOLO9000_HOME}` defaults to the data dir.

Builders: `build_detection(descriptor, split, tree)` and `build_classification(descriptor, split, tree)` return a
`Source` (a Dataset of (image, target), see `source.py`) or None when the split has no such part.
"""
from __future__ import annotations

import dataclasses
import json
import os
import sys
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from wordtree.tree import WordTree
from yolo9000.config import ConfigError, parse_overrides
from yolo9000.data.images import ImageLoadError, image_size
from yolo9000.data.pack import KINDS, PackSource, PackSummary, pack_sources
from yolo9000.data.source import ConcatSource, Source, report_problems, resolve
from yolo9000.errors import DescriptorError, EmptySourceError  # noqa: F401  (re-exported)
from yolo9000.reference import darknet_dir, data_home
from yolo9000.yaml_io import read_yaml

FORMATS = ("coco", "imagenet", "voc", "darknet", "pack")


@dataclass(frozen=True)
class SourceSpec:
    """One source of a split; paths already resolved against the descriptor root."""

    format: str
    annotations: Path | None = None     # coco json
    images: Path | None = None          # coco image folder, imagenet wnid folders, voc root
    list: Path | None = None            # imagenet `path wnid` list, darknet image list
    path: Path | None = None            # pack .h5
    class_map: Path | None = None       # darknet .map or YAML category -> wnid
    include_crowd: bool = False
    image_set: str | None = None        # voc ImageSets/Main/<name>.txt
    allow_outside_root: bool = False    # accept absolute and `..` image paths in the annotations


@dataclass(frozen=True)
class SplitSpec:
    detection: tuple[SourceSpec, ...] = ()
    classification: tuple[SourceSpec, ...] = ()


@dataclass(frozen=True)
class DatasetDescriptor:
    """A parsed `datasets/*.yaml`: name, root, optional tree spec and the splits."""

    name: str
    source: Path                        # the yaml file
    root: Path
    tree: str | None
    splits: dict[str, SplitSpec]

    def split(self, name: str) -> SplitSpec:
        if name not in self.splits:
            raise DescriptorError(f"{self.source}: no split {name!r} (has {', '.join(self.splits)})")
        return self.splits[name]


def _expand(text: str) -> str:
    env = dict(os.environ)
    env.setdefault("YOLO9000_HOME", str(data_home()))
    for key, value in env.items():
        text = text.replace("${" + key + "}", value)
    return os.path.expanduser(text)


def _set_dotted(data: Any, keys: list[str], value: Any, item: str) -> None:
    node = data
    for i, key in enumerate(keys):
        last = i == len(keys) - 1
        if isinstance(node, list):
            if not key.isdigit() or int(key) >= len(node):
                raise DescriptorError(f"--set {item}: {key!r} is not an index of a {len(node)}-entry list")
            key = int(key)
        elif not isinstance(node, dict):
            raise DescriptorError(f"--set {item}: {keys[i - 1]!r} is not a section")
        if last:
            node[key] = value
        else:
            if isinstance(node, dict) and key not in node:
                node[key] = {}
            node = node[key]


def _flatten_overrides(nested: dict, prefix: tuple[str, ...] = ()) -> list[tuple[list[str], Any]]:
    out = []
    for key, value in nested.items():
        if isinstance(value, dict) and value:
            out += _flatten_overrides(value, prefix + (key,))
        else:
            out.append((list(prefix + (key,)), value))
    return out


def _source_spec(entry: Any, root: Path, where: str) -> SourceSpec:
    if not isinstance(entry, dict):
        raise DescriptorError(f"{where}: expected a mapping with a 'format' key, got {entry!r}")
    known = {f.name for f in fields(SourceSpec)}
    unknown = sorted(set(entry) - known)
    if unknown:
        raise DescriptorError(f"{where}: unknown key {unknown[0]!r} (known: {', '.join(sorted(known))})")
    if entry.get("format") not in FORMATS:
        raise DescriptorError(f"{where}: format {entry.get('format')!r} is not one of {', '.join(FORMATS)}")
    kwargs: dict[str, Any] = {}
    for key, value in entry.items():
        if key in ("annotations", "images", "list", "path") and value is not None:
            value = resolve(root, _expand(str(value)))
        elif key in ("include_crowd", "allow_outside_root") and not isinstance(value, bool):
            raise DescriptorError(f"{where}: {key} must be true or false, got {value!r}")
        elif key == "class_map" and value is not None:
            found = resolve(root, _expand(str(value)))
            reference = darknet_dir() / str(value)
            value = found if found.exists() or not reference.exists() else reference
        kwargs[key] = value
    return SourceSpec(**kwargs)


def load_descriptor(path: str | Path, overrides: list[str] | None = None) -> DatasetDescriptor:
    """Parse a dataset descriptor and apply `key=value` overrides.

    Args:
        path: the yaml file (a bare name such as `shapes` names one shipped in `yolo9000/datasets`).
        overrides: dotted `key=value` strings, values parsed as YAML.
    Raises:
        DescriptorError: naming the file and key on any malformed entry.
    """
    from yolo9000.resources import dataset_file
    path = dataset_file(path)
    data = read_yaml(path, DescriptorError, "a YAML dataset descriptor") or {}
    if not isinstance(data, dict):
        raise DescriptorError(f"{path}: expected a mapping")
    try:
        parsed = parse_overrides(overrides)
    except ConfigError as err:
        raise DescriptorError(str(err)) from None
    for keys, value in _flatten_overrides(parsed):
        _set_dotted(data, keys, value, ".".join(keys))
    unknown = sorted(set(data) - {"name", "root", "tree", "splits"})
    if unknown:
        raise DescriptorError(f"{path}: unknown key {unknown[0]!r} (known: name, root, tree, splits)")
    root = resolve(path.parent, _expand(str(data["root"]))) if data.get("root") else path.parent
    tree = data.get("tree")
    if tree is not None and tree != "9k":
        tree = str(resolve(root, _expand(str(tree))))
    splits = {}
    for split, parts in (data.get("splits") or {}).items():
        if not isinstance(parts, dict) or set(parts) - {"detection", "classification"}:
            raise DescriptorError(f"{path}: splits.{split} must map 'detection' and/or 'classification' to sources")
        specs = {}
        for kind, entries in parts.items():
            entries = entries if isinstance(entries, list) else [entries]
            specs[kind] = tuple(_source_spec(e, root, f"{path}: splits.{split}.{kind}[{i}]")
                                for i, e in enumerate(entries))
        splits[str(split)] = SplitSpec(**specs)
    return DatasetDescriptor(str(data.get("name", path.stem)), path, root, tree, splits)


def load_descriptor_tree(descriptor: DatasetDescriptor) -> WordTree | None:
    """The descriptor's own tree (None when it names none)."""
    from wordtree.io import load_tree
    return load_tree(descriptor.tree)


def model_tree(config_tree: str | None, descriptor: DatasetDescriptor) -> str | None:
    """The tree a model trained on `descriptor` uses: the config's `model.tree` when set, else the descriptor's
    `tree:` (issue 12: the tree comes from the data), else None (a flat model)."""
    return config_tree if config_tree is not None else descriptor.tree


def same_tree(a: WordTree | None, b: WordTree | None) -> bool:
    """Node for node the same tree (wnids and parents in order), whatever files they were read from."""
    if a is None or b is None:
        return a is b
    return a.wnids == b.wnids and bool(torch.equal(a.parent, b.parent))


# What a source counts when a label is not a node of the tree it is built on (coco/voc, imagenet).
LABEL_MISSES = ("box with unknown category", "image with wnid not in the tree")


def tree_mismatch(descriptor: DatasetDescriptor, tree_spec: str | None, detail: str) -> DescriptorError:
    """The one-line error of a model tree that does not fit the dataset, naming both trees."""
    return DescriptorError(f"model.tree {tree_spec} does not fit {descriptor.source}, whose tree is "
                           f"{descriptor.tree}: {detail}; leave model.tree unset to train on the dataset's tree")


def check_tree_fits(descriptor: DatasetDescriptor, tree_spec: str | None, tree: WordTree | None,
                    sources: list[Source] | None = None) -> None:
    """Refuse a model tree other than the descriptor's that cannot label the data (issue 12).

    Before the sources are built (`sources` None): a darknet `.map` class map holds node indices of the dataset's
    own tree, meaningless on another. After (`sources` given): every label the sources skipped because it is not a
    node of `tree` (`LABEL_MISSES`) would be lost to training.

    Raises:
        DescriptorError: one line naming the descriptor, both trees and what does not fit.
    """
    if descriptor.tree is None or tree_spec == descriptor.tree or same_tree(load_descriptor_tree(descriptor), tree):
        return
    if sources is None:
        for name, split in descriptor.splits.items():
            for spec in split.detection + split.classification:
                if spec.class_map is not None and Path(spec.class_map).suffix == ".map":
                    raise tree_mismatch(descriptor, tree_spec, f"splits.{name} labels through "
                                        f"{Path(spec.class_map).name}, a darknet .map of the dataset tree's node "
                                        "indices")
        return
    lost: dict[str, int] = {}
    for source in sources:
        for kind in LABEL_MISSES:
            count = getattr(source, "skipped", {}).get(kind, 0)
            if count:
                lost[kind] = lost.get(kind, 0) + count
    if lost:
        raise tree_mismatch(descriptor, tree_spec, "its labels are not all nodes of the model's tree ("
                            + ", ".join(f"{n} {kind}" for kind, n in lost.items()) + ")")


def build_source(spec: SourceSpec, kind: str, tree: WordTree | None) -> Source:
    """One source from its spec (imports lazily: pycocotools is only needed for COCO)."""
    def need(key: str) -> Path:
        value = getattr(spec, key)
        if value is None:
            raise DescriptorError(f"{spec.format} source needs '{key}'")
        return value
    if spec.format == "coco":
        from yolo9000.data.coco import CocoSource
        return CocoSource(need("annotations"), need("images"), tree, spec.class_map, spec.include_crowd,
                          spec.allow_outside_root)
    if spec.format == "imagenet":
        from yolo9000.data.imagenet import ImageNetSource
        return ImageNetSource(spec.images if spec.list is None else None, spec.list, tree, spec.allow_outside_root)
    if spec.format == "voc":
        from yolo9000.data.voc import VocSource
        if spec.annotations is not None:
            return VocSource(None, spec.image_set, tree, spec.class_map, annotations=spec.annotations,
                             image_dir=need("images"), allow_outside_root=spec.allow_outside_root)
        return VocSource(need("images"), spec.image_set, tree, spec.class_map,
                         allow_outside_root=spec.allow_outside_root)
    if spec.format == "darknet":
        from yolo9000.data.darknet_list import DarknetListSource
        return DarknetListSource(need("list"), kind, tree, spec.class_map, spec.allow_outside_root)
    return PackSource(need("path"), tree, kind)


def _build(descriptor: DatasetDescriptor, split: str, kind: str, tree: WordTree | None) -> Source | None:
    specs = getattr(descriptor.split(split), kind)
    sources = [build_source(spec, kind, tree) for spec in specs]
    for source in sources:
        report_problems(source)
    for i, (spec, source) in enumerate(zip(specs, sources)):
        if source.kind != kind:
            raise DescriptorError(f"{descriptor.source}: splits.{split}.{kind}: {spec.format} source {source.name} "
                                  f"holds {source.kind} images")
        if not len(source):
            # An empty folder, or every entry left out: training or evaluating on it would be a silent no-op.
            skipped = getattr(source, "skipped", None)
            why = f" (left out: {', '.join(f'{k} {n}' for k, n in sorted(skipped.items()))})" if skipped else ""
            raise EmptySourceError(f"{descriptor.source}: splits.{split}.{kind}[{i}]: {spec.format} source "
                                  f"{source.name} holds no images{why}")
    if not sources:
        return None
    return sources[0] if len(sources) == 1 else ConcatSource(sources)


def build_detection(descriptor: DatasetDescriptor, split: str, tree: WordTree | None) -> Source | None:
    """The split's detection images (boxes), or None when it has none."""
    return _build(descriptor, split, "detection", tree)


def build_classification(descriptor: DatasetDescriptor, split: str, tree: WordTree | None) -> Source | None:
    """The split's classification images (one label, no box), or None when it has none."""
    return _build(descriptor, split, "classification", tree)


def box_sizes(descriptor: DatasetDescriptor, split: str = "train", tree: WordTree | None = None) -> Tensor:
    """Every detection box's (w, h) normalised to its image size, for dimension clusters (paper section 2).

    Returns:
        Float[T, 2] in 0..1 (T boxes over the split's detection sources).
    """
    if tree is None and descriptor.tree is not None:
        tree = load_descriptor_tree(descriptor)
    source = build_detection(descriptor, split, tree)
    if source is None:
        return torch.zeros((0, 2))
    sizes, skipped = [], []
    for record in source.records:
        if record.boxes is None or not len(record.boxes):
            continue
        try:
            height, width = record.orig_size or image_size(record.file)
        except ImageLoadError as err:
            skipped.append(str(err))   # no size, no normalised box: left out, and said below
            continue
        wh = record.boxes[:, 2:] - record.boxes[:, :2]
        sizes.append(wh / torch.tensor([width, height], dtype=torch.float32))
    if skipped:
        print(f"{source.name}: left out the boxes of {len(skipped)} images whose size cannot be read (first: "
              f"{skipped[0]})", file=sys.stderr)
    return torch.cat(sizes) if sizes else torch.zeros((0, 2))


# ----------------------------------------------------------------------------------------------------- packing
def split_header(descriptor: DatasetDescriptor, split: str) -> dict:
    """Root attributes recording where a pack came from: descriptor path and text, split, resolved sources."""
    spec = descriptor.split(split)
    sources = {kind: [{k: (str(v) if isinstance(v, Path) else v) for k, v in dataclasses.asdict(s).items()}
                      for s in getattr(spec, kind)] for kind in KINDS}
    text = Path(descriptor.source).read_text() if Path(descriptor.source).exists() else ""
    return {"split": split, "descriptor_path": str(descriptor.source), "descriptor_yaml": text,
            "sources": json.dumps(sources, sort_keys=True)}


def pack_split(descriptor: DatasetDescriptor, split: str, out: str | Path, tree: WordTree | None,
               **kwargs: Any) -> PackSummary:
    """Pack one split of a dataset descriptor (`yolo9000 data pack`); kwargs as `yolo9000.data.pack.pack_sources`.

    Args:
        descriptor: a `DatasetDescriptor` (overrides already applied).
        split: the split to pack, e.g. "train".
        out: the `.h5` to write.
        tree: the tree labels index (normally the descriptor's), None for flat labels.
    """
    sources = {"detection": build_detection(descriptor, split, tree),
               "classification": build_classification(descriptor, split, tree)}
    sources = {k: v for k, v in sources.items() if v is not None}
    return pack_sources(sources, out, tree, split_header(descriptor, split), **kwargs)
