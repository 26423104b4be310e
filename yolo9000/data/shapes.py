"""The embedded demo world `shapes`: plane figures drawn procedurally, labelled with WordNet nouns.

It is a miniature of YOLO9000's setting (paper section 4) that trains on a laptop CPU with no download:

* `det`: detection images whose boxes carry **coarse** labels (polygon, conic section, star), like COCO's coarse
  categories, except the figures of three fine classes (`BOXED`: triangle, circle, pentacle, one per coarse class),
  whose boxes carry their fine label: as 44 of ImageNet's 200 detection classes had COCO boxes (paper section 4);
* `cls`: single-figure classification images labelled with the **fine** leaves (triangle, square, hexagon,
  pentacle, ...), like ImageNet;
* `eval`: detection images whose boxes carry the fine labels (`annotations.json`) and, for the same boxes, their
  coarse ancestors (`annotations_coarse.json`); never used for training.

A detector trained jointly on `det` + `cls` must box the eight fine classes it never saw a box of: the YOLO9000
claim, measured as the paper measures it (mAP of the classes without boxes over mAP of all fine classes).
`shapes_supervised.yaml` is the same world with every fine box given: the fully supervised reference.

The class hierarchy is **built by our WordTree builder from WordNet 3.0** (`wordtree.build.build_tree`) rooted at
`plane_figure.n.01` (these synsets sit under *abstraction*, not *physical_entity* like the 9k tree). Square has two
hypernym paths (rectangle and regular polygon); the paper's rule keeps the one that adds fewest nodes.

Everything is a function of the seed: image k of split s is drawn from `numpy.random.default_rng((seed, s, k))`,
so the world is identical however it is generated (one process or several) and any image can be regenerated alone.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image, ImageDraw

from wordtree.build import build_tree
from wordtree.io import write_darknet
from wordtree.tree import WordTree
from wordtree.wordnet import WordNet
from yolo9000.errors import ConfigError

WORLD_VERSION = 3
ROOT = "n13863186"  # plane_figure.n.01: not itself a node; its children in the tree are the roots

# Fine classes (the leaves a classification image is labelled with): wnid, WordNet sense, and how to draw it.
# Coarse classes (detection labels): the fine class's ancestor among COARSE.
COARSE = {
    "n13866144": "polygon",        # polygon.n.01
    "n13872975": "conic section",  # conic_section.n.01
    "n13881644": "star",           # star.n.05 (the plane figure; star.n.01 is the celestial body)
}
FINE = {
    "n13879320": "triangle",       # triangle.n.01
    "n13878634": "square",         # square.n.01: hypernyms rectangle AND regular polygon
    "n13883346": "rectangle",      # rectangle.n.01
    "n13882961": "rhombus",        # rhombus.n.01
    "n13881512": "trapezoid",      # trapezoid.n.01
    "n13882201": "pentagon",       # pentagon.n.03 (pentagon.n.01 is the building)
    "n13882276": "hexagon",        # hexagon.n.01
    "n13873502": "circle",         # circle.n.01
    "n13878306": "ellipse",        # ellipse.n.01
    "n13882008": "pentacle",       # pentacle.n.01: the five-pointed star
    "n13880811": "hexagram",       # hexagram.n.01: the six-pointed star
}
# Fine classes whose detection boxes carry the fine label (the paper's 44 of 200 ImageNet detection classes that
# COCO boxes): one per coarse class, its simplest member; the other eight have classification labels only.
BOXED = {"n13879320": "triangle", "n13873502": "circle", "n13882008": "pentacle"}

DEFAULT_COUNTS = {"det": 2000, "cls": 3000, "eval": 300}
IMAGE_SIDES = (128, 160)           # each image's width and height are drawn from this range
FIGURE_SIDES = (26, 80)            # a figure's outer diameter in pixels
MAX_OVERLAP_IOU = 0.25             # figures of one image may overlap, but never hide each other


# ----------------------------------------------------------------------------------------------- figure outlines
Outline = Callable[[np.random.Generator], np.ndarray]


def _regular(n: int, star_inner: float | None = None) -> Outline:
    """A regular n-gon (or n-pointed star with inner radius `star_inner`), unit circumradius."""
    def outline(rng: np.random.Generator) -> np.ndarray:
        if star_inner is None:
            angles = np.arange(n) * 2 * math.pi / n
            return np.stack([np.cos(angles), np.sin(angles)], 1)
        angles = np.arange(2 * n) * math.pi / n
        radius = np.where(np.arange(2 * n) % 2 == 0, 1.0, star_inner)
        return np.stack([radius * np.cos(angles), radius * np.sin(angles)], 1)
    return outline


def _triangle(rng: np.random.Generator) -> np.ndarray:
    """A random triangle with every angle >= 25 degrees (never a sliver), apexes on the unit circle."""
    while True:
        angles = np.sort(rng.uniform(0, 2 * math.pi, 3))
        arcs = np.diff(np.append(angles, angles[0] + 2 * math.pi))
        # The inscribed angle opposite an arc is half the arc.
        if arcs.min() / 2 >= math.radians(25):
            return np.stack([np.cos(angles), np.sin(angles)], 1)


def _rectangle(rng: np.random.Generator) -> np.ndarray:
    aspect = rng.uniform(1.7, 2.6)
    w, h = 1.0, 1.0 / aspect
    return np.array([[-w, -h], [w, -h], [w, h], [-w, h]]) / math.hypot(w, h)


def _square(rng: np.random.Generator) -> np.ndarray:
    return np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]]) / math.sqrt(2)


def _rhombus(rng: np.random.Generator) -> np.ndarray:
    ratio = rng.uniform(1.6, 2.4)   # diagonals clearly unequal: a square is not a rhombus here
    return np.array([[1, 0], [0, 1 / ratio], [-1, 0], [0, -1 / ratio]])


def _trapezoid(rng: np.random.Generator) -> np.ndarray:
    top = rng.uniform(0.35, 0.65)
    height = rng.uniform(0.55, 0.85)
    return np.array([[-1, height / 2], [1, height / 2], [top, -height / 2], [-top, -height / 2]])


def _ellipse_outline(aspect: float, points: int = 48) -> np.ndarray:
    t = np.arange(points) * 2 * math.pi / points
    return np.stack([np.cos(t), np.sin(t) / aspect], 1)


def _circle(rng: np.random.Generator) -> np.ndarray:
    return _ellipse_outline(1.0)


def _ellipse(rng: np.random.Generator) -> np.ndarray:
    return _ellipse_outline(rng.uniform(1.7, 2.6))


OUTLINES: dict[str, Outline] = {
    "n13879320": _triangle, "n13878634": _square, "n13883346": _rectangle, "n13882961": _rhombus,
    "n13881512": _trapezoid, "n13882201": _regular(5), "n13882276": _regular(6), "n13873502": _circle,
    "n13878306": _ellipse, "n13882008": _regular(5, star_inner=0.4), "n13880811": _regular(6, star_inner=0.55),
}


# ----------------------------------------------------------------------------------------------- the tree
def build_shapes_tree(wordnet: WordNet) -> WordTree:
    """The world's WordTree, built from WordNet by the paper's rule (+ collapse and lift) under plane_figure.

    Raises:
        ValueError: if a class has no hypernym path to plane_figure (WordNet is not 3.0).
    """
    result = build_tree(list(COARSE) + list(FINE), wordnet, root=ROOT)
    if result.unreachable:
        raise ValueError(f"shapes: classes {list(result.unreachable)} have no WordNet path to plane_figure "
                         "(is this WordNet 3.0?)")
    tree = result.tree
    for wnid in FINE:
        coarse = [a for a in tree.path(tree.index(wnid)) if tree.wnids[a] in COARSE]
        if len(coarse) != 1:
            raise ValueError(f"shapes: {FINE[wnid]} ({wnid}) must lie under exactly one coarse class")
    return tree


def coarse_of(tree: WordTree) -> dict[str, str]:
    """fine wnid -> its coarse ancestor's wnid."""
    return {w: next(tree.wnids[a] for a in tree.path(tree.index(w)) if tree.wnids[a] in COARSE) for w in FINE}


