"""Region loss speed against the network it trains (issue 4 benchmark).

YOLO9000 (configs/yolo9000.yaml: 9418-node tree, 3 anchors, 28269 output filters) at 416x416, batch 8: 4 detection
images with 10 boxes each (COCO classes through coco9k.map) and 4 classification images (one tree leaf each).
Measured side by side, round-robin (one call of each variant per round, median over rounds, so machine load hits
all alike):

- network forward + backward, fp32 and under bf16 autocast (the engine trains in bf16 on CPU); the backward is
  driven by a fixed output gradient, so nothing but the network runs;
- the loss alone (assignment + terms + weighted total, forward + backward) on a raw output that requires grad,
  as float32 and as bfloat16 (what the network hands over under autocast).

Target: the loss costs <= 10 % of the network's forward + backward. Then the slow loop reference of
tests/test_loss.py (per image, per truth, per prediction) against the same loss on a smaller grid (the loop
reference would take minutes at 13x13), to show the speed-up of the vectorised code.

    .venv/bin/python bench/loss_speed.py [--rounds 3] [--size 416] [--batch 8] [--ref-size 128]

The last line is one JSON object.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from wordtree.io import read_map  # noqa: E402
from yolo9000.config import load_config  # noqa: E402
from yolo9000.data.collate import Batch  # noqa: E402
from yolo9000.loss import RegionLoss  # noqa: E402
from yolo9000.builder import build_model  # noqa: E402
from yolo9000.reference import darknet_file  # noqa: E402
from wordtree.io import load_tree  # noqa: E402

TARGET = 0.10


def round_robin(variants: dict[str, Callable[[], object]], rounds: int, warmup: int = 1) -> dict[str, float]:
    """Median seconds per call of each variant, measured interleaved: one call of each per round."""
    for fn in variants.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(rounds):
        for name, fn in variants.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(ts) for name, ts in times.items()}


def mixed_batch(size: int, batch: int, boxes_per_image: int, tree, g: torch.Generator) -> Batch:
    """First half detection images (COCO classes mapped into the tree), second half classification images."""
    num_det = batch // 2
    coco_to_tree = torch.tensor(read_map(darknet_file("coco9k.map"), tree))
    leaves = tree.is_leaf.nonzero().squeeze(1)
    centre = torch.rand(num_det, boxes_per_image, 2, generator=g) * size
    wh = size * (0.05 + 0.5 * torch.rand(num_det, boxes_per_image, 2, generator=g))
    boxes = torch.full((batch, boxes_per_image, 4), -1.0)
    boxes[:num_det] = torch.cat((centre - wh / 2, centre + wh / 2), dim=-1).clamp(0, size)
    labels = torch.full((batch, boxes_per_image), -1, dtype=torch.long)
    labels[:num_det] = coco_to_tree[torch.randint(len(coco_to_tree), (num_det, boxes_per_image), generator=g)]
    labels[num_det:, 0] = leaves[torch.randint(len(leaves), (batch - num_det,), generator=g)]
    return Batch(images=torch.rand(batch, 3, size, size, generator=g), is_detection=torch.arange(batch) < num_det,
                 boxes=boxes, labels=labels, image_ids=torch.arange(batch), orig_sizes=torch.full((batch, 2), size),
                 letterbox=torch.tensor([[1.0, 0.0, 0.0]]).repeat(batch, 1))


def network_step(model: torch.nn.Module, images: torch.Tensor, grad: torch.Tensor, bf16: bool) -> Callable[[], None]:
    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = model(images)
        out.backward(grad.to(out.dtype))
        model.zero_grad(set_to_none=True)
    return step


def loss_step(loss: RegionLoss, raw: torch.Tensor, batch: Batch) -> Callable[[], None]:
    raw = raw.detach().requires_grad_()

    def step() -> None:
        torch.autograd.grad(loss.total(loss(raw, batch, seen=0)), raw)
    return step


def load_reference():
    """tests/test_loss.py as a module: its `reference_loss` loops and its ANCHORS / STRIDE."""
    spec = importlib.util.spec_from_file_location("test_loss_reference", ROOT / "tests" / "test_loss.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds (median reported)")
    parser.add_argument("--size", type=int, default=416, help="input size of the network comparison")
    parser.add_argument("--batch", type=int, default=8, help="images per batch (half detection)")
    parser.add_argument("--boxes", type=int, default=10, help="boxes per detection image")
    parser.add_argument("--ref-size", type=int, default=128, help="input size of the loop-reference comparison")
    parser.add_argument("--ref-rounds", type=int, default=1, help="timed rounds of the loop reference")
    args = parser.parse_args()
    torch.set_num_threads(2)
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)

    cfg = load_config(ROOT / "yolo9000" / "configs" / "yolo9000.yaml")
    tree = load_tree(cfg.model.tree)
    model = build_model(cfg.model)
    batch = mixed_batch(args.size, args.batch, args.boxes, tree, g)
    loss = RegionLoss(model.anchors, cfg.loss, tree=tree, stride=model.stride)
    with torch.no_grad():
        raw = model(batch.images)
    print(f"YOLO9000 {args.size}x{args.size}, batch {args.batch}: raw output {tuple(raw.shape)} "
          f"({raw.numel() * 4 / 2**20:.0f} MB fp32), {args.batch // 2} x {args.boxes} boxes + "
          f"{args.batch - args.batch // 2} classification images, torch {torch.__version__}, 2 threads")
    grad = torch.randn(raw.shape, generator=g) * 1e-3
    variants = {
        "network_fp32": network_step(model, batch.images, grad, bf16=False),
        "network_bf16": network_step(model, batch.images, grad, bf16=True),
        "loss_fp32": loss_step(loss, raw, batch),
        "loss_bf16": loss_step(loss, raw.bfloat16(), batch),
    }
    times = round_robin(variants, args.rounds)
    for name, seconds in times.items():
        print(f"  {name:<14} {seconds * 1000:9.1f} ms   (forward + backward, median of {args.rounds})")
    fraction_fp32 = times["loss_fp32"] / times["network_fp32"]
    fraction_bf16 = times["loss_bf16"] / times["network_bf16"]
    print(f"  loss / network: fp32 {fraction_fp32:.1%}, bf16 {fraction_bf16:.1%} (target <= {TARGET:.0%})")

    # The loop reference is written for tests/test_loss.py's ANCHORS and STRIDE; run ours with the same.
    reference = load_reference()
    grid = args.ref_size // reference.STRIDE
    ref_batch = mixed_batch(args.ref_size, args.batch, args.boxes, tree, g)
    ref_loss = RegionLoss(reference.ANCHORS, cfg.loss, tree=tree, stride=reference.STRIDE)
    ref_raw = torch.randn(args.batch, len(reference.ANCHORS), 5 + tree.num_nodes, grid, grid, generator=g)

    def reference_step() -> None:
        # float64, as tests/test_loss.py runs it (ours runs in float32).
        raw64 = ref_raw.double().requires_grad_()
        torch.autograd.grad(sum(reference.reference_loss(raw64, ref_batch, cfg.loss, tree, seen=0).values()), raw64)

    ours_step = loss_step(ref_loss, ref_raw, ref_batch)
    ours_step()                                  # warm-up of ours only: one reference call takes seconds
    ref_times = round_robin({"reference": reference_step, "ours": ours_step}, args.ref_rounds, warmup=0)
    speedup = ref_times["reference"] / ref_times["ours"]
    print(f"loop reference vs ours at {args.ref_size}x{args.ref_size} ({grid}x{grid} grid, same batch make-up): "
          f"{ref_times['reference'] * 1000:.0f} ms vs {ref_times['ours'] * 1000:.1f} ms, {speedup:.0f}x faster")

    print(json.dumps({
        "size": args.size, "batch": args.batch, "boxes_per_detection_image": args.boxes, "rounds": args.rounds,
        "network_fp32_ms": round(times["network_fp32"] * 1000, 1),
        "network_bf16_ms": round(times["network_bf16"] * 1000, 1),
        "loss_fp32_ms": round(times["loss_fp32"] * 1000, 1), "loss_bf16_ms": round(times["loss_bf16"] * 1000, 1),
        "loss_fraction_fp32": round(fraction_fp32, 4), "loss_fraction_bf16": round(fraction_bf16, 4),
        "target_fraction": TARGET, "target_met": bool(max(fraction_fp32, fraction_bf16) <= TARGET),
        "reference_size": args.ref_size, "reference_ms": round(ref_times["reference"] * 1000, 1),
        "ours_on_reference_case_ms": round(ref_times["ours"] * 1000, 1), "reference_speedup": round(speedup, 1),
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
