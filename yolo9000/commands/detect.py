"""`yolo9000 detect`: run a detector on images; one annotated PNG per image and one detections.json.

    yolo9000 detect --cfg yolo9000.cfg --weights yolo9000.weights dog.jpg horses.jpg --out runs/detect
    yolo9000 detect --run runs/demo shapes/eval/images/*.png --conf .3 --mode darknet

Images that cannot be read (missing, not an image, truncated, more pixels than the decoded-pixel limit) are reported
by name and skipped; the exit status is 1 when any image was skipped, 2 when the model could not be built or loaded.
"""
from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path
from typing import Any

from yolo9000.api import Detector, RandomWeightsWarning
from yolo9000.checkpoint import CheckpointError
from yolo9000.config import ConfigError
from yolo9000.data.images import ImageLoadError, load_image
from yolo9000.distributed import device_argument

JSON_NAME = "detections.json"


class ModelLoadError(RuntimeError):
    """The model could not be built or its weights not loaded (bad config, cfg, run dir or weights)."""


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """--config | --cfg | --run, --weights, --set, --names, --device: how detect and query pick their model."""
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--config", type=Path, help="YAML model config (configs/*.yaml)")
    source.add_argument("--cfg", type=Path, help="darknet .cfg file (yolov2.cfg, yolo9000.cfg)")
    source.add_argument("--run", type=Path, help="training run directory (config.yaml + last.pt)")
    parser.add_argument("--weights", type=Path, help="our checkpoint (.pt) or darknet .weights; without it (and "
                        "without --run) the model has random weights")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a --config key, e.g. --set model.tree=my.tree (repeatable)")
    parser.add_argument("--names", type=Path, help="class names file (one per line) for a flat model")
    parser.add_argument("--device", default="auto", type=device_argument,
                        help="auto (CUDA if present), cpu, cuda, cuda:N")


def unit_interval(text: str) -> float:
    """argparse `type`: a number in [0, 1] (NaN is not)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {text!r}") from None
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"{text} is not in [0, 1]")
    return value


def input_size(text: str) -> int:
    """argparse `type`: a positive multiple of 32 (the network's stride)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value <= 0 or value % 32:
        raise argparse.ArgumentTypeError(f"{value} is not a positive multiple of 32")
    return value


def at_least(low: int):
    """argparse `type`: an integer >= low."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"{value} must be >= {low}")
        return value
    return parse


def add_inference_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--conf", type=unit_interval, default=0.25,
                        help="score threshold, objectness x P(class) (.25)")
    parser.add_argument("--nms", type=unit_interval, default=0.45, help="NMS IoU (.45)")
    parser.add_argument("--nms-by", choices=("root", "label", "all"), default="root",
                        help="which boxes compete in NMS: decided nodes under one tree root (default), the same "
                             "node (darknet's per-class NMS), or all")
    parser.add_argument("--mode", choices=("paper", "darknet"), default="paper",
                        help="tree decision walk: the paper's product of conditionals, or darknet's exact rule")
    parser.add_argument("--size", type=input_size, help="input size, a multiple of 32 (default: the config's)")
    parser.add_argument("--amp", choices=("off", "bf16"), default="off", help="bf16 autocast for the network")


def build_detector(args: argparse.Namespace, **options: Any) -> Detector:
    """The Detector the model arguments describe; prints the random-weights warning once, clearly, to stderr.

    Raises:
        ModelLoadError: naming what could not be built or loaded.
    """
    if args.overrides and not args.config:
        raise ModelLoadError("--set applies to --config only")
    if args.run and args.weights:
        raise ModelLoadError("--run loads <run>/last.pt; use --config <run>/config.yaml --weights W for other weights")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", RandomWeightsWarning)
            if args.run:
                detector = Detector.from_run(args.run, device=args.device, names=args.names, **options)
            else:
                detector = Detector.from_config(args.config or args.cfg, weights=args.weights, device=args.device,
                                                overrides=args.overrides, names=args.names, **options)
    except (ConfigError, CheckpointError, FileNotFoundError, KeyError, ValueError, OSError) as err:
        raise ModelLoadError(str(err)) from err
    if any(issubclass(w.category, RandomWeightsWarning) for w in caught):
        print("warning: no weights given: the model has RANDOM weights, so its detections are meaningless "
              "(pass --weights or --run)", file=sys.stderr)
    return detector


def _output_names(paths: list[Path]) -> list[str]:
    """One PNG name per image: its stem, with _2, _3, ... when stems repeat (a/x.jpg and b/x.png)."""
    seen: dict[str, int] = {}
    out = []
    for path in paths:
        count = seen.get(path.stem, 0) + 1
        seen[path.stem] = count
        out.append(f"{path.stem}.png" if count == 1 else f"{path.stem}_{count}.png")
    return out


def register(parser: argparse.ArgumentParser) -> None:
    add_model_arguments(parser)
    parser.add_argument("images", nargs="+", type=Path, metavar="IMAGE", help="image files")
    parser.add_argument("--out", type=Path, default=Path("runs/detect"), help="output folder (runs/detect)")
    add_inference_arguments(parser)
    parser.add_argument("--hier", type=unit_interval, default=0.5, help="tree decision threshold (darknet -hier, .5)")
    parser.add_argument("--max-depth", type=at_least(0), help="cap decisions at this tree depth (0 = roots)")
    parser.add_argument("--batch", type=at_least(1), default=8, help="images per forward pass (8)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from yolo9000.draw import save_annotated

    try:
        detector = build_detector(args, conf_threshold=args.conf, nms_iou=args.nms, nms_by=args.nms_by,
                                  hier_threshold=args.hier,
                                  mode=args.mode, max_depth=args.max_depth, size=args.size, batch_size=args.batch,
                                  amp=args.amp)
    except ModelLoadError as err:
        print(f"yolo9000 detect: {err}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    names = _output_names(args.images)
    results: list[dict[str, Any]] = []
    skipped: list[dict[str, str]] = []
    bar = tqdm(total=len(args.images), desc="detect", unit="img", disable=None, file=sys.stderr)
    for start in range(0, len(args.images), args.batch):
        chunk = list(zip(args.images[start:start + args.batch], names[start:start + args.batch]))
        loaded = []
        for path, png in chunk:
            try:
                loaded.append((path, png, load_image(path)))
            except ImageLoadError as err:
                print(f"skipped: {err}", file=sys.stderr)
                skipped.append({"file": str(path), "error": str(err)})
        for (path, png, image), detections in zip(loaded, detector.batch([img for _, _, img in loaded])):
            out = save_annotated(image, detections, args.out / png, detector.tree)
            results.append({"file": str(path), "annotated": str(out), "height": int(image.shape[1]),
                            "width": int(image.shape[2]), "detections": [d.to_dict() for d in detections]})
        bar.update(len(chunk))
    bar.close()
    report = {"model": detector.describe(), "images": results, "skipped": skipped}
    json_path = args.out / JSON_NAME
    json_path.write_text(json.dumps(report, indent=1))
    total = sum(len(r["detections"]) for r in results)
    print(f"{len(results)} images, {total} detections, {len(skipped)} skipped -> {args.out}/ ({JSON_NAME} + PNGs)")
    if skipped:
        # A script must be able to tell: every input skipped is named above and in the JSON.
        print(f"yolo9000 detect: skipped {len(skipped)} of {len(args.images)} images", file=sys.stderr)
        return 1
    return 0
