"""`--compat darknet`: darknet's letterbox resize, region detections (flat and tree, the three exits of the
hierarchy walk) and `do_nms_sort`'s order and suppression, by hand and against slow transcriptions of its C."""
from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from wordtree.io import write_darknet
from yolo9000 import compat_darknet as dn

F32 = np.float32


# -------------------------------------------------------------------------------------------- preprocessing
def resize_loop(im: np.ndarray, w: int, h: int) -> np.ndarray:
    """darknet's resize_image, transcribed pixel by pixel with float32 scalars."""
    C, H, W = im.shape
    w_scale = F32(W - 1) / F32(w - 1) if w > 1 else F32(np.inf)
    h_scale = F32(H - 1) / F32(h - 1) if h > 1 else F32(0)
    part = np.zeros((C, H, w), F32)
    for k in range(C):
        for r in range(H):
            for c in range(w):
                if c == w - 1 or W == 1:
                    val = im[k, r, W - 1]
                else:
                    sx = F32(c) * w_scale
                    ix = int(sx)
                    dx = sx - F32(ix)
                    val = (F32(1) - dx) * im[k, r, ix] + dx * im[k, r, ix + 1]
                part[k, r, c] = val
    out = np.zeros((C, h, w), F32)
    for k in range(C):
        for r in range(h):
            sy = F32(r) * h_scale
            iy = int(sy)
            dy = sy - F32(iy)
            for c in range(w):
                out[k, r, c] = (F32(1) - dy) * part[k, iy, c]
            if r == h - 1 or H == 1:
                continue
            for c in range(w):
                out[k, r, c] = out[k, r, c] + dy * part[k, iy + 1, c]
    return out


def test_resize_image_by_hand():
    im = np.array([[[0.0, 0.5, 1.0], [1.0, 0.5, 0.0]]], F32)       # 1 channel, 2 rows, 3 columns
    # Columns: step (3-1)/(2-1) = 2 -> source columns 0 and (last) 2. Rows: step (2-1)/(3-1) = .5 -> rows 0,
    # halfway, and the last row (sy = 1 exactly: row 1).
    np.testing.assert_array_equal(dn.resize_image(im, 2, 3), [[[0.0, 1.0], [0.5, 0.5], [1.0, 0.0]]])
    # darknet's quirk: resizing 2 rows to 42 gives a float32 step 1/41 whose 41st multiple is 0.99999994, so
    # the last row is (1 - 0.99999994) * row 0 = ~6e-8, not row 1.
    tall = dn.resize_image(np.array([[[1.0], [1.0]]], F32), 1, 42)
    assert tall[0, 40, 0] == 1.0 and 0 < tall[0, 41, 0] < 1e-7


def test_letterbox_by_hand():
    im = np.array([[[0.0, 0.5, 1.0], [1.0, 0.5, 0.0]]], F32)
    # 3x2 into 4x4: 4/3 < 4/2, so new_w = 4, new_h = 2*4 // 3 = 2, placed at row (4 - 2) // 2 = 1 on 0.5 fill.
    # Columns sample at steps of 2/3: 0, 2/3, 4/3, 2 -> 0, 1/3, 2/3, 1 on row 0 (mirrored on row 1).
    boxed = dn.letterbox_image(im, 4, 4)
    third = F32(2) / F32(3)
    expected = [[0.5] * 4, [0.0, third * F32(0.5), F32(0.5) + (F32(4) / F32(3) - 1) * F32(0.5), 1.0],
                [1.0, F32(1) - third * F32(0.5), F32(0.5) - (F32(4) / F32(3) - 1) * F32(0.5), 0.0], [0.5] * 4]
    np.testing.assert_allclose(boxed[0], expected, rtol=0, atol=1e-7)
    assert dn.letterbox_geometry(768, 576, 416, 416) == (416, 312)    # dog.jpg into yolov2's 416


@pytest.mark.parametrize("src,dst", [((3, 5, 7), (4, 9)), ((1, 9, 4), (13, 3)), ((2, 6, 6), (6, 6)),
                                     ((1, 1, 5), (3, 2)), ((1, 2, 3), (1, 42)), ((1, 4, 1), (5, 1))])
