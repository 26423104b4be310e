"""One PostProcess: the only path from a raw network output to detections (paper section 4; darknet
`get_region_detections`). `Detector`, `evaluate_detection` and export all go through it.

    decode -> objectness prefilter -> scorer (which label(s) each box gets, and its score) -> score threshold ->
    letterbox mapping and clipping -> per-image, per-group `batched_nms` -> the top `max_detections` per image

Scorers plug into that one pipeline:

* `DecisionScorer`: one label per box. A tree model takes the grouped softmax (P(node | parent)) and the top-down
  decision walk (`wordtree.ops.decide`, "paper" or "darknet" mode with `hier_threshold`), optionally capped at
  `max_depth`; a flat model takes the softmax's best class. score = objectness * P(decided node).
* `CategoryScorer`: darknet's validation with a class map: every box is scored for every evaluated category k as
  objectness * P(node_k) (absolute tree probability, or the flat softmax), and NMS runs per category (COCOeval).

`PostProcess.dense` is the same pipeline's pre-NMS stage for every box at once, in ops that ONNX exports: boxes
clipped to the input, objectness and objectness * P(node) for every node. `yolo9000 export` puts it in the graph;
thresholding and NMS are left to the consumer.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn
from torchvision.ops import batched_nms

from wordtree.ops import DECIDE_MODES, absolute_probs, decide, grouped_log_softmax
from wordtree.tree import TreeBuffers, WordTree
from yolo9000.decode import decode, grid_offsets
from yolo9000.errors import ConfigError

NMS_GROUPINGS = ("label", "root", "all")


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
        anchor, row, col: the prediction the box comes from (anchor index, grid row and column; darknet's
            candidate `anchor*H*W + row*W + col`); -1 when unknown.
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
    anchor: int = -1
    row: int = -1
    col: int = -1

    @property
    def depth(self) -> int:
        """Depth of the decided node (0 = a root; always 0 for a flat model)."""
        return len(self.path) - 1

    def to_dict(self) -> dict:
        """JSON-friendly dict (without `probs`)."""
        return {"box": [round(v, 2) for v in self.box], "score": round(self.score, 5),
                "objectness": round(self.objectness, 5), "label": self.label, "wnid": self.wnid, "name": self.name,
                "anchor": self.anchor, "row": self.row, "col": self.col,
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
        labels: Long[K] decided tree node or flat class (`DecisionScorer`), category index (`CategoryScorer`).
        extra: the scorer's per-detection tensors (`DecisionScorer.describe`), each [K, ...].
        cells: Long[K, 3] (anchor, row, column) of the prediction each detection comes from.
    """

    image: Tensor
    boxes: Tensor
    scores: Tensor
    objectness: Tensor
    labels: Tensor
    extra: dict[str, Tensor] = field(default_factory=dict)
    cells: Tensor | None = None


@dataclass(frozen=True)
class Dense:
    """Every box of a batch before thresholding and NMS (P = A * H * W predictions per image, anchor-major).

    Attributes:
        boxes: Float[B, P, 4] xyxy, input pixels, clipped to the input.
        objectness: Float[B, P].
        scores: Float[B, P, N] objectness * P(node) (absolute tree probability; flat: the class softmax), what
            `CategoryScorer` thresholds.
    """

    boxes: Tensor
    objectness: Tensor
    scores: Tensor


def tree_probs(logits: Tensor, tree: WordTree) -> Tensor:
    """Absolute P(node) of Float[..., N] tree logits in plain tensor ops that ONNX exports (scatter max and add,
    gathers): `absolute_probs(grouped_log_softmax(logits, tree), tree)`, whose custom kernels do not export."""
    N = tree.num_nodes
    flat = logits.float().reshape(-1, N)
    index = tree.group.expand_as(flat)
    group_max = flat.new_full((flat.shape[0], tree.num_groups), float("-inf"))
    shifted = flat - group_max.scatter_reduce(1, index, flat, "amax").gather(1, index)
    group_sum = flat.new_zeros(flat.shape[0], tree.num_groups).scatter_add(1, index, shifted.exp())
    log_cond = shifted - group_sum.log().gather(1, index)
    # After pass d every node at depth <= d holds the sum of its path's log conditionals.
    is_root, parent = tree.parent < 0, tree.parent.clamp(min=0)
    log_abs = log_cond
    for _ in range(tree.max_depth):
        log_abs = log_cond + torch.where(is_root, 0.0, log_abs[:, parent])
    return log_abs.exp().view(logits.shape)


