"""RegionLoss against a slow reference written as plain loops from darknet_yolo9000.md section 4."""
from __future__ import annotations

import math
import zlib
from dataclasses import replace

import pytest
import torch

from yolo9000.config import LossConfig
from yolo9000.data.collate import Batch
from yolo9000.loss import TERMS, RegionLoss, gather_outputs, weighted_total

STRIDE = 32
ANCHORS = torch.tensor([[0.6, 0.8], [1.5, 1.2], [2.5, 2.8]])


# ----------------------------------------------------------------------------------------------- reference (loops)
def sigmoid(x: torch.Tensor) -> torch.Tensor:
    return 1 / (1 + torch.exp(-x))


def box_iou_cxcywh(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    """darknet `box_iou` on (x, y, w, h) centre boxes."""
    def overlap(c1, w1, c2, w2):
        return min(c1 + w1 / 2, c2 + w2 / 2) - max(c1 - w1 / 2, c2 - w2 / 2)
    w, h = overlap(a[0], a[2], b[0], b[2]), overlap(a[1], a[3], b[1], b[3])
    inter = w * h if w > 0 and h > 0 else 0.0
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


def ref_log_cond(logits: torch.Tensor, node: int, tree) -> torch.Tensor:
    """log P(node | parent) with one softmax over the node's sibling group."""
    group = tree.siblings(node)
    return logits[node] - torch.logsumexp(logits[group], dim=0)


def ref_nll(logits: torch.Tensor, label: int, tree) -> torch.Tensor:
    """darknet delta_region_class: softmax CE of each group from the label up to its root (flat: plain CE)."""
    if tree is None:
        return -torch.log_softmax(logits, dim=0)[label]
    return -sum(ref_log_cond(logits, k, tree) for k in tree.path(label))


def reference_loss(raw: torch.Tensor, batch: Batch, cfg: LossConfig, tree, seen: int) -> dict[str, torch.Tensor]:
    """Per image, per truth, per prediction, exactly as section 4 reads (deltas -> 0.5 * squared errors)."""
    B, A, _, H, W = raw.shape
    terms = {name: raw.new_zeros(()) for name in TERMS}
    for b in range(B):
        def box(a, j, i):
            tx, ty, tw, th = raw[b, a, 0:4, j, i].detach()
            return ((float(sigmoid(tx)) + i) / W, (float(sigmoid(ty)) + j) / H,
                    math.exp(float(tw)) * float(ANCHORS[a, 0]) / W, math.exp(float(th)) * float(ANCHORS[a, 1]) / H)

        cells = [(a, j, i) for a in range(A) for j in range(H) for i in range(W)]   # darknet's n order
        if not batch.is_detection[b]:
            label = int(batch.labels[b, 0])
            best, best_p = None, -1.0
            for a, j, i in cells:
                logits = raw[b, a, 5:, j, i].detach()
                p = float(sigmoid(raw[b, a, 4, j, i].detach())) * math.exp(-float(ref_nll(logits, label, tree)))
                if p > best_p:
                    best, best_p = (a, j, i), p
            for a, j, i in cells:
                obj = sigmoid(raw[b, a, 4, j, i])
                if (a, j, i) != best:
                    if cfg.classification_noobj:
                        terms["noobj"] = terms["noobj"] + 0.5 * obj ** 2
                elif cfg.classification_objectness == "paper" and float(obj.detach()) < cfg.classification_min_iou:
                    terms["obj"] = terms["obj"] + 0.5 * (cfg.classification_min_iou - obj) ** 2
            a, j, i = best
            terms["cls"] = terms["cls"] + ref_nll(raw[b, a, 5:, j, i], label, tree)
            continue

        truths = []   # (x, y, w, h) normalised to the image, label
        for t in range(batch.labels.shape[1]):
            label = int(batch.labels[b, t])
            x1, y1, x2, y2 = batch.boxes[b, t].tolist()
            if label < 0 or x2 <= x1 or y2 <= y1:
                continue
            if cfg.max_boxes is not None and len(truths) == cfg.max_boxes:
                break
            truths.append((((x1 + x2) / 2 / STRIDE / W, (y1 + y2) / 2 / STRIDE / H,
                            (x2 - x1) / STRIDE / W, (y2 - y1) / STRIDE / H), label))
        noobj = {}
        prior = {}
        for a, j, i in cells:
            best_iou = max([box_iou_cxcywh(box(a, j, i), tr) for tr, _ in truths], default=0.0)
            noobj[a, j, i] = best_iou <= cfg.ignore_iou
            prior[a, j, i] = seen < cfg.prior_images
        owner = {}
        for t, ((x, y, w, h), _) in enumerate(truths):
            i, j = min(int(x * W), W - 1), min(int(y * H), H - 1)
            best_n, best = 0, 0.0
            for n in range(A):
                iou = box_iou_cxcywh((0, 0, float(ANCHORS[n, 0]) / W, float(ANCHORS[n, 1]) / H), (0, 0, w, h))
                if iou > best:
                    best_n, best = n, iou
            owner[best_n, j, i] = t          # later truths overwrite earlier ones, as darknet's deltas do
        for (a, j, i), t in owner.items():
            (x, y, w, h), label = truths[t]
            noobj[a, j, i] = prior[a, j, i] = False
            tx, ty, tw, th, to = raw[b, a, 0:5, j, i]
            target = (x * W - i, y * H - j, math.log(w * W / float(ANCHORS[a, 0])),
                      math.log(h * H / float(ANCHORS[a, 1])))
            terms["coord"] = terms["coord"] + 0.5 * (2 - w * h) * (
                (sigmoid(tx) - target[0]) ** 2 + (sigmoid(ty) - target[1]) ** 2
                + (tw - target[2]) ** 2 + (th - target[3]) ** 2)
            obj_target = box_iou_cxcywh(box(a, j, i), (x, y, w, h)) if cfg.rescore else 1.0
            terms["obj"] = terms["obj"] + 0.5 * (sigmoid(to) - obj_target) ** 2
            terms["cls"] = terms["cls"] + ref_nll(raw[b, a, 5:, j, i], label, tree)
        for a, j, i in cells:
            if noobj[a, j, i]:
                terms["noobj"] = terms["noobj"] + 0.5 * sigmoid(raw[b, a, 4, j, i]) ** 2
            if prior[a, j, i]:
                tx, ty, tw, th = raw[b, a, 0:4, j, i]
                terms["prior"] = terms["prior"] + 0.5 * ((sigmoid(tx) - .5) ** 2 + (sigmoid(ty) - .5) ** 2
                                                         + tw ** 2 + th ** 2)
    return {name: value / B for name, value in terms.items()}


# ----------------------------------------------------------------------------------------------- batches
def make_batch(raw: torch.Tensor, num_classes: int, labels_pool: list[int], g: torch.Generator) -> Batch:
    """Mixed batch for a raw output of shape [6, A, 5+N, H, W]: zero boxes, many boxes, two truths in one
    (cell, anchor), border boxes, a truth equal to a predicted box (so the ignore rule fires), a padded
    degenerate box, and two classification images."""
    B, A, _, H, W = raw.shape
    width, height = W * STRIDE, H * STRIDE

    def rand_boxes(n):
        cx = torch.rand(n, generator=g) * width
        cy = torch.rand(n, generator=g) * height
        w = 4 + torch.rand(n, generator=g) * width * 0.8
        h = 4 + torch.rand(n, generator=g) * height * 0.8
        return torch.stack((cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2), dim=1).clamp(min=0)

    def pick(n):
        return torch.tensor(labels_pool)[torch.randint(len(labels_pool), (n,), generator=g)]

    T = 12
    boxes = torch.full((B, T, 4), -1.0)
    labels = torch.full((B, T), -1, dtype=torch.long)
    # image 0: no boxes. image 1: many boxes.
    boxes[1], labels[1] = rand_boxes(T), pick(T)
    # image 2: two identical-shape truths centred in the same cell (last must win), one border box, one
    # degenerate box (dropped), and one truth equal to a decoded prediction (IoU 1 > ignore_iou).
    boxes[2, 0] = torch.tensor([10.0, 12.0, 40.0, 50.0])
    boxes[2, 1] = torch.tensor([12.0, 10.0, 42.0, 48.0])
    boxes[2, 2] = torch.tensor([width - 30.0, height - 20.0, float(width), float(height)])
    boxes[2, 3] = torch.tensor([0.0, 0.0, 25.0, 60.0])
    boxes[2, 4] = torch.tensor([50.0, 50.0, 50.0, 70.0])
    a, j, i = 1, H - 1, 0
    tx, ty, tw, th = raw[2, a, 0:4, j, i].detach().double()
    cx, cy = (torch.sigmoid(tx) + i) * STRIDE, (torch.sigmoid(ty) + j) * STRIDE
    w, h = torch.exp(tw) * ANCHORS[a, 0] * STRIDE, torch.exp(th) * ANCHORS[a, 1] * STRIDE
    boxes[2, 5] = torch.stack((cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)).float()
    labels[2, :6] = pick(6)
    # image 3: a few boxes; 4 and 5: classification images (label in slot 0, no boxes).
    boxes[3, :3], labels[3, :3] = rand_boxes(3), pick(3)
    labels[4, 0], labels[5, 0] = pick(1), pick(1)
    is_det = torch.tensor([True, True, True, True, False, False])
    return Batch(images=torch.zeros(B, 3, height, width), is_detection=is_det, boxes=boxes, labels=labels,
                 image_ids=torch.arange(B), orig_sizes=torch.full((B, 2), height), letterbox=torch.zeros(B, 3))


def random_raw(num_classes: int, H: int, W: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    raw = torch.randn(6, len(ANCHORS), 5 + num_classes, H, W, generator=g)
    raw[:, :, 5:] *= 2
    return raw


CONFIGS = {
    "default": (LossConfig(), 0),
    "darknet_norescore_late_capped": (LossConfig(rescore=False, classification_objectness="darknet", max_boxes=4),
                                      20000),
    "paper_literal_no_cls_noobj": (LossConfig(classification_noobj=False), 0),
}


@pytest.mark.parametrize("config", list(CONFIGS))
@pytest.mark.parametrize("grid", [(3, 3), (2, 3)])
@pytest.mark.parametrize("model", ["flat", "tree"])
def test_matches_reference_terms_and_gradients(model, grid, config, tiny_tree):
    tree = tiny_tree if model == "tree" else None
    num_classes = tiny_tree.num_nodes if tree else 20
    labels_pool = list(range(num_classes))           # tree: leaves and internal nodes alike
    cfg, seen = CONFIGS[config]
    raw = random_raw(num_classes, *grid, seed=zlib.crc32(f"{model}{grid}{config}".encode()))
    batch = make_batch(raw, num_classes, labels_pool, torch.Generator().manual_seed(1))
    loss = RegionLoss(ANCHORS, cfg, tree=tree, num_classes=None if tree else num_classes, stride=STRIDE)

    raw32 = raw.clone().requires_grad_()
    raw64 = raw.double().requires_grad_()
    ours = loss(raw32, batch, seen=seen)
    ref = reference_loss(raw64, batch, cfg, tree, seen)
    for name in TERMS:
        torch.testing.assert_close(ours[name].double(), ref[name], rtol=1e-5, atol=1e-5, msg=name)
        # Every term is exercised (the prior only before prior_images).
        assert float(ref[name].detach()) > 0 or name == "prior" and seen >= cfg.prior_images, name
        if not ours[name].requires_grad:
            # A term switched off (the prior after 12800 images) is a constant: zero, and no graph at all.
            assert float(ours[name].detach()) == 0, name
            continue
        g32, = torch.autograd.grad(ours[name], raw32, retain_graph=True)
        g64, = torch.autograd.grad(ref[name], raw64, retain_graph=True, allow_unused=True)
        g64 = torch.zeros_like(raw64) if g64 is None else g64
        torch.testing.assert_close(g32.double(), g64, rtol=1e-5, atol=1e-5, msg=f"gradient of {name}")
    g32, = torch.autograd.grad(loss.total(ours), raw32)
    g64, = torch.autograd.grad(weighted_total(ref, cfg), raw64)
    torch.testing.assert_close(g32.double(), g64, rtol=1e-5, atol=1e-5)
    if cfg.max_boxes is not None:
        # image 1 keeps 4 of its 12 boxes, image 2 keeps 4 of its 5 usable boxes and drops a degenerate one.
        assert float(ours["diag/boxes_dropped"].detach()) == 8 + 2 + 0
    else:
        assert float(ours["diag/boxes_dropped"].detach()) == 1


def test_last_truth_wins_a_shared_prediction():
    """Two truths of the same shape centred in the same cell: only the second shapes the coordinate target."""
    raw = torch.zeros(1, len(ANCHORS), 5 + 3, 3, 3, requires_grad=True)
    first, second = [10.0, 12.0, 40.0, 50.0], [12.0, 10.0, 42.0, 48.0]
    batch = Batch(images=torch.zeros(1, 3, 96, 96), is_detection=torch.tensor([True]),
                  boxes=torch.tensor([[first, second]]), labels=torch.tensor([[0, 2]]), image_ids=torch.zeros(1),
                  orig_sizes=torch.zeros(1, 2), letterbox=torch.zeros(1, 3))
    loss = RegionLoss(ANCHORS, LossConfig(), num_classes=3, stride=STRIDE)
    terms = loss(raw, batch, seen=10**6)
    only_second = loss(raw, replace(batch, boxes=batch.boxes[:, 1:], labels=batch.labels[:, 1:]), seen=10**6)
    for name in ("coord", "cls"):
        torch.testing.assert_close(terms[name], only_second[name])
    # cls is the 3-way CE of label 2 at zero logits: log 3 (label 0 of the first truth is dropped).
    torch.testing.assert_close(terms["cls"], torch.tensor(math.log(3)))


def classification_batch(labels: list[int], size: int = 64) -> Batch:
    B = len(labels)
    return Batch(images=torch.zeros(B, 3, size, size), is_detection=torch.zeros(B, dtype=torch.bool),
                 boxes=torch.full((B, 1, 4), -1.0), labels=torch.tensor(labels)[:, None],
                 image_ids=torch.arange(B), orig_sizes=torch.zeros(B, 2), letterbox=torch.zeros(B, 3))


@pytest.mark.parametrize("mode", ["paper", "darknet"])
def test_classification_image_gradients(tiny_tree, mode):
    """Zero gradient on every coordinate, on every class logit off the chosen prediction, on every group off the
    label's path; objectness at the chosen prediction follows the mode, noobj everywhere else."""
    tree = tiny_tree
    g = torch.Generator().manual_seed(3)
    labels = [6, 4, 9, 1]                               # leaf a3x, internal a3, deep leaf b1x_p, root b
    raw = torch.randn(len(labels), 2, 5 + tree.num_nodes, 2, 2, generator=g)
    raw[:, :, 4] = raw[:, :, 4].clamp(max=0) - 2        # objectness below sigmoid(-2) = .12 < .3 everywhere
    raw.requires_grad_()
    anchors = ANCHORS[:2]
    loss = RegionLoss(anchors, LossConfig(classification_objectness=mode), tree=tree, stride=STRIDE)
    terms = loss(raw, classification_batch(labels))
    assert float(terms["coord"].detach()) == float(terms["prior"].detach()) == 0
    grad, = torch.autograd.grad(loss.total(terms), raw)
    grad = grad.permute(0, 1, 3, 4, 2).reshape(len(labels), -1, 5 + tree.num_nodes)   # [B, P, 5+N]
    assert torch.all(grad[..., :4] == 0)
    for b, label in enumerate(labels):
        scores = torch.sigmoid(raw[b, :, 4].detach()).flatten() * torch.stack(
            [torch.exp(-ref_nll(raw[b, a, 5:, j, i].detach(), label, tree))
             for a in range(2) for j in range(2) for i in range(2)])
        chosen = int(scores.argmax())
        others = [p for p in range(grad.shape[1]) if p != chosen]
        assert torch.all(grad[b, others, 5:] == 0)
        path_groups = {int(tree.group[k]) for k in tree.path(label)}
        on_path = torch.tensor([int(tree.group[n]) in path_groups for n in range(tree.num_nodes)])
        assert torch.all(grad[b, chosen, 5:][~on_path] == 0)
        # A one-child group (b -> b1) is a softmax over one logit: P = 1 whatever the logit, so its gradient is 0.
        multi = torch.tensor([int(tree.group_size[tree.group[n]]) > 1 for n in range(tree.num_nodes)])
        assert torch.all(grad[b, chosen, 5:][on_path & multi] != 0)
        assert torch.all(grad[b, others, 4] > 0)        # noobj pushes objectness down
        if mode == "paper":
            assert grad[b, chosen, 4] < 0                # pushed up towards .3
        else:
            assert grad[b, chosen, 4] == 0


def test_classification_objectness_no_push_above_min_iou(tiny_tree):
    raw = torch.zeros(1, 1, 5 + tiny_tree.num_nodes, 1, 1)
    raw[0, 0, 4] = 2.0                                  # objectness .88 >= .3: no gradient, no term
    raw.requires_grad_()
    loss = RegionLoss(ANCHORS[:1], LossConfig(), tree=tiny_tree, stride=STRIDE)
    terms = loss(raw, classification_batch([7], size=32))
    assert float(terms["obj"].detach()) == 0 and float(terms["noobj"].detach()) == 0
    grad, = torch.autograd.grad(loss.total(terms), raw)
    assert grad[0, 0, 4] == 0


def test_classification_argmax_hand_built(tiny_tree):
    """Which prediction wins objectness x P(label), with the products worked out by hand.

    Zero logits: P(a) = 1/2, P(a3 | a) = 1/3, P(a3x | a3) = 1/2, objectness 1/2.
      X (anchor 1, row 1, col 0): a3x logit ln 3 -> P(a3x) = 1/2 * 1/3 * 3/4 = 1/8;  obj 1/2 -> 0.0625
      Y (anchor 0, row 0, col 1): obj logit ln 4 -> obj 4/5, P(a3x) = 1/12         -> 0.0667  (wins for a3x)
      Z (anchor 1, row 0, col 0): obj logit ln 9 -> obj 9/10, a3y logit ln 3 -> P(a3x) = 1/24 -> 0.0375,
        but P(a3y) = 1/8 -> 0.1125 (wins for a3y; X gives 1/2 * 1/24, Y gives 4/5 * 1/12 = 0.0667)
      every other prediction: 1/2 * 1/12 = 0.0417
    """
    raw = torch.zeros(2, 2, 5 + tiny_tree.num_nodes, 2, 2)
    raw[:, 1, 5 + 6, 1, 0] = math.log(3)
    raw[:, 0, 4, 0, 1] = math.log(4)
    raw[:, 1, 4, 0, 0] = math.log(9)
    raw[:, 1, 5 + 7, 0, 0] = math.log(3)
    raw.requires_grad_()
    loss = RegionLoss(ANCHORS[:2], LossConfig(), tree=tiny_tree, stride=STRIDE)
    grad, = torch.autograd.grad(loss.total(loss(raw, classification_batch([6, 7]))), raw)
    class_grad = grad[:, :, 5:].abs().sum(2)            # [B, A, H, W]: nonzero only at the chosen prediction
    assert class_grad[0].nonzero().tolist() == [[0, 0, 1]]
    assert class_grad[1].nonzero().tolist() == [[1, 0, 0]]
    # `classification_match: objectness`: the label no longer matters, Z (highest objectness) wins for both.
    by_obj = RegionLoss(ANCHORS[:2], LossConfig(classification_match="objectness"), tree=tiny_tree, stride=STRIDE)
    grad, = torch.autograd.grad(by_obj.total(by_obj(raw, classification_batch([6, 7]))), raw)
    class_grad = grad[:, :, 5:].abs().sum(2)
    assert class_grad[0].nonzero().tolist() == class_grad[1].nonzero().tolist() == [[1, 0, 0]]


def test_prior_before_and_after_12800(generator):
    raw = torch.randn(2, len(ANCHORS), 5 + 4, 2, 2, generator=generator, requires_grad=True)
    batch = Batch(images=torch.zeros(2, 3, 64, 64), is_detection=torch.tensor([True, False]),
                  boxes=torch.full((2, 1, 4), -1.0), labels=torch.tensor([[-1], [2]]), image_ids=torch.arange(2),
                  orig_sizes=torch.zeros(2, 2), letterbox=torch.zeros(2, 3))
    loss = RegionLoss(ANCHORS, LossConfig(), num_classes=4, stride=STRIDE)
    before = loss(raw, batch, seen=12799)["prior"]
    # No truths: every prediction of the detection image (image 0 only) is pulled to its anchor at the centre.
    xy, twh = torch.sigmoid(raw[0, :, 0:2]), raw[0, :, 2:4]
    torch.testing.assert_close(before, 0.5 * (((xy - 0.5) ** 2).sum() + (twh ** 2).sum()) / 2)
    after = loss(raw, batch, seen=12800)["prior"]
    assert float(after.detach()) == 0 and not after.requires_grad   # a constant: no gradient at all


def test_empty_batch_of_detections_without_boxes_and_inputs_untouched():
    raw = torch.randn(2, len(ANCHORS), 5 + 3, 2, 2, requires_grad=True)
    batch = Batch(images=torch.zeros(2, 3, 64, 64), is_detection=torch.tensor([True, True]),
                  boxes=torch.full((2, 1, 4), -1.0), labels=torch.full((2, 1), -1), image_ids=torch.arange(2),
                  orig_sizes=torch.zeros(2, 2), letterbox=torch.zeros(2, 3))
    before = (raw.detach().clone(), batch.boxes.clone(), batch.labels.clone())
    loss = RegionLoss(ANCHORS, LossConfig(), num_classes=3, stride=STRIDE)
    terms = loss(raw, batch, seen=10**6)
    assert float(terms["coord"].detach()) == float(terms["obj"].detach()) == float(terms["cls"].detach()) == 0
    torch.testing.assert_close(terms["noobj"], 0.5 * (torch.sigmoid(raw[:, :, 4]) ** 2).sum() / 2)
    grad, = torch.autograd.grad(loss.total(terms), raw)
    assert torch.isfinite(grad).all()
    assert torch.equal(raw.detach(), before[0]) and torch.equal(batch.boxes, before[1])
    assert torch.equal(batch.labels, before[2])
    assert float(terms["diag/iou"].detach()) == 0 and float(terms["diag/obj_pos"].detach()) == 0


def test_bf16_autocast_computes_in_float32(tiny_tree):
    raw = random_raw(tiny_tree.num_nodes, 3, 3, seed=5)
    batch = make_batch(raw, tiny_tree.num_nodes, list(range(tiny_tree.num_nodes)), torch.Generator().manual_seed(2))
    loss = RegionLoss(ANCHORS, LossConfig(), tree=tiny_tree, stride=STRIDE)
    raw16 = raw.bfloat16().requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        terms = loss(raw16, batch)
        total = loss.total(terms)
    total.backward()
    expected = loss(raw16.detach().float(), batch)
    for name in TERMS:
        assert terms[name].dtype == torch.float32
        torch.testing.assert_close(terms[name], expected[name])
    assert raw16.grad.dtype == torch.bfloat16 and torch.isfinite(raw16.grad.float()).all()


def test_bad_shapes_are_named():
    loss = RegionLoss(ANCHORS, LossConfig(), num_classes=3, stride=STRIDE)
    batch = classification_batch([0])
    with pytest.raises(ValueError, match="expected \\[B, 3, 8, H, W\\]"):
        loss(torch.zeros(1, 3, 9, 2, 2), batch)
    with pytest.raises(ValueError, match="give a tree"):
        RegionLoss(ANCHORS, LossConfig())


def test_gather_outputs_matches_slicing_on_any_strides(generator):
    """One `take` gives the head channels and the class rows, for contiguous and channels-last-strided outputs,
    and its gradient lands exactly where slicing would put it (repeated rows add up)."""
    B, A, N, H, W = 2, 3, 4, 3, 2
    contiguous = torch.randn(B, A, 5 + N, H, W, generator=generator)
    # What a channels_last conv output viewed as [B, A, 5+N, H, W] looks like: non-contiguous strides.
    strided = contiguous.reshape(B, A * (5 + N), H, W).contiguous(memory_format=torch.channels_last)
    strided = strided.view(B, A, 5 + N, H, W)
    assert not strided.is_contiguous()
    rows = torch.tensor([0, 7, 7, B * A * H * W - 1])            # flat (image, anchor, row, column), one repeated
    b, a = rows // (A * H * W), rows // (H * W) % A
    j, i = rows // W % H, rows % W
    weights = torch.randn(B, A, 5, H, W, generator=generator), torch.randn(len(rows), N, generator=generator)
    for raw in (contiguous, strided):
        raw = raw.clone().requires_grad_() if raw.is_contiguous() else raw.detach().requires_grad_()
        head, class_logits = gather_outputs(raw, rows)
        torch.testing.assert_close(head, raw[:, :, :5], rtol=0, atol=0)
        torch.testing.assert_close(class_logits, raw[b, a, 5:, j, i], rtol=0, atol=0)
        grad, = torch.autograd.grad((head * weights[0]).sum() + (class_logits * weights[1]).sum(), raw)
        expected, = torch.autograd.grad((raw[:, :, :5] * weights[0]).sum() + (raw[b, a, 5:, j, i] * weights[1]).sum(),
                                        raw)
        torch.testing.assert_close(grad, expected)


def test_channels_last_output_gives_the_same_loss(tiny_tree):
    raw = random_raw(tiny_tree.num_nodes, 3, 3, seed=11)
    batch = make_batch(raw, tiny_tree.num_nodes, list(range(tiny_tree.num_nodes)), torch.Generator().manual_seed(4))
    B, A, C, H, W = raw.shape
    strided = raw.reshape(B, A * C, H, W).contiguous(memory_format=torch.channels_last).view(B, A, C, H, W)
    loss = RegionLoss(ANCHORS, LossConfig(), tree=tiny_tree, stride=STRIDE)
    raw, strided = raw.requires_grad_(), strided.detach().requires_grad_()
    ours, theirs = loss(raw, batch), loss(strided, batch)
    for name in TERMS:
        torch.testing.assert_close(ours[name], theirs[name], msg=name)
    grad, = torch.autograd.grad(loss.total(ours), raw)
    grad_strided, = torch.autograd.grad(loss.total(theirs), strided)
    torch.testing.assert_close(grad, grad_strided)


def test_classification_noobj_off_leaves_other_objectness_alone(tiny_tree):
    """`classification_noobj: false` (the paper's "only backpropagate classification loss"): on a classification
    image only the chosen prediction gets objectness and class gradient."""
    g = torch.Generator().manual_seed(4)
    raw = torch.randn(2, 2, 5 + tiny_tree.num_nodes, 2, 2, generator=g)
    raw[:, :, 4] = raw[:, :, 4].clamp(max=0) - 2
    raw.requires_grad_()
    loss = RegionLoss(ANCHORS[:2], LossConfig(classification_noobj=False), tree=tiny_tree, stride=STRIDE)
    terms = loss(raw, classification_batch([6, 9]))
    assert float(terms["noobj"]) == 0
    grad, = torch.autograd.grad(loss.total(terms), raw)
    touched = grad.abs().sum(2).flatten(1) > 0                # [B, P]: predictions with any gradient
    assert touched.sum(1).tolist() == [1, 1]
