"""`yolo9000 demo`: the main job, on a laptop CPU with no dataset and no GPU (README, "What `make demo` shows").

1. WordTree: darknet's 9k tree (9418 nodes) against one our builder makes from WordNet 3.0, and a leaf's path.
2. The `shapes` world (yolo9000/data/shapes.py): coarse-labelled detection images, fine-labelled classification
   images, and a fine-labelled evaluation set; its tree built from WordNet by the same builder.
3. Training through the same engine as every other run: (a) the tiny detector learns to box figures on the
   coarse detection images (configs/demo_detect.yaml), then (b) joint training on detection + classification
   images with the mixed sampler, from (a)'s weights (configs/demo.yaml).
4. Evaluation with COCOeval: mAP@.5 of the coarse classes (which had boxes) and of the fine classes (which never
   had a box), and their ratio: the YOLO9000 claim (paper: 16.0 / 19.7 = 0.81).
5. Pictures: a few evaluation images with every box's hierarchy path, and the training curves.
6. One `yolo9000 query` on an evaluation image.

Everything lands in `--out` (default runs/demo), with `metrics.json` holding the figures.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

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
    parser.set_defaults(func=run)


def _heading(step: int, text: str) -> None:
    print(f"\n== {step}/6 {text}", flush=True)


def _table(result: dict, title: str) -> list[str]:
    lines = [f"  {title:<28} {'AP@.5':>6} {'AP@[.5:.95]':>12} {'boxes':>6}"]
    for entry in sorted(result["per_class"].values(), key=lambda e: e["node"]):
        name = entry.get("node_name") or entry["name"]
        lines.append(f"    {name:<26} {entry['ap50']:>6.3f} {entry['ap']:>12.3f} {entry['num_gt']:>6}")
    lines.append(f"    {'mean':<26} {result['map50']:>6.3f} {result['map']:>12.3f}")
    return lines


def run(args: argparse.Namespace) -> int:
    from yolo9000.config import load_config
    from yolo9000.reference import data_home

    started = time.perf_counter()
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
    world_keys = [f"model.tree={world / 'shapes.tree'}", f"data.dataset={descriptor}"]
    detect_cfg = None if args.no_detect_stage else load_config(args.detect_config, [*world_keys, *args.set])
    cfg = load_config(args.config, [*world_keys, *args.set])
    _describe_world(descriptor, cfg)

    from dataclasses import replace

    from yolo9000.engine import train
    train_seconds, images_seen = 0.0, 0
    if detect_cfg is not None:
        _heading(3, "training (a): boxes from the coarse detection images alone")
        detect = train(detect_cfg, out / "detect")
        if detect.stop_reason == "non_finite":
            print(f"yolo9000 demo: training stopped: {detect.message}", file=sys.stderr)
            return 1
        train_seconds, images_seen = detect.seconds, detect.seen
        cfg = replace(cfg, train=replace(cfg.train, init=str(detect.checkpoint), init_mode="full"))
    _heading(3, "training (b): joint, coarse boxes (det) + fine labels (cls) in one mixed stream")
    result = train(cfg, out)
    if result.stop_reason == "non_finite":
        print(f"yolo9000 demo: training stopped: {result.message}", file=sys.stderr)
        return 1
    train_seconds, images_seen = train_seconds + result.seconds, images_seen + result.seen

    _heading(4, "evaluation on shapes/eval (COCOeval): coarse classes had boxes, fine classes never did")
    from yolo9000.api import Detector
    from yolo9000.evaluate import evaluate_detection
    detector = Detector.from_run(out)
    coarse = evaluate_detection(detector.model, cfg, descriptor, "eval_coarse")
    fine = evaluate_detection(detector.model, cfg, descriptor, "eval", per_depth=True)
    ratio = fine["map50"] / coarse["map50"] if coarse["map50"] > 0 else 0.0
    print("\n".join(_table(coarse, "coarse classes (had boxes)")))
    print("\n".join(_table(fine, "fine classes (no box ever)")))
    print(f"\n  coarse mAP@.5 {coarse['map50']:.3f}   fine mAP@.5 {fine['map50']:.3f}   "
          f"fine/coarse {ratio:.2f}   (paper, YOLO9000 on ImageNet: 16.0/19.7 = {PAPER_RATIO:.2f})")
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

    metrics = {"coarse_map50": coarse["map50"], "fine_map50": fine["map50"], "ratio": ratio,
               "coarse_map": coarse["map"], "fine_map": fine["map"], "paper_ratio": PAPER_RATIO,
               "fine_map50_per_depth": per_depth,
               "train_seconds": train_seconds, "images_seen": images_seen,
               "joint_images_seen": result.seen, "joint_steps": result.steps,
               "demo_seconds": time.perf_counter() - started,
               "per_class_ap50": {e.get("node_name") or e["name"]: e["ap50"]
                                  for e in [*coarse["per_class"].values(), *fine["per_class"].values()]},
               **figures}
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1))
    print(f"\nmetrics: {out / 'metrics.json'}  (demo took {metrics['demo_seconds'] / 60:.1f} min)")
    return 0


def _describe_world(descriptor: Path, cfg) -> None:
    from yolo9000.data.shapes import COARSE, FINE
    from wordtree.io import load_tree
    tree = load_tree(cfg.model.tree)
    print(f"tree ({tree.num_nodes} nodes, built from WordNet under plane_figure):")

    def show(node: int) -> None:
        role = " (detection label)" if tree.wnids[node] in COARSE else " (classification label)" \
            if tree.wnids[node] in FINE else ""
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
