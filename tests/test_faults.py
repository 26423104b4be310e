"""Faults a run must survive without losing anything (issue 14): a pack resumed after a source changed, SIGTERM
during training, two processes on one run folder, and scalars logged after the last checkpoint."""
from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from engine_data import REPO, tiny_config, write_config, write_dataset

import yolo9000.data.pack as pack_module
from yolo9000.checkpoint import load_checkpoint
from yolo9000.cli import main
from yolo9000.logging import read_scalars, truncate_scalars
from yolo9000.data.descriptor import load_descriptor, load_descriptor_tree, pack_split
from yolo9000.data.pack import PackSource


class _Interrupted(Exception):
    """Stands for the process dying mid-pack (the SIGKILL test in test_pack.py covers a real kill)."""


def test_pack_resume_after_a_source_changed_in_place_repacks_it(tmp_path, monkeypatch):
    descriptor_path = write_dataset(tmp_path, det_images=4, cls_per_class=1, eval_images=1)
    descriptor = load_descriptor(descriptor_path)
    tree = load_descriptor_tree(descriptor)
    out = tmp_path / "train.h5"
    original = pack_module._read_file
    reads = []

    def read_then_die(source, index):
        reads.append(index)
        if len(reads) == 3:
            raise _Interrupted
        return original(source, index)

    monkeypatch.setattr(pack_module, "_read_file", read_then_die)
    with pytest.raises(_Interrupted):
        pack_split(descriptor, "train", out, tree, progress=False, commit_bytes=1, threads=1)
    assert out.with_name("train.h5.partial").exists() and out.with_name("train.h5.progress").exists()
    monkeypatch.setattr(pack_module, "_read_file", original)

    # The first image, already packed, is edited in place: same size, other bytes, a later modification time.
    changed = tmp_path / "det" / "images" / "000.jpg"
    data = bytearray(changed.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 16] = bytes(255 - b for b in data[middle:middle + 16])
    stat = changed.stat()
    changed.write_bytes(bytes(data))
    os.utime(changed, ns=(stat.st_atime_ns, stat.st_mtime_ns + 5 * 10**9))
    assert changed.stat().st_size == stat.st_size

    summary = pack_split(descriptor, "train", out, tree, progress=False, commit_bytes=1, threads=1)
    assert summary.restarted and summary.resumed_at == 0
    packed = PackSource(out, tree, "detection")
    index = next(i for i, r in enumerate(packed.records) if Path(r.file) == changed)
    assert packed.read_bytes(index) == bytes(data)       # not the stale bytes of the interrupted run
    assert not out.with_name("train.h5.partial").exists()


def test_pack_resume_with_unchanged_sources_continues(tmp_path, monkeypatch):
    descriptor_path = write_dataset(tmp_path, det_images=4, cls_per_class=1, eval_images=1)
    descriptor = load_descriptor(descriptor_path)
    tree = load_descriptor_tree(descriptor)
    out = tmp_path / "train.h5"
    original = pack_module._read_file
    reads = []

    def read_then_die(source, index):
        reads.append(index)
        if len(reads) == 3:
            raise _Interrupted
        return original(source, index)

    monkeypatch.setattr(pack_module, "_read_file", read_then_die)
    with pytest.raises(_Interrupted):
        pack_split(descriptor, "train", out, tree, progress=False, commit_bytes=1, threads=1)
    monkeypatch.setattr(pack_module, "_read_file", original)
    summary = pack_split(descriptor, "train", out, tree, progress=False, commit_bytes=1, threads=1)
    assert not summary.restarted and summary.resumed_at == 2


# ------------------------------------------------------------------------------------------- training runs
def _start_train(config: Path, run: Path, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-m", "yolo9000", "train", "--config", str(config), "--out", str(run),
                             *extra], cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)


def _steps_logged(path: Path) -> int:
    if not path.exists():
        return 0
    rows = [line.split(",") for line in path.read_text().splitlines()[1:]]
    return max((int(r[0]) for r in rows if len(r) == 3 and r[0].isdigit()), default=0)


def _wait_for_steps(process: subprocess.Popen, csv: Path, steps: int) -> None:
    deadline = time.monotonic() + 180
    while _steps_logged(csv) < steps:
        assert process.poll() is None, process.stderr.read().decode()[-3000:]
        assert time.monotonic() < deadline, "the training process made no progress"
        time.sleep(0.02)


