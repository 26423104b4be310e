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
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from torch import Tensor

from wordtree.io import load_tree
from wordtree.ops import absolute_probs, decide, grouped_log_softmax
from wordtree.tree import WordTree
from yolo9000.decode import decode
from yolo9000.device import autocast
from yolo9000.errors import ConfigError, DatasetError
from yolo9000.postprocess import Kept, PostProcess


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
    values, top = scores.topk(min(max(ks), scores.shape[-1]), dim=-1)
    # With fewer candidates than k, topk pads with masked (-inf) nodes: those are never a hit.
    hit = (top == labels[:, None]) & (values > float("-inf"))
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
def coco_results(kept: Kept, category_ids: Sequence[int], image_ids: Tensor) -> list[dict[str, Any]]:
    """COCO result dicts of detections kept with a `CategoryScorer` (labels are category indices).

    Args:
        kept: from `PostProcess` with `categories(...)`, boxes in original pixels.
        category_ids: the K COCO category ids, in the scorer's order.
        image_ids: Long[B] COCO image id of each batch image.
    """
    xyxy = kept.boxes
    xywh = torch.cat([xyxy[:, :2], xyxy[:, 2:] - xyxy[:, :2]], dim=1).tolist()
    cats = torch.as_tensor(list(category_ids))[kept.labels.cpu()].tolist()
    ids = image_ids[kept.image.cpu()].tolist()
    return [{"image_id": i, "category_id": c, "bbox": [round(v, 2) for v in box], "score": s}
            for i, c, box, s in zip(ids, cats, xywh, kept.scores.tolist())]


# ----------------------------------------------------------------------------------------------- running a model
# The functions below run a network over a dataset split and score it with the metrics above. They accept the
# model the engine trains (or a DDP wrapper), a Config (tree, data settings, amp) and a dataset descriptor.

def _descriptor(descriptor: Any, overrides: Sequence[str] | None = None) -> Any:
    from yolo9000.data.descriptor import DatasetDescriptor, load_descriptor
    return descriptor if isinstance(descriptor, DatasetDescriptor) else load_descriptor(descriptor, overrides)


def _model_device(model: torch.nn.Module, device: torch.device | str | None) -> torch.device:
    if device is not None:
        return torch.device(device)
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


def _outputs(model: torch.nn.Module, loader: Any, cfg: Any, device: torch.device,
             progress: str | None) -> Iterator[tuple[Any, Tensor]]:
    """(batch, raw float32 output) over a loader, the model in eval mode meanwhile; a tqdm bar titled `progress`."""
    was_training = model.training
    model.eval()
    if progress:
        from tqdm import tqdm
        loader = tqdm(loader, desc=progress, dynamic_ncols=True)
    try:
        for batch in loader:
            yield batch, _forward(model, batch.images, cfg, device)
    finally:
        model.train(was_training)


def _forward(model: torch.nn.Module, images: Tensor, cfg: Any, device: torch.device) -> Tensor:
    images = images.to(device, non_blocking=True)
    if cfg.train.channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    # The training precision, except fp16 off CUDA (a config trained on a GPU evaluated on a CPU).
    with autocast(device, cfg.train.amp if device.type == "cuda" or cfg.train.amp != "fp16" else "auto"):
        return model(images).float()


