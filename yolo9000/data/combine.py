"""`yolo9000 data combine`: darknet's combine9k as one command (YOLO9000 section 4, "Dataset combination with
WordTree").

The paper trains one detector on COCO boxes and ImageNet classification labels by putting both label sets on one
WordTree. Darknet users do this by hand in six steps (collect wnids, build the tree, write the maps, write the data
file, check, train); this module does it in one:

1. every detection category name gets a wnid: COCO's 80 and VOC's 20 from darknet's own maps (`coco.names` line k
   -> node `coco9k.map[k]` of `9k.labels`), any other name by WordNet lookup (noun senses, the first by default);
   names with several senses or none are listed and written to an editable YAML that the next run reads;
2. classification wnids come from wnid folders or `path wnid` lists, optionally the top K folders by image count;
3. the tree is built from WordNet for the union of the targets (`wordtree.build.build_tree`);
4. written to one folder: `tree.tree/.names/.labels`, one class map per detection source, and `dataset.yaml`, a
   descriptor `data check` and `train` accept as they are.
"""
from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import yaml

from wordtree.build import DARKNET_9K_OVERRIDES, PHYSICAL_ENTITY, Overrides, build_tree
from wordtree.io import read_map, write_darknet, write_map
from wordtree.tree import WordTree
from wordtree.wordnet import WordNet, WordNetError
from yolo9000.data.imagenet import read_list, scan_folders
from yolo9000.errors import DatasetError
from yolo9000.data.voc import parse_voc_xml
from yolo9000.reference import darknet_file

_WNID = re.compile(r"^n\d{8}$")
TREE_PREFIX = "tree"                 # tree.tree, tree.names, tree.labels
CLASS_MAP = "class_map.yaml"         # detection category name -> wnid, for every detection source
NAMES_FILE = "names.yaml"            # the editable name -> wnid choices, read first by the next run
CLASSIFICATION_LIST = "classification.list"
DESCRIPTOR = "dataset.yaml"
SUMMARY = "combine.json"

# VOC's 20 names are darknet's own spellings in coco.names (aeroplane, motorbike, sofa, pottedplant, diningtable,
# tvmonitor); the COCO json files spell six of them differently. Both spellings are built in.
VOC_NAMES = ("aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow", "diningtable",
             "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor")
COCO_JSON_SPELLINGS = {"airplane": "aeroplane", "motorcycle": "motorbike", "couch": "sofa",
                       "potted plant": "pottedplant", "dining table": "diningtable", "tv": "tvmonitor"}


class CombineError(DatasetError):
    """A user input of `data combine` cannot be used; the message names it."""


def builtin_category_wnids(wordnet: WordNet | None = None, home: Path | None = None) -> dict[str, str]:
    """COCO's 80 and VOC's 20 category names -> wnid, as darknet labels them on its 9k tree.

    Read from the reference data (`yolo9000 setup`): name k of darknet's `coco.names` is node `coco9k.map[k]` of
    `9k.labels`. Both darknet's spellings (VOC's) and the COCO json's are keys. Some of darknet's choices are broad
    (fire hydrant -> plumbing fixture, stop sign -> street sign); they are kept so a combined tree labels COCO as
    darknet does.

    Args:
        wordnet: when given, every wnid is checked to be a WordNet 3.0 noun.
    Raises:
        CombineError: darknet's files disagree with each other or with WordNet.
    """
    names = [n.strip() for n in darknet_file("coco.names", home).read_text().splitlines() if n.strip()]
    labels = darknet_file("9k.labels", home).read_text().split()
    indices = read_map(darknet_file("coco9k.map", home))
    if len(names) != 80 or len(indices) != 80:
        raise CombineError(f"darknet's coco.names / coco9k.map hold {len(names)} / {len(indices)} entries, not 80")
    out = {name: labels[i] for name, i in zip(names, indices)}
    for coco, darknet in COCO_JSON_SPELLINGS.items():
        out[coco] = out[darknet]
    missing = [n for n in VOC_NAMES if n not in out]
    if missing:
        raise CombineError(f"darknet's coco.names lacks VOC names {missing}")
    if wordnet is not None:
        bad = sorted(f"{n} -> {w}" for n, w in out.items() if w not in wordnet)
        if bad:
            raise CombineError(f"darknet's COCO map names wnids that are not WordNet 3.0 nouns: {', '.join(bad)}")
    return out


# ---------------------------------------------------------------------------------------------------- inputs