@dataclass(frozen=True)
class Selection:
    """What a scorer picked among the C prefiltered predictions: M (prediction, label) candidates above threshold.

    Attributes:
        rows: Long[M] prediction of each candidate (index into the C predictions).
        labels: Long[M] its label.
        scores: Float[M] its score.
        groups: Long[M] NMS group (boxes compete only within an image and a group), each in 0..num_groups-1.
        num_groups: the number of groups.
    """

    rows: Tensor
    labels: Tensor
    scores: Tensor
    groups: Tensor
    num_groups: int


class DecisionScorer:
    """One label per box: the tree's decision walk, or a flat model's best class (module docstring).

    Args:
        tree: the WordTree on the logits' device, None for a flat model.
        hier_threshold: the decision walk's threshold (darknet's `-hier`, .5).
        mode: "paper" or "darknet" (see `wordtree.ops.decide`).
        max_depth: cap the decision at this depth (0 = roots); the walk descends the argmax path, so the capped
            decision is the uncapped one's ancestor at that depth. None for no cap.
        nms_by: which boxes compete in NMS: "label" (same decided node, darknet's per-class NMS), "root" (decided
            nodes under the same tree root: a box decided "pentagon" and one decided "polygon" on the same figure
            are one object; flat models: same as "label"), or "all" (class-agnostic).
        start: decide inside this node's subtree (issue 12, `--node`): the walk starts at it with P(. | start),
            and a box's score is objectness x P(start) x P(node | start) = objectness x P(node). Tree models only.
        leaf: walk down to a leaf whatever `hier_threshold` (`--leaf`).
    """

    def __init__(self, tree: WordTree | None, hier_threshold: float = 0.5, mode: str = "paper",
                 max_depth: int | None = None, nms_by: str = "label", start: int | None = None,
                 leaf: bool = False) -> None:
        if (start is not None or leaf) and tree is None:
            raise ConfigError("postprocess: --node and --leaf walk a tree; this is a flat model")
        if nms_by not in NMS_GROUPINGS:
            raise ValueError(f"postprocess: nms_by {nms_by!r} is not one of {NMS_GROUPINGS}")
        if mode not in DECIDE_MODES:
            raise ValueError(f"postprocess: mode {mode!r} is not one of {DECIDE_MODES}")
        if max_depth is not None and max_depth < 0:
            raise ValueError(f"postprocess: max_depth {max_depth} must be >= 0")
        self.tree, self.hier_threshold, self.mode, self.max_depth, self.nms_by = (
            tree, hier_threshold, mode, max_depth, nms_by)
        self.start, self.leaf = start, leaf

    def select(self, logits: Tensor, objectness: Tensor, conf_threshold: float) -> Selection:
        """logits Float[C, N], objectness Float[C] -> the candidates whose score passes `conf_threshold`."""
        tree = self.tree
        if tree is None:
            self.probs = logits.softmax(dim=-1)
            label_probs, labels = self.probs.max(dim=-1)
        else:
            self.log_cond = grouped_log_softmax(logits, tree)
            self.cond = self.log_cond.exp()
            labels = decide(self.cond, tree, threshold=self.hier_threshold, mode=self.mode, start=self.start,
                            leaf=self.leaf).node
            if self.max_depth is not None:
                labels = tree.paths[labels, tree.depth[labels].clamp(max=self.max_depth)]
            # P(label) is the product of the conditionals on its root path: a gather of D+1 values per box, much
            # cheaper than every node's absolute probability, which only the kept boxes need (`describe`).
            label_paths = tree.paths[labels]
            label_probs = torch.where(label_paths >= 0, self.log_cond.gather(1, label_paths.clamp(min=0)),
                                      0.0).sum(1).exp()
        self.label_probs = label_probs
        scores = objectness * label_probs
        rows = (scores > conf_threshold).nonzero().squeeze(1)
        labels = labels[rows]
        if self.nms_by == "all":
            groups = torch.zeros_like(labels)
        elif self.nms_by == "root" and tree is not None:
            groups = tree.paths[labels, 0]
        else:
            groups = labels
        return Selection(rows, labels, scores[rows], groups, logits.shape[-1])

    def describe(self, rows: Tensor, labels: Tensor) -> dict[str, Tensor]:
        """Per kept detection (rows Long[K] into the C predictions, labels Long[K]):
        label_probs Float[K] P(label); path_nodes Long[K, D+1] root-to-label nodes, -1 padded (flat: the class);
        path_probs Float[K, D+1] P(node | parent) per step, 0 where padded; probs Float[K, N] absolute
        probability of every node (flat: the class softmax)."""
        if self.tree is None:
            return {"label_probs": self.label_probs[rows], "path_nodes": labels[:, None],
                    "path_probs": self.label_probs[rows][:, None], "probs": self.probs[rows]}
        path_nodes = self.tree.paths[labels]
        return {"label_probs": self.label_probs[rows], "path_nodes": path_nodes,
                "path_probs": torch.where(path_nodes >= 0, self.cond[rows].gather(1, path_nodes.clamp(min=0)), 0.0),
                "probs": absolute_probs(self.log_cond[rows], self.tree)}


