"""Tiny real-format datasets for the engine tests: COCO json + images, ImageNet-style wnid folders, a tree file and
a descriptor, all written under a test's tmp_path. Images are small noisy JPEGs with coloured rectangles.

    descriptor = write_dataset(tmp_path)          # -> tmp_path/"tiny.yaml"; tree at tmp_path/"tree.json"
    cfg = tiny_config(tmp_path, ["train.max_steps=3"])
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from wordtree.io import write_json
from wordtree.tree import WordTree
from yolo9000.config import Config, load_config

REPO = Path(__file__).resolve().parents[1]
# The conftest tiny tree: a{a1, a2, a3{a3x, a3y}}, b{b1{b1x{b1x_p, b1x_q}}}.
WNIDS = ["a", "b", "a1", "a2", "a3", "b1", "a3x", "a3y", "b1x", "b1x_p", "b1x_q"]
PARENTS = [-1, -1, 0, 0, 0, 1, 4, 4, 5, 8, 8]
DETECTION_CLASSES = ["a1", "a3", "b1x"]            # boxes carry these (coarse and fine mixed)
CLASSIFICATION_CLASSES = ["a3x", "a3y", "b1x_p", "b1x_q", "a2"]
COLOURS = {w: c for w, c in zip(WNIDS, [(200, 40, 40), (40, 200, 40), (40, 40, 200), (200, 200, 40),
                                         (200, 40, 200), (40, 200, 200), (240, 120, 0), (120, 0, 240),
                                         (0, 240, 120), (250, 250, 250), (90, 90, 90)])}


def tiny_tree() -> WordTree:
    return WordTree.from_parents(WNIDS, PARENTS, names=[w.upper() for w in WNIDS])


def _image(rng: np.random.Generator, size: int, boxes: list[tuple[list[int], str]]) -> Image.Image:
    pixels = rng.integers(60, 120, (size, size, 3), dtype=np.uint8)
    for (x1, y1, x2, y2), wnid in boxes:
        # Unknown classes get a colour of their own, stable across runs (derived from the wnid's characters).
        pixels[y1:y2, x1:x2] = COLOURS.get(wnid) or [sum(map(ord, wnid)) * k % 256 for k in (7, 13, 29)]
    return Image.fromarray(pixels)


def _coco(root: Path, count: int, size: int, rng: np.random.Generator, classes: list[str],
          category_names: list[str] | None = None) -> None:
    """`count` images with 1-2 boxes each; categories named by wnid (ids 1..K)."""
    (root / "images").mkdir(parents=True)
    names = category_names or classes
    images, annotations = [], []
    for i in range(count):
        boxes = []
        for _ in range(1 + i % 2):
            w, h = (int(v) for v in rng.integers(size // 4, size // 2, 2))
            x, y = (int(v) for v in rng.integers(0, size - max(w, h), 2))
            k = int(rng.integers(len(classes)))
            boxes.append(([x, y, x + w, y + h], classes[k]))
            annotations.append({"id": len(annotations) + 1, "image_id": 100 + i, "category_id": k + 1,
                                "bbox": [x, y, w, h], "area": w * h, "iscrowd": 0})
        _image(rng, size, boxes).save(root / "images" / f"{i:03d}.jpg", quality=95)
        images.append({"id": 100 + i, "file_name": f"{i:03d}.jpg", "width": size, "height": size})
    categories = [{"id": k + 1, "name": n} for k, n in enumerate(names)]
    (root / "annotations.json").write_text(json.dumps({"images": images, "annotations": annotations,
                                                       "categories": categories}))


def _folders(root: Path, per_class: int, size: int, rng: np.random.Generator, classes: list[str]) -> None:
    for wnid in classes:
        (root / wnid).mkdir(parents=True)
        for i in range(per_class):
            m = size // 6
            _image(rng, size, [([m, m, size - m, size - m], wnid)]).save(root / wnid / f"{i}.jpg", quality=95)


def write_dataset(root: Path, *, det_images: int = 6, cls_per_class: int = 2, eval_images: int = 4, size: int = 64,
                  seed: int = 0, detection_classes: list[str] | None = None,
                  classification_classes: list[str] | None = None, tree: WordTree | None = None) -> Path:
    """Write train (COCO detection + wnid folders) and eval (both kinds) splits, a tree.json and tiny.yaml.

    Returns:
        The descriptor path (`root/tiny.yaml`).
    """
    rng = np.random.default_rng(seed)
    det = detection_classes or DETECTION_CLASSES
    cls = classification_classes or CLASSIFICATION_CLASSES
    write_json(tree or tiny_tree(), root / "tree.json")
    _coco(root / "det", det_images, size, rng, det)
    _folders(root / "cls", cls_per_class, size, rng, cls)
    _coco(root / "eval", eval_images, size, rng, det)
    _folders(root / "cls_eval", 1, size, rng, cls)
    descriptor = root / "tiny.yaml"
    descriptor.write_text(
        "name: tiny\n"
        "tree: tree.json\n"
        "splits:\n"
        "  train:\n"
        "    detection: {format: coco, annotations: det/annotations.json, images: det/images}\n"
        "    classification: {format: imagenet, images: cls}\n"
        "  eval:\n"
        "    detection: {format: coco, annotations: eval/annotations.json, images: eval/images}\n"
        "    classification: {format: imagenet, images: cls_eval}\n")
    return descriptor


TEST_SETTINGS = [
    "data.multiscale=[64]", "data.eval_size=64", "data.workers=0", "data.det_per_batch=2", "data.cls_per_batch=2",
    "train.burn_in=0", "train.lr=0.001", "train.schedule=constant", "train.log_every=1",
    "train.checkpoint_every=0", "train.progress=false", "train.tensorboard=false", "train.device=cpu",
    "train.amp=off",   # exact comparisons between runs of different shapes; bf16 has its own test
]


def tiny_config(root: Path, overrides: list[str] | None = None,
                base: str | Path = REPO / "yolo9000" / "configs" / "tiny.yaml") -> Config:
    """The tiny model on the dataset under `root`, at 64 px, fast settings; `overrides` come last."""
    return load_config(base, [f"model.tree={root / 'tree.json'}", f"data.dataset={root / 'tiny.yaml'}",
                              *TEST_SETTINGS, *(overrides or [])])


def write_config(root: Path, overrides: list[str] | None = None, name: str = "tiny_run.yaml") -> Path:
    """The same config as a YAML file (for the command line)."""
    from yolo9000.config import save_config
    path = root / name
    save_config(tiny_config(root, overrides), path)
    return path