def test_resize_image_matches_darknets_loop(src, dst):
    im = np.random.default_rng(0).random(src, dtype=np.float32)
    np.testing.assert_array_equal(dn.resize_image(im, *dst), resize_loop(im, *dst))


def test_load_image_is_8bit_over_255(tmp_path):
    from PIL import Image
    pixels = np.array([[[0, 128, 255], [1, 2, 3]]], np.uint8)
    Image.fromarray(pixels).save(tmp_path / "x.png")
    im = dn.load_image(tmp_path / "x.png")
    assert im.shape == (3, 1, 2) and im.dtype == np.float32
    assert im[:, 0, 0].tolist() == [0.0, F32(128 / 255), 1.0]


# -------------------------------------------------------------------------------------------- the region
def logit(p: float) -> float:
    return math.log(p / (1 - p))


def one_cell_raw(tx: float, ty: float, tw: float, th: float, obj: float, classes: list[float]) -> torch.Tensor:
    """Raw Float[1, 5+N, 1, 1]: one anchor, one cell."""
    return torch.tensor([tx, ty, tw, th, logit(obj), *classes], dtype=torch.float32).view(1, -1, 1, 1)


def test_flat_region_reports_every_class_over_thresh_with_letterboxed_boxes():
    # Class probabilities .6 / .3 / .1 (logits log p), objectness .9: scores .54 / .27 / .09.
    raw = one_cell_raw(0.0, 0.0, 0.0, 0.0, 0.9, [math.log(0.6), math.log(0.3), math.log(0.1)])
    anchors = torch.tensor([[1.0, 0.5]])
    # A 200x100 image in a 64x64 input: new_w 64, new_h 32, 16 rows of padding above.
    found = dn.detections(raw, anchors, 200, 100, 64, 64, thresh=0.25, nms=0.45)
    assert [(d.label, round(d.prob, 5)) for d in found] == [(0, 0.54), (1, 0.27)]
    x, y, w, h = found[0].box
    # In the 1x1 grid: x = y = sigmoid(0) = .5, w = exp(0) * 1 / 1 = 1, h = .5; y is undone from the letterbox:
    # (.5 - 16/64) / (32/64) = .5, h * 64/32 = 1.
    assert (x, y, w, h) == pytest.approx((0.5, 0.5, 1.0, 1.0))
    assert dn.label_lines(found, ["dog", "cat", "bird"]) == ["dog: 54%", "cat: 27%"]
    # Below the objectness threshold nothing is reported, whatever the class scores.
    assert dn.detections(raw, anchors, 200, 100, 64, 64, thresh=0.95) == []


def tree_raw(tiny_tree, cond: dict[str, float], obj: float = 0.9) -> torch.Tensor:
    """One cell whose tree softmax gives these conditionals (log p per node; unnamed nodes split the rest)."""
    logits = [0.0] * tiny_tree.num_nodes
    for offset, size in zip(tiny_tree.group_offset.tolist(), tiny_tree.group_size.tolist()):
        named = {i: cond[tiny_tree.wnids[i]] for i in range(offset, offset + size) if tiny_tree.wnids[i] in cond}
        rest = (1 - sum(named.values())) / max(size - len(named), 1)
        for i in range(offset, offset + size):
            logits[i] = math.log(named.get(i, rest) if size > 1 else 1.0)
    return one_cell_raw(0, 0, 0, 0, obj, logits)


def decided(tiny_tree, cond: dict[str, float], hier: float) -> str:
    found = dn.detections(tree_raw(tiny_tree, cond), torch.ones(1, 2), 32, 32, 32, 32, thresh=0.5,
                          hier_thresh=hier, tree=tiny_tree)
    assert len(found) == 1 and found[0].prob == pytest.approx(0.9)   # tree models report the objectness
    return tiny_tree.wnids[found[0].label]


def test_hierarchy_walk_exit_at_a_leaf(tiny_tree):
    # Absolute: a .9, a3 .81, a3x .7695. Products: .9 > .5, .9*.81 = .729 > .5, .729*.7695 = .561 > .5, leaf.
    assert decided(tiny_tree, {"a": 0.9, "a3": 0.9, "a3x": 0.95}, 0.5) == "a3x"


