"""PostProcess with the decision scorer: hand-built raw outputs, the two decision modes, NMS, the letterbox
mapping, the flat path, and a slow per-box reference loop for the vectorised implementation."""
from __future__ import annotations

import math

import pytest
import torch
from torchvision.ops import box_iou

from wordtree.tree import WordTree
from yolo9000.postprocess import Detection, PostProcess

STRIDE = 32


def postprocess(raw, anchors, stride, tree=None, names=None, **options):
    return PostProcess(anchors, stride, tree).detections(raw, names, **options)


def logit(p: float) -> float:
    return math.log(p / (1 - p))


def empty_raw(num_classes: int, anchors: int = 1, size: int = 2, batch: int = 1) -> torch.Tensor:
    """Raw Float[B, A, 5+N, size, size] where nothing is an object (objectness logit -20) and tx=ty=tw=th=0."""
    raw = torch.zeros(batch, anchors, 5 + num_classes, size, size)
    raw[:, :, 4] = -20.0
    return raw


def tiny_logits(cond: dict[int, float], tree: WordTree) -> torch.Tensor:
    """Node logits giving the conditional probabilities `cond` (log p); unlisted nodes share the rest of their group."""
    logits = torch.zeros(tree.num_nodes)
    for g in range(tree.num_groups):
        members = list(range(int(tree.group_offset[g]), int(tree.group_offset[g] + tree.group_size[g])))
        given = {n: cond[n] for n in members if n in cond}
        rest = [n for n in members if n not in given]
        left = 1.0 - sum(given.values())
        for n in members:
            logits[n] = math.log(given[n] if n in given else left / len(rest))
    return logits


# ------------------------------------------------------------------------------------------- hand-built boxes
def test_hand_built_flat_box_and_score():
    raw = empty_raw(num_classes=2)
    # Cell (row 1, col 0), anchor 1x1 cells = 32 px. tx = logit(.75) -> centre x = (0 + .75) * 32 = 24;
    # ty = 0 -> centre y = (1 + .5) * 32 = 48; tw = ln 2 -> w = 64; th = 0 -> h = 32.
    raw[0, 0, 0, 1, 0] = logit(0.75)
    raw[0, 0, 2, 1, 0] = math.log(2.0)
    raw[0, 0, 4, 1, 0] = logit(0.9)              # objectness .9
    raw[0, 0, 5:, 1, 0] = torch.tensor([3.0, 0.0])  # P(class 0) = e^3 / (e^3 + 1) = .952574
    [[det]] = postprocess(raw, torch.tensor([[1.0, 1.0]]), STRIDE, names=["cat", "hat"], conf_threshold=0.5)
    # x1 = 24 - 32 = -8 -> clipped to 0 (the input is 64 px wide); x2 = 56; y1 = 48 - 16 = 32, y2 = 64.
    assert det.box == pytest.approx((0.0, 32.0, 56.0, 64.0), abs=1e-4)
    p0 = math.exp(3) / (math.exp(3) + 1)
    assert det.objectness == pytest.approx(0.9, abs=1e-6)
    assert det.prob == pytest.approx(p0, abs=1e-6)
    assert det.score == pytest.approx(0.9 * p0, abs=1e-6)
    assert (det.label, det.name, det.wnid) == (0, "cat", None)
    assert len(det.path) == 1 and det.path[0].prob == pytest.approx(p0, abs=1e-6)
    assert det.probs.shape == (2,) and float(det.probs.sum()) == pytest.approx(1.0, abs=1e-6)
    assert (det.anchor, det.row, det.col) == (0, 1, 0)


def test_every_detection_names_its_anchor_row_and_column():
    raw = empty_raw(num_classes=2, anchors=3, size=4, batch=2)
    for b, (a, r, c) in enumerate([(2, 3, 1), (1, 0, 2)]):
        raw[b, a, 4, r, c] = logit(0.9)
        raw[b, a, 5, r, c] = 3.0
    dets = postprocess(raw, torch.ones(3, 2), STRIDE, conf_threshold=0.5)
    assert [[(d.anchor, d.row, d.col) for d in image] for image in dets] == [[(2, 3, 1)], [(1, 0, 2)]]
    assert dets[0][0].to_dict()["anchor"] == 2


