"""DDP through `torchrun --nproc_per_node=2 -m yolo9000.cli train` on CPU (gloo): two processes, each on its slice
of the global batch, end where one process on the whole global batch ends, and only rank 0 writes files."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
from engine_data import REPO, tiny_config, write_config, write_dataset

from yolo9000 import engine
from yolo9000.checkpoint import load_checkpoint
from yolo9000.logging import read_scalars

# Batch norm frozen (eval mode): with it training, each rank would normalise by its own half-batch statistics.
COMMON = ["train.freeze_bn=true", "train.lr=0.01", "train.max_steps=2", "train.tensorboard=true"]


def test_two_gloo_processes_average_gradients_like_one_process(tmp_path):
    write_dataset(tmp_path)
    config = write_config(tmp_path, COMMON + ["data.det_per_batch=1", "data.cls_per_batch=1"])
    run = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           "-m", "yolo9000.cli", "train", "--config", str(config), "--out", str(run)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("train: yolov2 on tiny") == 1 and "2 processes" in done.stdout   # rank 0 logs alone

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        single = engine.train(tiny_config(tmp_path, COMMON + ["data.det_per_batch=2", "data.cls_per_batch=2"]),
                              tmp_path / "single", log=lambda m: None)
    finally:
        torch.set_num_threads(threads)
    ddp, one = load_checkpoint(run / "last.pt"), load_checkpoint(single.checkpoint)
    assert ddp["seen"] == one["seen"] == 8 and ddp["world_size"] == 2
    for key, value in one["model"].items():
        torch.testing.assert_close(ddp["model"][key], value, rtol=1e-4, atol=1e-6, msg=key)
    initial = engine.build_model(tiny_config(tmp_path).model)
    assert not torch.allclose(one["model"]["pred.weight"], initial.state_dict()["pred.weight"])
    # Logged losses are averaged over the ranks: the global batch's loss.
    got, want = read_scalars(run / "scalars.csv"), read_scalars(tmp_path / "single" / "scalars.csv")
    for name in ("loss", "loss/coord", "loss/cls", "loss/noobj"):
        assert [v for _, v in got[name]] == pytest.approx([v for _, v in want[name]], rel=1e-4), name
    # Only rank 0 wrote: one TensorBoard event file, each (step, scalar) once, no stray temporary files.
    assert len(list((run / "tb").glob("events.out.tfevents.*"))) == 1
    rows = (run / "scalars.csv").read_text().splitlines()[1:]
    keys = [tuple(r.split(",")[:2]) for r in rows]
    assert len(keys) == len(set(keys)) and ("2", "loss") in keys
    assert sorted(p.name for p in run.iterdir()) == [".lock", "config.yaml", "curves.png", "last.pt", "scalars.csv",
                                                     "tb"]