def detection_ground_truth(descriptor: Any, split: str, tree: WordTree | None
                           ) -> tuple[COCO, dict[int, int], dict[int, str]]:
    """The split's boxes as COCO ground truth, each category's label node, and category names.

    A single COCO source is used as is (its own category ids, crowd regions and all), with categories mapped to
    tree nodes as training maps them: the source's class map, else category names that are wnids of the tree
    (flat models: category order). Other formats (VOC, darknet lists, packs) become a COCO dict whose category ids
    are the label indices themselves.

    Returns:
        (COCO ground truth, {category id: label node}, {category id: name}); unmapped categories are absent from
        the node map.
    """
    from yolo9000.data.coco import load_coco
    from yolo9000.data.descriptor import build_detection
    from yolo9000.data.images import image_size
    from yolo9000.data.labels import category_labels

    specs = descriptor.split(split).detection
    if not specs:
        raise DatasetError(f"{descriptor.source}: split {split!r} has no detection images to evaluate on")
    if len(specs) == 1 and specs[0].format == "coco":
        coco = load_coco(specs[0].annotations)
        categories = [(c["id"], c["name"]) for c in sorted(coco.dataset.get("categories", []), key=lambda c: c["id"])]
        return coco, category_labels(categories, tree, specs[0].class_map), dict(categories)
    source = build_detection(descriptor, split, tree)
    images, annotations, labels = [], [], set()
    for record in source.records:
        height, width = record.orig_size or image_size(record.file)
        images.append({"id": record.image_id, "width": width, "height": height, "file_name": record.file})
        for box, label in zip(record.boxes.tolist(), record.labels.tolist()):
            w, h = box[2] - box[0], box[3] - box[1]
            annotations.append({"id": len(annotations) + 1, "image_id": record.image_id, "category_id": label,
                                "bbox": [box[0], box[1], w, h], "area": w * h, "iscrowd": 0})
            labels.add(label)
    names = {k: (tree.names[k] if tree is not None else f"class {k}") for k in sorted(labels)}
    gt = _as_coco({"images": images, "annotations": annotations,
                   "categories": [{"id": k, "name": n} for k, n in names.items()]})
    return gt, {k: k for k in names}, names


def detection_labels(descriptor: Any, split: str, tree: WordTree | None) -> set[int]:
    """Label nodes that have boxes in `split` (the classes "with detection data" of the paper's protocol)."""
    from yolo9000.data.descriptor import build_detection
    source = build_detection(descriptor, split, tree)
    if source is None:
        return set()
    return {label for record in source.records for label in record.labels.tolist()}