def test_empty_and_below_threshold_give_empty_lists():
    raw = empty_raw(num_classes=3, batch=2)
    raw[1, 0, 4, 0, 0] = logit(0.3)  # objectness .3 < conf .5: the only candidate fails
    assert postprocess(raw, torch.ones(1, 2), STRIDE, conf_threshold=0.5) == [[], []]
    post = PostProcess(torch.ones(1, 2), STRIDE)
    kept = post(raw, post.decision(), conf_threshold=0.5)
    assert kept.boxes.shape == (0, 4) and kept.image.numel() == 0


def test_input_is_not_modified():
    raw = torch.randn(1, 2, 5 + 3, 2, 2, generator=torch.Generator().manual_seed(1))
    before = raw.clone()
    postprocess(raw, torch.ones(2, 2), STRIDE, conf_threshold=0.0)
    assert torch.equal(raw, before)


# ------------------------------------------------------------------------------------------- tree decisions
def tree_raw(tiny_tree: WordTree, objectness: float = 0.8) -> torch.Tensor:
    """One box whose conditionals are P(a) = .9, P(a3 | a) = .7, P(a3x | a3) = .8.

    Paper walk at .5: a (.9) -> a3 (.9*.7 = .63) -> a3x (.63*.8 = .504 > .5): decides the leaf a3x.
    Darknet walk multiplies ABSOLUTE probabilities: a (.9) -> a3: .9 * P(a3)=.63 -> .567 > .5 accepted; a3x:
    .567 * P(a3x)=.504 -> .286 < .5 rejected, so it returns the group's parent a3.
    """
    raw = empty_raw(tiny_tree.num_nodes)
    raw[0, 0, 4, 0, 1] = logit(objectness)
    raw[0, 0, 5:, 0, 1] = tiny_logits({0: 0.9, 4: 0.7, 6: 0.8}, tiny_tree)
    return raw


def test_tree_modes_differ_paper_leaf_darknet_parent(tiny_tree):
    raw = tree_raw(tiny_tree)
    anchors = torch.ones(1, 2)
    [[paper]] = postprocess(raw, anchors, STRIDE, tiny_tree, conf_threshold=0.1, mode="paper")
    [[darknet]] = postprocess(raw, anchors, STRIDE, tiny_tree, conf_threshold=0.1, mode="darknet")
    assert (paper.wnid, paper.name, paper.label) == ("a3x", "A3X", 6)
    assert (darknet.wnid, darknet.label) == ("a3", 4)
    assert [s.wnid for s in paper.path] == ["a", "a3", "a3x"]
    assert [s.prob for s in paper.path] == pytest.approx([0.9, 0.7, 0.8], abs=1e-6)
    assert paper.prob == pytest.approx(0.504, abs=1e-6) and darknet.prob == pytest.approx(0.63, abs=1e-6)
    assert paper.score == pytest.approx(0.8 * 0.504, abs=1e-6)
    assert darknet.score == pytest.approx(0.8 * 0.63, abs=1e-6)
    # Absolute probabilities of the box: P(a) = .9, P(b) = .1, P(a3) = .63, and they sum to 1 over the roots.
    assert paper.probs[[0, 1, 4, 6]].tolist() == pytest.approx([0.9, 0.1, 0.63, 0.504], abs=1e-6)
    assert paper.depth == 2 and darknet.depth == 1


def test_hier_threshold_and_max_depth(tiny_tree):
    raw = tree_raw(tiny_tree)
    anchors = torch.ones(1, 2)
    # Threshold .6: a3 (.63) passes, a3x (.504) does not.
    [[det]] = postprocess(raw, anchors, STRIDE, tiny_tree, conf_threshold=0.1, hier_threshold=0.6)
    assert det.wnid == "a3"
    for depth, wnid in [(0, "a"), (1, "a3"), (2, "a3x"), (5, "a3x")]:
        [[det]] = postprocess(raw, anchors, STRIDE, tiny_tree, conf_threshold=0.1, max_depth=depth)
        assert det.wnid == wnid, depth
        assert det.prob == pytest.approx(math.prod(s.prob for s in det.path), abs=1e-6)
    with pytest.raises(ValueError, match="max_depth"):
        postprocess(raw, anchors, STRIDE, tiny_tree, max_depth=-1)


