"""`yolo9000 anchors`: dimension clusters on a dataset's training boxes (paper section 2, Table 1).

    yolo9000 anchors --data datasets/coco.yaml --k 5 [--split train] [--size 416] [--seed 0]

Prints the k anchors in grid units of the chosen input size (what `model.anchors` holds) and their average IoU
with the boxes, for k-means with the 1 - IoU distance and, as the paper's comparison, for Euclidean k-means.
The last line is the IoU anchors as a `--set` override.
"""
from __future__ import annotations

import argparse
import time

from yolo9000.anchors import KMeansResult, kmeans_anchors, to_grid_units
from yolo9000.errors import ConfigError


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, help="dataset descriptor: a shipped name (shapes, coco, voc) or a path")
    parser.add_argument("--split", default="train", help="split whose detection boxes are clustered (default %(default)s)")
    parser.add_argument("--k", type=int, default=5, help="number of anchors (default %(default)s)")
    parser.add_argument("--size", type=int, default=416, help="input side in pixels the grid units refer to (default %(default)s)")
    parser.add_argument("--stride", type=int, default=32, help="input pixels per grid cell (default %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="k-means++ seed (default %(default)s)")
    parser.add_argument("--restarts", type=int, default=1, help="independent seedings; the best run is kept (default %(default)s)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a descriptor value, e.g. root=/data/coco")
    parser.set_defaults(func=run)


def _anchor_text(result: KMeansResult, size: int, stride: int) -> str:
    grid = to_grid_units(result.centroids, size, stride)
    return "  ".join(f"{w:.5f},{h:.5f}" for w, h in grid.tolist())


def run(args: argparse.Namespace) -> int:
    from yolo9000.data.descriptor import box_sizes, load_descriptor

    if args.size <= 0 or args.stride <= 0 or args.size % args.stride:
        raise ConfigError(f"--size {args.size} is not a positive multiple of --stride {args.stride}")
    descriptor = load_descriptor(args.data, args.set)
    wh = box_sizes(descriptor, args.split)
    valid = (wh > 0).all(dim=1)
    dropped = int((~valid).sum())
    wh = wh[valid]
    print(f"{args.data}: {len(wh)} boxes in split {args.split!r}"
          + (f" ({dropped} with zero width or height left out)" if dropped else ""))
    if len(wh) < args.k:
        raise ConfigError(f"--k {args.k} needs at least {args.k} boxes, the split has {len(wh)}")
    grid = args.size // args.stride
    print(f"k={args.k}, input {args.size}x{args.size} ({grid}x{grid} grid), seed {args.seed}")
    results = {}
    for distance, title in (("iou", "k-means, 1 - IoU distance"), ("euclidean", "k-means, Euclidean distance")):
        start = time.perf_counter()
        result = kmeans_anchors(wh, args.k, distance, args.seed, args.restarts)
        seconds = time.perf_counter() - start
        results[distance] = result
        print(f"{title}: avg IoU {result.avg_iou:.4f} ({result.iterations} iterations, {seconds:.2f} s)")
        print(f"  anchors (w,h in grid units): {_anchor_text(result, args.size, args.stride)}")
    gain = results["iou"].avg_iou - results["euclidean"].avg_iou
    print(f"IoU distance vs Euclidean: {gain:+.4f} avg IoU")
    grid_wh = to_grid_units(results["iou"].centroids, args.size, args.stride).tolist()
    print("--set model.anchors=[" + ",".join(f"[{w:.5f},{h:.5f}]" for w, h in grid_wh) + "]")
    return 0