@torch.no_grad()
def evaluate_detection(model: torch.nn.Module, cfg: Any, descriptor: Any, split: str = "eval", *,
                       categories: Mapping[int, int] | None = None, size: int | None = None,
                       groups: Mapping[str, Sequence[int]] | None = None, train_split: str | None = None,
                       batch_size: int = 8, conf_threshold: float = 0.005, nms_iou: float = 0.45,
                       device: torch.device | str | None = None, progress: bool = False,
                       dataset_overrides: Sequence[str] | None = None,
                       postprocess: PostProcess | None = None, per_depth: bool = False,
                       compat: str = "off") -> dict[str, Any]:
    """COCO mAP of a detector on a dataset split, through the real COCOeval (darknet's validation scoring).

    Every box is scored for every evaluated category k as objectness * P(node_k) (`PostProcess` with a
    `CategoryScorer`: absolute tree probability for tree models, softmax for flat ones), then per-category NMS and
    the top 100 per image.

    Args:
        model: a YOLOv2 / YOLO9000 detector (or its DDP wrapper); put in eval mode here.
        cfg: the Config it was built from (tree, eval size, amp, channels_last).
        descriptor: a DatasetDescriptor or the path of a datasets/*.yaml.
        split: the split whose detection images are evaluated.
        categories: {category id: tree node (or flat class)} to evaluate, overriding the default mapping (the
            eval source's class map, or category names that are wnids of the tree).
        size: square input size (default cfg.data.eval_size).
        groups: {group name: [category ids]} for split means (e.g. coarse vs fine classes).
        train_split: the paper's YOLO9000 protocol: group categories into "detection" (their node has boxes in
            this split's detection data) and "classification_only" (it has none).
        batch_size, conf_threshold, nms_iou: evaluation settings (darknet: threshold .005, NMS .45).
        device: where to run (default: the model's device).
        progress: show a tqdm bar.
        dataset_overrides: `key=value` edits of the descriptor when a path is given.
        postprocess: the model's PostProcess (default: built from `cfg.model`).
        per_depth: also mAP@.5 at each tree depth, ground truth and boxes taken to their ancestor at that depth
            (`yolo9000.evaluate_depth`, from the same forward passes); tree models only.
        compat: "darknet" scores as darknet's `validate_detector` does (yolo9000.compat_darknet): the image files
            decoded and letterboxed as darknet does, objectness x P(category) > conf_threshold for every category,
            `do_nms_sort`, boxes clipped to the image, no top-100 cap (COCOeval keeps the best 100).
    Returns:
        {"map": mAP@[.5:.95], "map50": mAP@.5, "images": evaluated images, "detections": kept boxes,
         "size": input size, "split": split,
         "per_class": {category id: {"name", "node", "wnid", "node_name", "ap", "ap50", "num_gt"}},
         "groups": {name: {"map", "map50", "categories": [ids]}} (when groups or train_split are given),
         "unmapped": [category names without a node],
         "per_depth": {"per_depth": [{"depth", "map50", "map", "categories", "num_gt"}], "mean_map50"} (per_depth)}.
    """
    from yolo9000.builder import build_postprocess
    from yolo9000.data.loader import build_eval_loader

    postprocess = postprocess or build_postprocess(cfg.model)
    if postprocess is None:
        raise ConfigError("evaluate_detection: model.kind darknet19 is a classifier; use evaluate_classification")
    descriptor = _descriptor(descriptor, dataset_overrides)
    tree = load_tree(cfg.model.tree)
    device = _model_device(model, device)
    size = size or cfg.data.eval_size
    gt, mapping, names = detection_ground_truth(descriptor, split, tree)
    if categories is not None:
        unknown = sorted(set(categories) - set(names))
        if unknown:
            raise DatasetError(f"evaluate_detection: category id {unknown[0]} is not in the ground truth of "
                             f"{descriptor.source} split {split!r} (ids: {sorted(names)[:20]})")
        mapping = {int(c): int(n) for c, n in categories.items()}
    cat_ids = sorted(mapping)
    if not cat_ids:
        raise DatasetError(f"evaluate_detection: no category of {descriptor.source} split {split!r} maps to a "
                         "node of the model (give `categories`)")
    postprocess = postprocess.to(device)
    scorer = postprocess.categories(torch.tensor([mapping[c] for c in cat_ids], device=device))
    if compat == "darknet":
        if per_depth:
            raise ConfigError("evaluate_detection: --per-depth scores through our postprocess; "
                              "it cannot be combined with --compat darknet")
        detections, image_ids = _darknet_detections(model, cfg, descriptor, split, tree, postprocess, size,
                                                    [mapping[c] for c in cat_ids], cat_ids, conf_threshold,
                                                    nms_iou, device, progress)
        return _detection_result(gt, detections, image_ids, cat_ids, mapping, names, tree, size, split,
                                 descriptor, train_split, groups)
    loader = build_eval_loader(descriptor, tree, cfg.data, split, batch_size, size)
    depths = None
    if per_depth:
        if tree is None:
            raise ConfigError("evaluate_detection: --per-depth needs a tree model; this one is flat")
        from yolo9000.evaluate_depth import DepthScorer
        depths = DepthScorer(gt, mapping, tree, postprocess, conf_threshold, nms_iou)
    detections, image_ids = [], []
    for batch, raw in _outputs(model, loader, cfg, device, f"eval {split}" if progress else None):
        kept = postprocess(raw, scorer, conf_threshold=conf_threshold, nms_iou=nms_iou, max_detections=100,
                           letterbox=batch.letterbox.to(device), orig_sizes=batch.orig_sizes.to(device))
        detections += coco_results(kept, cat_ids, batch.image_ids)
        image_ids += batch.image_ids.tolist()
        if depths is not None:
            depths.add(raw, batch.image_ids, batch.letterbox.to(device), batch.orig_sizes.to(device))
    return _detection_result(gt, detections, image_ids, cat_ids, mapping, names, tree, size, split, descriptor,
                             train_split, groups, depths)


