"""`yolo9000 demo` end to end on a tiny shapes world: both training stages, evaluation tables (coarse, fine with
and without boxes, the paper's measure), pictures, the query, and metrics.json (the figures `make demo` promises),
in seconds."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time

import pytest

from yolo9000.cli import main
from yolo9000.commands.demo import busy_cpus, paper_measure
from yolo9000.data.shapes import BOXED, FINE

# 8 detection images of seed 0 hold boxes of all 11 fine classes (so each boxed class and, for --supervised,
# every class is in the "with boxes" group, which is read from the training boxes).
TINY = ["--skip-tree", "--num-det", "8", "--num-cls", "11", "--num-eval", "3", "--pictures", "2",
        "--set", "train.max_steps=2", "--set", "model.input_size=64", "--set", "data.multiscale=[64]",
        "--set", "data.eval_size=64", "--set", "data.workers=0", "--set", "train.progress=false",
        "--set", "train.tensorboard=false", "--set", "train.log_every=1"]


def _section(out: str, title: str) -> list[str]:
    """The rows of the table titled `title` (indented under it, up to the next title or blank line)."""
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip().startswith(title))
    end = next((i for i in range(start + 1, len(lines)) if not lines[i].startswith("    ")), len(lines))
    return lines[start + 1:end]


def test_demo_runs_both_stages_and_writes_metrics_pictures_and_query(tmp_path, capsys, one_thread):
    world, run = tmp_path / "world", tmp_path / "run"
    status = main(["demo", "--world", str(world), "--out", str(run), *TINY])
    out = capsys.readouterr().out
    assert status == 0
    assert "precision: " in out and "demo: 2 steps at" in out and "the demo will take about" in out
    assert "training (a)" in out and "training (b)" in out
    # The three tables, by node name: 3 coarse classes, the 3 boxed fine classes, the 8 without a box; each a mean.
    coarse = _section(out, "coarse classes (had boxes)")
    with_boxes = _section(out, "fine classes with boxes")
    without = _section(out, "fine classes without any box")
    assert [line.split()[0] for line in coarse] == ["polygon", "conic", "star", "mean"]
    assert sorted(" ".join(line.split()[:-3]) for line in with_boxes[:-1]) == sorted(BOXED.values())
    assert sorted(" ".join(line.split()[:-3]) for line in without[:-1]) == sorted(set(FINE.values())
                                                                                   - set(BOXED.values()))
    assert with_boxes[-1].split()[0] == without[-1].split()[0] == "mean"
    assert "fine/coarse" in out and "the paper's measure: fine classes without boxes" in out
    assert "$ yolo9000 query --run" in out and "P(box is polygon" in out

    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["amp"] in ("off", "bf16") and metrics["supervised"] is False
    assert metrics["images_seen"] == 2 * 2 * 16                               # two stages of 2 steps of 16
    # fine boxes per tree depth (`eval --per-depth`): the 3 roots' level, the coarse level, the fine leaves
    per_depth = metrics["fine_map50_per_depth"]
    assert set(per_depth) <= {"0", "1", "2", "3"} and "0" in per_depth and all(0 <= v <= 1 for v in per_depth.values())
    assert "fine boxes per tree depth" in out
    assert 0 < metrics["train_seconds"] <= metrics["wall_seconds"] and metrics["cpu_seconds"] > 0
    for key in ("coarse_map50", "fine_map50", "fine_map50_without_boxes"):
        assert 0.0 <= metrics[key] <= 1.0, key
    without_mean = float(without[-1].split()[1])
    assert metrics["fine_map50_without_boxes"] == pytest.approx(without_mean, abs=5e-4)
    if metrics["fine_map50"] > 0:
        assert metrics["without_boxes_ratio"] == pytest.approx(metrics["fine_map50_without_boxes"]
                                                               / metrics["fine_map50"])
    assert set(metrics["per_class_ap50"]) >= set(FINE.values()) | {"polygon", "conic section", "star"}
    assert len(list(run.glob("eval_*.png"))) == 2
    for name in ("curves.png", "config.yaml", "scalars.csv", "last.pt", "detect/last.pt", "detect/config.yaml"):
        assert (run / name).exists(), name

    # Deterministic: a second run prints the same tables.
    assert main(["demo", "--world", str(world), "--out", str(tmp_path / "again"), *TINY]) == 0
    again = capsys.readouterr().out
    for title in ("coarse classes (had boxes)", "fine classes with boxes", "fine classes without any box"):
        assert _section(again, title) == _section(out, title), title

    # The fully supervised reference: every fine class had boxes, so there is no "without" table or ratio.
    status = main(["demo", "--world", str(world), "--out", str(tmp_path / "sup"), "--supervised", *TINY])
    out = capsys.readouterr().out
    assert status == 0 and "fine classes without any box" not in out
    assert len(_section(out, "fine classes with boxes")) == len(FINE) + 1
    metrics = json.loads((tmp_path / "sup" / "metrics.json").read_text())
    assert metrics["supervised"] is True and metrics["without_boxes_ratio"] is None


def test_paper_measure_is_the_mean_without_boxes_over_the_mean_of_all():
    # Two classes with boxes (AP .9, .7) and two without (.5, .3): all .6, without .4, ratio 2/3.
    fine = {"map50": 0.6, "groups": {"detection": {"map50": 0.8, "categories": [1, 2]},
                                     "classification_only": {"map50": 0.4, "categories": [3, 4]}}}
    measure = paper_measure(fine)
    assert measure == {"with_boxes": 0.8, "without_boxes": 0.4, "all": 0.6, "ratio": pytest.approx(2 / 3)}
    fine["groups"]["classification_only"] = {"map50": math.nan, "categories": []}
    assert paper_measure(fine)["ratio"] is None and paper_measure(fine)["without_boxes"] is None


def test_busy_cpus_sees_another_process_spinning():
    """The demo's thread choice: a process spinning on one core counts as (about) one busy CPU."""
    spinner = subprocess.Popen([sys.executable, "-c", "import time\nend = time.time() + 5\nwhile time.time() < end: pass"])
    try:
        time.sleep(0.5)                       # let it start spinning
        busy = busy_cpus(0.5)
    finally:
        spinner.kill()
        spinner.wait()
    assert 0.6 <= busy <= (os.cpu_count() or 1) + 0.01