def test_score_threshold_uses_the_decided_node(tiny_tree):
    raw = tree_raw(tiny_tree, objectness=0.8)
    # score = .8 * .504 = .403 in paper mode: kept at conf .4, dropped at conf .41 though objectness .8 passes.
    assert len(postprocess(raw, torch.ones(1, 2), STRIDE, tiny_tree, conf_threshold=0.4)[0]) == 1
    assert postprocess(raw, torch.ones(1, 2), STRIDE, tiny_tree, conf_threshold=0.41) == [[]]


def test_tree_size_mismatch_is_an_error(tiny_tree):
    with pytest.raises(ValueError, match="3 class logits but the tree has 11 nodes"):
        postprocess(empty_raw(3), torch.ones(1, 2), STRIDE, tiny_tree)
    with pytest.raises(ValueError, match="mode"):
        postprocess(empty_raw(tiny_tree.num_nodes), torch.ones(1, 2), STRIDE, tiny_tree, mode="tree")


# ------------------------------------------------------------------------------------------- NMS and top-k
def test_nms_removes_the_duplicate_but_keeps_other_classes():
    raw = empty_raw(num_classes=2, anchors=3, size=3)
    anchors = torch.ones(3, 2)
    # All three anchors of the middle cell (1, 1) predict boxes centred at (48, 48), away from the image border.
    # anchor 0: 32x32, class 0, objectness .9 -> the best box.
    # anchor 1: 36x36 (tw = th = ln 1.125), class 0, objectness .8: IoU with anchor 0 = 32²/36² = .79 > .45 -> removed.
    # anchor 2: 32x32, class 1, objectness .7: the same box but another class -> kept.
    raw[0, :, 4, 1, 1] = torch.tensor([logit(0.9), logit(0.8), logit(0.7)])
    raw[0, 1, 2:4, 1, 1] = math.log(1.125)
    raw[0, :, 5:, 1, 1] = torch.tensor([[9.0, 0.0], [9.0, 0.0], [0.0, 9.0]])
    [dets] = postprocess(raw, anchors, STRIDE, conf_threshold=0.3, nms_iou=0.45)
    assert [(d.label, round(d.objectness, 3)) for d in dets] == [(0, 0.9), (1, 0.7)]
    assert dets[0].box == pytest.approx((32.0, 32.0, 64.0, 64.0), abs=1e-4)
    # At IoU .8 the 36-px box survives (.79 < .8), best first.
    [dets] = postprocess(raw, anchors, STRIDE, conf_threshold=0.3, nms_iou=0.8)
    assert [round(d.objectness, 3) for d in dets] == [0.9, 0.8, 0.7]


def test_max_detections_per_image_keeps_the_best():
    raw = empty_raw(num_classes=1, size=4, batch=2)
    obj = torch.linspace(0.5, 0.95, 16).view(4, 4)
    raw[:, 0, 4] = torch.logit(obj)               # 16 disjoint boxes (one per cell), no NMS interaction
    dets = postprocess(raw, torch.ones(1, 2), STRIDE, conf_threshold=0.1, max_detections=5)
    for per_image in dets:
        assert [round(d.score, 4) for d in per_image] == [round(float(v), 4) for v in obj.flatten().flip(0)[:5]]


# ------------------------------------------------------------------------------------------- letterbox
def test_letterbox_mapping_back_and_clipping():
    raw = empty_raw(num_classes=1)
    raw[0, 0, 4, 1, 0] = logit(0.9)     # box (0, 32, 32, 64) in the 64 x 64 input, as in the first test
    # Original 128 wide x 96 high, letterboxed into 64: scale .5 -> 64 x 48, padded by 8 on top.
    letterbox = torch.tensor([[0.5, 0.0, 8.0]])
    [[det]] = postprocess(raw, torch.ones(1, 2), STRIDE, letterbox=letterbox, orig_sizes=torch.tensor([[96, 128]]),
                          conf_threshold=0.5)
    # ((0 - 0) / .5, (32 - 8) / .5, 32 / .5, (64 - 8) / .5) = (0, 48, 64, 112) -> y2 clipped to the height 96.
    assert det.box == pytest.approx((0.0, 48.0, 64.0, 96.0), abs=1e-4)


