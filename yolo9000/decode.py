"""One decode for loss and inference (paper section 2, "Direct location prediction").

    bx = sigmoid(tx) + cx,  by = sigmoid(ty) + cy,  bw = pw * exp(tw),  bh = ph * exp(th),  objectness = sigmoid(to)

Grid units are multiplied by the stride to give input pixels. Nothing here modifies its input.

`postprocess()` turns a raw output into detections for inference (paper section 4, darknet `get_region_detections`):
flat softmax or the WordTree decision walk, score threshold, per-class `batched_nms`, top-k, letterbox mapping.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor
from torchvision.ops import batched_nms

from wordtree.ops import DECIDE_MODES, absolute_probs, decide, grouped_log_softmax
from wordtree.tree import WordTree


@dataclass(frozen=True)
class Decoded:
    """Predictions of a raw Float[B, A, 5+C, H, W] output, laid out [B, A, H, W, ...].

    Attributes:
        xy: Float[B, A, H, W, 2], sigmoid(tx, ty): the box centre's offset inside its cell, 0..1.
        twh: Float[B, A, H, W, 2], raw tw, th (what the coordinate loss compares with log(w / pw)).
        boxes: Float[B, A, H, W, 4], xyxy in input pixels.
        obj_logit: Float[B, A, H, W], raw objectness logit.
        objectness: Float[B, A, H, W], sigmoid(obj_logit).
        class_logits: Float[B, A, H, W, C], raw class (or tree node) logits.
        stride: pixels per grid cell.
    """

    xy: Tensor
    twh: Tensor
    boxes: Tensor
    obj_logit: Tensor
    objectness: Tensor
    class_logits: Tensor
    stride: float


def grid_offsets(height: int, width: int, device: torch.device, dtype: torch.dtype) -> Tensor:
    """Float[H, W, 2]: (cx, cy) of each cell's top-left corner in grid units."""
    ys, xs = torch.meshgrid(torch.arange(height, device=device, dtype=dtype),
                            torch.arange(width, device=device, dtype=dtype), indexing="ij")
    return torch.stack((xs, ys), dim=-1)


def decode(raw: Tensor, anchors: Tensor, stride: float) -> Decoded:
    """Decode a raw network output.

    Args:
        raw: Float[B, A, 5+C, H, W]: tx, ty, tw, th, objectness logit, C class logits.
        anchors: Float[A, 2] anchor (w, h) in grid units.
        stride: input pixels per grid cell (32 for every network here).
    Returns:
        Decoded, all fields laid out [B, A, H, W, ...]; boxes in input pixels.
    """
    B, A, _, H, W = raw.shape
    if anchors.shape != (A, 2):
        raise ValueError(f"decode: anchors have shape {tuple(anchors.shape)}, the output has {A} anchors")
    out = raw.permute(0, 1, 3, 4, 2)  # [B, A, H, W, 5+C]: last dim is what softmax and gathers work on
    xy = out[..., 0:2].sigmoid()
    twh = out[..., 2:4]
    anchors = anchors.to(device=raw.device, dtype=torch.float32)
    # exp in float32: under bf16 autocast exp(tw) loses too much precision for box sizes.
    wh = twh.float().exp() * anchors.view(1, A, 1, 1, 2)
    centre = xy.float() + grid_offsets(H, W, raw.device, torch.float32)
    boxes = torch.cat((centre - wh / 2, centre + wh / 2), dim=-1) * stride
    obj_logit = out[..., 4]
    return Decoded(xy=xy, twh=twh, boxes=boxes, obj_logit=obj_logit, objectness=obj_logit.sigmoid(),
                   class_logits=out[..., 5:], stride=float(stride))


# ---------------------------------------------------------------------------------------------------- postprocess
# Inference after decode(): class probabilities (flat softmax or the WordTree walk of paper section 4 / darknet
# `get_region_detections`), score threshold, per-class NMS, top-k, and the letterbox mapping back to the image.