def _darknet_detections(model: torch.nn.Module, cfg: Any, descriptor: Any, split: str, tree: WordTree | None,
                        postprocess: PostProcess, size: int, nodes: list[int], cat_ids: list[int],
                        conf_threshold: float, nms_iou: float, device: torch.device,
                        progress: bool) -> tuple[list[dict[str, Any]], list[int]]:
    """COCO results as darknet's `validate_detector` + `print_cocos` write them, one image file at a time."""
    import numpy as np

    from yolo9000 import compat_darknet as dn
    from yolo9000.data.descriptor import build_detection

    records = build_detection(descriptor, split, tree).records
    if progress:
        from tqdm import tqdm
        records = tqdm(records, desc=f"eval {split} (darknet)", dynamic_ncols=True)
    anchors = postprocess.anchors.cpu()
    detections, image_ids = [], []
    was_training = model.training
    model.eval()
    try:
        for record in records:
            pixels = dn.load_image(record.file)
            height, width = pixels.shape[1:]
            raw = _forward(model, torch.from_numpy(dn.letterbox_image(pixels, size, size))[None], cfg, device)
            activated = dn.region_activations(raw[0].cpu(), tree)
            dets = dn.get_region_detections(activated, anchors, width, height, size, size, conf_threshold,
                                            tree=tree, class_map=nodes if tree is not None else None)
            if tree is None:   # flat: the evaluated classes' columns (NMS is per column, so this commutes)
                dets = dn.RegionDetections(dets.anchor, dets.row, dets.col, dets.boxes, dets.objectness,
                                           dets.probs[:, nodes])
            if nms_iou:
                dets = dn.do_nms_sort(dets, nms_iou)
            xyxy = dets.to_xyxy(width, height)
            xyxy = np.stack((xyxy[:, 0].clip(min=0), xyxy[:, 1].clip(min=0), xyxy[:, 2].clip(max=width),
                             xyxy[:, 3].clip(max=height)), axis=1)
            for k, j in zip(*np.nonzero(dets.probs)):
                x1, y1, x2, y2 = (float(v) for v in xyxy[k])
                detections.append({"image_id": record.image_id, "category_id": cat_ids[j],
                                   "bbox": [round(x1, 2), round(y1, 2), round(x2 - x1, 2), round(y2 - y1, 2)],
                                   "score": float(dets.probs[k, j])})
            image_ids.append(record.image_id)
    finally:
        model.train(was_training)
    return detections, image_ids


def _detection_result(gt: COCO, detections: list[dict[str, Any]], image_ids: list[int], cat_ids: list[int],
                      mapping: Mapping[int, int], names: Mapping[int, str], tree: WordTree | None, size: int,
                      split: str, descriptor: Any, train_split: str | None,
                      groups: Mapping[str, Sequence[int]] | None, depths: Any = None) -> dict[str, Any]:
    metrics = coco_map(gt, detections, cat_ids, image_ids)
    per_class = {}
    for c in cat_ids:
        node = mapping[c]
        per_class[c] = {"name": names[c], "node": node, "wnid": tree.wnids[node] if tree is not None else None,
                        "node_name": tree.names[node] if tree is not None else names[c],
                        "ap": metrics.per_class_ap[c], "ap50": metrics.per_class_ap50[c],
                        "num_gt": len(gt.getAnnIds(imgIds=image_ids, catIds=[c], iscrowd=False))}
    result: dict[str, Any] = {"map": metrics.map, "map50": metrics.map50, "images": len(image_ids),
                              "detections": len(detections), "size": size, "split": split, "per_class": per_class,
                              "unmapped": [names[c] for c in sorted(set(names) - set(mapping))]}
    if train_split is not None:
        with_boxes = detection_labels(descriptor, train_split, tree)
        groups = {**(groups or {}),
                  "detection": [c for c in cat_ids if mapping[c] in with_boxes],
                  "classification_only": [c for c in cat_ids if mapping[c] not in with_boxes]}
    if groups:
        ap, ap50 = split_map(metrics.per_class_ap, groups), split_map(metrics.per_class_ap50, groups)
        result["groups"] = {g: {"map": ap[g], "map50": ap50[g], "categories": list(ids)} for g, ids in groups.items()}
    if depths is not None:
        result["per_depth"] = depths.result()
    return result


