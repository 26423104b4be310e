"""`train.ema`: the moving average of the weights, checked against a plain loop, and through the engine (the
checkpoint serves the average; a resumed run continues it exactly)."""
from __future__ import annotations

import math

import pytest
import torch
from engine_data import write_config, write_dataset
from torch import nn

from yolo9000.checkpoint import load_checkpoint
from yolo9000.cli import main
from yolo9000.config import ConfigError, load_config
from yolo9000.ema import WeightEMA

pytestmark = pytest.mark.usefixtures("one_thread")


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.LazyLinear(2))


def test_weight_ema_matches_a_plain_loop_over_every_float_tensor():
    net = _net()
    net(torch.rand(2, 3, 6, 6))
    ema = WeightEMA(net, decay=0.9, warmup=3)
    reference = {k: v.clone() for k, v in net.state_dict().items()}
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    for step in range(1, 6):
        net(torch.rand(2, 3, 6, 6)).square().mean().backward()   # moves weights and batch-norm statistics
        optimizer.step()
        optimizer.zero_grad()
        ema.update()
        decay = 0.9 * (1 - math.exp(-step / 3))
        for key, value in net.state_dict().items():
            if value.is_floating_point():
                reference[key] = decay * reference[key] + (1 - decay) * value
            else:
                reference[key] = value.clone()
    for key, value in reference.items():
        torch.testing.assert_close(ema.state[key], value, rtol=1e-5, atol=1e-6, msg=key)
    assert int(ema.state["1.num_batches_tracked"]) == 6   # integer buffers are copied, not averaged
    assert not torch.equal(ema.state["0.weight"], net.state_dict()["0.weight"])


def test_weight_ema_rejects_a_decay_outside_0_1():
    with pytest.raises(ValueError, match="decay"):
        WeightEMA(_net(), decay=1.0)
    with pytest.raises(ConfigError, match="train.ema"):
        load_config("tiny", ["train.ema=1.5"])


def test_checkpoint_serves_the_average_and_resume_continues_it_exactly(tmp_path):
    write_dataset(tmp_path)
    overrides = ["train.max_steps=4", "train.ema=0.9", "train.checkpoint_every=0", "train.amp=off"]
    config = write_config(tmp_path, overrides)
    whole, split = tmp_path / "whole", tmp_path / "split"
    assert main(["train", "--config", str(config), "--out", str(whole)]) == 0
    assert main(["train", "--config", str(config), "--out", str(split), "--set", "train.max_steps=2"]) == 0
    assert main(["train", "--resume", str(split), "--set", "train.max_steps=4"]) == 0
    a, b = load_checkpoint(whole / "last.pt"), load_checkpoint(split / "last.pt")
    assert a["ema"]["updates"] == b["ema"]["updates"] == 4
    for key in a["model"]:
        torch.testing.assert_close(a["model"][key], b["model"][key], msg=key)
        torch.testing.assert_close(a["train_model"][key], b["train_model"][key], msg=key)
    moved = [k for k in a["model"] if a["model"][k].is_floating_point()
             and not torch.equal(a["model"][k], a["train_model"][k])]
    assert moved, "the served weights are the trained ones: no average was taken"
    # detect / eval load the average: `eval` on the run reads its `model` entry.
    assert main(["eval", "--run", str(whole), "--train-split", "train"]) == 0
