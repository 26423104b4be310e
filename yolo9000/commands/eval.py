"""`yolo9000 eval`: COCO mAP (and per-class AP) of a detector, or top-1/top-5 of a classifier, on a dataset split.

    yolo9000 eval --run runs/y9k [--data shapes] [--split eval] [--size 416] [--json out.json]
    yolo9000 eval --config yolo9000 --weights yolo9000.weights --data my_imagenet_det.yaml \\
        --train-split train        # the paper's split: classes with / without detection data
    yolo9000 eval --run runs/y9k --classification [--leaves imagenet1k.labels]   # top-1/top-5, per-depth accuracy

Detectors are scored the darknet way (objectness x P(category's tree node), NMS, COCOeval); tree models map
categories to nodes through the eval source's class map or wnid category names (yolo9000.evaluate).

Exit status: 0; 1 when an image could not be loaded (it is named, and the metrics cover the others); 2 on bad input.
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any

from yolo9000.api import check_size_fits
from yolo9000.commands.options import add_json_argument, add_option_arguments, emit_json
from yolo9000.config import ConfigError, load_config
from yolo9000.data.descriptor import load_descriptor
from yolo9000.device import device_argument, select_device
from yolo9000.engine import CHECKPOINT_NAME, CONFIG_NAME, build_trained_model
from yolo9000.evaluate import evaluate_classification, evaluate_detection


def register(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--run", metavar="DIR", help="a training run directory (config.yaml + last.pt)")
    source.add_argument("--config", help="a YAML config (give --weights too)")
    parser.add_argument("--weights", help="our checkpoint or darknet .weights (with --config)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config value")
    parser.add_argument("--data", help="dataset descriptor, a shipped name or a path (default: the config's "
                        "data.dataset)")
    parser.add_argument("--data-set", action="append", default=[], metavar="KEY=VALUE",
                        help="edit the dataset descriptor, e.g. root=/data/coco")
    parser.add_argument("--split", default="eval", help="dataset split to evaluate (default: eval)")
    parser.add_argument("--train-split", help="group categories by whether this split has boxes of them "
                                               "(the paper's YOLO9000 protocol), e.g. train")
    parser.add_argument("--classification", action="store_true",
                        help="top-1/top-5 on the split's classification images (always for darknet19 models)")
    parser.add_argument("--leaves", help="file of wnids (one per line): the candidate set for top-k")
    parser.add_argument("--per-depth", action="store_true",
                        help="tree detectors: mAP@.5 at each tree depth, ground truth and detections taken to their "
                             "ancestor at that depth (COCOeval per depth)")
    parser.add_argument("--device", type=device_argument, help="auto | cpu | cuda (default: the config's train.device)")
    add_json_argument(parser, "the metrics")
    # mAP is scored over all detections above a low threshold (darknet's validation: .005), hence its own default.
    add_option_arguments(parser, only={"conf_threshold", "nms_iou", "hier_threshold", "size", "batch_size",
                                       "compat"}, defaults={"conf_threshold": 0.005})
    parser.set_defaults(func=run)


def _ap(value: float) -> str:
    return "   -  " if math.isnan(value) else f"{100 * value:6.2f}"


def format_detection(result: dict[str, Any]) -> str:
    """The per-class table and the summary lines of `evaluate_detection`'s result (AP in percent)."""
    lines = [f"{'category':<36} {'node':>6} {'AP':>6} {'AP50':>6} {'boxes':>6}"]
    for cid, row in sorted(result["per_class"].items(), key=lambda kv: int(kv[0])):
        # The category's own name, and the tree node it is scored through when that reads differently.
        node = row.get("node_name") or row["wnid"]
        name = f"{cid} {row['name']}" + (f" ({node})" if node and node != row["name"] else "")
        lines.append(f"{name[:36]:<36} {row['node']:>6} {_ap(row['ap'])} {_ap(row['ap50'])} {row['num_gt']:>6}")
    lines.append(f"mAP@[.5:.95] {_ap(result['map'])}   mAP@.5 {_ap(result['map50'])}   "
                 f"({result['images']} images at {result['size']} px, {result['detections']} detections)")
    for name, group in result.get("groups", {}).items():
        lines.append(f"  {name:<22} mAP {_ap(group['map'])}   mAP@.5 {_ap(group['map50'])}   "
                     f"({len(group['categories'])} categories)")
    if result.get("unmapped"):
        lines.append(f"not evaluated (no tree node): {', '.join(result['unmapped'][:10])}"
                     + (" ..." if len(result["unmapped"]) > 10 else ""))
    return "\n".join(lines)