def _image_logits(cfg: Any, raw: Tensor) -> Tensor:
    """Per-image class logits Float[B, N]: a classifier's output, or a detector's prediction with the highest
    objectness (the box the image's object most likely is)."""
    if raw.ndim == 2:
        return raw
    dec = decode(raw, torch.tensor(cfg.model.anchors), cfg.model.stride)
    B = raw.shape[0]
    best = dec.objectness.reshape(B, -1).argmax(dim=1)
    logits = dec.class_logits.reshape(B, -1, dec.class_logits.shape[-1])
    return logits[torch.arange(B, device=raw.device), best]


@torch.no_grad()
def evaluate_classification(model: torch.nn.Module, cfg: Any, descriptor: Any, split: str = "eval", *,
                            size: int | None = None, leaves: Tensor | Sequence[str] | None = None,
                            batch_size: int = 8, hier_threshold: float = 0.5,
                            device: torch.device | str | None = None, progress: bool = False,
                            dataset_overrides: Sequence[str] | None = None) -> dict[str, Any]:
    """Top-1 / top-5 accuracy on the split's classification images, and, for tree models, accuracy per depth.

    Tree models rank the tree's leaves (or the given leaf set, darknet's `change_leaves`) by absolute probability,
    and make the paper's top-down decision (`wordtree.ops.decide`, threshold `hier_threshold`) for the per-depth
    accuracy and the rate of decisions that are the truth or one of its ancestors. Detectors are scored at their
    most confident prediction of each image.

    Args:
        leaves: node indices Long[L], or wnids, restricting the top-k candidates.
    Returns:
        {"images", "top1", "top5", "size", "split"} plus, for tree models, "depth_accuracy" (list, per depth) and
        "ancestor_rate".
    """
    from yolo9000.data.loader import build_classification_eval_loader

    descriptor = _descriptor(descriptor, dataset_overrides)
    tree = load_tree(cfg.model.tree)
    device = _model_device(model, device)
    size = size or cfg.data.eval_size
    if leaves is not None and not isinstance(leaves, Tensor):
        if tree is None:
            raise ConfigError("evaluate_classification: a leaf set of wnids needs a tree model")
        missing = [w for w in leaves if w not in tree]
        if missing:
            raise ConfigError(f"evaluate_classification: leaf wnid {missing[0]} is not in the tree")
        leaves = torch.tensor([tree.index(w) for w in leaves])
    loader = build_classification_eval_loader(descriptor, tree, cfg.data, split, batch_size, size)
    probs, decided, labels = [], [], []
    for batch, raw in _outputs(model, loader, cfg, device, f"eval {split} (classification)" if progress else None):
        logits = _image_logits(cfg, raw)
        if tree is None:
            probs.append(logits.softmax(dim=-1).cpu())
        else:
            log_cond = grouped_log_softmax(logits, tree)
            probs.append(absolute_probs(log_cond, tree).cpu())
            decided.append(decide(log_cond.exp(), tree, hier_threshold).node.cpu())
        labels.append(batch.labels[:, 0])
    if not labels:
        raise DatasetError(f"evaluate_classification: no image of {descriptor.source} split {split!r} could be loaded")
    all_probs, all_labels = torch.cat(probs), torch.cat(labels)
    top = topk_accuracy(all_probs, all_labels, tree, ks=(1, 5), leaves=leaves)
    result: dict[str, Any] = {"images": len(all_labels), "top1": top[1], "top5": top[5], "size": size, "split": split}
    if tree is not None:
        nodes = torch.cat(decided)
        result["depth_accuracy"] = depth_accuracy(nodes, all_labels, tree).tolist()
        result["ancestor_rate"] = ancestor_rate(nodes, all_labels, tree)
    return result
