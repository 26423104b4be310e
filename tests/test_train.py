"""`yolo9000 train` / `yolo9000 eval` end to end: train a few steps, checkpoint, resume, evaluate (under a minute)."""
from __future__ import annotations

import json
import math

import pytest
from engine_data import write_config, write_dataset

from yolo9000.checkpoint import load_checkpoint
from yolo9000.cli import main
from yolo9000.config import load_config
from yolo9000.logging import read_scalars


pytestmark = pytest.mark.usefixtures("one_thread")


def test_train_checkpoint_resume_evaluate(tmp_path, capsys):
    write_dataset(tmp_path)
    config = write_config(tmp_path, ["train.max_steps=3", "train.checkpoint_every=2"])
    run = tmp_path / "run"
    assert main(["train", "--config", str(config), "--out", str(run)]) == 0
    assert load_checkpoint(run / "last.pt")["step"] == 3
    # A second fresh run into the same directory is refused: it would overwrite the first.
    assert main(["train", "--config", str(config), "--out", str(run)]) == 2
    assert "--resume" in capsys.readouterr().err
    # Continue the same run further, with the run's own config and one override.
    assert main(["train", "--resume", str(run), "--set", "train.max_steps=5"]) == 0
    state = load_checkpoint(run / "last.pt")
    assert state["step"] == 5 and state["seen"] == 20
    assert load_config(run / "config.yaml").train.max_steps == 5
    series = read_scalars(run / "scalars.csv")
    assert [s for s, _ in series["loss"]] == [1, 2, 3, 4, 5]
    capsys.readouterr()
    out = tmp_path / "metrics.json"
    assert main(["eval", "--run", str(run), "--json", str(out), "--train-split", "train", "--classification"]) == 0
    table = capsys.readouterr().out
    assert "mAP@[.5:.95]" in table and "top-1" in table and "accuracy per depth" in table
    assert "1 a1" in table and "3 b1x" in table                    # per-class rows
    metrics = json.loads(out.read_text())
    detection = metrics["detection"]
    assert set(detection["per_class"]) == {"1", "2", "3"} and detection["images"] == 4
    assert 0.0 <= detection["map50"] <= 1.0
    # Every evaluated category has boxes in the train split: all in the "detection" group of the paper's split.
    assert sorted(detection["groups"]["detection"]["categories"]) == [1, 2, 3]
    assert detection["groups"]["classification_only"]["categories"] == []
    classification = metrics["classification"]
    assert classification["images"] == 5 and 0.0 <= classification["top1"] <= classification["top5"] <= 1.0
    assert len(classification["depth_accuracy"]) == 4 and not math.isnan(classification["depth_accuracy"][0])


def test_eval_with_config_and_weights_and_errors(tmp_path, capsys):
    write_dataset(tmp_path)
    config = write_config(tmp_path, ["train.max_steps=1", "model.kind=darknet19"])
    assert main(["train", "--config", str(config), "--out", str(tmp_path / "cls")]) == 0
    capsys.readouterr()
    assert main(["eval", "--config", str(config), "--weights", str(tmp_path / "cls" / "last.pt")]) == 0
    assert "top-5" in capsys.readouterr().out                      # a classifier gets the classification table
    assert main(["eval", "--config", str(config)]) == 2
    assert "--weights" in capsys.readouterr().err
    assert main(["train", "--config", "tiny", "--out", str(tmp_path / "x")]) == 2
    assert "data.dataset" in capsys.readouterr().err
    assert main(["train", "--resume", str(tmp_path / "nothing")]) == 2
    assert "no last.pt" in capsys.readouterr().err
