"""Evaluation: COCO mAP through pycocotools, the YOLO9000 split, top-k and per-depth accuracy (paper section 4).

Detection scores follow darknet's validation with a class map (`get_region_detections` with `map`): every box gets,
for each evaluated category k, the score `objectness * P(node_k)` where `node_k` is the category's tree node and
`P` the absolute (path-product) probability; a flat model uses `objectness * softmax(class)[k]`. Categories that
only had classification data are evaluated the same way, which is what the paper's split measures (19.7 mAP overall,
16.0 on the 156 classes without detection data).
"""
from __future__ import annotations

import contextlib
import io
import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from torch import Tensor
from torchvision.ops import batched_nms

from wordtree.tree import WordTree
from yolo9000.decode import decode


@dataclass(frozen=True)
class DetectionMetrics:
    """COCO detection metrics.

    Attributes:
        map: mAP@[.5:.95] over categories with ground truth.
        map50: mAP@.5.
        per_class_ap: category id -> AP@[.5:.95] (NaN when the category has no ground truth).
        per_class_ap50: category id -> AP@.5.
    """

    map: float
    map50: float
    per_class_ap: dict[int, float] = field(default_factory=dict)
    per_class_ap50: dict[int, float] = field(default_factory=dict)


def _as_coco(gt: COCO | Mapping[str, Any]) -> COCO:
    if isinstance(gt, COCO):
        return gt
    coco = COCO()
    coco.dataset = dict(gt)
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def coco_map(gt: COCO | Mapping[str, Any], detections: Sequence[Mapping[str, Any]],
             cat_ids: Sequence[int] | None = None, image_ids: Sequence[int] | None = None) -> DetectionMetrics:
    """Run the real `COCOeval` (bbox) and read overall and per-class AP out of its precision array.

    Args:
        gt: a COCO object or a COCO-format dict (images, annotations, categories).
        detections: COCO result dicts: image_id, category_id, bbox [x, y, w, h] original pixels, score.
        cat_ids: categories to evaluate (default: all of gt's).
        image_ids: images to evaluate (default: all of gt's).

    Returns:
        DetectionMetrics; means are over the evaluated categories that have ground truth.
    """
    coco_gt = _as_coco(gt)
    cat_ids = list(cat_ids) if cat_ids is not None else sorted(coco_gt.getCatIds())
    if not detections:
        nan = {c: (0.0 if coco_gt.getAnnIds(catIds=[c]) else math.nan) for c in cat_ids}
        return DetectionMetrics(0.0, 0.0, dict(nan), dict(nan))
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress we do not want in the demo
        coco_dt = coco_gt.loadRes([dict(d) for d in detections])
        ev = COCOeval(coco_gt, coco_dt, "bbox")
        ev.params.catIds = cat_ids
        if image_ids is not None:
            ev.params.imgIds = list(image_ids)
        ev.evaluate()
        ev.accumulate()
    # precision: [T iou thresholds, R recall points, K categories, A area ranges, M max-dets]; area "all" is 0 and
    # maxDets=100 is the last entry, which is what COCOeval.summarize reports as AP.
    precision = ev.eval["precision"][:, :, :, 0, -1]
    per_ap, per_ap50 = {}, {}
    for k, cat in enumerate(cat_ids):
        p = precision[:, :, k]
        per_ap[cat] = float(p[p > -1].mean()) if (p > -1).any() else math.nan
        p50 = p[0]
        per_ap50[cat] = float(p50[p50 > -1].mean()) if (p50 > -1).any() else math.nan
    return DetectionMetrics(_nanmean(per_ap.values()), _nanmean(per_ap50.values()), per_ap, per_ap50)


def _nanmean(values: Any) -> float:
    vals = [v for v in values if not math.isnan(v)]
    return float(np.mean(vals)) if vals else math.nan


def split_map(per_class_ap: Mapping[int, float], groups: Mapping[str, Sequence[int]]) -> dict[str, float]:
    """Mean AP per named group of category ids (the YOLO9000 split: classes with / without detection data).

    Categories without ground truth (NaN AP) are left out of every mean, as COCOeval does.
    """
    return {name: _nanmean(per_class_ap[c] for c in ids if c in per_class_ap) for name, ids in groups.items()}


# ----------------------------------------------------------------------------------------------- classification
def topk_accuracy(abs_probs: Tensor, labels: Tensor, tree: WordTree | None = None, ks: Sequence[int] = (1, 5),
                  leaves: Tensor | None = None) -> dict[int, float]:
    """Top-k accuracy over the tree's leaves (darknet's classifier: `hierarchy_predictions(only_leaves=1)`).

    Args:
        abs_probs: Float[B, N] absolute probabilities (or flat class probabilities when `tree` is None).
        labels: Long[B] true node / class indices.
        tree: restricts candidates to its leaves unless `leaves` is given.
        ks: the k values.
        leaves: Bool[N] or Long[L] candidate set (darknet's `change_leaves`), overrides the tree's leaves.

    Returns:
        k -> fraction of rows whose label is among the k most probable candidates.
    """
    mask = None
    if leaves is not None:
        mask = leaves if leaves.dtype == torch.bool else torch.zeros(
            abs_probs.shape[-1], dtype=torch.bool, device=abs_probs.device).index_fill_(0, leaves, True)
    elif tree is not None:
        mask = tree.is_leaf
    scores = abs_probs if mask is None else abs_probs.masked_fill(~mask.to(abs_probs.device), float("-inf"))
    top = scores.topk(min(max(ks), scores.shape[-1]), dim=-1).indices
    hit = top == labels[:, None]
    return {k: float(hit[:, :k].any(dim=1).float().mean()) if len(labels) else math.nan for k in ks}