@dataclass(frozen=True)
class DetectionInput:
    """One detection source: COCO json + image folder, or a VOC root (Annotations/, JPEGImages/).

    Attributes:
        split: "train" or "eval" (eval sources go to the descriptor's eval split, for `yolo9000 eval`).
    """

    format: str                       # "coco" or "voc"
    images: Path                      # coco image folder, or the VOC root
    annotations: Path | None = None   # coco json
    image_set: str | None = None      # voc ImageSets/Main/<name>.txt
    split: str = "train"

    def describe(self) -> str:
        return str(self.annotations if self.format == "coco" else self.images)


@dataclass(frozen=True)
class DetectionScan:
    """What a detection source holds, read from its annotations (no pixels)."""

    names: tuple[str, ...]            # category names (COCO: in id order = darknet .map order)
    boxes: Counter                    # name -> boxes
    images: int


def scan_detection(source: DetectionInput) -> DetectionScan:
    """Category names, box counts and image count of a detection source.

    Raises:
        CombineError: for a missing or malformed annotation file.
    """
    if source.format == "coco":
        if source.annotations is None or not source.annotations.is_file():
            raise CombineError(f"--coco {source.annotations}: no such COCO annotation file")
        try:
            data = json.loads(source.annotations.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise CombineError(f"--coco {source.annotations}: not a JSON file ({err})") from None
        if not isinstance(data, dict) or not isinstance(data.get("categories"), list):
            raise CombineError(f"--coco {source.annotations}: no 'categories' list (not COCO detection format)")
        if not source.images.is_dir():
            raise CombineError(f"--coco {source.annotations} {source.images}: image folder does not exist")
        categories = sorted(data["categories"], key=lambda c: c["id"])
        by_id = {c["id"]: str(c["name"]) for c in categories}
        boxes = Counter(by_id.get(a.get("category_id"), "?") for a in data.get("annotations", []))
        return DetectionScan(tuple(by_id.values()), boxes, len(data.get("images", [])))
    annotations = source.images / "Annotations"
    if not annotations.is_dir():
        raise CombineError(f"--voc {source.images}: no Annotations/ folder (expected a VOC root such as "
                           "VOCdevkit/VOC2007)")
    if source.image_set:
        listing = source.images / "ImageSets" / "Main" / f"{source.image_set}.txt"
        if not listing.is_file():
            raise CombineError(f"--voc {source.images}: image set {listing} does not exist")
        xmls = [annotations / f"{line.split()[0]}.xml" for line in listing.read_text().splitlines() if line.strip()]
    else:
        xmls = sorted(annotations.glob("*.xml"))
    boxes: Counter = Counter()
    for xml in xmls:
        if xml.exists():
            boxes.update(name for name, _, _ in parse_voc_xml(xml)[2])
    return DetectionScan(tuple(sorted(boxes)), boxes, len(xmls))


def scan_classification(folders: list[Path], lists: list[Path]) -> list[tuple[str, str]]:
    """(image path, wnid) from wnid folders and `path wnid` lists, in input order.

    Raises:
        CombineError: for a missing folder or list, or a folder with no wnid sub-folders.
    """
    items: list[tuple[str, str]] = []
    for folder in folders:
        if not folder.is_dir():
            raise CombineError(f"--imagenet {folder}: not a folder (expected one sub-folder per wnid)")
        found = scan_folders(folder)
        if not any(_WNID.match(w) for _, w in found):
            raise CombineError(f"--imagenet {folder}: no images in wnid sub-folders (like n02084071/)")
        items += found
    for path in lists:
        if not path.is_file():
            raise CombineError(f"--imagenet-list {path}: no such file (expected lines '<image path> <wnid>')")
        items += read_list(path)
    bad = next((w for _, w in items if not _WNID.match(w)), None)
    if bad is not None:
        raise CombineError(f"classification label {bad!r} is not a wnid like n02084071 (ImageNet-style folders and "
                           "lists are labelled by wnid)")
    return items


def top_wnids(counts: Counter, k: int) -> set[str]:
    """The paper's selection: the `k` wnids with most images; ties by wnid, so the choice is deterministic."""
    return {w for w, _ in sorted(counts.items(), key=lambda wc: (-wc[1], wc[0]))[:k]}


# ---------------------------------------------------------------------------------------------------- names


@dataclass(frozen=True)
class NameChoice:
    """How one detection category name got its wnid.

    Attributes:
        how: "names file", "built in", "wnid" (the name is one), "WordNet" (one noun sense),
            "WordNet, ambiguous" (the first of several senses) or "unknown" (no noun sense; wnid None).
        senses: every noun sense WordNet has for the name (for ambiguous names, the alternatives).
    """

    name: str
    wnid: str | None
    how: str
    senses: tuple[str, ...] = ()


def read_names_file(path: Path, wordnet: WordNet) -> dict[str, str | None]:
    """The user's name -> wnid choices: values are wnids, synset names (`crane.n.04`) or null (still unknown).

    Raises:
        CombineError: naming the file and entry.
    """
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise CombineError(f"{path}: not valid YAML ({getattr(err, 'problem', None) or err})") from None
    if not isinstance(data, dict):
        raise CombineError(f"{path}: expected a mapping 'category name: wnid'")
    out: dict[str, str | None] = {}
    for name, value in data.items():
        if value is None:
            out[str(name)] = None
            continue
        value = str(value).strip()
        if _WNID.match(value):
            if value not in wordnet:
                raise CombineError(f"{path}: {name!r}: {value} is not a WordNet 3.0 noun synset")
            out[str(name)] = value
            continue
        try:
            out[str(name)] = wordnet.wnid_for(value)
        except WordNetError as err:
            raise CombineError(f"{path}: {name!r}: {value!r} is neither a wnid like n02084071 nor a synset name "
                               f"like dog.n.01 ({err})") from None
    return out


def resolve_names(names: list[str], wordnet: WordNet, user: dict[str, str | None],
                  builtin: dict[str, str]) -> list[NameChoice]:
    """A wnid for each name: the names file first, then the built-in COCO/VOC map, then WordNet's noun senses."""
    out = []
    for name in names:
        senses = wordnet.noun_senses(name)
        if name in user:
            out.append(NameChoice(name, user[name], "names file" if user[name] else "unknown", senses))
        elif name in builtin:
            out.append(NameChoice(name, builtin[name], "built in", senses))
        elif _WNID.match(name) and name in wordnet:
            out.append(NameChoice(name, name, "wnid"))
        elif not senses:
            out.append(NameChoice(name, None, "unknown"))
        else:
            out.append(NameChoice(name, senses[0], "WordNet" if len(senses) == 1 else "WordNet, ambiguous", senses))
    return out


def sense(wnid: str, wordnet: WordNet) -> str:
    """A sense as a reader tells it apart: its synset name and what it is a kind of ('crane.n.05, a wading bird')."""
    ups = wordnet.hypernyms(wnid)
    return f"{wordnet.synset_name(wnid)}" + (f" (a {wordnet.name(ups[0])})" if ups else "")


def write_names_file(path: Path, choices: list[NameChoice], wordnet: WordNet,
                     kept: dict[str, str | None] | None = None) -> None:
    """The editable YAML: every name not built in, with what was chosen and why; the next run reads it first.
    `kept`: the file's entries for names this data does not have, carried over so no choice is lost."""
    def label(w: str) -> str:
        return f"{w} {sense(w, wordnet)}"
    lines = ["# yolo9000 data combine: detection category name -> WordNet 3.0 noun (a wnid, or a synset name such as",
             "# crane.n.04). Edit a line and run the same command again: this file is read first. `null` means no",
             "# WordNet noun was found; give one, or the category's boxes cannot be labelled. A name added here",
             "# overrides the built-in COCO/VOC map too.", ""]
    for c in choices:
        if c.how in ("built in", "wnid"):
            continue
        key = json.dumps(c.name)
        if c.wnid is None:
            lines.append(f"{key}: null  # unknown: WordNet has no noun {c.name!r}")
            continue
        others = [s for s in c.senses if s != c.wnid]
        note = {"WordNet": "WordNet's only noun sense", "names file": "your choice"}.get(
            c.how, f"first of {len(c.senses)} WordNet noun senses")
        lines.append(f"{key}: {c.wnid}  # {note}: {sense(c.wnid, wordnet)}"
                     + (f"; others: {', '.join(label(s) for s in others)}" if others else ""))
    if kept:
        lines += ["", "# not in the data of the last run; kept for the next one"]
        lines += [f"{json.dumps(n)}: {w or 'null'}" for n, w in kept.items()]
    path.write_text("\n".join(lines) + "\n")


# ---------------------------------------------------------------------------------------------------- combine


@dataclass
class CombineResult:
    """What `combine` wrote and found.

    Attributes:
        problems: what keeps the set from being complete (unknown names, detection classes outside the tree);
            the command exits 1 when there are any, after writing everything.
        notes: what was decided for the user (ambiguous names, dropped classification wnids).
    """

    out: Path
    descriptor: Path
    tree: WordTree
    choices: list[NameChoice]
    unreachable: tuple[str, ...]
    detection_nodes: set[str]
    classification_nodes: set[str]
    images: dict[str, int]
    boxes: int
    build_seconds: float
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def summary(self) -> dict:
        return {"descriptor": str(self.descriptor), "tree": f"{self.out / TREE_PREFIX}.tree",
                "nodes": self.tree.num_nodes, "leaves": self.tree.num_leaves, "max_depth": self.tree.max_depth,
                "classes_with_boxes": len(self.detection_nodes),
                "classes_with_only_classification_labels": len(self.classification_nodes - self.detection_nodes),
                "images": self.images, "boxes": self.boxes, "unreachable": list(self.unreachable),
                "build_seconds": round(self.build_seconds, 3),
                "names": {c.name: {"wnid": c.wnid, "how": c.how} for c in self.choices},
                "problems": self.problems}

    def format(self) -> list[str]:
        s = self.summary()
        lines = [f"tree: {s['nodes']} nodes, {s['leaves']} leaves, max depth {s['max_depth']} (built from WordNet in "
                 f"{s['build_seconds']:.2f} s) -> {s['tree']}",
                 f"classes with boxes: {s['classes_with_boxes']}; classes with only classification labels: "
                 f"{s['classes_with_only_classification_labels']}",
                 "images: " + ", ".join(f"{n} {k}" for k, n in self.images.items()) + f"; {self.boxes} boxes"]
        how = Counter(c.how for c in self.choices)
        lines.append("category names: " + ", ".join(f"{n} {k}" for k, n in sorted(how.items())))
        lines += [f"note: {n}" for n in self.notes]
        lines += [f"problem: {p}" for p in self.problems]
        lines.append(f"wrote {self.descriptor} (use it as is: yolo9000 data check {self.descriptor})")
        return lines


def combine(out: str | Path, detection: list[DetectionInput], folders: list[Path], lists: list[Path],
            wordnet: WordNet, top: int | None = None, names_file: Path | None = None,
            overrides: Overrides | None = DARKNET_9K_OVERRIDES, root: str = PHYSICAL_ENTITY, name: str | None = None,
            command: str | None = None, log: Callable[[str], None] = lambda _: None) -> CombineResult:
    """Build the joint set: tree for the union of targets, class maps and a descriptor, all under `out`.

    Args:
        out: output folder (created).
        detection: detection sources (train and eval).
        folders, lists: classification inputs (wnid folders, `path wnid` lists); train split.
        top: keep only the `top` classification wnids by image count (detection classes are always kept).
        names_file: the editable name choices; default `out/names.yaml`, read when it exists, always rewritten.
        overrides: grafts/exclusions for the build (default darknet's 4 grafts, which COCO's traffic light and
            stop sign need to reach physical_entity).
        root: the synset the tree hangs under (not a node).
        command: the command line, recorded in the descriptor's header.
    Raises:
        CombineError: unusable inputs (nothing given, missing files, a malformed names file).
    """
    out = Path(out)
    if not detection and not folders and not lists:
        raise CombineError("nothing to combine: give detection data (--coco, --voc) and/or classification data "
                           "(--imagenet, --imagenet-list)")
    if top is not None and top <= 0:
        raise CombineError(f"--top {top}: must be at least 1")
    out.mkdir(parents=True, exist_ok=True)
    names_file = Path(names_file) if names_file is not None else out / NAMES_FILE
    user = read_names_file(names_file, wordnet) if names_file.exists() else {}
    builtin = builtin_category_wnids(wordnet)

    scans = [scan_detection(d) for d in detection]
    all_names = list(dict.fromkeys(n for scan in scans for n in scan.names))
    choices = resolve_names(all_names, wordnet, user, builtin)
    wnid_of_name = {c.name: c.wnid for c in choices if c.wnid is not None}

    items = scan_classification(folders, lists)
    counts = Counter(w for _, w in items)
    wanted_cls = set(counts) if top is None else top_wnids(counts, top)

    targets = sorted(set(wnid_of_name.values()) | wanted_cls)
    result = build_tree(targets, wordnet, overrides, root=root)
    tree = result.tree
    log(f"built the tree for {len(targets)} targets: {tree.num_nodes} nodes")
    write_darknet(tree, out / TREE_PREFIX)

    problems, notes = [], []
    unknown = [c.name for c in choices if c.wnid is None]
    if unknown:
        problems.append(f"{len(unknown)} category names have no wnid ({', '.join(unknown[:10])}"
                        f"{' ...' if len(unknown) > 10 else ''}): give each one in {names_file} and run again")
    ambiguous = [c for c in choices if c.how == "WordNet, ambiguous"]
    if ambiguous:
        notes.append(f"{len(ambiguous)} names have several WordNet noun senses; the first was taken ("
                     + ", ".join(f"{c.name} -> {sense(c.wnid, wordnet)}" for c in ambiguous[:8])
                     + f"{' ...' if len(ambiguous) > 8 else ''}); change them in {names_file}")
    outside = sorted({n for n, w in wnid_of_name.items() if w not in tree})
    if outside:
        problems.append(f"{len(outside)} detection categories map to wnids with no hypernym path to "
                        f"{wordnet.synset_name(root)} ({', '.join(f'{n} -> {wnid_of_name[n]}' for n in outside[:8])}"
                        "): graft them in an --overrides file, pick another --root, or map them elsewhere in "
                        f"{names_file}")
    kept_cls = {w for w in wanted_cls if w in tree}
    if wanted_cls - kept_cls:
        dropped = sorted(wanted_cls - kept_cls)
        notes.append(f"{len(dropped)} classification wnids have no hypernym path to {wordnet.synset_name(root)} and "
                     f"are left out with their images ({', '.join(dropped[:8])}{' ...' if len(dropped) > 8 else ''});"
                     " graft them in an --overrides file or pick another --root to keep them")
    if top is not None:
        notes.append(f"--top {top}: {len(wanted_cls)} of {len(counts)} classification wnids kept by image count")

    write_names_file(names_file, choices, wordnet, {n: w for n, w in user.items() if n not in set(all_names)})
    class_map = {n: w for n, w in wnid_of_name.items() if w in tree}
    (out / CLASS_MAP).write_text("# detection category name -> wnid (node of tree.tree); written by yolo9000 data "
                                 "combine\n" + yaml.safe_dump(class_map, sort_keys=False, allow_unicode=True))

    sources: dict[str, dict[str, list]] = {}
    det_images: Counter = Counter()
    for k, (d, scan) in enumerate(zip(detection, scans)):
        entry: dict = {"format": d.format}
        if d.format == "coco":
            entry["annotations"] = str(d.annotations.resolve())
        entry.update(images=str(d.images.resolve()), class_map=CLASS_MAP)
        if d.format == "coco":
            if all(class_map.get(n) for n in scan.names):
                write_map([tree.index(class_map[n]) for n in scan.names], out / f"coco{k}.map")  # darknet's form
        elif d.image_set:
            entry["image_set"] = d.image_set
        sources.setdefault(d.split, {}).setdefault("detection", []).append(entry)
        det_images[d.split] += scan.images
    kept_items = [(p, w) for p, w in items if w in kept_cls]
    if kept_items:
        cls_entries: list[dict] = []
        if len(kept_items) == len(items) and not lists:
            cls_entries = [{"format": "imagenet", "images": str(f.resolve())} for f in folders]
        elif len(kept_items) == len(items):
            cls_entries = ([{"format": "imagenet", "images": str(f.resolve())} for f in folders]
                           + [{"format": "imagenet", "list": str(p.resolve())} for p in lists])
        else:  # a subset of the classes: list exactly the images kept
            (out / CLASSIFICATION_LIST).write_text("".join(f"{Path(p).resolve()} {w}\n" for p, w in kept_items))
            cls_entries = [{"format": "imagenet", "list": CLASSIFICATION_LIST}]
        sources.setdefault("train", {})["classification"] = cls_entries
    splits = {split: {kind: entries[0] if len(entries) == 1 else entries for kind, entries in parts.items()}
              for split, parts in sorted(sources.items(), key=lambda kv: kv[0] != "train")}
    descriptor = out / DESCRIPTOR
    header = ["# Written by `yolo9000 data combine`" + (f": {command}" if command else ""),
              f"# tree.tree: WordTree built from WordNet 3.0 for the {len(targets)} targets (detection categories via "
              f"{CLASS_MAP}, classification wnids); names chosen in {NAMES_FILE}."]
    descriptor.write_text("\n".join(header) + "\n" + yaml.safe_dump(
        {"name": name or out.resolve().name, "tree": f"{TREE_PREFIX}.tree", "splits": splits}, sort_keys=False,
        width=120))

    images = {f"detection ({split})" if split != "train" else "detection": n for split, n in det_images.items()}
    images["classification"] = len(kept_items)
    res = CombineResult(out, descriptor, tree, choices, result.unreachable,
                        {class_map[n] for d, scan in zip(detection, scans) if d.split == "train"
                         for n in scan.names if n in class_map and scan.boxes[n]}, kept_cls, images,
                        sum(sum(scan.boxes.values()) for d, scan in zip(detection, scans) if d.split == "train"),
                        result.stats["seconds"], problems, notes)
    (out / SUMMARY).write_text(json.dumps(res.summary(), indent=1))
    return res