# ----------------------------------------------------------------------------------------------- drawing
@dataclass(frozen=True)
class Figure:
    wnid: str
    box: tuple[float, float, float, float]   # xyxy pixels, tight around the drawn outline


def _background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Textured, noisy background: a smooth colour field, optional stripes or checks, and pixel noise."""
    coarse = rng.uniform(0, 255, (rng.integers(2, 6), rng.integers(2, 6), 3)).astype(np.float32)
    field = np.asarray(Image.fromarray(coarse.astype(np.uint8)).resize((width, height), Image.BICUBIC),
                       dtype=np.float32)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    kind = rng.integers(3)
    if kind == 1:        # stripes at a random angle and period
        angle, period = rng.uniform(0, math.pi), rng.uniform(6, 24)
        wave = np.sin((xs * math.cos(angle) + ys * math.sin(angle)) * 2 * math.pi / period)
        field += (rng.uniform(15, 45) * wave)[..., None]
    elif kind == 2:      # checks
        cell = rng.integers(8, 24)
        checks = ((xs // cell + ys // cell) % 2) * 2 - 1
        field += (rng.uniform(10, 35) * checks)[..., None]
    field += rng.normal(0, rng.uniform(4, 18), (height, width, 3))
    return np.clip(field, 0, 255)


def _colour(rng: np.random.Generator, background: np.ndarray, box: tuple[int, int, int, int]) -> tuple[int, ...]:
    """A random colour that stands out from the mean background under the figure (contrast, not a fixed palette)."""
    x1, y1, x2, y2 = box
    under = background[max(y1, 0):max(y2, 1), max(x1, 0):max(x2, 1)].reshape(-1, 3).mean(0)
    for _ in range(20):
        colour = rng.uniform(0, 255, 3)
        if np.abs(colour - under).sum() > 150:
            break
    return tuple(int(c) for c in colour)


def _place(rng: np.random.Generator, wnid: str, height: int, width: int, sides: tuple[int, int]
           ) -> tuple[np.ndarray, tuple[float, float, float, float]]:
    """Random size, rotation and position of one figure, fully inside the image. Returns vertices and box."""
    outline = OUTLINES[wnid](rng)
    angle = rng.uniform(0, 2 * math.pi)
    rotation = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    radius = rng.uniform(*sides) / 2
    points = outline @ rotation.T * radius
    low, high = points.min(0), points.max(0)
    cx = rng.uniform(-low[0] + 1, width - high[0] - 1)
    cy = rng.uniform(-low[1] + 1, height - high[1] - 1)
    points = points + [cx, cy]
    x1, y1 = points.min(0)
    x2, y2 = points.max(0)
    return points, (float(x1), float(y1), float(x2), float(y2))


def _iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def draw_image(rng: np.random.Generator, wnids: list[str], sides: tuple[int, int] = FIGURE_SIDES
               ) -> tuple[Image.Image, list[Figure]]:
    """One RGB image with the given figures (fewer if they cannot be placed without hiding each other)."""
    width, height = (int(v) for v in rng.integers(IMAGE_SIDES[0], IMAGE_SIDES[1] + 1, 2))
    background = _background(rng, height, width)
    image = Image.fromarray(background.astype(np.uint8))
    draw = ImageDraw.Draw(image)
    figures: list[Figure] = []
    for wnid in wnids:
        for _ in range(30):
            points, box = _place(rng, wnid, height, width, sides)
            if all(_iou(box, f.box) <= MAX_OVERLAP_IOU for f in figures):
                break
        else:
            continue
        ibox = tuple(int(v) for v in box)
        fill = _colour(rng, background, ibox)
        outline = tuple(int(c * 0.6) for c in fill) if rng.random() < 0.5 else None
        draw.polygon([tuple(p) for p in points], fill=fill, outline=outline)
        figures.append(Figure(wnid, box))
    return image, figures


# ----------------------------------------------------------------------------------------------- splits
SPLIT_IDS = {"det": 0, "cls": 1, "eval": 2}


def _sample(seed: int, split: str, index: int) -> tuple[Image.Image, list[Figure]]:
    rng = np.random.default_rng((seed, SPLIT_IDS[split], index))
    fine = list(FINE)
    if split == "cls":
        # One figure, like an ImageNet photo of one object, of the same sizes as detection figures: the best-shape
        # anchors of classification and detection figures then follow the same distribution.
        return draw_image(rng, [fine[index % len(fine)]])
    count = int(rng.integers(1, 6))
    return draw_image(rng, [fine[int(k)] for k in rng.integers(len(fine), size=count)])


def _write_chunk(args: tuple[int, str, int, int, str]) -> list[tuple[int, int, int, list[Figure]]]:
    """Draw and save images [start, stop) of a split; returns (index, height, width, figures) per image."""
    seed, split, start, stop, folder = args
    out = []
    for index in range(start, stop):
        image, figures = _sample(seed, split, index)
        if split == "cls":
            path = Path(folder) / figures[0].wnid / f"{index:06d}.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
        else:
            path = Path(folder) / f"{index:06d}.jpg"
        image.save(path, quality=92)
        out.append((index, image.height, image.width, figures))
    return out


def _coco(records: list[tuple[int, int, int, list[Figure]]], label_of: dict[str, str], tree: WordTree,
          categories: list[str]) -> dict:
    cat_id = {w: k + 1 for k, w in enumerate(categories)}
    images, annotations = [], []
    for index, height, width, figures in records:
        images.append({"id": index + 1, "file_name": f"{index:06d}.jpg", "height": height, "width": width})
        for fig in figures:
            x1, y1, x2, y2 = fig.box
            annotations.append({"id": len(annotations) + 1, "image_id": index + 1,
                                "category_id": cat_id[label_of[fig.wnid]], "bbox": [x1, y1, x2 - x1, y2 - y1],
                                "area": (x2 - x1) * (y2 - y1), "iscrowd": 0})
    # Category names are wnids, so the COCO source maps them to tree nodes without a class map.
    cats = [{"id": cat_id[w], "name": w, "display_name": tree.names[tree.index(w)]} for w in categories]
    return {"images": images, "annotations": annotations, "categories": cats}


DESCRIPTOR = """\
# The shapes demo world (yolo9000/data/shapes.py), written by `yolo9000 data shapes`.
name: shapes
root: .
tree: shapes.tree
splits:
  train:
    detection: {format: coco, annotations: det/annotations.json, images: det/images}    # coarse + 3 boxed fine
    classification: {format: imagenet, images: cls}                                     # fine labels, no boxes
  eval:
    detection: {format: coco, annotations: eval/annotations.json, images: eval/images}  # fine labels
  eval_coarse:
    detection: {format: coco, annotations: eval/annotations_coarse.json, images: eval/images}