def depth_accuracy(decided: Tensor, labels: Tensor, tree: WordTree) -> Tensor:
    """Accuracy per tree depth: at depth d, the decided node's ancestor at d equals the truth's ancestor at d.

    Rows whose truth is shallower than d do not count at depth d; rows whose decision stopped above d count as
    wrong there (the decision did not reach that depth). So depth 0 asks "right root?", deeper entries ask "right
    so far, and specific enough?".

    Args:
        decided: Long[B] decided node indices.
        labels: Long[B] true node indices.
        tree: the WordTree (paths Long[N, D+1]).

    Returns:
        Float[D+1] accuracy per depth, NaN where no truth is that deep.
    """
    paths = tree.paths.to(decided.device)
    pred_path, true_path = paths[decided], paths[labels]          # [B, D+1], -1 padded
    valid = true_path >= 0
    correct = (pred_path == true_path) & valid
    counts = valid.sum(dim=0).float()
    return torch.where(counts > 0, correct.sum(dim=0).float() / counts.clamp(min=1), torch.nan)


def ancestor_rate(decided: Tensor, labels: Tensor, tree: WordTree) -> float:
    """Fraction of rows whose decided node is the truth or one of its ancestors (a correct, maybe coarse, answer)."""
    paths = tree.paths.to(decided.device)
    return float((paths[labels] == decided[:, None]).any(dim=1).float().mean()) if len(labels) else math.nan


# ----------------------------------------------------------------------------------------------- detection scoring
def category_scores(raw: Tensor, anchors: Tensor, stride: int, tree: WordTree | None,
                    category_nodes: Tensor) -> tuple[Tensor, Tensor]:
    """Boxes and per-category scores of every prediction, darknet's validation rule with a class map.

    Args:
        raw: Float[B, A, 5+N, H, W] network output.
        anchors: Float[A, 2] grid units.
        stride: pixels per cell.
        tree: the WordTree for a tree model, None for a flat one.
        category_nodes: Long[K] tree node (or flat class) of each evaluated category.

    Returns:
        boxes Float[B, P, 4] xyxy input pixels and scores Float[B, P, K] = objectness * P(node_k), P = A*H*W.
    """
    dec = decode(raw.float(), anchors, stride)
    B = raw.shape[0]
    logits = dec.class_logits.reshape(B, -1, dec.class_logits.shape[-1])
    if tree is None:
        probs = logits.softmax(dim=-1)
    else:
        from wordtree.ops import absolute_probs, grouped_log_softmax
        probs = absolute_probs(grouped_log_softmax(logits, tree), tree)
    scores = dec.objectness.reshape(B, -1, 1) * probs[..., category_nodes.to(raw.device)]
    return dec.boxes.reshape(B, -1, 4), scores


def coco_detections(boxes: Tensor, scores: Tensor, category_ids: Sequence[int], image_ids: Tensor,
                    letterbox: Tensor, orig_sizes: Tensor, conf_threshold: float = 0.005, nms_iou: float = 0.45,
                    max_detections: int = 100) -> list[dict[str, Any]]:
    """Threshold, per-class NMS and top-`max_detections` per image, mapped back to original pixels as COCO results.

    Args:
        boxes: Float[B, P, 4] xyxy input pixels.
        scores: Float[B, P, K].
        category_ids: K COCO category ids.
        image_ids: Long[B].
        letterbox: Float[B, 3] (scale, pad_x, pad_y): input = original * scale + pad.
        orig_sizes: Long[B, 2] (height, width).
        conf_threshold: minimum score (darknet's validation uses .005).
        nms_iou: IoU above which a lower-scoring box of the same image and category is removed.
        max_detections: per image, as COCOeval's maxDets=100.

    Returns:
        A list of COCO result dicts.
    """
    b_idx, p_idx, k_idx = (scores > conf_threshold).nonzero(as_tuple=True)
    if b_idx.numel() == 0:
        return []
    cand_scores = scores[b_idx, p_idx, k_idx]
    num_cats = scores.shape[-1]
    scale, pad = letterbox[b_idx, 0:1], letterbox[b_idx, 1:3].repeat(1, 2)
    cand_boxes = (boxes[b_idx, p_idx] - pad) / scale
    h, w = orig_sizes[b_idx, 0:1].float(), orig_sizes[b_idx, 1:2].float()
    limits = torch.cat([w, h, w, h], dim=1)
    cand_boxes = torch.minimum(cand_boxes.clamp(min=0), limits)
    keep = batched_nms(cand_boxes, cand_scores, b_idx * num_cats + k_idx, nms_iou)   # sorted by score, descending
    keep = keep[torch.argsort(b_idx[keep], stable=True)]                              # group by image, keep order
    kb = b_idx[keep]
    first = torch.searchsorted(kb, kb, right=False)                                  # start of each image's run
    keep = keep[(torch.arange(len(kb), device=kb.device) - first) < max_detections]
    xyxy = cand_boxes[keep]
    xywh = torch.cat([xyxy[:, :2], xyxy[:, 2:] - xyxy[:, :2]], dim=1).tolist()
    cats = torch.as_tensor(list(category_ids))[k_idx[keep].cpu()].tolist()
    ids = image_ids[b_idx[keep]].tolist()
    return [{"image_id": i, "category_id": c, "bbox": [round(v, 2) for v in box], "score": s}
            for i, c, box, s in zip(ids, cats, xywh, cand_scores[keep].tolist())]
