"""Benchmark: the WordTree hierarchical softmax loss against a flat softmax over the same columns (issue 2 §6).

Logits Float[B*H*W*A, N] for B=8, H=W=13, A=3 (4056 rows) and darknet's 9k tree (N = 9418 nodes, 1846 groups),
one leaf label per row. Each variant is timed forward + backward, all side by side in one run, median of repeats:

  tree  grouped_log_softmax over every group, then the label's root-path terms gathered from it (the full
        hierarchical softmax, what darknet's GPU path computes)
  nll   tree_nll alone: the loss as yolo9000.loss uses it, which reads only the groups on each label's path
  flat  F.log_softmax + F.nll_loss over the same 9418 columns (a plain 9418-way classifier)
  loop  one log_softmax per sibling group in a Python loop (darknet's CPU way), then the same gather

Target: tree / flat <= 2.0. The last line printed is one JSON object with the figures.

    .venv/bin/python bench/tree_softmax.py [--repeats 7] [--loop-repeats 3] [--threads 2]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import torch
import torch.nn.functional as F

from wordtree.ops import grouped_log_softmax, tree_nll
from wordtree.tree import WordTree
from wordtree.io import load_tree


def path_nll(log_cond: torch.Tensor, labels: torch.Tensor, tree: WordTree) -> torch.Tensor:
    """Mean over rows of -sum log P(k | parent) on the label's root path, read from a full grouped softmax."""
    path = tree.paths[labels]                                   # [R, D+1], -1 padded
    picked = log_cond.gather(1, path.clamp(min=0))
    return -(picked * (path >= 0)).sum() / labels.numel()


def tree_loss(logits: torch.Tensor, labels: torch.Tensor, tree: WordTree) -> torch.Tensor:
    return path_nll(grouped_log_softmax(logits, tree), labels, tree)


def nll_loss(logits: torch.Tensor, labels: torch.Tensor, tree: WordTree) -> torch.Tensor:
    return tree_nll(logits, labels, tree).mean()


def flat_loss(logits: torch.Tensor, labels: torch.Tensor, tree: WordTree) -> torch.Tensor:
    return F.nll_loss(F.log_softmax(logits, dim=-1), labels)


def loop_loss(logits: torch.Tensor, labels: torch.Tensor, tree: WordTree) -> torch.Tensor:
    # split() rather than slicing: one SplitBackward gathers the group gradients, where 1846 slices would each
    # materialise a full-size zero gradient. Groups are contiguous and in order, so the sizes are the split.
    parts = [part.log_softmax(-1) for part in logits.split(tree.group_size.tolist(), dim=1)]
    return path_nll(torch.cat(parts, dim=1), labels, tree)


def time_fwd_bwd(fn, logits: torch.Tensor, labels: torch.Tensor, tree: WordTree, repeats: int) -> list[float]:
    """Milliseconds of loss + backward per repeat (after one warm-up)."""
    times = []
    for r in range(repeats + 1):
        x = logits.detach().requires_grad_(True)
        start = time.perf_counter()
        fn(x, labels, tree).backward()
        elapsed = (time.perf_counter() - start) * 1000
        if r:
            times.append(elapsed)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7, help="timed runs per variant (median reported)")
    parser.add_argument("--loop-repeats", type=int, default=3, help="timed runs of the slow per-group loop")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads (default 2)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    tree = load_tree("9k")
    B, H, W, A = 8, 13, 13, 3
    rows = B * H * W * A
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(rows, tree.num_nodes, generator=g) * 3
    leaves = tree.is_leaf.nonzero().squeeze(1)
    labels = leaves[torch.randint(leaves.numel(), (rows,), generator=g)]

    # The variants must agree before their speed means anything.
    ref = loop_loss(logits, labels, tree)
    for name, fn in (("tree", tree_loss), ("nll", nll_loss)):
        torch.testing.assert_close(fn(logits, labels, tree), ref, rtol=1e-4, atol=1e-4, msg=f"{name} != loop")

    load = os.getloadavg()[0]
    print(f"logits [{rows}, {tree.num_nodes}] float32 ({B}x{H}x{W}x{A} rows), {tree.num_groups} groups, "
          f"threads {torch.get_num_threads()}, forward+backward, median of {args.repeats}; load average {load:.1f} "
          f"on {os.cpu_count()} cores" + (" (busy machine: many-op variants suffer most)" if load > 1.5 else ""))
    # Interleave the fast variants so drifting machine load hits them alike.
    fast = {"tree": tree_loss, "nll": nll_loss, "flat": flat_loss}
    samples: dict[str, list[float]] = {k: [] for k in fast}
    for _ in range(args.repeats):
        for name, fn in fast.items():
            samples[name] += time_fwd_bwd(fn, logits, labels, tree, 1)
    samples["loop"] = time_fwd_bwd(loop_loss, logits, labels, tree, args.loop_repeats)
    ms = {k: statistics.median(v) for k, v in samples.items()}
    labels_text = {"tree": "grouped_log_softmax + path gather", "nll": "tree_nll (path groups only)",
                   "flat": "F.log_softmax + F.nll_loss", "loop": "per-group loop (darknet CPU way)"}
    for k in ("tree", "nll", "flat", "loop"):
        print(f"  {k:5s} {labels_text[k]:36s} {ms[k]:9.1f} ms   x{ms[k] / ms['flat']:.2f} flat")
    ratio = ms["tree"] / ms["flat"]
    print(f"ratio tree/flat = {ratio:.2f} (target <= 2.0: {'met' if ratio <= 2.0 else 'MISSED'}); "
          f"tree_nll/flat = {ms['nll'] / ms['flat']:.2f}; loop/tree = {ms['loop'] / ms['tree']:.1f}")
    print(json.dumps({"tree_ms": round(ms["tree"], 2), "nll_ms": round(ms["nll"], 2), "flat_ms": round(ms["flat"], 2),
                      "loop_ms": round(ms["loop"], 2), "ratio": round(ratio, 3),
                      "ratio_nll": round(ms["nll"] / ms["flat"], 3), "rows": rows, "nodes": tree.num_nodes,
                      "threads": torch.get_num_threads(), "load": round(load, 2)}))


if __name__ == "__main__":
    main()
