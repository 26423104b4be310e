"""What one image of the demo's training costs, variant by variant (issue 16), through the real engine.

Each variant trains the demo's joint stage (configs/demo.yaml on the shapes world) on `--images` images in its own
process, `yolo9000 train` exactly, and is measured by the process's CPU time (user + sys, loader workers included:
they are waited for) and by the training loop's wall time. On a shared machine wall time is inflated by other
processes; CPU time much less so, which is why both are printed, with the ratio to the first variant (the demo
before issue 16). Variants are laid over configs/demo.yaml with --set, so every row is one change more.

    .venv/bin/python bench/demo_speed.py [--world DIR] [--images 480] [--quick]

The last line is one JSON object.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Each row: (name, overrides), cumulative from the row above unless it says otherwise.
BEFORE = ["data.multiscale=[192,224,256]", "data.eval_size=256", "data.workers=1", "data.det_per_batch=8",
          "data.cls_per_batch=8"]
VARIANTS = [
    ("before: 192-256 px, 8+8 per batch, 1 loader worker, bf16", BEFORE + ["train.amp=auto"]),
    ("the same in float32", BEFORE + ["train.amp=off"]),
    ("float32, in-process loading (data.workers=0)", BEFORE + ["train.amp=off", "data.workers=0"]),
    ("float32, workers=0, 160-224 px", BEFORE + ["train.amp=off", "data.workers=0", "data.multiscale=[160,192,224]"]),
    ("float32, workers=0, 128-192 px", BEFORE + ["train.amp=off", "data.workers=0", "data.multiscale=[128,160,192]"]),
    ("float32, workers=0, 128-192 px, 4+4 per batch",
     BEFORE + ["train.amp=off", "data.workers=0", "data.multiscale=[128,160,192]", "data.det_per_batch=4",
               "data.cls_per_batch=4"]),
    ("bf16, the same", BEFORE + ["train.amp=auto", "data.workers=0", "data.multiscale=[128,160,192]",
                                "data.det_per_batch=4", "data.cls_per_batch=4"]),
]


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def measure(world: Path, overrides: list[str], images: int, out: Path) -> dict:
    """Train the joint stage on `images` images in a fresh process; CPU seconds, loop seconds, images."""
    batch = {k: int(v) for k, v in (o.split("=") for o in overrides) if k in ("data.det_per_batch",
                                                                            "data.cls_per_batch")}
    steps = max(1, images // sum(batch.values()))
    command = [sys.executable, "-m", "yolo9000", "train", "--config", str(ROOT / "configs" / "demo.yaml"),
               "--set", f"model.tree={world / 'shapes.tree'}", "--set", f"data.dataset={world / 'shapes.yaml'}",
               "--set", f"train.max_steps={steps}", "--set", "train.progress=false", "--set",
               "train.tensorboard=false", "--set", f"train.out={out}", "--set", "train.checkpoint_every=0"]
    for item in overrides:
        command += ["--set", item]
    before = _children_cpu()
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    if done.returncode:
        raise SystemExit(f"bench/demo_speed.py: {' '.join(command)} failed:\n{done.stderr[-2000:]}")
    match = re.search(r"stopped at step \d+: .*?; (\d+) images seen, ([\d.]+) s", done.stdout)
    images, loop = int(match.group(1)), float(match.group(2))
    return {"cpu_s": _children_cpu() - before, "loop_s": loop, "images": images}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--world", type=Path, help="shapes world (default $YOLO9000_HOME/shapes, written if missing)")
    parser.add_argument("--images", type=int, default=480, help="images per variant (as many for every batch size)")
    parser.add_argument("--quick", action="store_true", help="32 images per variant (checks the script runs)")
    args = parser.parse_args()
    images = 32 if args.quick else args.images
    from yolo9000.data.shapes import write_world
    from yolo9000.reference import data_home
    world = args.world or data_home() / "shapes"
    write_world(world, progress=False)
    print(f"the demo's joint stage, {images} images per variant, one process each; {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f} at the start")
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-demo-") as tmp:
        for k, (name, overrides) in enumerate(VARIANTS):
            r = measure(world, overrides, images, Path(tmp) / str(k))
            r |= {"name": name, "cpu_ms_per_image": 1000 * r["cpu_s"] / r["images"],
                  "wall_ms_per_image": 1000 * r["loop_s"] / r["images"]}
            results.append(r)
            first = results[0]
            print(f"  {name:<52} CPU {r['cpu_ms_per_image']:6.1f} ms/image (x{r['cpu_ms_per_image'] / first['cpu_ms_per_image']:.2f})"
                  f"   loop wall {r['wall_ms_per_image']:6.1f} ms/image (x{r['wall_ms_per_image'] / first['wall_ms_per_image']:.2f})",
                  flush=True)
    print("(CPU time includes each process's start, about the same for every variant)")
    print(json.dumps({"images": images, "results": results}))


if __name__ == "__main__":
    main()
