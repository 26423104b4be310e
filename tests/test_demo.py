"""`yolo9000 demo` end to end on a tiny shapes world: both training stages, evaluation tables, pictures, the query,
and metrics.json (the figures `make demo` promises), in seconds."""
from __future__ import annotations

import json

from yolo9000.cli import main


def test_demo_runs_both_stages_and_writes_metrics_pictures_and_query(tmp_path, capsys, one_thread):
    status = main(["demo", "--skip-tree", "--world", str(tmp_path / "world"), "--out", str(tmp_path / "run"),
                   "--num-det", "6", "--num-cls", "11", "--num-eval", "3", "--pictures", "2",
                   "--set", "train.max_steps=2", "--set", "model.input_size=64", "--set", "data.multiscale=[64]",
                   "--set", "data.eval_size=64", "--set", "data.workers=0", "--set", "train.progress=false",
                   "--set", "train.tensorboard=false"])
    out = capsys.readouterr().out
    assert status == 0
    assert "training (a)" in out and "training (b)" in out
    assert "coarse classes (had boxes)" in out and "fine classes (no box ever)" in out
    assert "conic section" in out and "hexagram" in out                       # tables by node name
    assert "$ yolo9000 query --run" in out and "P(box is polygon" in out
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    for key in ("coarse_map50", "fine_map50", "ratio", "train_seconds", "images_seen"):
        assert key in metrics
    assert metrics["images_seen"] == 2 * 2 * 16                               # two stages of 2 steps of 16
    assert 0.0 <= metrics["fine_map50"] <= 1.0 and 0.0 <= metrics["coarse_map50"] <= 1.0
    # fine boxes per tree depth (`eval --per-depth`): the 3 roots' level, the coarse level, the fine leaves
    per_depth = metrics["fine_map50_per_depth"]
    assert set(per_depth) <= {"0", "1", "2", "3"} and "0" in per_depth and all(0 <= v <= 1 for v in per_depth.values())
    assert "fine boxes per tree depth" in out
    assert len(list((tmp_path / "run").glob("eval_*.png"))) == 2
    assert (tmp_path / "run" / "curves.png").exists() and (tmp_path / "run" / "detect" / "last.pt").exists()
