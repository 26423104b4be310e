"""`yolo9000 data`: datasets on disk.

    yolo9000 data shapes --out DIR [--seed N] [--num-det N] [--num-cls N] [--num-eval N]
    yolo9000 data check DATASET [--split S ...] [--set key=value ...] [--workers N] [--json FILE]
    yolo9000 data pack DATASET --split S --out FILE.h5 [--set key=value ...] [--overwrite]
    yolo9000 data combine --out DIR [--coco JSON IMAGES ...] [--voc ROOT ...] [--imagenet DIR ...] [--top K]

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
    sub = parser.add_subparsers(dest="data_command", metavar="{shapes,check,pack,combine}", required=True)

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


    register_combine(sub)


def register_combine(sub) -> None:
    combine = sub.add_parser(
        "combine", help="detection + classification data -> one WordTree, class maps and a descriptor (combine9k)",
        description="darknet's combine9k as one command (YOLO9000 section 4): builds a WordTree from WordNet for the "
                    "union of the detection categories and classification wnids, and writes it with the class maps "
                    "and a dataset descriptor (DIR/dataset.yaml) that `data check` and `train` take as they are. "
                    "COCO's 80 and VOC's 20 names are built in; other names are looked up in WordNet (first noun "
                    "sense) and written to DIR/names.yaml, which the next run reads. Exit 1 when a category is left "
                    "without a tree node (everything is still written).")
    combine.add_argument("--out", type=Path, required=True, metavar="DIR", help="output folder")
    combine.add_argument("--coco", nargs=2, action="append", default=[], type=Path, metavar=("JSON", "IMAGES"),
                         help="a COCO-format detection set: annotation file and image folder (repeatable)")
    combine.add_argument("--voc", action="append", default=[], type=Path, metavar="ROOT",
                         help="a VOC folder with Annotations/ and JPEGImages/ (repeatable)")
    combine.add_argument("--voc-image-set", metavar="NAME", help="with --voc: ImageSets/Main/NAME.txt (e.g. trainval)")
    combine.add_argument("--imagenet", action="append", default=[], type=Path, metavar="DIR",
                         help="classification images in one sub-folder per wnid (repeatable)")
    combine.add_argument("--imagenet-list", action="append", default=[], type=Path, metavar="FILE",
                         help="classification images as '<path> <wnid>' lines (repeatable)")
    combine.add_argument("--top", type=int, metavar="K",
                         help="keep the K classification wnids with the most images (the paper: 9000)")
    combine.add_argument("--eval-coco", nargs=2, action="append", default=[], type=Path, metavar=("JSON", "IMAGES"),
                         help="a COCO-format set for the descriptor's eval split (repeatable)")
    combine.add_argument("--names", type=Path, metavar="FILE",
                         help="category name -> wnid choices to read first and rewrite (default DIR/names.yaml)")
    combine.add_argument("--overrides", type=Path, metavar="FILE",
                         help="tree build grafts/exclusions (YAML graft: {wnid: parent}, exclude: [wnid]); default: "
                              "darknet's 4 grafts (yolo9000/datasets/9k_overrides.yaml)")
    combine.add_argument("--root", default="n00001930", metavar="WNID",
                         help="synset the tree hangs under, wnid or synset name (default physical_entity.n.01)")
    combine.add_argument("--name", help="dataset name in the descriptor (default: the folder's name)")
    combine.add_argument("--wordnet", type=Path, metavar="DIR", help="WordNet 3.0 folder (default: the setup data dir)")
    combine.set_defaults(func=run_combine)


def _combine_command(args: argparse.Namespace) -> str:
    """The command line as given (recorded in the descriptor's header)."""
    import shlex
    words = ["yolo9000", "data", "combine", "--out", str(args.out)]
    for flag, key in (("--coco", "coco"), ("--eval-coco", "eval_coco")):
        for pair in getattr(args, key):
            words += [flag, *map(str, pair)]
    for flag, key in (("--voc", "voc"), ("--imagenet", "imagenet"), ("--imagenet-list", "imagenet_list")):
        for value in getattr(args, key):
            words += [flag, str(value)]
    for flag, key in (("--voc-image-set", "voc_image_set"), ("--top", "top"), ("--names", "names"),
                      ("--overrides", "overrides"), ("--name", "name")):
        if getattr(args, key) is not None:
            words += [flag, str(getattr(args, key))]
    if args.root != "n00001930":
        words += ["--root", args.root]
    return shlex.join(words)


def run_combine(args: argparse.Namespace) -> int:
    from wordtree.build import Overrides
    from wordtree.cli import load_wordnet, resolve_root
    from yolo9000.data.combine import DARKNET_9K_OVERRIDES, CombineError, DetectionInput, combine
    wordnet = load_wordnet(args.wordnet)
    root = resolve_root(args.root, wordnet)
    if args.overrides is not None and not args.overrides.is_file():
        raise CombineError(f"--overrides {args.overrides} does not exist")
    overrides = Overrides.load(args.overrides) if args.overrides else DARKNET_9K_OVERRIDES
    detection = ([DetectionInput("coco", images, annotations) for annotations, images in args.coco]
                 + [DetectionInput("voc", root_dir, image_set=args.voc_image_set) for root_dir in args.voc]
                 + [DetectionInput("coco", images, annotations, split="eval")
                    for annotations, images in args.eval_coco])
    result = combine(args.out, detection, args.imagenet, args.imagenet_list, wordnet, top=args.top,
                     names_file=args.names, overrides=overrides, root=root, name=args.name,
                     command=_combine_command(args))
    print("\n".join(result.format()))
    return 1 if result.problems else 0


def _descriptor_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dataset", help="dataset descriptor: a shipped name (shapes, coco, voc) or a path")
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
