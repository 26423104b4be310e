"""The benchmark scripts the README quotes run (`--quick`, on a tiny shapes world): they import the product's
modules by name, so a rename must not leave them broken until someone next measures."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from yolo9000.data.shapes import write_world

REPO = Path(__file__).resolve().parents[1]


def test_demo_speed_quick_prints_model_and_loader_costs(tmp_path):
    world = tmp_path / "world"
    write_world(world, num_det=6, num_cls=11, num_eval=2, progress=False, workers=1)
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(REPO / "bench" / "demo_speed.py"), "--quick", "--world", str(world)],
                          capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    figures = json.loads(proc.stdout.strip().splitlines()[-1])
    model = figures["model_ms_per_image"]
    assert len(model) == 3 and any(k.startswith("stride 16") for k in model) and all(v > 0 for v in model.values())
    assert figures["loader_ms_per_image"]["decode"] > 0 and "augment 144 px" in figures["loader_ms_per_image"]
