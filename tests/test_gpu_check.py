"""`bench/gpu_check.py --dry` runs every section of the one-shot device check on the CPU at tiny sizes, so the
script the GPU machine runs cannot rot between the rare occasions there is one."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_gpu_check_dry_runs_every_section_ok(tmp_path):
    out = tmp_path / "gpu_check.json"
    env = {**os.environ, "PYTHONPATH": str(REPO), "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run([sys.executable, str(REPO / "bench" / "gpu_check.py"), "--dry", "--out", str(out)],
                          capture_output=True, text=True, timeout=900, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads(out.read_text())
    sections = report["sections"]
    assert list(sections) == ["loss", "tree_ops", "decode", "train_steps", "checkpoint", "train_speed", "inference",
                              "data_path", "ddp"]
    failed = {name: r.get("error") or r.get("failures") for name, r in sections.items() if not r["ok"]}
    assert not failed and report["ok"]
    assert report["environment"]["device"] == "cpu" and report["environment"]["dry"]
    speed = sections["train_speed"]
    for key in ("yolo9000_416_eager", "yolo9000_544_eager", "yolov2_416_eager", "yolo9000_416_compiled"):
        assert speed[key]["images_per_s"] > 0 and speed[key]["step_over_bare"] > 0, key
    assert sections["data_path"]["cpu"]["images_per_s"] > 0 and sections["data_path"]["device"]["images"] > 0
    assert isinstance(sections["data_path"]["device_keeps_up"], bool)
    assert sections["ddp"]["backend"] == "gloo" and sections["ddp"]["world_size"] == 1
    assert sections["train_steps"]["max_rel_diff"] < 1e-3
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == report  # the last line printed is the JSON
