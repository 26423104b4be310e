"""The YOLOv2 / YOLO9000 region loss with hierarchical classification (paper sections 2 and 4).

This reproduces darknet's `forward_region_layer` (darknet_yolo9000.md section 4) as a loss whose gradient with
respect to the raw output equals darknet's deltas (up to sign and the configured weights). Darknet writes
"target - output" deltas on the ACTIVATED values (sigmoid for x, y and objectness, identity for w, h) and then
multiplies them by the activation's gradient, so its delta of scale s is the negative gradient of

    s * 0.5 * (activated - target) ** 2

with respect to the raw output. Every squared term below therefore carries the 0.5. Darknet's softmax delta
"target - p" is the negative gradient of the cross-entropy, so the class term is the (tree) negative log-likelihood.

Terms (all unweighted; `weighted_total` applies `LossConfig` weights, and it is the only place that does):

    coord   detection truths: 0.5 * (2 - w*h) * [(sig(tx) - x*)^2 + (sig(ty) - y*)^2 + (tw - w*)^2 + (th - h*)^2]
    obj     detection truths: 0.5 * (sig(to) - IoU)^2 (target 1 without rescore); classification images in
            "paper" mode: 0.5 * max(0, min_iou - sig(to))^2 at the chosen prediction ("darknet" mode: none)
    noobj   0.5 * sig(to)^2 on every prediction except: those owning a truth, those overlapping a truth of their
            image by IoU > ignore_iou, and the chosen prediction of a classification image (none at all on
            classification images with `classification_noobj: false`, the paper's "only classification loss")
    prior   while seen < prior_images, on every prediction of the detection images that owns no truth (darknet
            overwrites the prior delta of those): 0.5 * [(sig(tx) - .5)^2 + (sig(ty) - .5)^2 + tw^2 + th^2]
    cls     tree_nll (sum of -log P(k | parent) over the label's root path) or flat softmax cross-entropy, at each
            owned prediction and at each classification image's chosen prediction

Each term is a sum over the batch divided by the batch size B (loss per image), as darknet's per-image deltas
accumulate over a batch. Regression targets, the IoU target and all assignments are constants (no gradient).

Diagnostics are returned in the same dict under `diag/...` keys, detached: `diag/iou` (mean IoU of the truths with
their predictions), `diag/recall50` (fraction with IoU > .5), `diag/cls_prob` (mean P(label) at the owned and chosen
predictions, darknet's "Avg Cat"), `diag/obj_pos` (mean objectness of owned predictions), `diag/obj_neg` (mean
objectness of every prediction of the detection images, darknet's "Avg Any"), `diag/obj_cls` (mean objectness at the
chosen predictions of classification images) and `diag/boxes_dropped` (truths dropped by `max_boxes` or for a
degenerate box; the training engine logs it). `weighted_total` ignores them.

Cost: a YOLO9000 output is 150 MB (416x416, batch 8), so the loss never copies it whole. It reads the five box
channels of every prediction, the class logits of the owned and chosen predictions (one `take`, hence one dense
gradient) and, to choose the prediction of a classification image, only the logits of the groups on its label's
path at every prediction. Under bf16 autocast only those elements are converted to float32.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from wordtree.tree import TreeBuffers, WordTree
from yolo9000.assign import assign_classification, assign_detection
from yolo9000.config import LossConfig
from yolo9000.data.collate import Batch
from yolo9000.decode import decode

TERMS = ("coord", "obj", "noobj", "prior", "cls")


def weighted_total(terms: dict[str, Tensor], cfg: LossConfig) -> Tensor:
    """The training objective: sum of the named terms times their `LossConfig` weights (diagnostics ignored)."""
    weights = {"coord": cfg.coord, "obj": cfg.obj, "noobj": cfg.noobj, "prior": cfg.prior, "cls": cfg.cls}
    return sum(weights[name] * terms[name] for name in TERMS)


def gather_outputs(raw: Tensor, rows: Tensor) -> tuple[Tensor, Tensor]:
    """The box and objectness channels of every prediction, and the class logits of a few, in ONE gather.

    These are the only elements of the raw output that get a gradient. Slicing them out piece by piece would make
    autograd build one dense raw-sized gradient per piece and sum them (150 MB each for YOLO9000 at 416x416,
    batch 8, which cost more than the rest of the loss); `take` builds one, writing the few gathered gradients
    into it with accumulation (rows may repeat).

    Args:
        raw: Float[B, A, 5+N, H, W] network output, any strides.
        rows: Long[K] predictions as flat indices into B*A*H*W (image, then anchor, row, column).
    Returns:
        head: Float[B, A, 5, H, W] tx, ty, tw, th, objectness logit of every prediction.
        class_logits: Float[K, N] the class (tree-node) logits of the K rows. Both in raw's dtype.
    """
    B, A, C, H, W = raw.shape
    cells = H * W
    device = raw.device
    # `take` indexes raw in logical row-major order whatever its strides: (((b*A + a)*C + c)*H + h)*W + w.
    plane = torch.arange(B * A, device=device) * (C * cells)
    head_index = (plane[:, None] + torch.arange(5 * cells, device=device)).flatten()   # channels 0..4 of (b, a)
    image_anchor, cell = rows.div(cells, rounding_mode="floor"), rows.remainder(cells)
    class_index = ((image_anchor * (C * cells) + cell)[:, None]
                   + torch.arange(5, C, device=device) * cells).flatten()
    values = raw.take(torch.cat((head_index, class_index)))
    head, class_logits = values.split((head_index.numel(), class_index.numel()))
    return head.view(B, A, 5, H, W), class_logits.view(rows.numel(), C - 5)


class RegionLoss(nn.Module):
    """Region loss over a mixed batch of detection and classification images.

    Args:
        anchors: Float[A, 2] anchor (w, h) in grid units.
        cfg: weights and rules.
        tree: WordTree of the N output nodes (hierarchical softmax), or None for a flat softmax over N classes.
        num_classes: N for a flat model (checked against the tree when both are given).
        stride: input pixels per grid cell.
    """

    def __init__(self, anchors: Tensor, cfg: LossConfig, tree: WordTree | None = None,
                 num_classes: int | None = None, stride: int = 32) -> None:
        super().__init__()
        anchors = torch.as_tensor(anchors, dtype=torch.float32)
        if tree is None and num_classes is None:
            raise ValueError("RegionLoss: give a tree (hierarchical model) or num_classes (flat model)")
        if tree is not None and num_classes is not None and num_classes != tree.num_nodes:
            raise ValueError(f"RegionLoss: num_classes={num_classes} but the tree has {tree.num_nodes} nodes")
        self.register_buffer("anchors", anchors)
        self.cfg = cfg
        self.tree_buffers = TreeBuffers(tree) if tree is not None else None  # moves with the loss (`.to`)
        self.num_classes = tree.num_nodes if tree is not None else int(num_classes)
        self.stride = stride

    @property
    def tree(self) -> WordTree | None:
        """The WordTree on this module's device, or None for a flat model."""
        return self.tree_buffers.tree if self.tree_buffers is not None else None

    def total(self, terms: dict[str, Tensor]) -> Tensor:
        """`weighted_total(terms, self.cfg)`."""
        return weighted_total(terms, self.cfg)

    def _class_nll(self, logits: Tensor, labels: Tensor, tree: WordTree | None) -> Tensor:
        """Per-row class loss. logits Float[..., N], labels Long[...] (-1 = none -> 0) -> Float[...]."""
        if tree is not None:
            from wordtree.ops import tree_nll

            return tree_nll(logits, labels, tree)
        flat = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=-1,
                               reduction="none")
        return flat.view(labels.shape)

    def forward(self, raw: Tensor, batch: Batch, seen: int = 0) -> dict[str, Tensor]:
        """Loss terms of one batch.

        Args:
            raw: Float[B, A, 5+N, H, W] network output (any float dtype; the loss is computed in float32).
            batch: targets; boxes xyxy input pixels, labels tree-node (or class) indices, padded with -1.
            seen: images seen so far in training; the prior term is active while seen < cfg.prior_images.
        Returns:
            {"coord", "obj", "noobj", "prior", "cls"}: scalar Float[] terms, summed over the batch and divided by
            B; plus detached "diag/..." scalars (module docstring).
        """
        A = self.anchors.shape[0]
        if raw.ndim != 5 or raw.shape[1] != A or raw.shape[2] != 5 + self.num_classes:
            raise ValueError(f"RegionLoss: raw output has shape {tuple(raw.shape)}, expected [B, {A}, "
                             f"{5 + self.num_classes}, H, W] for {A} anchors and {self.num_classes} classes")
        if len(batch) != raw.shape[0]:
            raise ValueError(f"RegionLoss: batch has {len(batch)} images but the output has {raw.shape[0]}")
        # Under autocast the network output is bf16/fp16; squared errors and log-softmax need float32. Only the
        # gathered elements are converted (gather_outputs): converting all of `raw` would copy it whole.
        with torch.autocast(raw.device.type, enabled=False):
            return self._forward(raw, batch, seen)

    def _forward(self, raw: Tensor, batch: Batch, seen: int) -> dict[str, Tensor]:
        cfg = self.cfg
        B, A, _, H, W = raw.shape
        P = A * H * W
        device = raw.device
        tree = self.tree
        is_det = batch.is_detection.to(device)
        labels = batch.labels.to(device)
        first_label = labels[:, 0] if labels.shape[1] else torch.full((B,), -1, dtype=torch.long, device=device)

        with torch.no_grad():
            # Assignment looks at the current predictions: boxes and objectness of all, class logits through a
            # permuted view (tree_nll reads only the label's path groups, so nothing is copied whole).
            current = decode(raw.detach()[:, :, :5].float(), self.anchors, self.stride)
            det = assign_detection(batch.boxes, labels, is_det, current.boxes, self.anchors, self.stride,
                                   cfg.ignore_iou, cfg.max_boxes)
            class_view = raw.detach()[:, :, 5:].permute(0, 1, 3, 4, 2)
            cls_img = assign_classification(current.obj_logit, class_view, first_label, ~is_det, tree,
                                            by_label=cfg.classification_match == "label")
        T = det.pred_index.shape[1]
        image_start = torch.arange(B, device=device) * P
        rows = torch.cat(((image_start[:, None] + det.pred_index).flatten(), image_start + cls_img.pred_index))
        head, class_rows = gather_outputs(raw, rows)
        pred = decode(head.float(), self.anchors, self.stride)

        xy = pred.xy.reshape(B, P, 2)
        twh = pred.twh.reshape(B, P, 2)
        obj = pred.objectness.reshape(B, P)
        winner = det.winner.float()

        # Detection truths, gathered at their predictions: [B, T, ...].
        idx = det.pred_index
        out = torch.cat((xy.gather(1, idx[..., None].expand(B, T, 2)), twh.gather(1, idx[..., None].expand(B, T, 2))),
                        dim=-1)
        coord = 0.5 * ((out - det.target) ** 2).sum(-1) * det.coord_scale * winner
        obj_matched = obj.gather(1, idx)
        obj_target = det.iou if cfg.rescore else torch.ones_like(det.iou)
        obj_term = (0.5 * (obj_matched - obj_target) ** 2 * winner).sum()

        # Classification images, at the chosen prediction: [B, ...].
        chosen_obj = obj.gather(1, cls_img.pred_index[:, None]).squeeze(1)
        if cfg.classification_objectness == "paper":
            # The paper assumes the chosen box overlaps the truth by >= min_iou: push objectness up to it, no further.
            shortfall = (cfg.classification_min_iou - chosen_obj).clamp(min=0)
            obj_term = obj_term + (0.5 * shortfall ** 2 * cls_img.active).sum()

        # Class term of the owned predictions (winning truths) and the chosen ones, in one call: rows labelled -1
        # (padding, losing truths, detection images' chosen slot) cost nothing and get no gradient.
        det_labels = torch.where(det.winner, labels, torch.full_like(labels, -1))
        cls_labels = torch.where(cls_img.active, first_label, torch.full_like(first_label, -1))
        nll = self._class_nll(class_rows.float(), torch.cat((det_labels.flatten(), cls_labels)), tree)
        det_nll, cls_nll = nll[:B * T].view(B, T), nll[B * T:]

        positive = det.positive.view(B, P)
        cls_noobj = ~cls_img.chosen.view(B, P) & cfg.classification_noobj
        noobj_mask = torch.where(is_det[:, None], ~(positive | det.ignore.view(B, P)), cls_noobj)
        noobj = (0.5 * obj ** 2 * noobj_mask).sum()

        if seen < cfg.prior_images:
            prior_mask = is_det[:, None] & ~positive
            prior = (0.5 * (((xy - 0.5) ** 2).sum(-1) + (twh ** 2).sum(-1)) * prior_mask).sum()
        else:
            prior = xy.new_zeros(())

        terms = {"coord": coord.sum() / B, "obj": obj_term / B, "noobj": noobj / B, "prior": prior / B,
                 "cls": (det_nll.sum() + cls_nll.sum()) / B}
        terms.update(self._diagnostics(det, cls_img, obj, obj_matched, chosen_obj, det_nll, cls_nll, is_det))
        return terms

    @staticmethod
    @torch.no_grad()
    def _diagnostics(det, cls_img, obj: Tensor, obj_matched: Tensor, chosen_obj: Tensor, det_nll: Tensor,
                     cls_nll: Tensor, is_det: Tensor) -> dict[str, Tensor]:
        """Detached means (0 when their set is empty), computed without leaving the device."""
        def mean(values: Tensor, mask: Tensor) -> Tensor:
            mask = mask.float()
            return (values.detach() * mask).sum() / mask.sum().clamp(min=1)

        winner_cls = det.winner.float()
        cls_active = cls_img.active.float()
        # exp(-nll) is P(label): the product of the conditionals on the root path (darknet's "Avg Cat").
        label_prob = ((-det_nll).exp() * winner_cls).sum() + ((-cls_nll).exp() * cls_active).sum()
        return {
            "diag/iou": mean(det.iou, det.valid),
            "diag/recall50": mean((det.iou > 0.5).float(), det.valid),
            "diag/cls_prob": label_prob / (winner_cls.sum() + cls_active.sum()).clamp(min=1),
            "diag/obj_pos": mean(obj_matched, det.winner),
            "diag/obj_neg": mean(obj, is_det[:, None].expand_as(obj)),
            "diag/obj_cls": mean(chosen_obj, cls_img.active),
            "diag/boxes_dropped": det.dropped.float(),
        }