"""
# The fully supervised reference: the same detection images with every box's fine label (never used by the demo).
SUPERVISED_DESCRIPTOR = DESCRIPTOR.replace("name: shapes", "name: shapes_supervised").replace(
    "det/annotations.json, images: det/images}    # coarse + 3 boxed fine",
    "det/annotations_fine.json, images: det/images}  # every fine box")


def _stamp(seed: int, counts: dict[str, int], tree: WordTree) -> dict:
    digest = hashlib.sha256("".join(f"{w} {p}\n" for w, p in zip(tree.wnids, tree.parent.tolist())).encode())
    return {"version": WORLD_VERSION, "seed": seed, "counts": counts, "tree_sha256": digest.hexdigest()}


def write_world(out_dir: str | Path, *, seed: int = 0, num_det: int | None = None, num_cls: int | None = None,
                num_eval: int | None = None, progress: bool = True, workers: int | None = None,
                wordnet: WordNet | None = None) -> Path:
    """Write the shapes world (tree, three splits, descriptor) into `out_dir`; returns the descriptor path.

    Idempotent: when `out_dir/world.json` records the same version, seed, counts and tree, nothing is redone.
    The world is written into `<out_dir>.partial` and renamed at the end, so an interrupted run never leaves a
    half-written world that looks complete.

    Args:
        out_dir: destination folder.
        seed: the world's seed.
        num_det, num_cls, num_eval: images per split (defaults: DEFAULT_COUNTS).
        progress: show a progress bar.
        workers: processes drawing images (default: the CPU count, at most 4).
        wordnet: the WordNet noun graph (default: loaded from the reference data dir).
    """
    from tqdm import tqdm

    from yolo9000.reference import wordnet_cache_dir, wordnet_nltk_root

    out_dir = Path(out_dir)
    counts = {"det": DEFAULT_COUNTS["det"] if num_det is None else num_det,
              "cls": DEFAULT_COUNTS["cls"] if num_cls is None else num_cls,
              "eval": DEFAULT_COUNTS["eval"] if num_eval is None else num_eval}
    if any(n < 0 for n in counts.values()):
        raise ConfigError(f"shapes: image counts must be >= 0, got {counts}")
    wordnet = wordnet or WordNet.load(wordnet_nltk_root(), cache_dir=wordnet_cache_dir())
    tree = build_shapes_tree(wordnet)
    stamp = _stamp(seed, counts, tree)
    descriptor = out_dir / "shapes.yaml"
    if (out_dir / "world.json").exists() and json.loads((out_dir / "world.json").read_text()) == stamp:
        return descriptor

    tmp = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    write_darknet(tree, tmp / "shapes")
    folders = {"det": tmp / "det" / "images", "cls": tmp / "cls", "eval": tmp / "eval" / "images"}
    for folder in folders.values():
        folder.mkdir(parents=True)
    workers = workers or min(4, os.cpu_count() or 1)
    chunk = 100
    jobs = [(seed, split, start, min(start + chunk, n), str(folders[split]))
            for split, n in counts.items() for start in range(0, n, chunk)]
    records: dict[str, list] = {split: [] for split in counts}
    bar = tqdm(total=sum(counts.values()), desc="shapes", unit="img", disable=not progress)
    with ProcessPoolExecutor(workers) as pool:
        for (_, split, *_), done in zip(jobs, pool.map(_write_chunk, jobs)):
            records[split] += done
            bar.update(len(done))
    bar.close()

    coarse = coarse_of(tree)
    identity = {w: w for w in FINE}
    det_label = {w: w if w in BOXED else coarse[w] for w in FINE}
    (tmp / "det" / "annotations.json").write_text(
        json.dumps(_coco(records["det"], det_label, tree, list(COARSE) + list(BOXED))))
    # The detection images' boxes with their fine labels: never used by the demo; the fully supervised reference
    # ("what if every fine class had boxes") that shows how much of it the joint training recovers.
    (tmp / "det" / "annotations_fine.json").write_text(json.dumps(_coco(records["det"], identity, tree, list(FINE))))
    (tmp / "eval" / "annotations.json").write_text(json.dumps(_coco(records["eval"], identity, tree, list(FINE))))
    (tmp / "eval" / "annotations_coarse.json").write_text(
        json.dumps(_coco(records["eval"], coarse, tree, list(COARSE))))
    (tmp / "shapes.yaml").write_text(DESCRIPTOR)
    (tmp / "shapes_supervised.yaml").write_text(SUPERVISED_DESCRIPTOR)
    (tmp / "world.json").write_text(json.dumps(stamp, indent=1))
    shutil.rmtree(out_dir, ignore_errors=True)
    tmp.rename(out_dir)
    return descriptor