@dataclass(frozen=True)
class PathStep:
    """One step of a detection's root-to-node path.

    Attributes:
        node: tree node index (the class index for a flat model).
        wnid: WordNet id, None for a flat model.
        name: display name.
        prob: P(node | parent), the conditional probability the model predicted for this step.
    """

    node: int
    wnid: str | None
    name: str
    prob: float


@dataclass(frozen=True)
class Detection:
    """One detected object.

    Attributes:
        box: (x1, y1, x2, y2) in original image pixels, clipped to the image.
        score: objectness * prob, what the confidence threshold and NMS use.
        objectness: sigmoid of the objectness logit, P(object).
        label: decided tree node index (the class index for a flat model).
        wnid: the decided node's WordNet id, None for a flat model.
        name: display name of the decided node or class.
        prob: P(decided node | object): the product of the path's conditionals (flat: the class's softmax).
        path: root-to-decided-node steps; the product of their probs is `prob` (flat: one step, the class).
        probs: Float[N] on the CPU, this box's absolute probability of every node (flat: every class), for
            subtree queries; not part of equality or repr.
    """

    box: tuple[float, float, float, float]
    score: float
    objectness: float
    label: int
    wnid: str | None
    name: str
    prob: float
    path: tuple[PathStep, ...]
    probs: Tensor | None = field(default=None, repr=False, compare=False)

    @property
    def depth(self) -> int:
        """Depth of the decided node (0 = a root; always 0 for a flat model)."""
        return len(self.path) - 1

    def to_dict(self) -> dict:
        """JSON-friendly dict (without `probs`)."""
        return {"box": [round(v, 2) for v in self.box], "score": round(self.score, 5),
                "objectness": round(self.objectness, 5), "label": self.label, "wnid": self.wnid, "name": self.name,
                "prob": round(self.prob, 5),
                "path": [{"node": s.node, "wnid": s.wnid, "name": s.name, "prob": round(s.prob, 5)}
                         for s in self.path]}


@dataclass(frozen=True)
class Kept:
    """The detections of a batch as tensors (K kept boxes), grouped by image, best score first within an image.

    Attributes:
        image: Long[K] batch index of each detection.
        boxes: Float[K, 4] xyxy, original image pixels (input pixels when no letterbox was given), clipped.
        scores: Float[K] objectness * P(label).
        objectness: Float[K].
        labels: Long[K] decided tree node (or flat class).
        label_probs: Float[K] P(label) (tree: absolute, the product of the path's conditionals).
        path_nodes: Long[K, D+1] root-to-label node indices, -1 padded (flat: Long[K, 1], the class).
        path_probs: Float[K, D+1] P(node | parent) at each step, 0 where padded (flat: the class probability).
        probs: Float[K, N] absolute probability of every node (flat: class softmax).
    """

    image: Tensor
    boxes: Tensor
    scores: Tensor
    objectness: Tensor
    labels: Tensor
    label_probs: Tensor
    path_nodes: Tensor
    path_probs: Tensor
    probs: Tensor


NMS_GROUPINGS = ("label", "root", "all")


