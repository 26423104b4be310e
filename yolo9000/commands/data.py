"""`yolo9000 data`: datasets on disk.

    yolo9000 data shapes --out DIR [--seed N] [--num-det N] [--num-cls N] [--num-eval N]
    yolo9000 data check DATASET [--split S ...] [--set key=value ...] [--workers N] [--json FILE]
    yolo9000 data pack DATASET --split S --out FILE.h5 [--set key=value ...] [--overwrite]

DATASET is a descriptor (`datasets/coco9k.yaml`, or a bare name such as `coco9k` looked up in `datasets/`);
`--set` overrides its keys, e.g. `--set root=/mnt/coco` or `--set splits.train.detection.images=/x/train2017`.
Exit codes: 0 ok, 1 `check` found errors, 2 bad input (message on stderr).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def register(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="data_command", metavar="{shapes,check,pack}", required=True)

    shapes = sub.add_parser("shapes", help="write the procedural `shapes` demo world (det, cls, eval splits)")
    shapes.add_argument("--out", type=Path, required=True, help="folder to write the world into")
    shapes.add_argument("--seed", type=int, help="random seed (the world is a function of it)")
    shapes.add_argument("--num-det", type=int, help="detection images (coarse labels)")
    shapes.add_argument("--num-cls", type=int, help="classification images (fine labels)")
    shapes.add_argument("--num-eval", type=int, help="evaluation detection images (fine labels)")
    shapes.set_defaults(func=run_shapes)

    check = sub.add_parser("check", help="scan a dataset: unreadable/odd images, bad boxes, unknown labels, ...")
    _descriptor_args(check)
    check.add_argument("--split", action="append", help="split to scan (repeatable; default: every split)")
    check.add_argument("--workers", type=int, default=2, help="processes decoding images (default 2)")
    check.add_argument("--json", nargs="?", const="-", metavar="FILE",
                       help="the report as JSON: on stdout instead of the text, or written to FILE")
    check.set_defaults(func=run_check)

    pack = sub.add_parser("pack", help="pack a split (image bytes + annotations + tree) into one HDF5 file")
    _descriptor_args(pack)
    pack.add_argument("--split", required=True, help="split to pack, e.g. train")
    pack.add_argument("--out", type=Path, required=True, help="the .h5 file to write (resumed if interrupted)")
    pack.add_argument("--overwrite", action="store_true", help="replace an existing pack built from other inputs")
    pack.add_argument("--threads", type=int, default=4, help="parallel file reads (default 4)")
    pack.set_defaults(func=run_pack)


def _descriptor_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dataset", help="dataset descriptor (datasets/*.yaml or a bare name)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a descriptor key (dotted path; repeatable)")
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")


def _load(args: argparse.Namespace):
    from yolo9000.data.descriptor import load_descriptor, load_descriptor_tree
    descriptor = load_descriptor(args.dataset, args.overrides)
    return descriptor, load_descriptor_tree(descriptor)


def run_shapes(args: argparse.Namespace) -> int:
    from yolo9000.data.shapes import write_world
    counts = {k: v for k, v in (("seed", args.seed), ("num_det", args.num_det), ("num_cls", args.num_cls),
                                ("num_eval", args.num_eval)) if v is not None}
    descriptor = write_world(args.out, progress=True, **counts)
    print(descriptor)
    return 0


def run_check(args: argparse.Namespace) -> int:
    from yolo9000.data.check import check_dataset, write_json
    descriptor, tree = _load(args)
    for split in args.split or []:
        descriptor.split(split)  # unknown split names fail before any scanning
    report = check_dataset(descriptor, tree, args.split, workers=args.workers, progress=args.progress)
    if args.json == "-":
        print(json.dumps(report.to_json(), indent=2))
    else:
        print(report.format())
    if args.json not in (None, "-"):
        write_json(report, args.json)
    return report.exit_code


def run_pack(args: argparse.Namespace) -> int:
    from yolo9000.data.descriptor import pack_split
    descriptor, tree = _load(args)
    summary = pack_split(descriptor, args.split, args.out, tree, progress=args.progress, threads=args.threads,
                         overwrite=args.overwrite)
    parts = ", ".join(f"{n} {kind}" for kind, n in summary.images.items())
    state = "already complete" if summary.written == 0 and summary.resumed_at else (
        f"resumed after {summary.resumed_at} images" if summary.resumed_at else
        "packed afresh: the sources changed since the interrupted run" if summary.restarted else "packed")
    print(f"{summary.path}: {parts} images, {summary.bytes / 2**20:.1f} MiB ({state})")
    if summary.num_missing:
        first = "; ".join(f for files in summary.missing.values() for f in files)
        print(f"left out {summary.num_missing} images whose files are missing: {first}", file=sys.stderr)
    print("use it in a descriptor split:")
    for kind in summary.images:
        print(f"  {kind}: {{format: pack, path: {summary.path.resolve()}}}")
    return 0
