"""Dimension clusters (YOLO9000 paper section 2, Table 1): k-means on the training boxes' (w, h).

The paper's distance is `d(box, centroid) = 1 - IoU(box, centroid)` with both boxes sharing a centre, so large
boxes do not dominate the error as they do with Euclidean distance; `distance="euclidean"` is the comparison
the paper makes. Seeding is greedy k-means++ (seeds drawn with probability proportional to d²), driven by a
`torch.Generator`, so a seed fixes the result. Every step is a [T, K] tensor operation: tens of thousands of
boxes cluster in milliseconds.
"""
from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from yolo9000.boxes import box_iou_wh

Distance = Literal["iou", "euclidean"]


@dataclass(frozen=True)
class KMeansResult:
    """Clusters of box shapes.

    Attributes:
        centroids: Float[K, 2] (w, h) in the input's units, sorted by area.
        assignment: Long[T] cluster of each box (indexing the sorted centroids).
        avg_iou: mean over boxes of the IoU with the closest-by-IoU centroid (the paper's Table 1 figure).
        iterations: Lloyd iterations of the kept run.
        distance: "iou" or "euclidean".
    """

    centroids: Tensor
    assignment: Tensor
    avg_iou: float
    iterations: int
    distance: str


@contextmanager
def _one_thread() -> Iterator[None]:
    """Run on one intra-op thread: each [T, K] op is ~1 ms of work, and on a busy machine handing it to a second
    thread costs 10-50x that (measured: 3 ms -> 140 ms per IoU matrix of 50k boxes with 2 threads, load 8)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def average_iou(wh: Tensor, centroids: Tensor) -> float:
    """Mean over boxes of the best shared-centre IoU with any centroid. wh: Float[T, 2], centroids: Float[K, 2]."""
    return box_iou_wh(wh, centroids).max(dim=1).values.mean().item()


def _distances(wh: Tensor, centroids: Tensor, distance: Distance) -> Tensor:
    """Float[T, K]: 1 - IoU (shared centres), or the squared Euclidean distance.

    Written per coordinate rather than through `box_iou_wh`'s [T, K, 2] intermediate: this runs every Lloyd
    iteration and half the kernels makes it twice as fast (`average_iou` checks it against `box_iou_wh`)."""
    w, h = wh[:, 0:1], wh[:, 1:2]
    cw, ch = centroids[:, 0], centroids[:, 1]
    if distance == "iou":
        inter = torch.minimum(w, cw) * torch.minimum(h, ch)
        return 1 - inter / (w * h + cw * ch - inter)
    return (w - cw).square() + (h - ch).square()


def _seed_kmeans_pp(wh: Tensor, k: int, distance: Distance, generator: torch.Generator) -> Tensor:
    """Greedy k-means++ (as scikit-learn): the first centroid uniformly; then, per step, 2 + log(k) candidates
    drawn with probability proportional to d² to the nearest centroid, keeping the one that lowers the total d²
    most. The greedy pick avoids most of plain k-means++'s bad seedings for the price of a few [T, L] products."""
    trials = 2 + int(math.log(k))
    first = torch.randint(len(wh), (1,), generator=generator)
    centroids = wh[first]
    nearest = _distances(wh, centroids, distance)[:, 0]
    for _ in range(1, k):  # K is small; each step is vectorised over the boxes
        weights = nearest.square()
        if weights.sum() <= 0:  # every box already sits on a centroid: fewer distinct shapes than k
            weights = torch.ones_like(weights)
        candidates = torch.multinomial(weights, trials, replacement=True, generator=generator)
        closer = torch.minimum(nearest[:, None], _distances(wh, wh[candidates], distance))  # [T, L]
        best = closer.square().sum(dim=0).argmin()
        centroids = torch.cat([centroids, wh[candidates[best]][None]])
        nearest = closer[:, best]
    return centroids


