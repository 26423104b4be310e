"""What the training engine minimises, per model kind (paper sections 3 and 4).

* Detectors (YOLOv2, YOLO9000): `yolo9000.loss.RegionLoss`, which handles mixed batches of detection and
  classification images.
* The Darknet-19 classifier (pretraining at 224, fine-tuning at 448): `ClassifierLoss`, softmax cross-entropy over
  flat classes, or darknet9000.cfg's hierarchical softmax (`[softmax] tree` + `[cost] masked`: cross-entropy of
  every sibling group on the label's root path, nothing else), which is `wordtree.ops.tree_nll`.

Both return a dict of unweighted terms (plus detached `diag/...` scalars) and weight them in `total()` with the
LossConfig, so the engine applies the weights in exactly one place whatever the model.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from wordtree.tree import WordTree
from yolo9000.config import LossConfig, ModelConfig
from yolo9000.data.collate import Batch
from yolo9000.loss import RegionLoss


class ClassifierLoss(nn.Module):
    """Image-level classification loss over the first label of each image.

    Args:
        cfg: `cls` weights the term.
        tree: WordTree of the N outputs (hierarchical softmax), or None for a flat softmax.
        num_classes: N (checked against the logits).
    """

    def __init__(self, cfg: LossConfig, tree: WordTree | None, num_classes: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.tree = tree
        self.num_classes = num_classes
        self._trees: dict[torch.device, WordTree] = {}

    def forward(self, logits: Tensor, batch: Batch, seen: int = 0) -> dict[str, Tensor]:
        """Terms of one batch.

        Args:
            logits: Float[B, N] classifier output.
            batch: labels[:, 0] is each image's class (tree node); -1 means none (no loss).
            seen: unused (the region loss needs it; same signature).
        Returns:
            {"cls": mean over the batch of -log P(label)} and detached "diag/cls_prob" (mean P(label)).
        """
        if logits.ndim != 2 or logits.shape[1] != self.num_classes:
            raise ValueError(f"ClassifierLoss: logits have shape {tuple(logits.shape)}, expected [B, "
                             f"{self.num_classes}]")
        labels = batch.labels[:, 0].to(logits.device)
        with torch.autocast(logits.device.type, enabled=False):
            logits = logits.float()
            if self.tree is not None:
                from wordtree.ops import tree_nll

                nll = tree_nll(logits, labels, self._tree_on(logits.device))
            else:
                nll = F.cross_entropy(logits, labels, ignore_index=-1, reduction="none")
        active = (labels >= 0).float()
        B = logits.shape[0]
        with torch.no_grad():
            cls_prob = ((-nll.detach()).exp() * active).sum() / active.sum().clamp(min=1)
        return {"cls": nll.sum() / B, "diag/cls_prob": cls_prob}

    def _tree_on(self, device: torch.device) -> WordTree:
        if device not in self._trees:
            self._trees[device] = self.tree.to(device)
        return self._trees[device]

    def total(self, terms: dict[str, Tensor]) -> Tensor:
        """The objective: the weighted class term."""
        return self.cfg.cls * terms["cls"]


def build_criterion(model_cfg: ModelConfig, loss_cfg: LossConfig, model: nn.Module,
                    tree: WordTree | None) -> nn.Module:
    """The loss module for a model built from `model_cfg` (anchors, stride and class count read off the model).

    Returns:
        An nn.Module with `forward(output, batch, seen) -> dict[str, Tensor]` and `total(terms) -> Tensor`.
    """
    num_classes = int(model.num_classes)
    if model_cfg.kind == "darknet19":
        return ClassifierLoss(loss_cfg, tree, num_classes)
    return RegionLoss(model.anchors.detach().clone(), loss_cfg, tree=tree,
                      num_classes=None if tree is not None else num_classes, stride=int(model.stride))


def loss_term_names(terms: dict[str, Tensor]) -> list[str]:
    """The optimised terms of a loss dict (the `diag/...` entries are diagnostics), in a stable order."""
    return [name for name in terms if not name.startswith("diag/")]