def test_lock_refuses_a_second_train_and_sigterm_saves_a_checkpoint(tmp_path, capsys):
    write_dataset(tmp_path, det_images=3, cls_per_class=1, eval_images=1)
    # Loader workers: a scheduler signals the whole process group, workers included.
    config = write_config(tmp_path, ["train.max_steps=100000", "train.checkpoint_every=0", "data.workers=2"])
    run = tmp_path / "run"
    process = _start_train(config, run)
    try:
        _wait_for_steps(process, run / "scalars.csv", 3)
        # A second train into the same folder (even with --force) and a --resume of it are both refused.
        for args in (["train", "--config", str(config), "--out", str(run), "--force"], ["train", "--resume", str(run)]):
            assert main(args) == 2
            err = capsys.readouterr().err
            assert "Traceback" not in err
            line = next(line for line in err.splitlines() if "in use by another" in line)
            assert line.startswith("yolo9000 train:") and str(run) in line and f"pid {process.pid}" in line
        assert not (run / "last.pt").exists()      # no periodic checkpoint: only the signal can write one
        os.killpg(process.pid, signal.SIGTERM)
        time.sleep(0.2)
        os.killpg(process.pid, signal.SIGTERM)      # schedulers repeat it; the checkpoint must still be written
        _, err = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    assert process.returncode == 130, err.decode()[-3000:]
    assert "Traceback" not in err.decode()
    saved = load_checkpoint(run / "last.pt")
    assert saved["step"] >= 3
    # The lock went with the process: the run resumes from the SIGTERM checkpoint.
    end = saved["step"] + 2
    assert main(["train", "--resume", str(run), "--set", f"train.max_steps={end}"]) == 0
    assert load_checkpoint(run / "last.pt")["step"] == end


def test_resume_truncates_scalars_and_tensorboard_to_the_checkpoint(tmp_path):
    write_dataset(tmp_path, det_images=3, cls_per_class=1, eval_images=1)
    config = write_config(tmp_path, ["train.max_steps=100000", "train.checkpoint_every=4", "train.tensorboard=true"])
    run = tmp_path / "run"
    process = _start_train(config, run)
    try:
        while True:
            _wait_for_steps(process, run / "scalars.csv", 5)
            # Stopped while we look, so the kill lands between two checkpoints, with rows logged after the last.
            os.killpg(process.pid, signal.SIGSTOP)
            if _steps_logged(run / "scalars.csv") % 4 and (run / "last.pt").exists():
                break
            os.killpg(process.pid, signal.SIGCONT)
            time.sleep(0.05)
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    killed_at = _steps_logged(run / "scalars.csv")
    saved = load_checkpoint(run / "last.pt")["step"]
    assert killed_at > saved > 0
    end = killed_at + 2
    # TensorBoard orders event files by name, which starts with the writer's creation second: a run that died
    # within a second of starting would tie with its resume (a test artefact; real runs live longer than that).
    started = max(int(f.name.split(".")[3]) for f in (run / "tb").glob("events.out.tfevents.*"))
    while int(time.time()) <= started:
        time.sleep(0.05)
    assert main(["train", "--resume", str(run), "--set", f"train.max_steps={end}"]) == 0

    series = read_scalars(run / "scalars.csv")
    rows = [line.split(",") for line in (run / "scalars.csv").read_text().splitlines()[1:]]
    loss_steps = [int(step) for step, name, _ in rows if name == "loss"]
    assert loss_steps == list(range(1, end + 1))   # each step once: the dead run's rows after `saved` are gone
    assert [s for s, _ in series["loss"]] == loss_steps

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    events = EventAccumulator(str(run / "tb"))
    events.Reload()
    assert [e.step for e in events.Scalars("loss")] == loss_steps


def test_truncate_scalars_keeps_rows_up_to_the_step(tmp_path):
    path = tmp_path / "scalars.csv"
    path.write_text("step,name,value\n1,loss,3\n2,loss,2\n3,loss,1\n3,lr,0.1\n4,lo")   # the last row cut short
    assert truncate_scalars(path, 2) == 3
    assert path.read_text().splitlines() == ["step,name,value", "1,loss,3", "2,loss,2"]
    assert read_scalars(path) == {"loss": [(1, 3.0), (2, 2.0)]}


def test_weights_gone_non_finite_with_finite_losses_are_never_saved_as_good(tmp_path, monkeypatch, one_thread):
    """An update that overflows (finite loss, infinite step) leaves NaN weights: they must not become last.pt."""
    import torch

    from yolo9000 import engine
    write_dataset(tmp_path, det_images=3, cls_per_class=1, eval_images=1)
    original, calls = torch.optim.SGD.step, []

    def overflowing_step(self, *args, **kwargs):
        out = original(self, *args, **kwargs)
        calls.append(1)
        if len(calls) == 2:
            with torch.no_grad():
                for group in self.param_groups:
                    for p in group["params"]:
                        p.fill_(math.inf)
        return out

    monkeypatch.setattr(torch.optim.SGD, "step", overflowing_step)
    cfg = tiny_config(tmp_path, ["train.max_steps=6", "train.checkpoint_every=1", "train.optimizer=sgd"])
    result = engine.train(cfg, tmp_path / "run", log=lambda m: None)
    assert result.stop_reason == "non_finite"
    assert "non-finite" in result.message and "saved the last good state" not in result.message
    saved = load_checkpoint(tmp_path / "run" / "last.pt")
    assert saved["step"] == 1                                   # the state before the overflow, still there
    assert all(torch.isfinite(v).all() for v in saved["model"].values() if v.is_floating_point())
