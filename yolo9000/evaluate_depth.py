"""Detection mAP per tree depth (issue 12): which levels of the WordTree a detector gets right.

At depth d every ground-truth box is relabelled with its category node's ancestor at depth d (boxes whose node is
shallower than d have no label at that depth and are left out), and every predicted box is scored for each depth-d
node A as `objectness * P(A)`, the tree's probability that the box is A or one of its descendants (the model's
`PostProcess` with a `CategoryScorer` over the depth-d nodes: darknet's validation scoring). Then per-category NMS,
the top 100 per image and the real COCOeval, one run per depth: mAP@.5 over the depth-d nodes that have ground
truth. Depth 0 asks "which root", the deepest level asks for the categories themselves.
"""
from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import torch
from pycocotools.coco import COCO

from wordtree.tree import WordTree
from yolo9000.evaluate import _as_coco, coco_map, coco_results
from yolo9000.postprocess import PostProcess


def depth_nodes(mapping: Mapping[int, int], tree: WordTree) -> dict[int, list[int]]:
    """Depth -> the nodes at that depth that are ancestors (or selves) of the mapped categories' nodes, sorted."""
    out: dict[int, set[int]] = {}
    for node in set(mapping.values()):
        for d, a in enumerate(tree.path(node)):
            out.setdefault(d, set()).add(a)
    return {d: sorted(nodes) for d, nodes in sorted(out.items())}


def depth_ground_truth(gt: COCO | Mapping[str, Any], mapping: Mapping[int, int], tree: WordTree, depth: int
                       ) -> dict[str, Any]:
    """A COCO-format dict of the ground truth relabelled at `depth`: category id = ancestor node + 1.

    Args:
        gt: the split's ground truth (COCO object or dict).
        mapping: {category id: tree node}; unmapped categories are left out.
        tree: the WordTree.
        depth: the tree depth (0 = roots).
    """
    coco = _as_coco(gt)
    paths = tree.paths
    annotations, cats = [], set()
    for ann in coco.dataset.get("annotations", []):
        node = mapping.get(ann["category_id"])
        if node is None or int(tree.depth[node]) < depth:
            continue
        ancestor = int(paths[node, depth])
        cats.add(ancestor)
        annotations.append({**ann, "category_id": ancestor + 1})
    return {"images": coco.dataset.get("images", []), "annotations": annotations,
            "categories": [{"id": a + 1, "name": tree.names[a]} for a in sorted(cats)]}


class DepthScorer:
    """Accumulates detections for every depth while a model runs over a split; `result()` runs COCOeval per depth.

    Args:
        gt, mapping: the split's ground truth and {category id: tree node} (as `evaluate.detection_ground_truth`).
        tree: the WordTree.
        postprocess: the model's PostProcess (its tree is `tree`).
        conf_threshold, nms_iou: as for `evaluate_detection` (darknet: .005, .45).
    """

    def __init__(self, gt: COCO | Mapping[str, Any], mapping: Mapping[int, int], tree: WordTree,
                 postprocess: PostProcess, conf_threshold: float = 0.005, nms_iou: float = 0.45) -> None:
        self.gt, self.mapping, self.tree = _as_coco(gt), dict(mapping), tree
        self.levels = depth_nodes(self.mapping, tree)
        self.postprocess = postprocess
        device = postprocess.anchors.device
        # One scorer per depth: NMS and the top 100 per image are per depth, as separate COCOeval runs need.
        self.scorers = {d: postprocess.categories(torch.tensor(nodes, device=device))
                        for d, nodes in self.levels.items()}
        self.conf_threshold, self.nms_iou = conf_threshold, nms_iou
        self.detections: dict[int, list[dict]] = {d: [] for d in self.levels}
        self.image_ids: list[int] = []

    def add(self, raw: torch.Tensor, image_ids: torch.Tensor, letterbox: torch.Tensor | None = None,
            orig_sizes: torch.Tensor | None = None) -> None:
        """Score one batch: raw Float[B, A, 5+N, H, W], image_ids Long[B], letterbox Float[B, 3] (scale, pad_x,
        pad_y), orig_sizes Long[B, 2] (height, width)."""
        for d, nodes in self.levels.items():
            kept = self.postprocess(raw, self.scorers[d], conf_threshold=self.conf_threshold, nms_iou=self.nms_iou,
                                    max_detections=100, letterbox=letterbox, orig_sizes=orig_sizes)
            self.detections[d] += coco_results(kept, [n + 1 for n in nodes], image_ids)
        self.image_ids += image_ids.tolist()

    def result(self) -> dict[str, Any]:
        """{"per_depth": [{"depth", "map50", "map", "categories", "num_gt"}], "mean_map50"} over depths with GT."""
        rows = []
        for d in self.levels:
            gt = depth_ground_truth(self.gt, self.mapping, self.tree, d)
            if not gt["annotations"]:
                continue
            cat_ids = [c["id"] for c in gt["categories"]]
            metrics = coco_map(gt, self.detections[d], cat_ids, self.image_ids)
            rows.append({"depth": d, "map50": metrics.map50, "map": metrics.map, "categories": len(cat_ids),
                         "num_gt": len(gt["annotations"])})
        values = [r["map50"] for r in rows if not math.isnan(r["map50"])]
        return {"per_depth": rows, "mean_map50": sum(values) / len(values) if values else math.nan}


def format_per_depth(result: Mapping[str, Any]) -> list[str]:
    """The per-depth table, AP in percent as in `yolo9000 eval`'s other tables."""
    lines = [f"  {'depth':>5}  {'mAP@.5':>7}  {'mAP':>6}  {'nodes':>5}  {'boxes':>6}"]
    lines += [f"  {r['depth']:>5}  {100 * r['map50']:>7.2f}  {100 * r['map']:>6.2f}  {r['categories']:>5}  "
              f"{r['num_gt']:>6}" for r in result["per_depth"]]
    return lines


def per_depth_from_detections(gt: COCO | Mapping[str, Any], mapping: Mapping[int, int], tree: WordTree,
                              detections: Sequence[Mapping[str, Any]]) -> dict[int, float]:
    """mAP@.5 per depth of fixed category-level detections, each mapped to its node's ancestor at the depth (the
    slow, obvious reading of the definition; used to check `DepthScorer` on detections that are one-hot)."""
    out = {}
    for d in depth_nodes(mapping, tree):
        gt_d = depth_ground_truth(gt, mapping, tree, d)
        if not gt_d["annotations"]:
            continue
        mapped = []
        for det in detections:
            node = mapping.get(det["category_id"])
            if node is not None and int(tree.depth[node]) >= d:
                mapped.append({**det, "category_id": int(tree.paths[node, d]) + 1})
        out[d] = coco_map(gt_d, mapped, [c["id"] for c in gt_d["categories"]]).map50
    return out