class CategoryScorer:
    """Every box scored for every evaluated category k as objectness * P(node_k) (module docstring).

    Args:
        tree: the WordTree on the logits' device, None for a flat model.
        category_nodes: Long[K] tree node (or flat class) of each category; labels are category indices 0..K-1.
    """

    def __init__(self, tree: WordTree | None, category_nodes: Tensor) -> None:
        self.tree, self.category_nodes = tree, category_nodes

    def select(self, logits: Tensor, objectness: Tensor, conf_threshold: float) -> Selection:
        if self.tree is None:
            probs = logits.softmax(dim=-1)
        else:
            probs = absolute_probs(grouped_log_softmax(logits, self.tree), self.tree)
        scores = objectness[:, None] * probs[:, self.category_nodes.to(logits.device)]
        rows, labels = (scores > conf_threshold).nonzero(as_tuple=True)
        return Selection(rows, labels, scores[rows, labels], labels, scores.shape[-1])

    def describe(self, rows: Tensor, labels: Tensor) -> dict[str, Tensor]:
        return {}


class PostProcess(nn.Module):
    """Raw Float[B, A, 5+N, H, W] -> Kept, through one scorer (module docstring). Holds the anchors and the tree
    as buffers, so it moves with `.to(device)` and decodes with the config's anchors.

    Args:
        anchors: Float[A, 2] grid units (the config's: their one source of truth).
        stride: input pixels per grid cell.
        tree: the WordTree of a tree model, None for a flat model.
    """

    def __init__(self, anchors: Tensor | Sequence[Sequence[float]], stride: int,
                 tree: WordTree | None = None) -> None:
        super().__init__()
        self.register_buffer("anchors", torch.as_tensor(anchors, dtype=torch.float32), persistent=False)
        self.stride = stride
        self.tree_buffers = TreeBuffers(tree) if tree is not None else None

    @property
    def tree(self) -> WordTree | None:
        """The WordTree on this module's device, or None for a flat model."""
        return self.tree_buffers.tree if self.tree_buffers is not None else None

    def decision(self, hier_threshold: float = 0.5, mode: str = "paper", max_depth: int | None = None,
                 nms_by: str = "label", start: int | None = None, leaf: bool = False) -> DecisionScorer:
        """A `DecisionScorer` for this model's tree."""
        return DecisionScorer(self.tree, hier_threshold, mode, max_depth, nms_by, start, leaf)

    def categories(self, category_nodes: Tensor) -> CategoryScorer:
        """A `CategoryScorer` for this model's tree."""
        return CategoryScorer(self.tree, category_nodes)

    def detections(self, raw: Tensor, names: Sequence[str] | None = None, *, hier_threshold: float = 0.5,
                   mode: str = "paper", max_depth: int | None = None, nms_by: str = "label",
                   start: int | None = None, leaf: bool = False, **options) -> list[list[Detection]]:
        """One list of Detection per image, best score first: `forward` with `self.decision(...)`, then
        `to_detections`. `names`: class names of a flat model; **options: as for `forward`."""
        kept = self(raw, self.decision(hier_threshold, mode, max_depth, nms_by, start, leaf), **options)
        return to_detections(kept, raw.shape[0], self.tree, names)

    def dense(self, raw: Tensor) -> Dense:
        """Raw Float[B, A, 5+N, H, W] -> Dense: decode, clip to the input, score every node (exportable)."""
        B, _, C5, H, W = raw.shape
        dec = decode(raw.float(), self.anchors, self.stride)
        logits = dec.class_logits.reshape(B, -1, C5 - 5)
        probs = logits.softmax(dim=-1) if self.tree is None else tree_probs(logits, self.tree)
        # (W, H) as the grid's far corner, not from Python ints, so that an exported graph keeps H and W dynamic.
        limit = (grid_offsets(H, W, raw.device, torch.float32)[-1, -1] + 1).repeat(2) * self.stride
        objectness = dec.objectness.reshape(B, -1)
        return Dense(torch.minimum(dec.boxes.reshape(B, -1, 4).clamp(min=0), limit), objectness,
                     objectness[..., None] * probs)

    @torch.no_grad()
    def forward(self, raw: Tensor, scorer: DecisionScorer | CategoryScorer, *, conf_threshold: float = 0.25,
                nms_iou: float = 0.45, max_detections: int = 100, letterbox: Tensor | None = None,
                orig_sizes: Tensor | None = None) -> Kept:
        """The kept detections of every image, vectorised over the whole batch.

        Args:
            raw: Float[B, A, 5+N, H, W] network output (any float dtype; computed in float32).
            scorer: `self.decision(...)` or `self.categories(...)`.
            conf_threshold: minimum score (darknet's CLI: .25 for `detect`, .005 for validation).
            nms_iou: IoU above which the lower-scoring of two boxes with the same image and group is removed.
            max_detections: per image (COCOeval's maxDets is 100).
            letterbox: Float[B, 3] (scale, pad_x, pad_y) with input = original * scale + pad; None: no mapping.
            orig_sizes: Long[B, 2] original (height, width) to clip to; None: the input size.
        Returns:
            Kept.
        """
        B, _, C5, H, W = raw.shape
        tree = self.tree
        if tree is not None and tree.num_nodes != C5 - 5:
            raise ValueError(f"postprocess: the output has {C5 - 5} class logits but the tree has "
                             f"{tree.num_nodes} nodes")
        dec = decode(raw.float(), self.anchors, self.stride)
        device = raw.device
        objectness = dec.objectness.reshape(B, -1)
        # P(label) <= 1, so a box whose objectness is already at or below the threshold can never pass: skip the
        # softmax and the tree walk for those (most boxes of a trained model).
        b_idx, p_idx = (objectness > conf_threshold).nonzero(as_tuple=True)
        sel = scorer.select(dec.class_logits.reshape(B, -1, C5 - 5)[b_idx, p_idx], objectness[b_idx, p_idx],
                            conf_threshold)
        b_idx, p_idx = b_idx[sel.rows], p_idx[sel.rows]
        boxes = dec.boxes.reshape(B, -1, 4)[b_idx, p_idx]
        if letterbox is not None:
            lb = letterbox.to(device=device, dtype=torch.float32)[b_idx]
            boxes = (boxes - lb[:, 1:3].repeat(1, 2)) / lb[:, 0:1]
        if orig_sizes is not None:
            hw = orig_sizes.to(device=device, dtype=torch.float32)[b_idx]
        else:
            hw = torch.tensor([[H * self.stride, W * self.stride]], dtype=torch.float32,
                              device=device).expand(len(b_idx), 2)
        boxes = torch.minimum(boxes.clamp(min=0), hw[:, [1, 0, 1, 0]])
        keep = batched_nms(boxes, sel.scores, b_idx * sel.num_groups + sel.groups, nms_iou)  # best score first
        keep = keep[torch.argsort(b_idx[keep], stable=True)]                    # grouped by image, still sorted
        kb = b_idx[keep]
        rank = torch.arange(len(kb), device=device) - torch.searchsorted(kb, kb)  # position within its image
        keep = keep[rank < max_detections]
        labels = sel.labels[keep]
        cell = p_idx[keep]          # index into decode's [A, H, W] layout
        cells = torch.stack((cell // (H * W), cell % (H * W) // W, cell % W), dim=1)
        return Kept(image=b_idx[keep], boxes=boxes[keep], scores=sel.scores[keep],
                    objectness=objectness[b_idx[keep], p_idx[keep]], labels=labels,
                    extra=scorer.describe(sel.rows[keep], labels), cells=cells)


def to_detections(kept: Kept, batch_size: int, tree: WordTree | None = None,
                  names: Sequence[str] | None = None) -> list[list[Detection]]:
    """Split Kept tensors into one list of Detection per image (the only per-image Python loop).

    Args:
        kept: from `PostProcess` with a decision scorer (`DecisionScorer`).
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
    extra = kept.extra
    labels, label_probs = kept.labels.cpu().tolist(), extra["label_probs"].cpu().tolist()
    path_nodes, path_probs = extra["path_nodes"].cpu().tolist(), extra["path_probs"].double().cpu().tolist()
    probs = extra["probs"].float().cpu()
    image = kept.image.cpu().tolist()
    cells = kept.cells.cpu().tolist() if kept.cells is not None else [(-1, -1, -1)] * k

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
            probs=probs[j], anchor=cells[j][0], row=cells[j][1], col=cells[j][2]))
    return out