def test_letterbox_round_trip_through_the_transform():
    from torchvision import tv_tensors

    from yolo9000.data.transforms import letterbox

    original = torch.zeros(3, 150, 200, dtype=torch.uint8)
    box = torch.tensor([[40.0, 30.0, 140.0, 110.0]])      # xyxy original pixels
    _, moved, (scale, pad_x, pad_y) = letterbox(
        original, tv_tensors.BoundingBoxes(box, format="XYXY", canvas_size=(150, 200)), 64)
    x1, y1, x2, y2 = moved[0].tolist()
    cx, cy, w, h = (x1 + x2) / 2 / STRIDE, (y1 + y2) / 2 / STRIDE, (x2 - x1) / STRIDE, (y2 - y1) / STRIDE
    raw = empty_raw(num_classes=1)
    col, row = int(cx), int(cy)
    raw[0, 0, 0, row, col] = logit(cx - col)
    raw[0, 0, 1, row, col] = logit(cy - row)
    raw[0, 0, 2, row, col] = math.log(w)
    raw[0, 0, 3, row, col] = math.log(h)
    raw[0, 0, 4, row, col] = 5.0
    [[det]] = postprocess(raw, torch.ones(1, 2), STRIDE, conf_threshold=0.5,
                          letterbox=torch.tensor([[scale, pad_x, pad_y]]), orig_sizes=torch.tensor([[150, 200]]))
    # Letterbox rounding of the resized size is at most half an input pixel: 0.5 / scale original pixels.
    assert det.box == pytest.approx(tuple(box[0].tolist()), abs=0.5 / scale + 1e-3)


# ------------------------------------------------------------------------------------------- reference loop
def reference_postprocess(raw, anchors, tree, conf, nms_iou, hier, mode):
    """Slow loop: every image, anchor and cell one at a time, then greedy NMS per (image, label)."""
    from wordtree.ops import decide, grouped_log_softmax

    B, A, _, H, W = raw.shape
    out = []
    for b in range(B):
        cands = []
        for a in range(A):
            for i in range(H):
                for j in range(W):
                    v = raw[b, a, :, i, j]
                    obj = torch.sigmoid(v[4]).item()
                    cond = grouped_log_softmax(v[5:], tree).exp()
                    node = int(decide(cond, tree, hier, mode).node)
                    prob = math.prod(cond[n].item() for n in tree.path(node))
                    score = obj * prob
                    if score <= conf:
                        continue
                    cx = (j + torch.sigmoid(v[0]).item()) * STRIDE
                    cy = (i + torch.sigmoid(v[1]).item()) * STRIDE
                    w = anchors[a, 0].item() * math.exp(v[2].item()) * STRIDE
                    h = anchors[a, 1].item() * math.exp(v[3].item()) * STRIDE
                    box = [max(0.0, min(W * STRIDE, cx - w / 2)), max(0.0, min(H * STRIDE, cy - h / 2)),
                           max(0.0, min(W * STRIDE, cx + w / 2)), max(0.0, min(H * STRIDE, cy + h / 2))]
                    cands.append((score, node, box))
        cands.sort(key=lambda c: -c[0])
        kept = []
        for score, node, box in cands:
            if all(k[1] != node or box_iou(torch.tensor([box]), torch.tensor([k[2]])).item() <= nms_iou
                   for k in kept):
                kept.append((score, node, box))
        out.append(kept)
    return out


@pytest.mark.parametrize("mode", ["paper", "darknet"])
def test_matches_reference_loop(tiny_tree, mode):
    g = torch.Generator().manual_seed(3)
    raw = torch.randn(2, 2, 5 + tiny_tree.num_nodes, 3, 3, generator=g) * 1.5
    anchors = torch.tensor([[0.8, 1.2], [2.0, 1.5]])
    got = postprocess(raw, anchors, STRIDE, tiny_tree, conf_threshold=0.2, nms_iou=0.4, hier_threshold=0.4,
                      mode=mode)
    want = reference_postprocess(raw, anchors, tiny_tree, 0.2, 0.4, 0.4, mode)
    assert sum(map(len, want)) > 5  # the case is not trivially empty
    for dets, ref in zip(got, want):
        assert [d.label for d in dets] == [r[1] for r in ref]
        assert [d.score for d in dets] == pytest.approx([r[0] for r in ref], abs=1e-5)
        for d, r in zip(dets, ref):
            assert d.box == pytest.approx(tuple(r[2]), abs=1e-3)
            assert isinstance(d, Detection) and d.prob == pytest.approx(math.prod(s.prob for s in d.path), abs=1e-6)


