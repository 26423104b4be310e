"""`--compat darknet`: darknet's own preprocessing and detection rules, as pure functions.

Our defaults follow the paper (darknet_yolo9000.md, the table at its top); these functions reproduce what darknet's
`detector test` does instead (pjreddie/darknet 61c9d02e, Debian's package), so that the same weights and image give
darknet's detections:

* `load_image` + `letterbox_image`: stb's 8-bit RGB / 255, then `resize_image` (bilinear, sampling the source at
  steps of (in - 1) / (out - 1), columns first, in float32 with darknet's quirks) into a canvas filled with 0.5.
* `region_activations`: the `[region]` layer's output: logistic x, y, objectness; raw w, h; a softmax per cell,
  or per sibling group of the tree (darknet's GPU path; its CPU path mis-indexes the tree, spec section 3).
* `get_region_detections` (`region_layer.c`, with `correct_region_boxes(relative=1)`): one candidate per anchor and
  cell; objectness kept when > thresh. Flat: every class with objectness x P(class) > thresh. Tree: the class of
  `hierarchy_top_prediction` at `hier_thresh` over absolute probabilities, scored by the objectness alone (or, with
  a `map`, objectness x P(map[j]) for each mapped class). Boxes are not clipped.
* `do_nms_sort` (`box.c`): candidates with objectness 0 go to the end (darknet's swap loop), then for each class in
  turn a stable sort by that class's probability (glibc's qsort is a merge sort) and greedy suppression of later
  candidates whose IoU with a kept one is > nms.
* `label_lines`: what `draw_detections` prints, `name: NN%`, in darknet's order.

Everything is numpy on the CPU: these run once per image on A*H*W candidates. Box arithmetic is float32 in darknet's
order of operations; activations are computed in float64 and rounded to float32, as darknet's `exp` does.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from wordtree.ops import decide
from wordtree.tree import WordTree

F32 = np.float32
LETTERBOX_FILL = 0.5
DARKNET_THRESH, DARKNET_HIER_THRESH, DARKNET_NMS = 0.5, 0.5, 0.45  # detector test's defaults


def _numpy(x: np.ndarray | torch.Tensor) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


# ------------------------------------------------------------------------------------------------ preprocessing
def stb_available() -> bool:
    """Whether stb_image (the `libstb` package, `pip install yolo9000[darknet]`) is there to decode images."""
    try:
        import libstb  # noqa: F401
    except ImportError:
        return False
    return True


def load_image(path: str | Path) -> np.ndarray:
    """An image as darknet's `load_image_color` reads it: Float32[3, H, W] RGB in [0, 1] (8-bit value / 255).

    Decoded with stb_image, darknet's own decoder, when `libstb` is installed: bit for bit darknet's pixels on its
    sample photos. Without it PIL decodes, whose libjpeg differs from stb by up to 3/255 on 5-9% of the values.
    """
    from yolo9000.errors import ImageLoadError

    if not Path(path).is_file():
        raise ImageLoadError(f"image {path} does not exist", "missing")
    try:
        if stb_available():
            import libstb

            data = np.asarray(libstb.imread(str(path), channels=3))  # stbi_load(..., 3), as darknet asks
        else:
            with Image.open(path) as image:
                data = np.asarray(image.convert("RGB"))
    except Exception as err:  # noqa: BLE001 - any decoder failure is this file's problem
        raise ImageLoadError(f"image {path} cannot be decoded: {err}", "unreadable") from None
    return (data.transpose(2, 0, 1).astype(np.float64) / 255.0).astype(F32)


def resize_image(im: np.ndarray, w: int, h: int) -> np.ndarray:
    """darknet's `resize_image`: Float32[C, H, W] -> Float32[C, h, w], bilinear, columns then rows.

    Output column c samples the source at c * (W - 1) / (w - 1) (the last column takes the last source column);
    rows likewise, except that the last row takes (1 - dy) * row[iy] only, which is row H - 1 when the float32
    step lands on it exactly, and almost 0 when it falls just short (darknet's quirk, kept).
    """
    im = np.asarray(im, dtype=F32)
    C, H, W = im.shape
    if w < 1 or h < 1:
        raise ValueError(f"resize_image: target size {w}x{h} must be positive")
    with np.errstate(divide="ignore", invalid="ignore"):
        w_scale = F32(W - 1) / F32(w - 1)
        h_scale = F32(H - 1) / F32(h - 1)
    part = np.empty((C, H, w), dtype=F32)
    cols = np.arange(w)
    inner = cols[:-1] if W > 1 else cols[:0]
    sx = inner.astype(F32) * w_scale
    ix = sx.astype(np.int64)
    dx = sx - ix.astype(F32)
    part[:, :, inner] = (F32(1) - dx) * im[:, :, ix] + dx * im[:, :, np.minimum(ix + 1, W - 1)]
    part[:, :, len(inner):] = im[:, :, W - 1:W]
    rows = np.arange(h)
    sy = rows.astype(F32) * h_scale if h > 1 else np.zeros(1, dtype=F32)  # h == 1: 0 * inf is undefined in C
    iy = sy.astype(np.int64)
    dy = sy - iy.astype(F32)
    out = (F32(1) - dy)[None, :, None] * part[:, iy, :]
    if H > 1:
        body = rows[:-1]
        out[:, body, :] = out[:, body, :] + dy[body][None, :, None] * part[:, iy[body] + 1, :]
    return out.astype(F32)


def letterbox_geometry(image_w: int, image_h: int, net_w: int, net_h: int) -> tuple[int, int]:
    """(new_w, new_h): the size darknet resizes an image to inside a net_w x net_h letterbox (integer division)."""
    if F32(net_w) / F32(image_w) < F32(net_h) / F32(image_h):
        return net_w, (image_h * net_w) // image_w
    return (image_w * net_h) // image_h, net_h


def letterbox_image(im: np.ndarray, w: int, h: int) -> np.ndarray:
    """darknet's `letterbox_image`: aspect-preserving `resize_image`, centred (integer offsets) on 0.5 fill.

    Args:
        im: Float32[C, H, W] in [0, 1].
        w, h: network input width and height.
    Returns:
        Float32[C, h, w].
    """
    im = np.asarray(im, dtype=F32)
    C, H, W = im.shape
    new_w, new_h = letterbox_geometry(W, H, w, h)
    boxed = np.full((C, h, w), LETTERBOX_FILL, dtype=F32)
    dx, dy = (w - new_w) // 2, (h - new_h) // 2
    boxed[:, dy:dy + new_h, dx:dx + new_w] = resize_image(im, new_w, new_h)
    return boxed


# -------------------------------------------------------------------------------------------------- the region
def _logistic(x: np.ndarray) -> np.ndarray:
    return (1.0 / (1.0 + np.exp(-x.astype(np.float64)))).astype(F32)


def _softmax(x: np.ndarray, axis: int) -> np.ndarray:
    x = x.astype(np.float64)
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return (e / e.sum(axis=axis, keepdims=True)).astype(F32)


def region_activations(raw: np.ndarray | torch.Tensor, tree: WordTree | None = None,
                       softmax: bool = True) -> np.ndarray:
    """darknet's `[region]` output for one image.

    Args:
        raw: Float[A, 5+N, H, W], the network's raw output for one image.
        tree: WordTree for a tree region (one softmax per sibling group), else None.
        softmax: flat regions: a softmax over the N classes per cell (`softmax=1`), else the logistic.
    Returns:
        Float32[A, 5+N, H, W]: logistic x, y, objectness; raw w, h; class (conditional) probabilities.
    """
    raw = _numpy(raw).astype(F32)
    out = raw.copy()
    out[:, 0:2] = _logistic(raw[:, 0:2])
    out[:, 4] = _logistic(raw[:, 4])
    cls = raw[:, 5:]
    if tree is not None:
        if cls.shape[1] != tree.num_nodes:
            raise ValueError(f"region_activations: {cls.shape[1]} class planes for a tree of {tree.num_nodes} nodes")
        for offset, size in zip(tree.group_offset.tolist(), tree.group_size.tolist()):
            out[:, 5 + offset:5 + offset + size] = _softmax(cls[:, offset:offset + size], axis=1)
    elif softmax:
        out[:, 5:] = _softmax(cls, axis=1)
    else:
        out[:, 5:] = _logistic(cls)
    return out


def hierarchy_predictions(cond: np.ndarray, tree: WordTree) -> np.ndarray:
    """darknet's `hierarchy_predictions(only_leaves=0)`: p[j] *= p[parent[j]] in index order, float32.

    Args:
        cond: Float32[..., N] conditional probabilities.
    Returns:
        Float32[..., N] absolute probabilities (each node's conditional times its parent's absolute value).
    """
    out = np.array(cond, dtype=F32, copy=True)
    depth, parent = tree.depth.numpy(), tree.parent.numpy()
    for d in range(1, tree.max_depth + 1):  # parents precede children: level by level is darknet's index order
        nodes = np.nonzero(depth == d)[0]
        out[..., nodes] = out[..., nodes] * out[..., parent[nodes]]
    return out


def hierarchy_top_prediction(cond: np.ndarray | torch.Tensor, tree: WordTree, hier_thresh: float) -> np.ndarray:
    """darknet's `hierarchy_top_prediction` over absolute probabilities: Long[...] decided node per row.

    From the roots' group: take the group's maximum (node 0 when no value exceeds 0); if product x max >
    hier_thresh, multiply it in and descend, returning the node when it is a leaf; otherwise return the best root
    (in the roots' group) or the parent of the current group.

    Args:
        cond: Float[..., N] conditional probabilities (the region's tree softmax output).
    """
    decision = decide(torch.as_tensor(_numpy(cond), dtype=torch.float32), tree, hier_thresh, mode="darknet")
    return decision.node.numpy()


@dataclass(frozen=True)
class RegionDetections:
    """darknet's `detection` array for one image: K = A*H*W candidates, or a subset after `do_nms_sort`.

    Attributes:
        anchor, row, col: Long[K], where each candidate comes from.
        boxes: Float32[K, 4] darknet boxes (x, y, w, h): centre and size relative to the image, unclipped.
        objectness: Float32[K], the objectness where > thresh, else 0.
        probs: Float32[K, C] class probabilities (C = N, or len(map)), 0 where not > thresh or suppressed.
    """

    anchor: np.ndarray
    row: np.ndarray
    col: np.ndarray
    boxes: np.ndarray
    objectness: np.ndarray
    probs: np.ndarray

    def take(self, index: np.ndarray) -> RegionDetections:
        return RegionDetections(self.anchor[index], self.row[index], self.col[index], self.boxes[index],
                                self.objectness[index], self.probs[index])

    def to_xyxy(self, image_w: int, image_h: int) -> np.ndarray:
        """Float32[K, 4] boxes as (x1, y1, x2, y2) in image pixels (unclipped, as darknet's NMS sees them)."""
        x, y, w, h = self.boxes.T
        return np.stack(((x - w / 2) * image_w, (y - h / 2) * image_h,
                         (x + w / 2) * image_w, (y + h / 2) * image_h), axis=1).astype(F32)


def get_region_detections(activated: np.ndarray, anchors: np.ndarray | torch.Tensor, image_w: int, image_h: int,
                          net_w: int, net_h: int, thresh: float = DARKNET_THRESH,
                          hier_thresh: float = DARKNET_HIER_THRESH, tree: WordTree | None = None,
                          class_map: Sequence[int] | None = None) -> RegionDetections:
    """darknet's `get_region_detections` + `correct_region_boxes(relative=1)` for one image.

    Args:
        activated: Float32[A, 5+N, H, W] from `region_activations`.
        anchors: Float[A, 2] anchor (w, h) in grid units (`[region] anchors`).
        image_w, image_h: the original image size (the letterbox is undone for it).
        net_w, net_h: the network input size.
        thresh: objectness (and, flat, objectness x P) threshold; hier_thresh: the tree walk's threshold.
        tree: the WordTree of a tree region; class_map: darknet's `map` (tree regions), e.g. inet9k.map.
    Returns:
        RegionDetections of all A*H*W candidates, in darknet's order (anchor-major, then row, then column).
    """
    act = np.asarray(activated, dtype=F32)
    A, _, H, W = act.shape
    anchors = _numpy(anchors).astype(F32).reshape(A, 2)
    anchor, row, col = (g.reshape(-1) for g in np.meshgrid(np.arange(A), np.arange(H), np.arange(W), indexing="ij"))
    cells = act.transpose(0, 2, 3, 1).reshape(A * H * W, -1)          # [K, 5+N] in darknet's candidate order
    # get_region_box: (i + x) / w in float; exp(tw) * bias / w in double, stored as float.
    bx = (col.astype(F32) + cells[:, 0]) / F32(W)
    by = (row.astype(F32) + cells[:, 1]) / F32(H)
    bw = (np.exp(cells[:, 2].astype(np.float64)) * anchors[anchor, 0].astype(np.float64) / W).astype(F32)
    bh = (np.exp(cells[:, 3].astype(np.float64)) * anchors[anchor, 1].astype(np.float64) / H).astype(F32)
    scale = cells[:, 4]
    objectness = np.where(scale > F32(thresh), scale, F32(0)).astype(F32)
    cls = cells[:, 5:]
    if tree is not None and class_map is not None:
        absolute = hierarchy_predictions(cls, tree)
        prob = scale[:, None] * absolute[:, np.asarray(class_map)]
        probs = np.where(prob > F32(thresh), prob, F32(0)).astype(F32)
    elif tree is not None:
        node = hierarchy_top_prediction(cls, tree, hier_thresh)
        probs = np.zeros_like(cls)
        probs[np.arange(len(node)), node] = np.where(scale > F32(thresh), scale, F32(0))
    else:
        prob = scale[:, None] * cls
        probs = np.where((prob > F32(thresh)) & (objectness[:, None] != 0), prob, F32(0)).astype(F32)
    boxes = _correct_region_boxes(np.stack((bx, by, bw, bh), axis=1), image_w, image_h, net_w, net_h)
    return RegionDetections(anchor, row, col, boxes, objectness, probs)


def _correct_region_boxes(boxes: np.ndarray, image_w: int, image_h: int, net_w: int, net_h: int) -> np.ndarray:
    """darknet's `correct_region_boxes(relative=1)`: undo the letterbox, boxes relative to the image."""
    new_w, new_h = letterbox_geometry(image_w, image_h, net_w, net_h)
    x, y, w, h = boxes.T
    # (b.x - (netw - new_w)/2./netw) / ((float)new_w/netw): double arithmetic around a float ratio.
    x = ((x.astype(np.float64) - (net_w - new_w) / 2.0 / net_w) / float(F32(new_w) / F32(net_w))).astype(F32)
    y = ((y.astype(np.float64) - (net_h - new_h) / 2.0 / net_h) / float(F32(new_h) / F32(net_h))).astype(F32)
    w = w * (F32(net_w) / F32(new_w))
    h = h * (F32(net_h) / F32(new_h))
    return np.stack((x, y, w, h), axis=1).astype(F32)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """darknet's `box_iou` for (x, y, w, h) boxes, float32 in its order of operations: Float32[K, M]."""
    a, b = np.asarray(a, dtype=F32)[:, None, :], np.asarray(b, dtype=F32)[None, :, :]

    def overlap(x1, w1, x2, w2):
        left = np.maximum(x1 - w1 / F32(2), x2 - w2 / F32(2))
        right = np.minimum(x1 + w1 / F32(2), x2 + w2 / F32(2))
        return right - left

    ow = overlap(a[..., 0], a[..., 2], b[..., 0], b[..., 2])
    oh = overlap(a[..., 1], a[..., 3], b[..., 1], b[..., 3])
    inter = np.where((ow < 0) | (oh < 0), F32(0), ow * oh)
    union = a[..., 2] * a[..., 3] + b[..., 2] * b[..., 3] - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        return (inter / union).astype(F32)


def do_nms_sort(dets: RegionDetections, nms: float = DARKNET_NMS) -> RegionDetections:
    """darknet's `do_nms_sort`: returns the candidates with objectness != 0, in darknet's final order, with the
    probabilities of suppressed (candidate, class) pairs set to 0.

    Order: darknet's loop swaps each objectness-0 candidate with the last unchecked one, so the survivors are not
    in index order; then for class 0, 1, ... a stable sort by that class's probability, descending (glibc's
    qsort is a merge sort; sorting by an all-zero column changes nothing, so those classes are skipped).
    Suppression: in that order, each candidate still holding the class zeroes the class of every later
    candidate whose IoU with it is > nms.
    """
    order = list(range(len(dets.objectness)))
    k = len(order) - 1
    i = 0
    while i <= k:
        if dets.objectness[order[i]] == 0:
            order[i], order[k] = order[k], order[i]
            k -= 1
        else:
            i += 1
    kept = dets.take(np.asarray(order[:k + 1], dtype=np.int64))
    probs = kept.probs.copy()
    perm = np.arange(len(probs))
    for cls in np.nonzero((probs != 0).any(axis=0))[0]:
        perm = perm[np.argsort(-probs[perm, cls], kind="stable")]
        live = [i for i in perm if probs[i, cls] != 0]
        if len(live) < 2:
            continue
        iou = box_iou(kept.boxes[live], kept.boxes[live])
        for a in range(len(live)):
            if probs[live[a], cls] == 0:
                continue
            for b in range(a + 1, len(live)):
                if iou[a, b] > F32(nms):
                    probs[live[b], cls] = 0
    final = kept.take(perm)
    return RegionDetections(final.anchor, final.row, final.col, final.boxes, final.objectness, probs[perm])


@dataclass(frozen=True)
class DarknetDetection:
    """One (candidate, class) pair darknet reports.

    Attributes:
        anchor, row, col: where the candidate comes from.
        label: class index (a tree node for tree models; with a map, the mapped class's position).
        prob: its probability (tree models without a map: the objectness).
        objectness: the candidate's objectness.
        box: darknet's (x, y, w, h) relative to the image, unclipped.
    """

    anchor: int
    row: int
    col: int
    label: int
    prob: float
    objectness: float
    box: tuple[float, float, float, float]


def detections(raw: np.ndarray | torch.Tensor, anchors: np.ndarray | torch.Tensor, image_w: int, image_h: int,
               net_w: int, net_h: int, thresh: float = DARKNET_THRESH, hier_thresh: float = DARKNET_HIER_THRESH,
               nms: float = DARKNET_NMS, tree: WordTree | None = None, softmax: bool = True,
               class_map: Sequence[int] | None = None) -> list[DarknetDetection]:
    """What darknet's `detector test` reports for one image, in the order it prints them.

    Args:
        raw: Float[A, 5+N, H, W] raw network output for the letterboxed image.
        Others: as `get_region_detections` and `do_nms_sort` (nms 0 skips NMS, as darknet's `if (nms)`).
    Returns:
        One DarknetDetection per (candidate, class) with a probability left after NMS.
    """
    return detections_from_activations(region_activations(raw, tree, softmax), anchors, image_w, image_h, net_w,
                                       net_h, thresh, hier_thresh, nms, tree, class_map)


def detections_from_activations(activated: np.ndarray, anchors: np.ndarray | torch.Tensor, image_w: int,
                                image_h: int, net_w: int, net_h: int, thresh: float = DARKNET_THRESH,
                                hier_thresh: float = DARKNET_HIER_THRESH, nms: float = DARKNET_NMS,
                                tree: WordTree | None = None,
                                class_map: Sequence[int] | None = None) -> list[DarknetDetection]:
    """`detections` from the region's activations (`region_activations`)."""
    dets = get_region_detections(activated, anchors, image_w, image_h, net_w, net_h, thresh, hier_thresh, tree,
                                 class_map)
    if nms:
        dets = do_nms_sort(dets, nms)
    out = []
    for k in range(len(dets.objectness)):
        for label in np.nonzero(dets.probs[k] > F32(thresh))[0]:   # draw_detections' test
            out.append(DarknetDetection(int(dets.anchor[k]), int(dets.row[k]), int(dets.col[k]), int(label),
                                        float(dets.probs[k, label]), float(dets.objectness[k]),
                                        tuple(float(v) for v in dets.boxes[k])))
    return out


def label_lines(found: Sequence[DarknetDetection], names: Sequence[str]) -> list[str]:
    """darknet's `draw_detections` printout: `name: NN%` per detection (printf's %.0f of prob * 100)."""
    return [f"{names[d.label]}: {float(F32(d.prob)) * 100:.0f}%" for d in found]


def box_to_xyxy(box: Sequence[float], image_w: int, image_h: int) -> tuple[float, float, float, float]:
    """A darknet (x, y, w, h) box relative to the image as (x1, y1, x2, y2) image pixels, unclipped."""
    x, y, w, h = box
    return ((x - w / 2) * image_w, (y - h / 2) * image_h, (x + w / 2) * image_w, (y + h / 2) * image_h)


@torch.no_grad()
def detect(model: torch.nn.Module, image: np.ndarray, net_w: int, net_h: int, thresh: float = DARKNET_THRESH,
           hier_thresh: float = DARKNET_HIER_THRESH, nms: float = DARKNET_NMS, tree: WordTree | None = None,
           softmax: bool = True) -> list[DarknetDetection]:
    """darknet's `detector test` on one image: letterbox, the network, region detections, `do_nms_sort`.

    Args:
        model: returns raw Float[1, A, 5+N, H, W] and has `anchors` (Float[A, 2], grid units).
        image: Float32[3, H, W] from `load_image`.
        net_w, net_h: network input size (darknet's `[net] width/height`).
    Returns:
        The detections darknet prints, in its order.
    """
    param = next(model.parameters())
    x = torch.from_numpy(letterbox_image(image, net_w, net_h))[None].to(param.device, param.dtype)
    raw = model(x)[0].float().cpu()
    return detections(raw, model.anchors, image.shape[2], image.shape[1], net_w, net_h, thresh, hier_thresh, nms,
                      tree, softmax)


def to_detections(found: Sequence[DarknetDetection], activated: np.ndarray, image_w: int, image_h: int,
                  tree: WordTree | None = None, names: Sequence[str] | None = None) -> list:
    """darknet's detections as our `Detection`s (in darknet's order), for `Detector` with `compat="darknet"`.

    score is darknet's probability (flat: objectness x P(class); tree: the objectness); prob is P(class) (tree: the
    node's absolute probability); the path holds the conditionals; box is darknet's, unclipped, in image pixels.

    Args:
        found: from `detections_from_activations`.
        activated: Float32[A, 5+N, H, W] the region's activations they came from.
    """
    from yolo9000.postprocess import Detection, PathStep  # imported here: postprocess is the heavier module

    out = []
    for d in found:
        cond = activated[d.anchor, 5:, d.row, d.col]
        if tree is None:
            name = names[d.label] if names is not None else f"class{d.label}"
            prob = float(cond[d.label])
            path = (PathStep(d.label, None, name, prob),)
            probs = torch.from_numpy(cond.copy())
            wnid = None
        else:
            absolute = hierarchy_predictions(cond, tree)
            name, wnid, prob = tree.names[d.label], tree.wnids[d.label], float(absolute[d.label])
            path = tuple(PathStep(n, tree.wnids[n], tree.names[n], float(cond[n])) for n in tree.path(d.label))
            probs = torch.from_numpy(absolute)
        out.append(Detection(box=box_to_xyxy(d.box, image_w, image_h), score=d.prob, objectness=d.objectness,
                             label=d.label, wnid=wnid, name=name, prob=prob, path=path, probs=probs,
                             anchor=d.anchor, row=d.row, col=d.col))
    return out