def test_hierarchy_walk_exit_in_the_roots_group(tiny_tree):
    # The best root b (.6) is below hier .7: the roots' group returns its best node anyway.
    assert decided(tiny_tree, {"a": 0.4, "b": 0.6}, 0.7) == "b"


def test_hierarchy_walk_exit_in_a_lower_group_returns_its_parent(tiny_tree):
    # Absolute: a .9, a3 .675, a3x .64125. darknet multiplies ABSOLUTE values: .9 * .675 = .6075 > .5 accepts a3,
    # then .6075 * .64125 = .39 < .5 stops in a3's group and returns its parent a3 (the paper's walk, .9 * .75 *
    # .95 = .64 > .5, would reach a3x).
    assert decided(tiny_tree, {"a": 0.9, "a3": 0.75, "a3x": 0.95}, 0.5) == "a3"


def test_tree_region_with_a_map_scores_mapped_classes(tiny_tree):
    raw = tree_raw(tiny_tree, {"a": 0.9, "a3": 0.9, "a3x": 0.95})
    act = dn.region_activations(raw, tiny_tree)
    dets = dn.get_region_detections(act, torch.ones(1, 2), 32, 32, 32, 32, thresh=0.3, tree=tiny_tree,
                                    class_map=[tiny_tree.index("a3"), tiny_tree.index("b")])
    # objectness .9 x P(a3) .81 = .729 > .3; x P(b) .1 = .09 is not.
    np.testing.assert_allclose(dets.probs, [[0.729, 0.0]], rtol=1e-5)


# -------------------------------------------------------------------------------------------- do_nms_sort
def region(boxes, objectness, probs) -> dn.RegionDetections:
    n = len(boxes)
    return dn.RegionDetections(np.zeros(n, np.int64), np.arange(n), np.zeros(n, np.int64),
                               np.array(boxes, F32), np.array(objectness, F32), np.array(probs, F32))


def test_nms_order_and_suppression_by_hand():
    # A and B overlap: IoU = (.18 * .2) / (.04 + .04 - .036) = .818 > .45. C is far from both (IoU 0).
    # D has objectness 0: darknet swaps it with the last candidate, so the order becomes A, C, B.
    dets = region(boxes=[(0.5, 0.5, 0.2, 0.2), (0.1, 0.1, 0.1, 0.1), (0.52, 0.5, 0.2, 0.2), (0.8, 0.8, 0.2, 0.2)],
                  objectness=[0.9, 0.0, 0.9, 0.9],
                  probs=[[0.6, 0.8], [0.0, 0.0], [0.7, 0.0], [0.0, 0.55]])
    out = dn.do_nms_sort(dets, 0.45)
    # Class 0: sorted B (.7), A (.6), C: B suppresses A. Class 1: sorted A (.8), C (.55), B: nothing overlaps.
    assert out.row.tolist() == [0, 3, 2]                              # A, C, B: the order of the last sort
    np.testing.assert_array_equal(out.probs, np.array([[0.0, 0.8], [0.0, 0.55], [0.7, 0.0]], F32))
    # IoU exactly at the threshold is kept (darknet suppresses only IoU > nms).
    iou = float(dn.box_iou(np.array([(0.5, 0.5, 0.2, 0.2)], F32), np.array([(0.52, 0.5, 0.2, 0.2)], F32))[0, 0])
    assert dn.do_nms_sort(dets, iou).probs[:, 0].tolist().count(0.0) == 1   # only C's zero: A survives


def test_nms_ties_keep_the_earlier_candidate():
    # Equal probabilities: the stable sort keeps the current order, so the first candidate suppresses the second.
    dets = region(boxes=[(0.5, 0.5, 0.2, 0.2), (0.5, 0.5, 0.2, 0.2)], objectness=[0.9, 0.9],
                  probs=[[0.5], [0.5]])
    out = dn.do_nms_sort(dets, 0.45)
    assert out.row.tolist() == [0, 1] and out.probs[:, 0].tolist() == [0.5, 0.0]


