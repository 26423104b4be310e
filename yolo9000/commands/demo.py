"""`yolo9000 demo`: the main job, on a laptop CPU with no dataset and no GPU (README, "What `make demo` shows").

1. WordTree: darknet's 9k tree (9418 nodes) against one our builder makes from WordNet 3.0, and a leaf's path.
2. The `shapes` world (yolo9000/data/shapes.py): detection images with coarse labels (and fine ones for three
   of the eleven fine classes), fine-labelled classification images, and a fine-labelled evaluation set; its tree
   built from WordNet by the same builder.
3. Training through the same engine as every other run: (a) the tiny detector learns to box figures on the
   coarse detection images (configs/demo_detect.yaml), then (b) joint training on detection + classification
   images with the mixed sampler, from (a)'s weights (configs/demo.yaml).
4. Evaluation with COCOeval: mAP@.5 of the coarse classes, of the fine classes with boxes and of those without any
   box, and the paper's measurement: mAP of the classes without boxes over mAP of all fine classes (YOLO9000 on
   ImageNet: 16.0 / 19.7 = 0.81, the 156 classes without COCO boxes over all 200).
5. Pictures: a few evaluation images with every box's hierarchy path, and the training curves.
6. One `yolo9000 query` on an evaluation image.

Everything lands in `--out` (default runs/demo), with `metrics.json` holding the figures. `--supervised` trains the
same way with every fine box given (the fully supervised reference the README quotes for scale).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

PAPER_RATIO = 16.0 / 19.7


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default="demo", help="joint training config, a name or a path (default demo)")
    parser.add_argument("--detect-config", default="demo_detect",
                        help="the detection-only first stage, a name or a path (default demo_detect)")
    parser.add_argument("--no-detect-stage", action="store_true",
                        help="skip the detection-only stage: joint training from scratch")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value of both training stages, e.g. train.max_steps=200 (repeatable)")
    parser.add_argument("--out", type=Path, default=Path("runs/demo"), help="run directory (default runs/demo)")
    parser.add_argument("--world", type=Path, help="where the shapes world goes (default $YOLO9000_HOME/shapes)")
    parser.add_argument("--seed", type=int, default=0, help="the shapes world's seed")
    parser.add_argument("--num-det", type=int, help="detection images of the world (default 2000)")
    parser.add_argument("--num-cls", type=int, help="classification images of the world (default 3000)")
    parser.add_argument("--num-eval", type=int, help="evaluation images of the world (default 300)")
    parser.add_argument("--pictures", type=int, default=6, help="annotated evaluation images to write")
    parser.add_argument("--skip-tree", action="store_true", help="skip the 9k tree comparison (step 1)")
    parser.add_argument("--threads", type=int,
                        help="torch threads (default: the CPUs other processes leave free now, at least 1)")
    parser.add_argument("--supervised", action="store_true",
                        help="the fully supervised reference: every fine class has boxes in the detection images")
    parser.set_defaults(func=run)


def _heading(step: int, text: str) -> None:
    print(f"\n== {step}/6 {text}", flush=True)


def _table(result: dict, title: str, group: str | None = None) -> list[str]:
    """Per-class AP lines of an evaluate_detection result (all its classes, or those of one of its `groups`), then
    their mean (classes without ground truth left out, as COCOeval does)."""
    summary = result if group is None else result["groups"][group]
    entries = [e for c, e in result["per_class"].items() if group is None or c in summary["categories"]]
    lines = [f"  {title:<30} {'AP@.5':>6} {'AP@[.5:.95]':>12} {'boxes':>6}"]
    for entry in sorted(entries, key=lambda e: e["node"]):
        name = entry.get("node_name") or entry["name"]
        lines.append(f"    {name:<28} {entry['ap50']:>6.3f} {entry['ap']:>12.3f} {entry['num_gt']:>6}")
    lines.append(f"    {'mean':<28} {summary['map50']:>6.3f} {summary['map']:>12.3f}")
    return lines


def paper_measure(fine: dict) -> dict[str, float | None]:
    """The paper's measurement (section 4): mAP@.5 of the fine classes without any box in the training data, of all
    fine classes, and their ratio (YOLO9000 on ImageNet: 16.0 on the 156 classes without COCO boxes, 19.7 on all
    200: 0.81).

    Args:
        fine: `evaluate_detection(..., train_split="train")` on the fine-labelled evaluation split, whose groups
            "detection" / "classification_only" say which classes had boxes.
    Returns:
        {"with_boxes", "without_boxes", "all", "ratio"} mAP@.5 (None where a group is empty: with every fine box
        given there is no class without boxes).
    """
    groups = fine["groups"]
    def group_map(name: str) -> float | None:
        return groups[name]["map50"] if groups[name]["categories"] else None
    without = group_map("classification_only")
    return {"with_boxes": group_map("detection"), "without_boxes": without, "all": fine["map50"],
            "ratio": without / fine["map50"] if without is not None and fine["map50"] > 0 else None}


def _cpu_seconds() -> float:
    """User + system CPU time of this process and its finished children (loader workers, world writers)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def busy_cpus(seconds: float = 0.5) -> float:
    """CPUs that other processes keep busy now: sampled from /proc/stat over `seconds` while this process sleeps
    (so all of it is theirs); where there is no /proc/stat, the 1-minute load average.

    Not the load average where it can be helped: it trails by minutes, so right after a busy spell (or this
    demo's own set-up) it still reports cores that are free again.
    """
    def snapshot() -> tuple[float, float]:
        with open("/proc/stat") as stat:
            fields = [float(v) for v in stat.readline().split()[1:9]]
        return sum(fields), fields[3] + fields[4]   # all jiffies; idle + iowait
    try:
        total0, idle0 = snapshot()
        time.sleep(seconds)
        total1, idle1 = snapshot()
    except (OSError, ValueError, IndexError):
        return os.getloadavg()[0]
    elapsed = total1 - total0
    return (os.cpu_count() or 1) * (1 - (idle1 - idle0) / elapsed) if elapsed > 0 else 0.0


