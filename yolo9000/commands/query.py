"""`yolo9000 query`: each detection's path of conditional probabilities from the root to the decided node, and
subtree questions ("what is the probability that this box is a dog, any dog?", "which boxes are animals?").
`--node X` also restricts each box's decision to X's subtree (the walk starts at X with P(. | X)); `--leaf` walks
to a leaf whatever `--hier`.

    yolo9000 query --run runs/demo image.png other.png
    yolo9000 query --cfg yolo9000.cfg --weights yolo9000.weights dog.jpg --node dog
    yolo9000 query --run runs/demo image.png --node n13866144 --depth 1 --json

Images that cannot be read are reported and skipped (exit 1 when none could be read).

A name shared by several nodes (`--node car`) lists the candidates with their paths and exits with status 2.
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from yolo9000.api import Detection, Detector
from yolo9000.commands.detect import add_model_arguments, build_detector
from yolo9000.commands.options import add_json_argument, add_option_arguments, emit_json, option_values
from yolo9000.data.images import ImageLoadError, load_image


def register(parser: argparse.ArgumentParser) -> None:
    add_model_arguments(parser)
    parser.add_argument("images", nargs="+", type=Path, metavar="IMAGE", help="image files")
    add_json_argument(parser, "the paths (and --node answers)")
    add_option_arguments(parser)
    parser.set_defaults(func=run)


def format_path(detection: Detection, index: int) -> list[str]:
    """A detection's header line and its root-to-node table, one indented row per step."""
    x1, y1, x2, y2 = detection.box
    wnid = f"  {detection.wnid}" if detection.wnid else ""
    header = (f"#{index} {detection.name}{wnid}  score {detection.score:.3f}  objectness {detection.objectness:.3f}  "
              f"P({detection.name}) {detection.prob:.3f}  box [{x1:.0f}, {y1:.0f}, {x2:.0f}, {y2:.0f}]")
    lines = [header]
    width = max(2 * i + len(step.name) for i, step in enumerate(detection.path))
    width = max(width, len("node"))
    lines.append(f"    {'node':<{width}}  {'wnid':<10}  {'P(node|parent)':>14}  {'P(node)':>8}")
    total = 1.0
    for depth, step in enumerate(detection.path):
        total *= step.prob
        label = "  " * depth + step.name
        lines.append(f"    {label:<{width}}  {step.wnid or '-':<10}  {step.prob:>14.4f}  {total:>8.4f}")
    return lines


def _node_block(detector: Detector, detections: Sequence[Detection], node: int) -> tuple[list[str], dict[str, Any]]:
    tree = detector.tree
    wnid = tree.wnids[node] if tree is not None else None
    name = tree.names[node] if tree is not None else (detector.names[node] if detector.names else f"class{node}")
    what = f"{name} ({wnid})" if wnid else name
    probs = detector.subtree_probability(detections, node)
    members = detector.in_subtree(detections, node)
    member_ids = [i + 1 for i, d in enumerate(detections) if any(d is m for m in members)]
    lines = [f"P(box is {what} or any descendant) = objectness x P({name}):"]
    lines += [f"  #{i + 1} {d.name:<24} {p:.4f}" for i, (d, p) in enumerate(zip(detections, probs))]
    listed = ", ".join(f"#{i} {detections[i - 1].name}" for i in member_ids) or "none"
    lines.append(f"detections in the subtree of {what}: {listed}")
    data = {"node": {"index": node, "wnid": wnid, "name": name}, "subtree_probability": probs,
            "in_subtree": [i - 1 for i in member_ids]}
    return lines, data


def _image_report(detector: Detector, path: Path, node: int | None) -> tuple[list[str], dict[str, Any]]:
    image = load_image(path)
    # darknet's pipeline decodes the file itself (stb_image, as darknet does).
    detections = detector(path if detector.options.compat == "darknet" else image)
    height, width = image.shape[-2:]
    o = detector.options
    report: dict[str, Any] = {"image": str(path), "width": width, "height": height,
                              "detections": [d.to_dict() for d in detections]}
    depth = "" if o.max_depth is None else f", depth <= {o.max_depth}"
    depth += "" if node is None else f", inside {detector.tree.names[node]}"
    depth += ", to a leaf" if o.leaf else ""
    lines = [f"{path} ({width}x{height}): {len(detections)} detections (mode {o.mode}, hier "
             + f"{o.hier_threshold:g}{depth}, conf {o.conf_threshold:g})"]
    for i, det in enumerate(detections):
        lines.append("")
        lines += format_path(det, i + 1)
    if node is not None:
        node_lines, node_data = _node_block(detector, detections, node)
        report.update(node_data)
        lines.append("")
        lines += node_lines
    return lines, report


def run(args: argparse.Namespace) -> int:
    detector = build_detector(args, **option_values(args))
    # --node restricts the decision to the node's subtree (DetectorOptions.node); the report adds each box's
    # P(node or any descendant) and the detections inside.
    node = None if detector.options.node is None else detector.resolve_node(detector.options.node)
    o = detector.options
    texts, reports, skipped = [], [], []
    for path in args.images:
        try:
            lines, report = _image_report(detector, path, node)
        except ImageLoadError as err:
            print(f"skipped: {err}", file=sys.stderr)
            skipped.append({"file": str(path), "error": str(err)})
            continue
        texts.append("\n".join(lines))
        reports.append(report)
    data = {"options": {"mode": o.mode, "hier_threshold": o.hier_threshold, "max_depth": o.max_depth,
                        "node": o.node, "leaf": o.leaf,
                        "conf_threshold": o.conf_threshold}, "images": reports, "skipped": skipped}
    if not emit_json(args.json, data):
        print("\n\n".join(texts))
    return 0 if reports else 1