def nms_loop(dets: dn.RegionDetections, thresh: float) -> tuple[list[int], np.ndarray]:
    """do_nms_sort transcribed: the swap loop, then per class Python's stable sort and the double loop."""
    items = [[int(r), float(o), [float(p) for p in ps], b] for r, o, ps, b in
             zip(dets.row, dets.objectness, dets.probs, dets.boxes)]
    k = len(items) - 1
    i = 0
    while i <= k:
        if items[i][1] == 0:
            items[i], items[k] = items[k], items[i]
            k -= 1
            i -= 1
        i += 1
    items = items[:k + 1]
    for c in range(dets.probs.shape[1]):
        items.sort(key=lambda it: -it[2][c])
        for a in range(len(items)):
            if items[a][2][c] == 0:
                continue
            for b in range(a + 1, len(items)):
                if dn.box_iou(items[a][3][None], items[b][3][None])[0, 0] > F32(thresh):
                    items[b][2][c] = 0.0
    return [it[0] for it in items], np.array([it[2] for it in items], F32).reshape(-1, dets.probs.shape[1])


@pytest.mark.parametrize("seed", range(4))
def test_nms_matches_darknets_loop(seed):
    rng = np.random.default_rng(seed)
    n, classes = 40, 4
    boxes = np.concatenate([rng.uniform(0.3, 0.7, (n, 2)), rng.uniform(0.05, 0.4, (n, 2))], 1)
    objectness = np.where(rng.random(n) < 0.3, 0.0, rng.random(n))
    probs = np.where(rng.random((n, classes)) < 0.5, 0.0, rng.choice([0.3, 0.5, 0.7, 0.9], (n, classes)))  # ties
    dets = region(boxes, objectness, probs * (objectness[:, None] > 0))
    out = dn.do_nms_sort(dets, 0.45)
    rows, expected = nms_loop(dets, 0.45)
    assert out.row.tolist() == rows
    np.testing.assert_array_equal(out.probs, expected)


def test_region_activations_and_boxes_match_darknets_formulas(generator):
    raw = torch.randn(2, 5 + 3, 3, 4, generator=generator)
    act = dn.region_activations(raw)
    np.testing.assert_allclose(act[:, 0:2], raw[:, 0:2].sigmoid().numpy(), rtol=1e-6)
    np.testing.assert_array_equal(act[:, 2:4], raw[:, 2:4].numpy())
    np.testing.assert_allclose(act[:, 5:], raw[:, 5:].softmax(1).numpy(), rtol=1e-5)
    anchors = torch.tensor([[1.0, 2.0], [3.0, 0.5]])
    dets = dn.get_region_detections(act, anchors, 128, 96, 128, 96, thresh=0.0)
    k = 1 * 12 + 2 * 4 + 1                         # anchor 1, row 2, column 1: darknet's index n*w*h + row*w + col
    assert (dets.anchor[k], dets.row[k], dets.col[k]) == (1, 2, 1)
    x, y, w, h = dets.boxes[k]
    assert x == pytest.approx((1 + act[1, 0, 2, 1]) / 4) and y == pytest.approx((2 + act[1, 1, 2, 1]) / 3)
    assert w == pytest.approx(math.exp(act[1, 2, 2, 1]) * 3 / 4)
    assert h == pytest.approx(math.exp(act[1, 3, 2, 1]) * 0.5 / 3)


# ------------------------------------------------------------------------------------------ Detector and CLI
TINY = Path(__file__).resolve().parent.parent / "yolo9000" / "configs" / "tiny.yaml"


@pytest.fixture(scope="module")
def photo(tmp_path_factory) -> Path:
    from PIL import Image

    pixels = np.random.default_rng(3).integers(0, 256, (72, 120, 3), dtype=np.uint8)
    path = tmp_path_factory.mktemp("photo") / "photo.png"
    Image.fromarray(pixels).save(path)
    return path


def darknet_detector(**overrides):
    from yolo9000.api import Detector, RandomWeightsWarning

    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RandomWeightsWarning)
        return Detector.from_config(TINY, device="cpu", compat="darknet", size=64, **overrides)


