"""Devices and precision: which device a spec names, and the autocast context of `train.amp`.

Its own module so the engine, evaluation, the API and the commands share it without importing each other.
"""
from __future__ import annotations

import contextlib
import warnings

import torch

from yolo9000.errors import ConfigError

__all__ = ["autocast", "cpu_has_bf16", "resolve_amp", "select_device"]


def select_device(spec: str | torch.device = "auto", local_rank: int = 0) -> torch.device:
    """`auto`: CUDA (this process's local GPU) when present, else CPU; otherwise the named device.

    Raises:
        ConfigError: a CUDA device on a machine without CUDA.
    """
    if str(spec) == "auto":
        return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    device = torch.device(spec)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {spec}: CUDA is not available on this machine (use auto or cpu)")
    return device


def cpu_has_bf16() -> bool:
    """Whether this CPU computes in bf16 (AVX512-BF16 or AMX), as oneDNN sees it."""
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def resolve_amp(device: torch.device, amp: str) -> str:
    """`train.amp` for `device`: "auto" becomes "bf16" where the hardware computes in bf16 (CPUs with AVX512-BF16
    or AMX: 2-4x faster convolutions here; GPUs since Ampere), "fp16" on older GPUs, "off" elsewhere."""
    if amp == "auto":
        if device.type == "cuda":
            return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        return "bf16" if device.type == "cpu" and cpu_has_bf16() else "off"
    if amp == "fp16" and device.type != "cuda":
        raise ConfigError("train.amp=fp16 needs CUDA (fp16 with a GradScaler); use train.amp=bf16 on CPU")
    if amp == "bf16" and device.type == "cpu" and not cpu_has_bf16():
        warnings.warn(f"train.amp=bf16: this CPU has no bf16 instructions (neither AVX512-BF16 nor AMX; torch sees "
                      f"{torch.backends.cpu.get_cpu_capability()}), so bf16 is emulated and trains 2-4x slower than "
                      "float32; train.amp=auto trains in float32 here", stacklevel=2)
    return amp


def autocast(device: torch.device, amp: str) -> contextlib.AbstractContextManager:
    """The autocast context of `train.amp` ("auto", "off", "bf16", "fp16") on `device`."""
    amp = resolve_amp(device, amp)
    if amp == "off":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16 if amp == "bf16" else torch.float16)
