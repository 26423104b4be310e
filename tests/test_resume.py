"""Exact resume: a `yolo9000 train` process killed with SIGKILL mid-run, then resumed, reproduces the losses and
weights of an uninterrupted run (loader workers, multi-scale sizes, augmentation and mid-epoch position included)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from engine_data import REPO, tiny_config, write_config, write_dataset

from yolo9000 import engine
from yolo9000.checkpoint import load_checkpoint
from yolo9000.logging import read_scalars

# Two loader workers (the case where augmentation seeding matters), two input sizes switching every 2 batches.
SETTINGS = ["data.workers=2", "data.multiscale=[64, 96]", "data.multiscale_period=2", "train.checkpoint_every=3",
            "train.lr=0.005"]


def _steps_logged(path) -> int:
    if not path.exists():
        return 0
    lines = path.read_text().splitlines()[1:]
    return max((int(line.split(",")[0]) for line in lines if line.count(",") == 2), default=0)


def test_sigkill_then_resume_matches_uninterrupted_run(tmp_path):
    write_dataset(tmp_path)
    config = write_config(tmp_path, SETTINGS + ["train.max_steps=400"])
    run = tmp_path / "killed"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen([sys.executable, "-m", "yolo9000.cli", "train", "--config", str(config), "--out",
                                str(run)], cwd=REPO, env=env, start_new_session=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while _steps_logged(run / "scalars.csv") < 8:
            assert process.poll() is None, process.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, "the training process made no progress"
            time.sleep(0.02)
    finally:
        os.killpg(process.pid, signal.SIGKILL)       # the process and its loader workers, mid-step
        process.wait()
    killed_at = _steps_logged(run / "scalars.csv")
    saved = load_checkpoint(run / "last.pt")["step"]
    assert saved >= 6 and saved % 3 == 0 and killed_at < 400

    torch.set_num_threads(1)
    end = saved + 5
    resumed = engine.train(tiny_config(tmp_path, SETTINGS + [f"train.max_steps={end}"]), run, resume=True,
                           log=lambda m: None)
    reference = engine.train(tiny_config(tmp_path, SETTINGS + [f"train.max_steps={end}"]), tmp_path / "reference",
                             log=lambda m: None)
    assert resumed.steps == reference.steps == end and resumed.seen == reference.seen
    got, want = read_scalars(run / "scalars.csv"), read_scalars(tmp_path / "reference" / "scalars.csv")
    for name in [n for n in want if n.startswith(("loss", "diag/"))]:
        after = [v for s, v in got[name] if s > saved]
        expected = [v for s, v in want[name] if s > saved]
        assert len(after) == 5, name
        assert after == pytest.approx(expected, rel=1e-4, abs=1e-6), name
    a, b = load_checkpoint(run / "last.pt"), load_checkpoint(tmp_path / "reference" / "last.pt")
    assert a["sampler"] == b["sampler"] and a["epoch"] == b["epoch"]
    for key, value in b["model"].items():
        torch.testing.assert_close(a["model"][key], value, rtol=1e-5, atol=1e-6, msg=key)
