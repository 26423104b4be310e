"""An exponential moving average of the model's weights (`train.ema`), the weights a run's checkpoint serves.

Short runs end while the learning rate still moves the weights from batch to batch; the average of the last few
hundred steps' weights is a better model than the last step's (Polyak averaging, as YOLOv5 and timm train
detectors). The average starts at the first weights and its decay warms up, `decay * (1 - exp(-updates /
warmup))`, so the random initialisation is forgotten within the first steps instead of weighing for thousands.

Every floating-point tensor of the state dict is averaged, batch-norm running statistics included (they belong to
the averaged weights, not to the last step's); integer buffers (batch norm's step count) are copied.
"""
from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn


class WeightEMA:
    """The moving average of `model`'s state, updated after every optimizer step.

    Args:
        model: the trained module (not a DDP wrapper: every rank holds the same weights).
        decay: the decay once warmed up (e.g. 0.999: about the last 1,000 steps).
        warmup: updates over which the decay ramps up from 0.
    """

    def __init__(self, model: nn.Module, decay: float, warmup: int = 200) -> None:
        if not 0 < decay < 1:
            raise ValueError(f"WeightEMA: decay {decay} must lie in (0, 1)")
        self.decay, self.warmup = decay, warmup
        self.updates = 0
        live = model.state_dict()   # detached views of the model's tensors: the optimizer updates them in place
        self.state = {k: v.detach().clone() for k, v in live.items()}
        floats = [k for k, v in live.items() if v.is_floating_point()]
        self._averaged, self._averaged_live = [self.state[k] for k in floats], [live[k] for k in floats]
        self._copied = [(self.state[k], v) for k, v in live.items() if not v.is_floating_point()]

    def current_decay(self) -> float:
        return self.decay * (1 - math.exp(-self.updates / self.warmup))

    @torch.no_grad()
    def update(self) -> None:
        """Move the average towards the model's current state (the tensors it holds since `__init__`)."""
        self.updates += 1
        torch._foreach_lerp_(self._averaged, self._averaged_live, 1 - self.current_decay())
        for average, value in self._copied:
            average.copy_(value)

    def state_dict(self) -> dict[str, Any]:
        return {"updates": self.updates, "decay": self.decay, "warmup": self.warmup}

    def load_state_dict(self, state: dict[str, Any], weights: dict[str, Tensor]) -> None:
        """Restore the counters and the averaged `weights` (a checkpoint's model entry)."""
        self.updates = int(state["updates"])
        for key, value in self.state.items():
            value.copy_(weights[key])