def _lloyd(wh: Tensor, centroids: Tensor, distance: Distance, max_iter: int) -> tuple[Tensor, Tensor, int]:
    """Alternate assignment and mean update until the assignment stops changing."""
    k = len(centroids)
    assignment = torch.full((len(wh),), -1, dtype=torch.long)
    for iteration in range(1, max_iter + 1):
        dist = _distances(wh, centroids, distance)
        new_assignment = dist.argmin(dim=1)
        counts = torch.bincount(new_assignment, minlength=k)
        empty = (counts == 0).nonzero().flatten()
        if len(empty):
            # An emptied cluster restarts on the boxes worst served by their own centroid (deterministic).
            worst = dist.gather(1, new_assignment[:, None])[:, 0].topk(len(empty)).indices
            new_assignment[worst] = empty
            counts = torch.bincount(new_assignment, minlength=k)
        sums = torch.zeros_like(centroids).index_add_(0, new_assignment, wh)
        centroids = sums / counts[:, None]
        if torch.equal(new_assignment, assignment):
            return centroids, assignment, iteration
        assignment = new_assignment
    return centroids, assignment, max_iter


def _objective(wh: Tensor, centroids: Tensor, assignment: Tensor, distance: Distance) -> float:
    """Total distance of boxes to their centroids (what each variant minimises)."""
    return _distances(wh, centroids, distance).gather(1, assignment[:, None]).sum().item()


def kmeans_anchors(wh: Tensor, k: int, distance: Distance = "iou", seed: int = 0, restarts: int = 3,
                   max_iter: int = 300) -> KMeansResult:
    """Cluster box shapes into k anchors.

    Args:
        wh: Float[T, 2] box widths and heights (any units, e.g. normalised to the image), all positive.
        k: number of clusters (anchors).
        distance: "iou" (the paper's 1 - IoU) or "euclidean" (plain k-means, the paper's baseline).
        seed: seeds the k-means++ draws; the same seed gives the same result.
        restarts: independent seedings; the run with the lowest total distance (its own objective) is kept.
        max_iter: cap on Lloyd iterations per run.
    Returns:
        KMeansResult with centroids sorted by area.
    Raises:
        ValueError: fewer than k boxes, a non-positive width or height, or a bad argument.
    """
    if distance not in ("iou", "euclidean"):
        raise ValueError(f"distance: {distance!r} is not 'iou' or 'euclidean'")
    if k < 1 or restarts < 1 or max_iter < 1:
        raise ValueError(f"k={k}, restarts={restarts}, max_iter={max_iter}: all must be at least 1")
    wh = torch.as_tensor(wh, dtype=torch.float32)
    if wh.ndim != 2 or wh.shape[1] != 2:
        raise ValueError(f"wh: expected Float[T, 2] widths and heights, got shape {tuple(wh.shape)}")
    if len(wh) < k:
        raise ValueError(f"k={k} clusters need at least {k} boxes, got {len(wh)}")
    bad = (wh <= 0).any(dim=1) | ~torch.isfinite(wh).all(dim=1)
    if bad.any():
        i = int(bad.nonzero()[0])
        raise ValueError(f"wh: box {i} has size {wh[i].tolist()}; widths and heights must be positive and finite")
    generator = torch.Generator().manual_seed(seed)
    best = None
    with _one_thread():
        for _ in range(restarts):
            centroids, assignment, iterations = _lloyd(wh, _seed_kmeans_pp(wh, k, distance, generator), distance,
                                                       max_iter)
            score = _objective(wh, centroids, assignment, distance)
            if best is None or score < best[0]:
                best = (score, centroids, assignment, iterations)
        _, centroids, assignment, iterations = best
        order = centroids.prod(dim=1).argsort()
        rank = torch.empty_like(order)
        rank[order] = torch.arange(k)
        centroids = centroids[order]
        mean_iou = average_iou(wh, centroids)
    return KMeansResult(centroids, rank[assignment], mean_iou, iterations, distance)


def to_grid_units(wh: Tensor, input_size: int, stride: int = 32) -> Tensor:
    """Normalised (w, h) -> grid cells of a `input_size` input with output stride `stride` (ModelConfig.anchors)."""
    return wh * (input_size / stride)
