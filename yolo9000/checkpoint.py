"""Training checkpoints: atomic writes, `weights_only` loads, and the RNG state needed for exact resume.

A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts (no pickled classes), so
`torch.load(weights_only=True)` can read it:

    {"model": state_dict, "optimizer": ..., "scheduler": ..., "sampler": ..., "rng": rng_state(),
     "step": int, "seen": int, "config": dict, "version": 1}
"""
from __future__ import annotations

import os
import random
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from yolo9000.errors import CheckpointError  # noqa: F401  (re-exported)

CHECKPOINT_VERSION = 1


def save_checkpoint(state: dict[str, Any], path: str | Path) -> Path:
    """Write `state` to `path` atomically: a temp file in the same folder, fsync, then rename over the target.

    A run killed mid-write (SIGKILL, power loss) leaves either the previous checkpoint or the new one, never a
    truncated file, because `os.replace` is atomic within one filesystem.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save({"version": CHECKPOINT_VERSION, **state}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint with `torch.load(weights_only=True)` (no arbitrary code runs on load)."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # torch raises several types for corrupt or non-checkpoint files
        raise CheckpointError(f"checkpoint {path} could not be read: {err}") from err
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint {path} holds a {type(state).__name__}, expected a dict")
    return state


def model_state(state: dict[str, Any], path: str | Path = "checkpoint") -> dict[str, torch.Tensor]:
    """The model's state_dict from a checkpoint dict (our format) or a bare state_dict."""
    if "model" in state and isinstance(state["model"], dict):
        return state["model"]
    if all(isinstance(v, torch.Tensor) for v in state.values()):
        return state
    raise CheckpointError(f"{path}: no 'model' entry (keys: {', '.join(sorted(map(str, state)))})")


def rng_state() -> dict[str, Any]:
    """Every RNG a training step may draw from: Python, NumPy, torch CPU and (when present) CUDA.

    NumPy's state is stored as a tensor plus numbers so the checkpoint stays loadable with weights_only.
    """
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached": float(cached)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what `rng_state()` captured."""
    py = state["python"]
    # weights_only loading turns the inner tuple into a list; random.setstate needs tuples.
    random.setstate((py[0], tuple(py[1]), py[2]))
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])