def postprocess_tensors(raw: Tensor, anchors: Tensor, stride: float, tree: WordTree | None = None, *,
                        conf_threshold: float = 0.25, nms_iou: float = 0.45, hier_threshold: float = 0.5,
                        mode: str = "paper", max_depth: int | None = None, max_detections: int = 100,
                        letterbox: Tensor | None = None, orig_sizes: Tensor | None = None,
                        nms_by: str = "label") -> Kept:
    """From a raw network output to the kept detections of every image, vectorised over the whole batch.

    Class probabilities: a flat model takes the softmax and its best class; a tree model takes the grouped softmax
    (P(node | parent)) and the top-down decision walk (`wordtree.ops.decide`, "paper" or "darknet" mode with
    `hier_threshold`), optionally capped at depth `max_depth` (the walk descends the argmax path, so the capped
    decision is the uncapped one's ancestor at that depth). score = objectness * P(decided node) in both modes
    (darknet's CLI prints the bare objectness in its own mode; a product keeps scores comparable across modes).
    Boxes with score > conf_threshold go through per-image, per-label `batched_nms`, then the best
    `max_detections` per image are kept.

    Args:
        raw: Float[B, A, 5+N, H, W] network output (any float dtype; computed in float32).
        anchors: Float[A, 2] grid units.
        stride: input pixels per grid cell.
        tree: the WordTree of a tree model, None for a flat model.
        conf_threshold: minimum score (darknet's CLI: .25 for `detect`, .005 for validation).
        nms_iou: IoU above which the lower-scoring of two boxes with the same image and NMS group is removed.
        hier_threshold: the decision walk's threshold (darknet's `-hier`, .5).
        mode: "paper" or "darknet" (see `wordtree.ops.decide`).
        max_depth: cap the decision at this depth (0 = roots); None for no cap.
        max_detections: per image.
        letterbox: Float[B, 3] (scale, pad_x, pad_y) with input = original * scale + pad; None: no mapping.
        orig_sizes: Long[B, 2] original (height, width) to clip to; None: the input size.
        nms_by: which boxes compete in NMS: "label" (same decided node, darknet's per-class NMS), "root" (decided
            nodes under the same tree root: a box decided "pentagon" and one decided "polygon" on the same figure
            are one object; flat models: same as "label"), or "all" (class-agnostic).
    Returns:
        Kept.
    """
    if nms_by not in NMS_GROUPINGS:
        raise ValueError(f"postprocess: nms_by {nms_by!r} is not one of {NMS_GROUPINGS}")
    if mode not in DECIDE_MODES:
        raise ValueError(f"postprocess: mode {mode!r} is not one of {DECIDE_MODES}")
    if max_depth is not None and max_depth < 0:
        raise ValueError(f"postprocess: max_depth {max_depth} must be >= 0")
    B, _, C5, H, W = raw.shape
    num_classes = C5 - 5
    if tree is not None and tree.num_nodes != num_classes:
        raise ValueError(f"postprocess: the output has {num_classes} class logits but the tree has "
                         f"{tree.num_nodes} nodes")
    dec = decode(raw.float(), anchors, stride)
    device = raw.device
    objectness = dec.objectness.reshape(B, -1)
    # P(label) <= 1, so a box whose objectness is already at or below the threshold can never pass: skip the
    # softmax and the tree walk for those (most boxes of a trained model).
    b_idx, p_idx = (objectness > conf_threshold).nonzero(as_tuple=True)
    logits = dec.class_logits.reshape(B, -1, num_classes)[b_idx, p_idx]                      # [C, N]
    obj = objectness[b_idx, p_idx]
    if tree is None:
        probs = logits.softmax(dim=-1)
        label_probs, labels = probs.max(dim=-1)
        cond = None
    else:
        tree = tree.to(device) if tree.parent.device != device else tree
        log_cond = grouped_log_softmax(logits, tree)
        cond = log_cond.exp()
        labels = decide(cond, tree, threshold=hier_threshold, mode=mode).node
        if max_depth is not None:
            labels = tree.paths[labels, tree.depth[labels].clamp(max=max_depth)]
        # P(label) is the product of the conditionals on its root path: a gather of D+1 values per box, much
        # cheaper than every node's absolute probability, which only the kept boxes need (below).
        label_paths = tree.paths[labels]
        label_probs = torch.where(label_paths >= 0, log_cond.gather(1, label_paths.clamp(min=0)), 0.0).sum(1).exp()
    scores = obj * label_probs
    passed = (scores > conf_threshold).nonzero().squeeze(1)
    b_idx, p_idx, labels, scores, obj = b_idx[passed], p_idx[passed], labels[passed], scores[passed], obj[passed]
    boxes = dec.boxes.reshape(B, -1, 4)[b_idx, p_idx]
    if letterbox is not None:
        lb = letterbox.to(device=device, dtype=torch.float32)[b_idx]
        boxes = (boxes - lb[:, 1:3].repeat(1, 2)) / lb[:, 0:1]
    if orig_sizes is not None:
        hw = orig_sizes.to(device=device, dtype=torch.float32)[b_idx]
    else:
        hw = torch.tensor([[H * stride, W * stride]], dtype=torch.float32, device=device).expand(len(b_idx), 2)
    boxes = torch.minimum(boxes.clamp(min=0), hw[:, [1, 0, 1, 0]])
    if nms_by == "all":
        groups = torch.zeros_like(labels)
    elif nms_by == "root" and tree is not None:
        groups = tree.paths[labels, 0]
    else:
        groups = labels
    keep = batched_nms(boxes, scores, b_idx * num_classes + groups, nms_iou)    # best score first
    keep = keep[torch.argsort(b_idx[keep], stable=True)]                         # grouped by image, still sorted
    kb = b_idx[keep]
    rank = torch.arange(len(kb), device=device) - torch.searchsorted(kb, kb)    # position within its image
    keep = keep[rank < max_detections]
    rows = passed[keep]
    labels = labels[keep]
    if tree is None:
        path_nodes = labels[:, None]
        path_probs = label_probs[rows][:, None]
        kept_probs = probs[rows]
    else:
        path_nodes = tree.paths[labels]
        path_probs = torch.where(path_nodes >= 0, cond[rows].gather(1, path_nodes.clamp(min=0)), 0.0)
        kept_probs = absolute_probs(log_cond[rows], tree)
    return Kept(image=b_idx[keep], boxes=boxes[keep], scores=scores[keep], objectness=obj[keep], labels=labels,
                label_probs=label_probs[rows], path_nodes=path_nodes, path_probs=path_probs, probs=kept_probs)