def test_nms_by_label_root_or_all(tiny_tree):
    """Two boxes on one object, decided a3x (leaf) and a (its root), and a third under the other root.

    The third: P(b) = .9, b1 and b1x are only children (conditional 1), P(b1x_p | b1x) = .5 -> .45 < .5, so it
    decides b1x with score .5 * .9 = .45, the best. Per label (darknet) all three survive; per root the a3x box
    (.8 * .504 = .403) removes the lower-scoring `a` box (.6 * .55 = .33); class-agnostic keeps only the best.
    """
    raw = empty_raw(tiny_tree.num_nodes, anchors=3, size=3)
    raw[0, :, 4, 1, 1] = torch.tensor([logit(0.8), logit(0.6), logit(0.5)])
    raw[0, 0, 5:, 1, 1] = tiny_logits({0: 0.9, 4: 0.7, 6: 0.8}, tiny_tree)      # a -> a3 -> a3x
    raw[0, 1, 5:, 1, 1] = tiny_logits({0: 0.55, 2: 0.4}, tiny_tree)             # a, nothing below .5
    raw[0, 2, 5:, 1, 1] = tiny_logits({1: 0.9, 9: 0.5}, tiny_tree)              # b -> b1 -> b1x
    anchors = torch.ones(3, 2)
    decided = {by: [d.wnid for d in postprocess(raw, anchors, STRIDE, tiny_tree, conf_threshold=0.2,
                                                nms_by=by)[0]] for by in ("label", "root", "all")}
    assert decided == {"label": ["b1x", "a3x", "a"], "root": ["b1x", "a3x"], "all": ["b1x"]}
    with pytest.raises(ValueError, match="nms_by"):
        postprocess(raw, anchors, STRIDE, tiny_tree, nms_by="tree")


def test_tree_probs_matches_the_library_ops_even_for_far_apart_groups(tiny_tree):
    """The exportable form of P(node) equals absolute_probs(grouped_log_softmax): random logits, and a row whose
    second root's subtree sits 200 below the first (a row-wide shift would underflow it to 0)."""
    from wordtree.ops import absolute_probs, grouped_log_softmax
    from yolo9000.postprocess import tree_probs

    logits = torch.randn(2, 3, tiny_tree.num_nodes, generator=torch.Generator().manual_seed(0)) * 4
    logits[1, 0, [5, 8, 9, 10]] -= 200.0
    expected = absolute_probs(grouped_log_softmax(logits, tiny_tree), tiny_tree)
    torch.testing.assert_close(tree_probs(logits, tiny_tree), expected)
    assert (expected[1, 0, [9, 10]] > 1e-3).all()


def test_dense_is_the_pipeline_before_threshold_and_nms(tiny_tree):
    """PostProcess.dense (what export puts in the ONNX graph) gives, for every box and node, the boxes and scores
    the category scorer keeps: thresholding and per-node batched_nms on it reproduce `forward`."""
    from torchvision.ops import batched_nms

    g = torch.Generator().manual_seed(3)
    raw = torch.randn(2, 2, 5 + tiny_tree.num_nodes, 3, 4, generator=g)
    post = PostProcess([[1.0, 1.5], [2.5, 2.0]], STRIDE, tiny_tree)
    dense = post.dense(raw)
    P = 2 * 3 * 4
    assert dense.boxes.shape == (2, P, 4) and dense.scores.shape == (2, P, tiny_tree.num_nodes)
    assert dense.boxes[..., 0::2].max() <= 4 * STRIDE and dense.boxes[..., 1::2].max() <= 3 * STRIDE
    assert dense.boxes.min() >= 0
    kept = post(raw, post.categories(torch.arange(tiny_tree.num_nodes)), conf_threshold=0.05, nms_iou=0.5,
                max_detections=1000)
    for b in range(2):
        box_idx, node = (dense.scores[b] > 0.05).nonzero(as_tuple=True)
        scores = dense.scores[b, box_idx, node]
        keep = batched_nms(dense.boxes[b, box_idx], scores, node, 0.5)
        mine = kept.image == b
        # Nodes alone in their group (b1, b1x) score exactly as their parent, so ties are compared as sorted rows.
        ours = torch.cat((node[keep, None].float(), scores[keep, None], dense.boxes[b, box_idx[keep]]), 1)
        theirs = torch.cat((kept.labels[mine, None].float(), kept.scores[mine, None], kept.boxes[mine]), 1)
        assert ours.shape[0] == theirs.shape[0] > 0
        torch.testing.assert_close(torch.tensor(sorted(ours.tolist())), torch.tensor(sorted(theirs.tolist())))