def _set_threads(threads: int | None) -> tuple[int, str]:
    """Set torch's thread count for the demo: by default the CPUs that other processes leave free (at least 1).
    Returns the count and why.

    The tiny model's operations are short, and each waits for all its OpenMP threads: when another process holds
    one of the cores, every operation stalls. On the shared 2-core machine (load ~10) the demo's training ran
    7.6 s per step with two threads and 0.33 s per step with one (README, "How fast, and why").
    """
    import torch
    why = "--threads"
    if threads is None:
        busy = busy_cpus()
        threads = max(1, (os.cpu_count() or 1) - round(busy))
        why = f"other processes keep {busy:.1f} CPUs busy"
    torch.set_num_threads(threads)
    return threads, why


def _precision(cfg) -> tuple[str, str]:
    """(amp the engine will train in, why) for `cfg.train`, on the device it will use."""
    import torch

    from yolo9000.device import cpu_has_bf16, resolve_amp, select_device
    device = select_device(cfg.train.device)
    amp = resolve_amp(device, cfg.train.amp)
    if device.type != "cpu":
        return amp, f"{device}"
    bf16 = "with" if cpu_has_bf16() else "without"
    return amp, (f"train.amp={cfg.train.amp}: CPU {torch.backends.cpu.get_cpu_capability()}, {bf16} bf16 instructions "
                 "(AVX512-BF16/AMX)")


class _Forecast:
    """Prints, after the first steps of the first stage, how long the whole demo will take on this machine.

    It times the second logged interval: the first one pays once for setting up each input size's kernels. Every
    stage runs batches of the same size and input sizes, so a step of the joint stage costs about what a step of
    the first one does; evaluation is a forward pass (a third of a training step) over both eval splits.
    """

    def __init__(self, started: float, total_steps: int, eval_steps: float) -> None:
        self.started, self.total_steps, self.eval_steps = started, total_steps, eval_steps
        self.done_before = 0   # steps of earlier stages
        self.calls = 0

    def stage(self, done_before: int) -> Callable[[int, dict[str, float]], Any]:
        self.done_before = done_before
        return self

    def __call__(self, step: int, scalars: dict[str, float]) -> None:
        self.calls += 1
        if self.calls != 2:
            return
        per_step = scalars["time/step"]
        left = (self.total_steps - self.done_before - step + self.eval_steps) * per_step
        elapsed = time.perf_counter() - self.started
        print(f"demo: {step} steps at {per_step:.2f} s each: the demo will take about "
              f"{(elapsed + left) / 60:.1f} min on this machine ({left / 60:.1f} min from now)", flush=True)


