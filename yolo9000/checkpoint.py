"""Training checkpoints: atomic writes, `weights_only` loads, and the RNG state needed for exact resume.

A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts (no pickled classes), so
`torch.load(weights_only=True)` can read it:

    {"model": state_dict, "optimizer": ..., "scheduler": ..., "sampler": ..., "rng": rng_state(),
     "step": int, "seen": int, "config": dict, "version": 1}
"""
from __future__ import annotations

import os
import pickle
import random
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from yolo9000.errors import CheckpointError, NonFiniteStateError  # noqa: F401  (re-exported)

CHECKPOINT_VERSION = 1


def save_checkpoint(state: dict[str, Any], path: str | Path) -> Path:
    """Write `state` to `path` atomically: a temp file in the same folder, fsync, then rename over the target.

    A run killed mid-write (SIGKILL, power loss) leaves either the previous checkpoint or the new one, never a
    truncated file, because `os.replace` is atomic within one filesystem.

    Raises:
        NonFiniteStateError: the model holds NaN or infinity; nothing is written, so the previous checkpoint (the
            last good state) stays.
    """
    path = Path(path)
    if isinstance(state.get("model"), dict):
        try:
            check_finite(state["model"], path)
        except CheckpointError as err:
            raise NonFiniteStateError(f"not saved: {err}; {path} keeps the previous state") from None
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


ZIP_MAGIC = b"PK\x03\x04"   # torch.save's format since 1.6
PICKLE_PROTOCOL_2 = 0x80     # the first byte of torch's legacy (pre-zip) format


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint with `torch.load(weights_only=True)` (no arbitrary code runs on load).

    Raises:
        CheckpointError: one line naming the file: missing, empty, not a PyTorch file, corrupt, or holding
            objects other than tensors and plain data (refused, since loading those could run code).
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError as err:
        raise CheckpointError(f"checkpoint {path} cannot be read ({err.strerror or err})") from None
    if not head:
        raise CheckpointError(f"checkpoint {path} is empty (0 bytes)")
    if head != ZIP_MAGIC and head[0] != PICKLE_PROTOCOL_2:
        raise CheckpointError(f"checkpoint {path} is not a PyTorch checkpoint ({path.stat().st_size} bytes, neither "
                              "a torch.save zip archive nor a legacy pickle)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)   # torch's notes on pickle protocols: noise here
            state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        # torch's message advises weights_only=False: wrong here, that would run whatever the file holds.
        if "Unsupported global" in str(err):
            raise CheckpointError(f"checkpoint {path} holds objects other than tensors and plain data; refused "
                                  "(loading them could run code)") from None
        raise CheckpointError(f"checkpoint {path} is corrupt or not a checkpoint (unreadable pickle data)") from None
    except Exception as err:  # torch raises several types for corrupt or truncated files
        raise CheckpointError(f"checkpoint {path} is corrupt or truncated ({_first_line(err)})") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint {path} holds a {type(state).__name__}, expected a dict")
    return state


def _first_line(err: BaseException) -> str:
    lines = [line for line in str(err).splitlines() if line.strip()]
    return lines[0].strip() if lines else type(err).__name__


def check_finite(tensors: dict[str, torch.Tensor], path: str | Path) -> None:
    """CheckpointError naming the file and the first floating-point tensor holding NaN or infinity: such weights
    give no detections and no useful gradients, so they are never loaded, resumed or called a good state."""
    for key, value in tensors.items():
        if isinstance(value, torch.Tensor) and value.is_floating_point() and not torch.isfinite(value).all():
            bad = int((~torch.isfinite(value)).sum())
            raise CheckpointError(f"{path}: tensor {key} holds {bad} non-finite values (NaN or infinity) of "
                                  f"{value.numel()}: these weights are broken")


def model_state(state: dict[str, Any], path: str | Path = "checkpoint") -> dict[str, torch.Tensor]:
    """The model's state_dict from a checkpoint dict (our format) or a bare state_dict; CheckpointError when it
    holds non-finite values."""
    if "model" in state and isinstance(state["model"], dict):
        check_finite(state["model"], path)
        return state["model"]
    if state and all(isinstance(v, torch.Tensor) for v in state.values()):
        check_finite(state, path)
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
