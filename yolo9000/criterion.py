"""What the training engine minimises, per head (paper sections 3 and 4); `yolo9000.builder` picks one.

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

from wordtree.tree import TreeBuffers, WordTree
from yolo9000.config import LossConfig
from yolo9000.data.collate import Batch


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
        self.tree_buffers = TreeBuffers(tree) if tree is not None else None  # moves with the loss (`.to`)
        self.num_classes = num_classes

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
            if self.tree_buffers is not None:
                from wordtree.ops import tree_nll

                nll = tree_nll(logits, labels, self.tree_buffers.tree)
            else:
                nll = F.cross_entropy(logits, labels, ignore_index=-1, reduction="none")
        active = (labels >= 0).float()
        B = logits.shape[0]
        with torch.no_grad():
            cls_prob = ((-nll.detach()).exp() * active).sum() / active.sum().clamp(min=1)
        return {"cls": nll.sum() / B, "diag/cls_prob": cls_prob}

    def total(self, terms: dict[str, Tensor]) -> Tensor:
        """The objective: the weighted class term."""
        return self.cfg.cls * terms["cls"]


def loss_term_names(terms: dict[str, Tensor]) -> list[str]:
    """The optimised terms of a loss dict (the `diag/...` entries are diagnostics), in a stable order."""
    return [name for name in terms if not name.startswith("diag/")]
