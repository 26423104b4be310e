"""Target assignment for the region loss (paper sections 2 and 4; darknet_yolo9000.md sections 4.2-4.3).

Both functions are pure and run under `no_grad`: they return index tensors and masks that `yolo9000.loss` uses to
gather predictions. They are vectorised over the batch and over padded ground truths (no Python loop over images or
boxes, no host synchronisation), so they run unchanged on CPU and CUDA.

Detection images (`assign_detection`): each ground truth goes to the cell holding its centre and to the anchor with
the best shape IoU (darknet's `bias_match=1`). Darknet walks the truths of an image in order and writes their deltas
into the chosen (cell, anchor), so when two truths pick the same one the LAST truth wins; we reproduce that exactly
by giving each prediction the highest truth index that picked it (`scatter_reduce(amax)`, deterministic). The losing
truth gets no coordinate, objectness or class term (darknet would also leave its class deltas on tree groups that
the winner's path does not overwrite; we drop the loser completely, which is the intent).

Classification images (`assign_classification`): the single prediction, over every cell and anchor, that maximises
objectness x P(label), with P(label) the absolute probability (product of the conditionals on the label's root path).
This is the paper's "we simply find the bounding box that predicts the highest probability for that class and we
compute the loss on just its predicted tree", read as YOLO's class-specific confidence Pr(object) x Pr(class), as
darknet computes it (`maxi` in `forward_region_layer`). What the loss then does there (class term on the label's
path only; objectness pushed up to the paper's assumed .3 IoU, or darknet's zero gradient) is in `yolo9000.loss`.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from wordtree.tree import WordTree
from yolo9000.boxes import box_iou_batched, box_iou_pairwise, box_iou_wh, xyxy_to_cxcywh


@dataclass(frozen=True)
class DetectionAssignment:
    """Where every ground truth of the detection images goes. B images, T padded truths, A anchors, H x W grid.

    Attributes:
        valid: Bool[B, T], a usable truth: detection image, label >= 0, positive width and height, within the cap.
        winner: Bool[B, T], valid and owns its prediction (the last truth wins a shared (cell, anchor)).
        pred_index: Long[B, T], the truth's prediction as a flat index into A*H*W (anchor-major, then row, column);
            0 for invalid truths (always masked).
        target: Float[B, T, 4], regression targets (tx, ty, tw, th): the centre's offset inside its cell (compared
            with sigmoid(tx)) and log(w / anchor_w), log(h / anchor_h) (compared with the raw tw, th).
        coord_scale: Float[B, T], 2 - w*h with w, h normalised to the image (small boxes weigh more).
        iou: Float[B, T], IoU of the truth with its prediction's current decoded box (objectness target when
            rescoring, and the recall diagnostic).
        positive: Bool[B, A, H, W], predictions owning a truth.
        ignore: Bool[B, A, H, W], predictions whose box overlaps some truth of the image by IoU > ignore_iou.
        dropped: Long[], truths discarded: degenerate boxes (w or h <= 0) plus those beyond `max_boxes`.
    """

    valid: Tensor
    winner: Tensor
    pred_index: Tensor
    target: Tensor
    coord_scale: Tensor
    iou: Tensor
    positive: Tensor
    ignore: Tensor
    dropped: Tensor


@dataclass(frozen=True)
class ClassificationAssignment:
    """The chosen prediction of every classification image.

    Attributes:
        active: Bool[B], a classification image with a label >= 0.
        pred_index: Long[B], flat index into A*H*W of the prediction maximising objectness x P(label)
            (meaningless where not active).
        chosen: Bool[B, A, H, W], one-hot of pred_index on active images, all False elsewhere.
    """

    active: Tensor
    pred_index: Tensor
    chosen: Tensor


@torch.no_grad()
def assign_detection(boxes: Tensor, labels: Tensor, is_detection: Tensor, pred_boxes: Tensor, anchors: Tensor,
                     stride: float, ignore_iou: float, max_boxes: int | None = None) -> DetectionAssignment:
    """Assign the ground truths of the detection images to predictions (darknet `forward_region_layer`).

    Args:
        boxes: Float[B, T, 4] xyxy input pixels, padded with -1.
        labels: Long[B, T] class or tree-node index, -1 where padded.
        is_detection: Bool[B]; truths of classification images are ignored here.
        pred_boxes: Float[B, A, H, W, 4] decoded boxes, xyxy input pixels (for the ignore mask and the IoU target).
        anchors: Float[A, 2] anchor (w, h) in grid units.
        stride: input pixels per grid cell; the input is W*stride x H*stride pixels.
        ignore_iou: predictions with IoU above this with any truth get no no-object term.
        max_boxes: keep only the first `max_boxes` usable truths per image (darknet: 30); None keeps all.
    Returns:
        DetectionAssignment.
    """
    B, A, H, W, _ = pred_boxes.shape
    T = boxes.shape[1]
    device = pred_boxes.device
    boxes = boxes.to(device=device, dtype=torch.float32)
    labels = labels.to(device)
    anchors = anchors.to(device=device, dtype=torch.float32)
    pred_boxes = pred_boxes.float()

    centre_wh = xyxy_to_cxcywh(boxes) / stride                      # grid units
    cx, cy, bw, bh = centre_wh.unbind(-1)
    labelled = is_detection.to(device)[:, None] & (labels >= 0)
    usable = labelled & (bw > 0) & (bh > 0)
    valid = usable
    if max_boxes is not None:
        valid = usable & (usable.long().cumsum(1) <= max_boxes)
    dropped = (labelled & ~valid).sum()

    # Cell holding the centre; clamp so a centre exactly on the right/bottom border stays in the last cell.
    col = cx.floor().long().clamp(0, W - 1)
    row = cy.floor().long().clamp(0, H - 1)
    safe_wh = torch.where(valid[..., None], centre_wh[..., 2:], torch.ones_like(centre_wh[..., 2:]))
    anchor = box_iou_wh(safe_wh, anchors).argmax(-1)                # first best on ties, like darknet's strict >
    pred_index = torch.where(valid, (anchor * H + row) * W + col, torch.zeros_like(col))

    # Last truth wins a shared prediction: each slot keeps the largest truth index aimed at it. Invalid truths
    # aim at one extra dump slot so every tensor keeps a static shape.
    slots = B * A * H * W
    flat = torch.arange(B, device=device)[:, None] * (A * H * W) + pred_index
    flat = torch.where(valid, flat, torch.full_like(flat, slots))
    truth_idx = torch.arange(T, device=device).expand(B, T)
    owner = torch.full((slots + 1,), -1, dtype=torch.long, device=device)
    owner = owner.scatter_reduce(0, flat.flatten(), truth_idx.flatten(), "amax")
    winner = valid & (owner.gather(0, flat.flatten()).view(B, T) == truth_idx)
    positive = (owner[:slots] >= 0).view(B, A, H, W)

    target = torch.stack((cx - col, cy - row,
                          torch.log(safe_wh[..., 0] / anchors[anchor, 0]),
                          torch.log(safe_wh[..., 1] / anchors[anchor, 1])), dim=-1)
    target = torch.where(valid[..., None], target, torch.zeros_like(target))
    coord_scale = 2 - (bw / W) * (bh / H)

    flat_pred = pred_boxes.reshape(B, A * H * W, 4)
    matched_boxes = flat_pred.gather(1, pred_index[..., None].expand(B, T, 4))
    iou = torch.where(valid, box_iou_pairwise(matched_boxes, boxes), torch.zeros_like(bw))

    if T > 0:
        overlaps = box_iou_batched(flat_pred, boxes)                 # [B, A*H*W, T]
        overlaps = torch.where(valid[:, None, :], overlaps, torch.zeros_like(overlaps))
        ignore = (overlaps.amax(-1) > ignore_iou).view(B, A, H, W)
    else:
        ignore = torch.zeros((B, A, H, W), dtype=torch.bool, device=device)
    return DetectionAssignment(valid=valid, winner=winner, pred_index=pred_index, target=target,
                               coord_scale=coord_scale, iou=iou, positive=positive, ignore=ignore, dropped=dropped)


@torch.no_grad()
def label_log_prob(class_logits: Tensor, labels: Tensor, tree: WordTree | None) -> Tensor:
    """log P(label) at every prediction: the absolute tree probability, or the flat softmax probability.

    For a tree this is -tree_nll with the image's label at every prediction: tree_nll reads only the logits of
    the groups on the label's root path (about 2 % of a 9k row), far cheaper than a full grouped softmax, and it
    skips rows labelled -1 entirely. The logits may be any strided view (e.g. a permuted slice of the raw output):
    nothing here copies them whole.

    Args:
        class_logits: Float[B, ..., N] logits of every prediction of each image (any leading dims after B).
        labels: Long[B] one label per image; -1 (no label) gives 0.
        tree: the WordTree of the N nodes, or None for flat classes.
    Returns:
        Float[B, ...] float32.
    """
    lead = class_logits.shape[:-1]
    per_row = labels.view((-1,) + (1,) * (len(lead) - 1)).expand(lead)
    if tree is None:
        log_probs = F.log_softmax(class_logits.float(), dim=-1)
        picked = log_probs.gather(-1, per_row.clamp(min=0)[..., None]).squeeze(-1)
        return picked * (per_row >= 0)
    from wordtree.ops import tree_nll

    return -tree_nll(class_logits, per_row, tree).float()


@torch.no_grad()
def assign_classification(obj_logit: Tensor, class_logits: Tensor, labels: Tensor, is_classification: Tensor,
                          tree: WordTree | None, by_label: bool = True) -> ClassificationAssignment:
    """Choose, per classification image, the prediction maximising objectness x P(label) (paper section 4).

    With `by_label=False` the choice is the highest objectness alone (`loss.classification_match: objectness`).

    The product is compared in log space (log sigmoid(obj) + log P(label)), which ranks exactly like darknet's
    product but cannot underflow for deep labels. Ties go to the first prediction in (anchor, row, column) order,
    as darknet's strict `p > maxp` scan does.

    Args:
        obj_logit: Float[B, A, H, W] raw objectness logits.
        class_logits: Float[B, A, H, W, N] raw class or tree-node logits (any strides; never copied whole).
        labels: Long[B] the image's label (tree node or class), -1 for none.
        is_classification: Bool[B].
        tree: WordTree for tree models (tensors on the logits' device), None for flat classes.
        by_label: rank by objectness x P(label) (True) or by objectness alone (False).
    Returns:
        ClassificationAssignment.
    """
    B, A, H, W, N = class_logits.shape
    labels = labels.to(obj_logit.device)
    active = is_classification.to(obj_logit.device) & (labels >= 0)
    # Only active images need P(label); -1 lets tree_nll skip the others entirely.
    labels = torch.where(active, labels, torch.full_like(labels, -1))
    score = F.logsigmoid(obj_logit.float())
    if by_label:
        score = score + label_log_prob(class_logits, labels, tree)
    pred_index = score.view(B, A * H * W).argmax(1)
    chosen = F.one_hot(pred_index, A * H * W).bool() & active[:, None]
    return ClassificationAssignment(active=active, pred_index=pred_index, chosen=chosen.view(B, A, H, W))