def to_detections(kept: Kept, batch_size: int, tree: WordTree | None = None,
                  names: Sequence[str] | None = None) -> list[list[Detection]]:
    """Split Kept tensors into one list of Detection per image (the only per-image Python loop).

    Args:
        kept: from postprocess_tensors.
        batch_size: B, the number of images (images without detections get an empty list).
        tree: names and wnids come from the tree for a tree model.
        names: class names of a flat model (default "class<k>").
    """
    if tree is not None:
        wnids, node_names = tree.wnids, tree.names
    else:
        wnids, node_names = None, names
    k = kept.labels.numel()
    boxes = kept.boxes.cpu().tolist()
    scores, obj = kept.scores.cpu().tolist(), kept.objectness.cpu().tolist()
    labels, label_probs = kept.labels.cpu().tolist(), kept.label_probs.cpu().tolist()
    path_nodes, path_probs = kept.path_nodes.cpu().tolist(), kept.path_probs.double().cpu().tolist()
    probs = kept.probs.float().cpu()
    image = kept.image.cpu().tolist()

    def name_of(i: int) -> str:
        if node_names is None:
            return f"class{i}"
        if i >= len(node_names):
            raise ValueError(f"postprocess: class {i} has no name ({len(node_names)} names given)")
        return node_names[i]

    out: list[list[Detection]] = [[] for _ in range(batch_size)]
    for j in range(k):
        path = tuple(PathStep(n, wnids[n] if wnids else None, name_of(n), p)
                     for n, p in zip(path_nodes[j], path_probs[j]) if n >= 0)
        label = labels[j]
        out[image[j]].append(Detection(
            box=tuple(boxes[j]), score=scores[j], objectness=obj[j], label=label,
            wnid=wnids[label] if wnids else None, name=name_of(label), prob=label_probs[j], path=path,
            probs=probs[j]))
    return out


def postprocess(raw: Tensor, anchors: Tensor, stride: float, tree: WordTree | None = None,
                names: Sequence[str] | None = None, **options) -> list[list[Detection]]:
    """postprocess_tensors + to_detections: one list of Detection per image, best score first.

    Args:
        raw: Float[B, A, 5+N, H, W].
        anchors: Float[A, 2] grid units.
        stride: input pixels per cell.
        tree: the WordTree of a tree model, None for a flat model.
        names: class names of a flat model.
        **options: conf_threshold, nms_iou, hier_threshold, mode, max_depth, max_detections, letterbox,
            orig_sizes, as in postprocess_tensors.
    """
    kept = postprocess_tensors(raw, anchors, stride, tree, **options)
    return to_detections(kept, raw.shape[0], tree, names)
