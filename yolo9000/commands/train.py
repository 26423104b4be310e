"""`yolo9000 train`: train a Darknet-19 classifier, a YOLOv2 detector or the joint YOLO9000 model.

    yolo9000 train --config configs/stages/yolo9000_joint.yaml [--set train.lr=0.002 ...] [--out runs/y9k]
    yolo9000 train --resume runs/y9k [--set train.max_steps=600000]
    torchrun --nproc_per_node=2 -m yolo9000.cli train --config ...      (DDP; gloo on CPU, NCCL on GPU)

The run directory gets config.yaml, scalars.csv, tb/, last.pt and curves.png (yolo9000.engine). Exit status: 0 when
the run ended normally (steps, epochs or time budget), 1 on a non-finite loss (the last good state is saved),
2 on a bad config, dataset or checkpoint, or a run directory another process is using (the lock `<run>/.lock`
names its pid), 130 when interrupted by Ctrl-C or SIGTERM (a checkpoint is saved).
"""
from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sys
from pathlib import Path

from yolo9000.checkpoint import CheckpointError
from yolo9000.config import ConfigError, load_config
from yolo9000.engine import CHECKPOINT_NAME, CONFIG_NAME, train
from yolo9000.logging import CSV_NAME, CURVES_NAME
from yolo9000.runs import RunLock, sigterm_as_interrupt


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="YAML config: a shipped name (tiny, demo, stages/3_yolo9000_joint, ...) or a path")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value, e.g. train.max_steps=100 (repeatable)")
    parser.add_argument("--data-set", action="append", default=[], metavar="KEY=VALUE",
                        help="edit the dataset descriptor, e.g. root=/data/coco (repeatable)")
    parser.add_argument("--out", help="run directory (default: the config's train.out)")
    parser.add_argument("--resume", metavar="DIR",
                        help="continue the run in DIR from its last.pt (with DIR/config.yaml unless --config)")
    parser.add_argument("--force", action="store_true",
                        help="start afresh in a run directory that already holds a checkpoint (its files go)")
    parser.set_defaults(func=run)


def _clear(run_dir: Path) -> None:
    """Remove a previous run's outputs (rank 0 only) so a fresh run does not mix with them."""
    if int(os.environ.get("RANK", "0")) != 0:
        return
    for name in (CHECKPOINT_NAME, CSV_NAME, CURVES_NAME):
        (run_dir / name).unlink(missing_ok=True)
    shutil.rmtree(run_dir / "tb", ignore_errors=True)


def _lock(stack: contextlib.ExitStack, run_dir: Path) -> None:
    """Hold the run folder for this process (rank 0 of a DDP job speaks for all): a second train or --resume on it
    is refused with this process's pid, before it can clear or append to anything."""
    if int(os.environ.get("RANK", "0")) == 0:
        stack.enter_context(RunLock(run_dir))


def run(args: argparse.Namespace) -> int:
    with contextlib.ExitStack() as stack:
        if args.resume:
            run_dir = Path(args.resume)
            _lock(stack, run_dir)
            if not (run_dir / CHECKPOINT_NAME).exists():
                raise CheckpointError(f"--resume {run_dir}: no {CHECKPOINT_NAME} there to continue from")
            cfg = load_config(args.config or run_dir / CONFIG_NAME, args.set)
        else:
            if not args.config:
                raise ConfigError("give --config X.yaml (a new run) or --resume DIR (continue a run)")
            cfg = load_config(args.config, args.set)
            run_dir = Path(args.out or cfg.train.out)
            _lock(stack, run_dir)
            if (run_dir / CHECKPOINT_NAME).exists():
                if not args.force:
                    raise ConfigError(f"{run_dir} already holds a run ({CHECKPOINT_NAME}); continue it with "
                                      f"--resume {run_dir}, or start over with --force or another --out")
                _clear(run_dir)
        stack.enter_context(sigterm_as_interrupt())
        result = train(cfg, run_dir, resume=bool(args.resume), dataset_overrides=args.data_set)
    if result.stop_reason == "non_finite":
        print(f"yolo9000 train: {result.message}", file=sys.stderr)
        return 1
    return 130 if result.stop_reason == "interrupted" else 0
