"""What one training image of the demo costs, change by change (issue 16; README "How fast, and why").

Two measurements, both in process CPU time (user + sys) on one thread, so that other jobs on a shared machine
inflate them far less than wall time, each variant repeated round-robin and the minimum kept:

* the tiny detector's forward + backward (the demo config's model, random input, a scalar loss) per image, by
  input size, batch size, precision (float32 / bf16 autocast), memory format and model width / head convs,
  as a ratio to 16 images of 224 px in float32, channels_last;
* the loader per image: JPEG decode and the training augmentation (TrainTransform) at each input size, on the
  shapes world's detection images.

    .venv/bin/python bench/demo_speed.py [--world DIR] [--reps 4] [--quick]

The last line is one JSON object.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import resource
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from yolo9000.config import load_config  # noqa: E402
from yolo9000.builder import build_model  # noqa: E402

# name -> (input size, batch, amp, channels_last, model overrides). Every variant names its stride, so the rows
# mean the same whatever configs/demo.yaml holds.
S32 = {"stride": 32, "passthrough": True}
S16 = {"stride": 16, "passthrough": False}
VARIANTS = {
    "stride 32, 224 px, 16 per batch, float32 (reference)": (224, 16, "off", True, S32),
    "stride 32, 128 px": (128, 16, "off", True, S32),
    "stride 32, 160 px": (160, 16, "off", True, S32),
    "stride 32, 192 px": (192, 16, "off", True, S32),
    "stride 32, 256 px": (256, 16, "off", True, S32),
    "stride 32, 160 px, 8 per batch": (160, 8, "off", True, S32),
    "stride 32, 160 px, bf16": (160, 16, "bf16", True, S32),
    "stride 32, 224 px, bf16": (224, 16, "bf16", True, S32),
    "stride 32, 224 px, NCHW": (224, 16, "off", False, S32),
    "stride 32, 224 px, model.width 0.125": (224, 16, "off", True, {**S32, "width": 0.125}),
    "stride 32, 224 px, model.head_convs 1": (224, 16, "off", True, {**S32, "head_convs": 1}),
    "stride 16, 128 px (8x8 grid, as stride 32 at 256)": (128, 16, "off", True, S16),
    "stride 16, 144 px": (144, 16, "off", True, S16),
    "stride 16, 160 px": (160, 16, "off", True, S16),
    "stride 16, 144 px, 8 per batch": (144, 8, "off", True, S16),
    "stride 16, 144 px, bf16": (144, 16, "bf16", True, S16),
    "stride 16, 144 px, model.head_convs 1": (144, 16, "off", True, {**S16, "head_convs": 1}),
}


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def model_costs(reps: int, variants: dict) -> dict[str, float]:
    """CPU seconds per image of forward + backward, minimum over `reps` round-robin repetitions."""
    base = load_config("demo").model
    runs = {}
    for name, (size, batch, amp, channels_last, overrides) in variants.items():
        model = build_model(dataclasses.replace(base, num_classes=16, **overrides))
        x = torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(0))
        if channels_last:
            model, x = model.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
        runs[name] = (model, x, amp)
    best = {name: float("inf") for name in runs}
    for rep in range(reps + 1):                # the first round warms every kernel up and is not kept
        for name, (model, x, amp) in runs.items():
            start = _cpu()
            autocast = torch.autocast("cpu", torch.bfloat16) if amp == "bf16" else contextlib.nullcontext()
            with autocast:
                out = model(x)
            out.float().square().mean().backward()
            model.zero_grad(set_to_none=True)
            if rep:
                best[name] = min(best[name], (_cpu() - start) / len(x))
    return best


def loader_costs(world: Path, sizes: tuple[int, ...], images: int) -> dict[str, float]:
    """CPU seconds per image: decode, and augmentation at each size."""
    from yolo9000.data.descriptor import build_detection, load_descriptor
    from yolo9000.data.transforms import TrainTransform
    from wordtree.io import load_tree
    tree = load_tree(str(world / "shapes.tree"))
    source = build_detection(load_descriptor(world / "shapes.yaml"), "train", tree)
    start = _cpu()
    images = min(images, len(source))
    samples = [source[i] for i in range(images)]
    costs = {"decode": (_cpu() - start) / images}
    transform = TrainTransform()
    for size in sizes:
        generator = torch.Generator().manual_seed(0)
        start = _cpu()
        for image, target in samples:
            transform(image, target, size, generator)
        costs[f"augment {size} px"] = (_cpu() - start) / images
    return costs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--world", type=Path, help="shapes world (default $YOLO9000_HOME/shapes, written if missing)")
    parser.add_argument("--reps", type=int, default=4)
    parser.add_argument("--quick", action="store_true", help="one repetition, three variants (checks the script runs)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    from yolo9000.data.shapes import write_world
    from yolo9000.reference import data_home
    world = args.world or data_home() / "shapes"
    if not (world / "world.json").exists():     # any written world will do (tests pass a tiny one)
        write_world(world, progress=False)
    variants = {k: VARIANTS[k] for k in list(VARIANTS)[:2] + ["stride 16, 144 px"]} if args.quick else VARIANTS
    model = model_costs(1 if args.quick else args.reps, variants)
    reference = next(iter(model.values()))
    print("tiny detector, forward + backward, CPU time per image on one thread (ratio to the first row):")
    for name, seconds in model.items():
        print(f"  {name:<44} {1000 * seconds:7.2f} ms  x{seconds / reference:.2f}")
    loader = loader_costs(world, (128, 144, 160, 192, 224, 256), 20 if args.quick else 200)
    print("loader, CPU time per image on one thread:")
    for name, seconds in loader.items():
        print(f"  {name:<44} {1000 * seconds:7.2f} ms")
    print(json.dumps({"model_ms_per_image": {k: 1000 * v for k, v in model.items()},
                      "loader_ms_per_image": {k: 1000 * v for k, v in loader.items()}}))


if __name__ == "__main__":
    main()