@pytest.mark.parametrize("tree", [False, True])
def test_detector_compat_darknet_is_the_darknet_pipeline(tree, tiny_tree, tmp_path, photo):
    overrides = [f"model.tree={write_darknet(tiny_tree, tmp_path / 'tiny')[0]}"] if tree else ["model.num_classes=3"]
    detector = darknet_detector(overrides=overrides, conf_threshold=0.2 if tree else 0.15, hier_threshold=0.3)
    found = detector(photo)
    # The same by hand: stb/PIL decoding, letterbox_image, the raw output, get_region_detections, do_nms_sort.
    pixels = dn.load_image(photo)
    with torch.no_grad():
        raw = detector.model(torch.from_numpy(dn.letterbox_image(pixels, 64, 64))[None])[0]
    expected = dn.detections(raw, detector.postprocess.anchors, 120, 72, 64, 64, 0.2 if tree else 0.15, 0.3, 0.45,
                             detector.tree)
    assert found and [(d.anchor, d.row, d.col, d.label) for d in found] == [
        (e.anchor, e.row, e.col, e.label) for e in expected]
    for d, e in zip(found, expected):
        assert d.score == pytest.approx(e.prob) and d.objectness == pytest.approx(e.objectness)
        assert d.box == pytest.approx(dn.box_to_xyxy(e.box, 120, 72))
        if tree:
            assert d.score == d.objectness                      # darknet reports the objectness for a tree
            assert [s.node for s in d.path] == tiny_tree.path(d.label)
        else:
            assert d.score == pytest.approx(d.objectness * d.prob, rel=1e-5)
    if not tree:   # flat: every class over the threshold, so a cell can report several classes
        assert len({(d.anchor, d.row, d.col) for d in found}) <= len(found)


def test_detect_compat_darknet_prints_darknets_label_lines(tiny_tree, tmp_path, photo, capsys):
    from yolo9000.cli import main

    tree = write_darknet(tiny_tree, tmp_path / "tiny")[0]
    args = ["detect", "--config", str(TINY), "--set", f"model.tree={tree}", str(photo), "--out", str(tmp_path / "o"),
            "--device", "cpu", "--size", "64", "--conf", "0.2", "--hier", "0.3", "--compat", "darknet"]
    torch.manual_seed(0)
    assert main(args) == 0
    out = capsys.readouterr().out.splitlines()
    detector = darknet_detector(overrides=[f"model.tree={tree}"], conf_threshold=0.2, hier_threshold=0.3)
    expected = [f"{d.name}: {d.score * 100:.0f}%" for d in detector(photo)]
    assert expected and out[0] == f"{photo}:" and out[1:1 + len(expected)] == expected
    report = json.loads((tmp_path / "o" / "detections.json").read_text())
    assert all({"anchor", "row", "col"} <= set(d) for d in report["images"][0]["detections"])


def test_query_compat_darknet_reports_darknets_detections(tiny_tree, tmp_path, photo, capsys):
    from yolo9000.cli import main

    tree = write_darknet(tiny_tree, tmp_path / "tiny")[0]
    out = tmp_path / "q.json"
    torch.manual_seed(0)
    assert main(["query", "--config", str(TINY), "--set", f"model.tree={tree}", str(photo), "--device", "cpu",
                 "--size", "64", "--conf", "0.2", "--hier", "0.3", "--compat", "darknet", "--node", "a",
                 "--json", str(out)]) == 0
    report = json.loads(out.read_text())["images"][0]
    detector = darknet_detector(overrides=[f"model.tree={tree}"], conf_threshold=0.2, hier_threshold=0.3)
    expected = detector(photo)
    assert [(d["anchor"], d["row"], d["col"], d["label"]) for d in report["detections"]] == [
        (d.anchor, d.row, d.col, d.label) for d in expected]
    assert report["subtree_probability"] == pytest.approx(detector.subtree_probability(expected, "a"))


@pytest.mark.parametrize("option", [{"leaf": True}, {"max_depth": 1}])
def test_compat_darknet_refuses_options_darknet_lacks(option):
    from yolo9000.api import DetectorOptions
    from yolo9000.errors import ConfigError

    with pytest.raises(ConfigError, match="compat darknet: --(leaf|depth) has no darknet equivalent"):
        DetectorOptions(compat="darknet", **option)
    DetectorOptions(compat="off", **option)  # the same option is fine in our own semantics
