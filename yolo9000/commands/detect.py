"""`yolo9000 detect`: run a detector on images; one annotated PNG per image and one detections.json.

    yolo9000 detect --cfg yolo9000.cfg --weights yolo9000.weights dog.jpg horses.jpg --out runs/detect
    yolo9000 detect --run runs/demo shapes/eval/images/*.png --conf .3 --mode darknet --json

The options (`--conf`, `--nms`, `--hier`, `--mode`, `--depth`, ...) are `yolo9000.api.DetectorOptions` fields, shared
with `query` and `eval` (yolo9000.commands.options).

Images that cannot be read are reported by name and skipped; the exit status is non-zero only when no image could be
processed (1) or the model could not be built or loaded (2).
"""
from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path
from typing import Any

from yolo9000.api import Detector, RandomWeightsWarning
from yolo9000.commands.options import add_json_argument, add_option_arguments, emit_json, option_values
from yolo9000.data.images import ImageLoadError, load_image
from yolo9000.errors import ModelLoadError  # noqa: F401  (re-exported)

JSON_NAME = "detections.json"


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """--config | --cfg | --run, --weights, --set, --names, --device: how detect and query pick their model."""
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--config", type=Path, help="YAML model config: a shipped name (yolo9000, yolov2, tiny) or a "
                        "path")
    source.add_argument("--cfg", type=Path, help="darknet .cfg file (yolov2.cfg, yolo9000.cfg)")
    source.add_argument("--run", type=Path, help="training run directory (config.yaml + last.pt)")
    parser.add_argument("--weights", type=Path, help="our checkpoint (.pt) or darknet .weights; without it (and "
                        "without --run) the model has random weights")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a --config key, e.g. --set model.tree=my.tree (repeatable)")
    parser.add_argument("--names", type=Path, help="class names file (one per line) for a flat model")
    parser.add_argument("--device", default="auto", help="auto (CUDA if present), cpu, cuda, cuda:N")


def build_detector(args: argparse.Namespace, **options: Any) -> Detector:
    """The Detector the model arguments describe; prints the random-weights warning once, clearly, to stderr.

    Raises:
        ModelLoadError: naming what could not be built or loaded.
    """
    if args.overrides and not args.config:
        raise ModelLoadError("--set applies to --config only")
    if args.run and args.weights:
        raise ModelLoadError("--run loads <run>/last.pt; use --config <run>/config.yaml --weights W for other weights")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RandomWeightsWarning)
        if args.run:
            detector = Detector.from_run(args.run, device=args.device, names=args.names, **options)
        else:
            detector = Detector.from_config(args.config or args.cfg, weights=args.weights, device=args.device,
                                            overrides=args.overrides, names=args.names, **options)
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
    parser.add_argument("--out", type=Path, default=Path("runs/detect"),
                        help=f"output folder: annotated PNGs and {JSON_NAME} (default runs/detect)")
    add_json_argument(parser, "the detections")
    add_option_arguments(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from yolo9000.draw import save_annotated

    detector = build_detector(args, **option_values(args))
    batch = detector.options.batch_size
    args.out.mkdir(parents=True, exist_ok=True)
    names = _output_names(args.images)
    results: list[dict[str, Any]] = []
    skipped: list[dict[str, str]] = []
    bar = tqdm(total=len(args.images), desc="detect", unit="img", disable=None, file=sys.stderr)
    for start in range(0, len(args.images), batch):
        chunk = list(zip(args.images[start:start + batch], names[start:start + batch]))
        loaded = []
        for path, png in chunk:
            try:
                loaded.append((path, png, load_image(path)))
            except ImageLoadError as err:
                print(f"skipped: {err}", file=sys.stderr)
                skipped.append({"file": str(path), "error": str(err)})
        darknet = detector.options.compat == "darknet"
        # darknet decodes the files itself (stb_image), so its pipeline gets the paths.
        inputs = [path if darknet else img for path, _, img in loaded]
        for (path, png, image), detections in zip(loaded, detector.batch(inputs)):
            if darknet and not args.json:
                # darknet's `detector test` printout: the image, then `label: NN%` per detection.
                print(f"{path}:\n" + "".join(f"{d.name}: {d.score * 100:.0f}%\n" for d in detections), end="")
            out = save_annotated(image, detections, args.out / png, detector.tree)
            results.append({"file": str(path), "annotated": str(out), "height": int(image.shape[1]),
                            "width": int(image.shape[2]), "detections": [d.to_dict() for d in detections]})
        bar.update(len(chunk))
    bar.close()
    report = {"model": detector.describe(), "images": results, "skipped": skipped}
    json_path = args.out / JSON_NAME
    json_path.write_text(json.dumps(report, indent=1))
    total = sum(len(r["detections"]) for r in results)
    if not emit_json(args.json, report):
        print(f"{len(results)} images, {total} detections, {len(skipped)} skipped -> {args.out}/ ({JSON_NAME} + "
              "PNGs)")
    if not results:
        print("yolo9000 detect: no image could be processed", file=sys.stderr)
        return 1
    return 0
