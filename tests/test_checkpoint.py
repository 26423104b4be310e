"""Checkpoints (atomic, weights_only, RNG round trip) and darknet's learning-rate policies."""
from __future__ import annotations

import math
import random

import numpy as np
import pytest
import torch
from torch import nn

from yolo9000.checkpoint import (CheckpointError, load_checkpoint, model_state, rng_state, save_checkpoint,
                                 set_rng_state)
from yolo9000.config import ConfigError, TrainConfig
from yolo9000.optim import build_optimizer, build_scheduler, lr_factor


def _draws() -> tuple:
    return random.random(), float(np.random.rand()), float(torch.rand(()))


def test_rng_round_trip_through_weights_only_file(tmp_path):
    random.seed(1), np.random.seed(1), torch.manual_seed(1)
    _draws()
    save_checkpoint({"rng": rng_state(), "step": 3}, tmp_path / "c.pt")
    expected = _draws()
    _draws()  # move every generator on so the restore has to undo something
    state = load_checkpoint(tmp_path / "c.pt")
    set_rng_state(state["rng"])
    assert _draws() == expected
    assert state["step"] == 3 and state["version"] == 1


def test_model_optimizer_scheduler_round_trip(tmp_path):
    torch.manual_seed(0)
    cfg = TrainConfig(lr=0.1, burn_in=2, schedule="steps", steps=(3,), scales=(0.1,))
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    opt = build_optimizer(model, cfg)
    sched = build_scheduler(opt, cfg, total_steps=10)
    for _ in range(4):
        model(torch.randn(2, 3, 8, 8)).square().mean().backward()
        opt.step(), sched.step(), opt.zero_grad()
    save_checkpoint({"model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict()},
                    tmp_path / "c.pt")
    state = load_checkpoint(tmp_path / "c.pt")
    model2 = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    opt2 = build_optimizer(model2, cfg)
    sched2 = build_scheduler(opt2, cfg, total_steps=10)
    model2.load_state_dict(model_state(state))
    opt2.load_state_dict(state["optimizer"])
    sched2.load_state_dict(state["scheduler"])
    assert sched2.last_epoch == 4
    assert opt2.param_groups[0]["lr"] == pytest.approx(0.1 * 0.1)
    # momentum buffers survive: one more identical step gives identical weights
    x = torch.randn(2, 3, 8, 8)
    for m, o in ((model, opt), (model2, opt2)):
        m(x).square().mean().backward()
        o.step()
    for a, b in zip(model.parameters(), model2.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_atomic_write_leaves_no_temp_and_keeps_old_file_on_failure(tmp_path):
    path = tmp_path / "c.pt"
    save_checkpoint({"step": 1}, path)

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        save_checkpoint({"step": 2, "bad": Unpicklable()}, path)
    assert load_checkpoint(path)["step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]


def test_load_errors_name_the_file(tmp_path):
    with pytest.raises(CheckpointError, match="missing.pt does not exist"):
        load_checkpoint(tmp_path / "missing.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="bad.pt is not a PyTorch checkpoint"):
        load_checkpoint(bad)


def test_weights_only_refuses_pickled_objects(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"model": {}, "obj": TrainConfig()}, path)  # a dataclass needs unpickling code: refused
    with pytest.raises(CheckpointError, match="evil.pt holds objects other than tensors") as caught:
        load_checkpoint(path)
    assert "weights_only=False" not in str(caught.value)  # torch's advice would run the file's code


@pytest.mark.parametrize("step,expected", [
    (0, (1 / 4) ** 4), (3, 1.0),           # burn-in ramp (darknet uses the 1-based batch number)
    (4, 1.0), (5, 0.1), (7, 0.1), (8, 0.1 * 0.5),
])
def test_steps_schedule_matches_darknet(step, expected):
    cfg = TrainConfig(burn_in=4, schedule="steps", steps=(5, 8), scales=(0.1, 0.5))
    assert lr_factor(step, cfg, total_steps=10) == pytest.approx(expected)


def test_poly_and_constant():
    poly = TrainConfig(burn_in=0, schedule="poly", power=4.0)
    assert lr_factor(0, poly, 100) == 1.0
    assert lr_factor(50, poly, 100) == pytest.approx(0.5 ** 4)
    assert lr_factor(100, poly, 100) == 0.0
    assert lr_factor(7, TrainConfig(burn_in=0, schedule="constant"), 10) == 1.0
    with pytest.raises(ConfigError, match="train.scales"):
        TrainConfig(burn_in=0, steps=(1, 2), scales=(0.1,))


def test_weight_decay_only_on_weights():
    model = nn.Sequential(nn.Conv2d(3, 4, 3, bias=False), nn.BatchNorm2d(4), nn.Conv2d(4, 2, 1))
    opt = build_optimizer(model, TrainConfig(weight_decay=5e-4))
    decayed = {id(p) for g in opt.param_groups if g["weight_decay"] > 0 for p in g["params"]}
    assert decayed == {id(model[0].weight), id(model[2].weight)}
    assert opt.defaults["momentum"] == 0.9


def test_cosine_schedule_after_burn_in():
    cfg = TrainConfig(burn_in=2, schedule="cosine", final_lr=0.1)
    assert lr_factor(0, cfg, 10) == pytest.approx((1 / 2) ** 4)        # burn-in ramp first
    assert lr_factor(2, cfg, 10) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.2)))
    assert lr_factor(5, cfg, 10) == pytest.approx(0.1 + 0.9 * 0.5)
    assert lr_factor(10, cfg, 10) == pytest.approx(0.1)
    assert lr_factor(12, cfg, 10) == pytest.approx(0.1)                 # past the end: stays at final_lr


def test_fused_adamw_skips_the_update_when_found_inf_is_set():
    """The engine's NaN guard cancels an update through `optimizer.found_inf`; AdamW must honour it like SGD."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    opt = build_optimizer(model, TrainConfig(optimizer="adamw", lr=0.1, momentum=0.8), fused=True)
    assert isinstance(opt, torch.optim.AdamW) and opt.defaults["betas"] == (0.8, 0.999)
    model(torch.randn(2, 3, 8, 8)).sum().backward()
    before = [p.detach().clone() for p in model.parameters()]
    opt.found_inf = torch.tensor(1.0)
    opt.step()
    assert all(torch.equal(a, p) for a, p in zip(before, model.parameters()))
    opt.found_inf = torch.tensor(0.0)
    opt.step()
    assert not torch.equal(before[0], model[0].weight)
    with pytest.raises(ConfigError, match="train.optimizer"):
        TrainConfig(optimizer="lion")
