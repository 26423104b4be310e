"""The shapes demo world: deterministic, real files, its tree built from WordNet by our builder."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from wordtree.wordnet import WordNet
from yolo9000.data.coco import CocoSource
from yolo9000.data.descriptor import build_classification, build_detection, load_descriptor
from yolo9000.data.imagenet import ImageNetSource
from yolo9000.data.shapes import BOXED, COARSE, FINE, ROOT, _sample, build_shapes_tree, coarse_of, write_world
from yolo9000.reference import wordnet_nltk_root


@pytest.fixture(scope="module")
def wordnet() -> WordNet:
    return WordNet.load(wordnet_nltk_root())


@pytest.fixture(scope="module")
def world(tmp_path_factory, wordnet):
    out = tmp_path_factory.mktemp("shapes") / "world"
    return write_world(out, seed=3, num_det=12, num_cls=22, num_eval=6, progress=False, workers=2, wordnet=wordnet)


def test_tree_is_built_from_wordnet_under_plane_figure(wordnet):
    tree = build_shapes_tree(wordnet)
    assert wordnet.name(ROOT) == "plane figure"
    # The coarse classes are the roots: plane_figure itself is the (excluded) build root.
    assert sorted(tree.wnids[r] for r in tree.roots) == sorted(COARSE)
    for wnid in FINE:
        assert tree.is_leaf[tree.index(wnid)], wnid
    # Every parent edge is a WordNet hypernym chain (collapse may skip non-target nodes, never invent edges).
    for node in range(tree.num_nodes):
        parent = int(tree.parent[node])
        if parent >= 0:
            chains = wordnet.hypernym_paths(tree.wnids[node])
            assert any(tree.wnids[parent] in chain for chain in chains), tree.names[node]
    # square has two WordNet hypernyms (rectangle, regular polygon); the paper's rule keeps the path that adds fewer
    # nodes (through rectangle), and the lift rule makes square rectangle's sibling.
    square = tree.index("n13878634")
    assert set(wordnet.hypernyms("n13878634")) == {"n13883346", "n13867133"}
    assert tree.parent[square] == tree.parent[tree.index("n13883346")]
    assert tree.names[int(tree.parent[square])] == "parallelogram"
    # circle is ellipse's hyponym in WordNet; lifted beside it.
    assert tree.parent[tree.index("n13873502")] == tree.parent[tree.index("n13878306")]
    assert coarse_of(tree)["n13882008"] == "n13881644"      # pentacle -> star


def test_world_files_and_labels(world):
    root = world.parent
    stamp = json.loads((root / "world.json").read_text())
    assert stamp["counts"] == {"det": 12, "cls": 22, "eval": 6} and stamp["seed"] == 3
    descriptor = load_descriptor(world)
    from wordtree.io import load_tree
    tree = load_tree(descriptor.tree)
    det = build_detection(descriptor, "train", tree)
    cls = build_classification(descriptor, "train", tree)
    fine = build_detection(descriptor, "eval", tree)
    coarse = build_detection(descriptor, "eval_coarse", tree)
    assert isinstance(det, CocoSource) and isinstance(cls, ImageNetSource)
    assert (len(det), len(cls), len(fine), len(coarse)) == (12, 22, 6, 6)
    coarse_nodes = {tree.index(w) for w in COARSE}
    fine_nodes = {tree.index(w) for w in FINE}
    boxed_nodes = {tree.index(w) for w in BOXED}
    # Detection boxes say only the coarse class, except for the three boxed fine classes (the paper's 44 of 200).
    det_labels = {int(x) for r in det.records for x in r.labels}
    assert det_labels <= coarse_nodes | boxed_nodes and det_labels & boxed_nodes
    assert len(BOXED) == 3 and {coarse_of(tree)[w] for w in BOXED} == set(COARSE)   # one per coarse class
    # The supervised reference: the same boxes, each with its fine label.
    supervised = build_detection(load_descriptor(root / "shapes_supervised.yaml"), "train", tree)
    for r, s in zip(det.records, supervised.records):
        torch.testing.assert_close(r.boxes, s.boxes)
        for label, fine_label in zip(r.labels.tolist(), s.labels.tolist()):
            assert fine_label in fine_nodes
            assert label == fine_label if fine_label in boxed_nodes else label in tree.path(fine_label)
    assert {int(x) for r in cls.records for x in r.labels} == fine_nodes        # 22 images cycle all 11 classes
    assert {int(x) for r in fine.records for x in r.labels} <= fine_nodes
    # Same boxes in both eval files; each coarse label is the fine label's ancestor.
    for f, c in zip(fine.records, coarse.records):
        torch.testing.assert_close(f.boxes, c.boxes)
        for lf, lc in zip(f.labels.tolist(), c.labels.tolist()):
            assert lc in tree.path(lf)
    assert all(1 <= len(r.labels) <= 5 for r in det.records)


def test_boxes_are_tight_around_drawn_pixels():
    for index in range(4):
        image, figures = _sample(7, "cls", index)       # one figure: its pixels differ from the background
        x1, y1, x2, y2 = figures[0].box
        assert 128 <= image.width <= 160 and 128 <= image.height <= 160
        assert 0 <= x1 < x2 <= image.width and 0 <= y1 < y2 <= image.height
        assert 16 <= max(x2 - x1, y2 - y1) <= 96


def test_deterministic_and_idempotent(world, tmp_path, wordnet):
    again = write_world(tmp_path / "w", seed=3, num_det=12, num_cls=22, num_eval=6, progress=False, workers=1,
                        wordnet=wordnet)
    for rel in ("det/annotations.json", "eval/annotations.json", "shapes.tree", "det/images/000005.jpg"):
        assert (again.parent / rel).read_bytes() == (world.parent / rel).read_bytes(), rel
    a = np.asarray(Image.open(world.parent / "eval/images/000002.jpg"))
    assert a.shape[2] == 3
    # A second call with the same stamp does nothing (the files are not rewritten).
    mtime = (again.parent / "det/annotations.json").stat().st_mtime_ns
    write_world(tmp_path / "w", seed=3, num_det=12, num_cls=22, num_eval=6, progress=False, wordnet=wordnet)
    assert (again.parent / "det/annotations.json").stat().st_mtime_ns == mtime
    # A different seed gives a different world.
    other = write_world(tmp_path / "o", seed=4, num_det=12, num_cls=0, num_eval=0, progress=False, workers=1,
                        wordnet=wordnet)
    assert (other.parent / "det/annotations.json").read_bytes() != (world.parent / "det/annotations.json").read_bytes()
