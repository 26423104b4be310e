"""SGD and darknet's learning-rate policies (paper section 3 "Training"; darknet `network.c: get_current_rate`).

Darknet multiplies the base rate by a burn-in ramp `(step / burn_in) ** 4` for the first `burn_in` batches, then by
the policy: `steps` (multiply by `scales[i]` once step `steps[i]` is passed), `poly` (`(1 - step / total) ** power`)
or `constant`. Steps here count optimizer updates (darknet's `batch_num`), not images.

Not darknet, for short runs (the CPU demo): `cosine` (from 1 down to `final_lr` over the run, after burn-in) and
AdamW (`train.optimizer: adamw`), which reaches a usable tiny model in a few thousand steps where SGD needs more.
"""
from __future__ import annotations

import functools
import math

import torch
from torch import nn

from yolo9000.config import TrainConfig

BURN_IN_POWER = 4.0  # darknet's default `power` used by the burn-in ramp


def lr_factor(step: int, cfg: TrainConfig, total_steps: int) -> float:
    """Multiplier of `cfg.lr` at optimizer update `step` (0-based).

    Args:
        step: number of updates done before this one.
        cfg: burn_in, schedule, steps, scales, power.
        total_steps: the run's length in updates (for `poly`).

    Returns:
        The factor; the learning rate is `cfg.lr * factor`.
    """
    if cfg.burn_in > 0 and step < cfg.burn_in:
        # Darknet evaluates the ramp with the 1-based batch number, so the first update is not at rate 0.
        return ((step + 1) / cfg.burn_in) ** BURN_IN_POWER
    if cfg.schedule == "steps":
        factor = 1.0
        for boundary, scale in zip(cfg.steps, cfg.scales):
            if step >= boundary:
                factor *= scale
        return factor
    if cfg.schedule == "poly":
        return max(0.0, 1.0 - step / max(total_steps, 1)) ** cfg.power
    if cfg.schedule == "cosine":
        progress = min(1.0, step / max(total_steps, 1))
        return cfg.final_lr + (1.0 - cfg.final_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))
    return 1.0


def build_optimizer(model: nn.Module, cfg: TrainConfig, fused: bool = False) -> torch.optim.Optimizer:
    """SGD with momentum (or AdamW with beta1 = momentum) and weight decay on conv/linear weights only.

    Darknet decays every convolution weight but never batch-norm scales or biases; decaying those would shrink the
    normalisation and hurt small models, so they go to a zero-decay group.

    `fused=True` uses the single-kernel SGD or AdamW (CPU and CUDA). The engine wants it for more than speed: a
    fused step honours `optimizer.found_inf` (a device tensor, non-zero = skip), so a non-finite loss can cancel the
    update without the host ever reading the loss.
    """
    decay, no_decay = [], []
    for param in model.parameters():
        if not param.requires_grad:
            continue
        (decay if param.ndim > 1 else no_decay).append(param)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW([g for g in groups if g["params"]], lr=cfg.lr, betas=(cfg.momentum, 0.999),
                                 fused=fused or None)
    return torch.optim.SGD([g for g in groups if g["params"]], lr=cfg.lr, momentum=cfg.momentum,
                           fused=fused or None)


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig,
                    total_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """A LambdaLR over `lr_factor`; its state_dict holds only the step count, so checkpoints stay weights_only."""
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, functools.partial(lr_factor, cfg=cfg, total_steps=total_steps))