def run(args: argparse.Namespace) -> int:
    from yolo9000.config import load_config
    from yolo9000.reference import data_home

    started, cpu_started = time.perf_counter(), _cpu_seconds()
    out: Path = args.out
    world = args.world or data_home() / "shapes"
    figures: dict = {}
    if not args.skip_tree:
        _heading(1, "WordTree: darknet's 9k tree and one built from WordNet 3.0")
        from wordtree.cli import run_tree_demo
        tree_figures = run_tree_demo()
        figures["tree"] = {k: tree_figures[k] for k in ("darknet_nodes", "built_nodes", "parent_agreement",
                                                        "build_seconds") if k in tree_figures}

    _heading(2, f"the shapes world in {world}")
    from yolo9000.data.shapes import write_world
    t0 = time.perf_counter()
    descriptor = write_world(world, seed=args.seed, num_det=args.num_det, num_cls=args.num_cls,
                             num_eval=args.num_eval)
    print(f"descriptor {descriptor} ({time.perf_counter() - t0:.1f} s; reused when already written)")
    # The evaluation splits are the same in both descriptors; only the training boxes' labels differ.
    train_descriptor = descriptor.with_name("shapes_supervised.yaml") if args.supervised else descriptor
    world_keys = [f"model.tree={world / 'shapes.tree'}", f"data.dataset={train_descriptor}"]
    detect_cfg = None if args.no_detect_stage else load_config(args.detect_config, [*world_keys, *args.set])
    cfg = load_config(args.config, [*world_keys, *args.set])
    amp, why = _precision(cfg)
    _describe_world(descriptor, cfg, args.supervised)
    threads, threads_why = _set_threads(args.threads)
    print(f"\nprecision: {'float32' if amp == 'off' else amp} ({why}); {threads} torch thread(s) of "
          f"{os.cpu_count()} CPUs ({threads_why})", flush=True)

    from dataclasses import replace

    from yolo9000.engine import train
    stages = ([detect_cfg] if detect_cfg is not None else []) + [cfg]
    eval_images = 2 * (args.num_eval if args.num_eval is not None else 300)
    batch = cfg.data.det_per_batch + cfg.data.cls_per_batch
    forecast = _Forecast(started, sum(c.train.max_steps or 0 for c in stages), eval_images / batch / 3)
    train_seconds, images_seen, steps_before = 0.0, 0, 0
    if detect_cfg is not None:
        _heading(3, "training (a): boxes from the detection images alone")
        detect = train(detect_cfg, out / "detect", on_log=forecast.stage(0))
        if detect.stop_reason == "non_finite":
            print(f"yolo9000 demo: training stopped: {detect.message}", file=sys.stderr)
            return 1
        train_seconds, images_seen, steps_before = detect.seconds, detect.seen, detect.steps
        cfg = replace(cfg, train=replace(cfg.train, init=str(detect.checkpoint), init_mode="full"))
    _heading(3, "training (b): joint, detection images (boxes) + classification images (fine labels) in one stream")
    result = train(cfg, out, on_log=forecast.stage(steps_before))
    if result.stop_reason == "non_finite":
        print(f"yolo9000 demo: training stopped: {result.message}", file=sys.stderr)
        return 1
    train_seconds, images_seen = train_seconds + result.seconds, images_seen + result.seen

    _heading(4, "evaluation on shapes/eval (COCOeval)")
    from yolo9000.api import Detector
    from yolo9000.evaluate import evaluate_detection
    detector = Detector.from_run(out)
    coarse = evaluate_detection(detector.model, cfg, descriptor, "eval_coarse")
    # Which fine classes had boxes is read from the training descriptor's detection boxes (with --supervised all).
    fine = evaluate_detection(detector.model, cfg, train_descriptor, "eval", train_split="train",
                              per_depth=True)
    paper = paper_measure(fine)
    fine_coarse = fine["map50"] / coarse["map50"] if coarse["map50"] > 0 else 0.0
    print("\n".join(_table(coarse, "coarse classes (had boxes)")))
    print("\n".join(_table(fine, "fine classes with boxes", "detection")))
    if paper["without_boxes"] is not None:
        print("\n".join(_table(fine, "fine classes without any box", "classification_only")))
    print(f"\n  coarse mAP@.5 {coarse['map50']:.3f}   all fine mAP@.5 {fine['map50']:.3f}   "
          f"fine/coarse {fine_coarse:.2f}")
    if paper["without_boxes"] is not None:
        print(f"  the paper's measure: fine classes without boxes {paper['without_boxes']:.3f} / all fine "
              f"{paper['all']:.3f} = {paper['ratio']:.2f}   (YOLO9000 on ImageNet: 16.0/19.7 = {PAPER_RATIO:.2f})")
    per_depth = {r["depth"]: r["map50"] for r in fine["per_depth"]["per_depth"]}
    print("  fine boxes per tree depth, each taken to its ancestor there (`eval --per-depth`): "
          + "   ".join(f"depth {d} mAP@.5 {v:.3f}" for d, v in per_depth.items()))

    _heading(5, f"pictures in {out}")
    pictures = _pictures(detector, descriptor, out, args.pictures)
    curves = out / "curves.png"
    print("\n".join(f"  {p}" for p in pictures + ([curves] if curves.exists() else [])))

    _heading(6, "a query: every box decided inside polygon's subtree, its path, and P(box is a polygon, any polygon)")
    query_args = ["query", "--run", str(out), str(pictures_source(descriptor, 0)), "--node", "polygon"]
    print("$ yolo9000 " + " ".join(query_args), flush=True)
    from yolo9000.cli import main as cli_main
    cli_main(query_args)

    metrics = {"coarse_map50": coarse["map50"], "fine_map50": fine["map50"], "fine_coarse_ratio": fine_coarse,
               "fine_map50_with_boxes": paper["with_boxes"], "fine_map50_without_boxes": paper["without_boxes"],
               "without_boxes_ratio": paper["ratio"], "paper_ratio": PAPER_RATIO,
               "coarse_map": coarse["map"], "fine_map": fine["map"], "fine_map50_per_depth": per_depth,
               "supervised": args.supervised,
               "amp": amp, "threads": threads, "train_seconds": train_seconds, "images_seen": images_seen,
               "joint_images_seen": result.seen, "joint_steps": result.steps,
               "wall_seconds": time.perf_counter() - started, "cpu_seconds": _cpu_seconds() - cpu_started,
               "per_class_ap50": {e.get("node_name") or e["name"]: e["ap50"]
                                  for e in [*coarse["per_class"].values(), *fine["per_class"].values()]},
               **figures}
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1))
    print(f"\nmetrics: {out / 'metrics.json'}  (demo took {metrics['wall_seconds'] / 60:.1f} min, "
          f"{metrics['cpu_seconds'] / 60:.1f} min of CPU, training in {'float32' if amp == 'off' else amp})")
    return 0


