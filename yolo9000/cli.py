"""The `yolo9000` command line: one subcommand per module in `yolo9000.commands` (and `wordtree.cli` for `tree`).

Subcommand modules are imported lazily so `yolo9000 setup` works before torch has finished importing anything heavy,
and a broken optional module names itself instead of breaking every command.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from yolo9000.errors import USER_ERRORS

# (subcommand, module, one-line help). Each module exposes `register(parser)` which adds arguments and sets
# `func` via `parser.set_defaults(func=...)`; `func(args) -> int | None` is the exit status.
SUBCOMMANDS: list[tuple[str, str, str]] = [
    ("setup", "yolo9000.commands.setup", "fetch reference data (WordNet 3.0, darknet's 9k files) into the data dir"),
    ("tree", "wordtree.cli", "build, inspect, compare, query and plot WordTrees"),
    ("info", "yolo9000.commands.info", "print a model's layer table, output shape, params and flops"),
    ("detect", "yolo9000.commands.detect", "run a detector on images: annotated PNGs and a JSON of detections"),
    ("export", "yolo9000.commands.export",
     "export a model: ONNX (network + PostProcess up to NMS), or darknet .cfg/.weights"),
    ("anchors", "yolo9000.commands.anchors", "dimension clusters: k-means on box shapes with 1 - IoU"),
    ("data", "yolo9000.commands.data", "datasets: shapes world, check, pack, combine"),
    ("train", "yolo9000.commands.train", "train a classifier, detector or joint YOLO9000 model"),
    ("eval", "yolo9000.commands.eval", "evaluate: COCO mAP, the YOLO9000 split, top-1/top-5 and per-depth accuracy"),
    ("query", "yolo9000.commands.query", "detections with hierarchy paths; subtree probabilities"),
    ("demo", "yolo9000.commands.demo", "the main job: trees, shapes world, joint training, evaluation, query"),
]


VOCABULARY = ("detect, query and eval share one vocabulary (yolo9000.api.DetectorOptions): --conf, --nms, --hier, "
              "--mode, --depth, --max-detections, --batch, --size, --device (eval: the scoring ones, --conf, "
              "--nms, --hier, --size, --batch, --device), and --json [FILE] (JSON on stdout, or written to FILE). "
              "--config and --data take a shipped name (yolo9000, tiny; shapes, coco) or a path. "
              "A user error prints one line, 'yolo9000 COMMAND: error: ...', and exits 2.")


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="yolo9000", description=__doc__.splitlines()[0], epilog=VOCABULARY)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    wanted = None
    if argv:
        wanted = next((a for a in argv if not a.startswith("-")), None)
    for name, module_name, help_text in SUBCOMMANDS:
        p = sub.add_parser(name, help=help_text, description=help_text)
        # Only the chosen subcommand's module is imported; `--help` lists all without importing them.
        if wanted is None or wanted == name:
            try:
                module = importlib.import_module(module_name)
            except ModuleNotFoundError as err:
                if err.name != module_name:
                    raise
                p.set_defaults(func=lambda args, n=name: _missing(n))
                continue
            module.register(p)
    return parser


def _missing(name: str) -> int:
    print(f"yolo9000 {name}: this subcommand is not available in this build", file=sys.stderr)
    return 2


def _chosen_parser(parser: argparse.ArgumentParser, args: argparse.Namespace) -> argparse.ArgumentParser:
    """The innermost subcommand parser `args` went through (`yolo9000 data check`, `yolo9000 tree build`)."""
    while True:
        action = next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)
        chosen = getattr(args, action.dest, None) if action is not None and action.dest else None
        if chosen not in (action.choices if action is not None else {}):
            return parser
        parser = action.choices[chosen]


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(argv)
    args, extra = parser.parse_known_args(argv)
    if extra:  # name the subcommand whose usage the user got wrong, not the top level's
        _chosen_parser(parser, args).error(f"unrecognized arguments: {' '.join(extra)}")
    if not getattr(args, "func", None):
        parser.print_help()
        return 0 if not argv else 2
    try:
        status = args.func(args)
    except USER_ERRORS as err:  # a user mistake: one line naming the input; anything else is a bug (traceback)
        command = " ".join(filter(None, (args.command, getattr(args, "data_command", None),
                                         getattr(args, "tree_command", None))))
        print(f"yolo9000 {command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return int(status or 0)


if __name__ == "__main__":
    sys.exit(main())