def format_classification(result: dict[str, Any]) -> str:
    lines = [(f"top-1 {100 * result['top1']:.2f}%   top-5 {100 * result['top5']:.2f}%   "
              f"({result['images']} images at {result['size']} px)")]
    if "depth_accuracy" in result:
        depths = "  ".join(f"d{d}:{'-' if math.isnan(a) else f'{100 * a:.1f}'}"
                           for d, a in enumerate(result["depth_accuracy"]))
        lines.append(f"accuracy per depth  {depths}")
        lines.append(f"decision is the truth or an ancestor: {100 * result['ancestor_rate']:.2f}%")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    if args.run:
        run_dir = Path(args.run)
        cfg = load_config(run_dir / CONFIG_NAME, args.set)
        weights = args.weights or run_dir / CHECKPOINT_NAME
    else:
        if not args.weights:
            raise ConfigError("--config needs --weights (a checkpoint or darknet .weights)")
        cfg = load_config(args.config, args.set)
        weights = args.weights
    dataset = args.data or cfg.data.dataset
    if dataset is None:
        raise ConfigError("no dataset: give --data datasets/x.yaml (the config has no data.dataset)")
    descriptor = load_descriptor(dataset, args.data_set)
    device = select_device(args.device or cfg.train.device, flag="--device" if args.device else "train.device")
    if args.size is not None:
        check_size_fits(args.size, cfg.model)
    model = build_trained_model(cfg, weights, device)
    leaves = None
    if args.leaves:
        if not Path(args.leaves).is_file():
            raise ConfigError(f"--leaves {args.leaves} does not exist (one wnid per line)")
        leaves = [line.split()[0] for line in Path(args.leaves).read_text().splitlines() if line.strip()]
    out: dict[str, Any] = {}
    text: list[str] = []
    if cfg.model.head == "region":
        out["detection"] = evaluate_detection(model, cfg, descriptor, args.split, size=args.size,
                                              train_split=args.train_split, batch_size=args.batch_size,
                                              conf_threshold=args.conf_threshold, nms_iou=args.nms_iou,
                                              progress=True, per_depth=args.per_depth, compat=args.compat)
        text.append(format_detection(out["detection"]))
        if args.per_depth:
            from yolo9000.evaluate_depth import format_per_depth
            result = out["detection"]["per_depth"]
            text.append(f"mAP@.5 per tree depth (mean {_ap(result['mean_map50'])}):")
            text += format_per_depth(result)
    if cfg.model.head == "classifier" or args.classification:
        out["classification"] = evaluate_classification(model, cfg, descriptor, args.split, size=args.size,
                                                        leaves=leaves, batch_size=args.batch_size,
                                                        hier_threshold=args.hier_threshold, progress=True)
        text.append(format_classification(out["classification"]))
    if not emit_json(args.json, out):
        print("\n".join(text))
    return _report_skipped(out)


def _report_skipped(out: dict[str, Any]) -> int:
    """1 when any image could not be loaded (the metrics leave it out), after naming the first ones; else 0."""
    status = 0
    for part, result in out.items():
        skipped = result.get("skipped") or {}
        if skipped.get("count"):
            print(f"yolo9000 eval: {part}: skipped {skipped['count']} images that could not be loaded (the metrics "
                  f"cover the others): {'; '.join(skipped['first'])}", file=sys.stderr)
            status = 1
    return status