def _describe_world(descriptor: Path, cfg, supervised: bool = False) -> None:
    from wordtree.io import load_tree
    from yolo9000.data.shapes import BOXED, COARSE, FINE
    tree = load_tree(cfg.model.tree)
    print(f"tree ({tree.num_nodes} nodes, built from WordNet under plane_figure):")
    boxed = FINE if supervised else BOXED

    def show(node: int) -> None:
        wnid = tree.wnids[node]
        role = " (detection label)" if wnid in COARSE and not supervised else \
            " (detection + classification label)" if wnid in boxed else \
            " (classification label)" if wnid in FINE else ""
        print(f"  {'  ' * int(tree.depth[node])}{tree.names[node]}{role}")
        for child in tree.children(node):
            show(child)

    for root in tree.roots:
        show(root)


def pictures_source(descriptor: Path, index: int) -> Path:
    """The `index`-th evaluation image file."""
    from yolo9000.data.descriptor import build_detection, load_descriptor
    source = build_detection(load_descriptor(descriptor), "eval", None)
    return Path(source.records[index].file)


def _pictures(detector, descriptor: Path, out: Path, count: int) -> list[Path]:
    from yolo9000.data.images import load_image
    from yolo9000.draw import save_annotated
    paths = []
    for index in range(count):
        image_path = pictures_source(descriptor, index)
        image = load_image(image_path)
        paths.append(save_annotated(image, detector(image), out / f"eval_{image_path.stem}.png", detector.tree))
    return paths
