"""Load weights into a built network: our checkpoints (`.pt`) or darknet `.weights`, chosen by the file suffix.

Our checkpoints are read with `torch.load(weights_only=True)` (yolo9000/checkpoint.py), so loading a file never
runs code from it. Darknet files go through `yolo9000.darknet` (header, `seen`, per-layer floats). A checkpoint
trained for another architecture (another tree, class count, width or anchor count) fails with the first
parameter whose shape differs, both shapes, and what the checkpoint was trained for.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from yolo9000.checkpoint import CheckpointError, check_finite, load_checkpoint, model_state
from yolo9000.errors import WeightsError  # noqa: F401  (re-exported)

DARKNET_SUFFIX = ".weights"
# Wrappers that prefix every key: DistributedDataParallel ("module.") and torch.compile ("_orig_mod.").
_WRAPPER_PREFIXES = ("module.", "_orig_mod.")
TRUNK_PREFIX = "trunk."


def _strip_wrappers(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {}
    for key, value in state.items():
        for prefix in _WRAPPER_PREFIXES:
            while key.startswith(prefix):
                key = key[len(prefix):]
        out[key] = value
    return out


def trained_for(checkpoint: dict[str, Any]) -> str:
    """A short description of the model a checkpoint was trained for, from its saved config (if any)."""
    config = checkpoint.get("config")
    model = config.get("model") if isinstance(config, dict) else None
    if not isinstance(model, dict):
        return "unknown (the checkpoint stores no model config)"
    parts = [f"kind={model.get('kind')}"]
    if model.get("tree"):
        parts.append(f"tree={model['tree']}")
    else:
        parts.append(f"num_classes={model.get('num_classes')}")
    parts.append(f"width={model.get('width')}")
    parts.append(f"depth={model.get('depth')}")
    if model.get("anchors") is not None:
        parts.append(f"anchors={len(model['anchors'])}")
    return ", ".join(parts)


def _check_fit(model_keys: dict[str, torch.Tensor], state: dict[str, torch.Tensor], path: Path,
               checkpoint: dict[str, Any]) -> None:
    """Raise WeightsError on the first shape mismatch, then on missing or unexpected keys."""
    for key, expected in model_keys.items():
        if key in state and tuple(state[key].shape) != tuple(expected.shape):
            raise WeightsError(
                f"{path}: parameter {key} has shape {tuple(state[key].shape)} in the checkpoint but "
                f"{tuple(expected.shape)} in the model; the checkpoint was trained for {trained_for(checkpoint)}")
    missing = [k for k in model_keys if k not in state]
    unexpected = [k for k in state if k not in model_keys]
    if missing or unexpected:
        detail = []
        if missing:
            detail.append(f"{len(missing)} model parameters missing from the checkpoint (first: {missing[0]})")
        if unexpected:
            detail.append(f"{len(unexpected)} checkpoint entries the model lacks (first: {unexpected[0]})")
        raise WeightsError(f"{path}: {'; '.join(detail)}; the checkpoint was trained for {trained_for(checkpoint)}")


def _check_anchors(model_keys: dict[str, torch.Tensor], state: dict[str, torch.Tensor], path: Path) -> None:
    """The config is the anchors' one source of truth: a checkpoint trained with other anchors does not fit."""
    if "anchors" in model_keys and "anchors" in state and not torch.allclose(
            state["anchors"].float().cpu(), model_keys["anchors"].float().cpu(), rtol=1e-6, atol=0):
        saved = [[round(v, 5) for v in a] for a in state["anchors"].tolist()]
        raise WeightsError(f"{path}: the checkpoint was trained with anchors {saved}, the config's model.anchors "
                           f"are {[[round(v, 5) for v in a] for a in model_keys['anchors'].tolist()]}; set "
                           "model.anchors to the checkpoint's (its run's config.yaml has them)")


def load_weights(model: nn.Module, path: str | Path, trunk_only: bool = False) -> dict[str, Any]:
    """Load weights into `model` in place.

    Args:
        model: a network from `yolo9000.builder.build_model`.
        path: our checkpoint (any suffix but `.weights`: a training checkpoint or a bare state_dict) or a darknet
            `.weights` file.
        trunk_only: load only the Darknet-19 trunk (the YOLO9000 recipe: a classifier's trunk into a detector);
            the rest of the model keeps its initialisation.
    Returns:
        {"format": "checkpoint" | "darknet", "path", "seen", "step" (checkpoints; None if absent),
         "tensors": how many tensors were loaded, "trunk_only"}.
    Raises:
        WeightsError: a parameter's shape differs (first mismatch, both shapes, what the checkpoint was trained
            for), keys are missing or unexpected, or the checkpoint's anchors are not the config's.
        CheckpointError: the file is missing or unreadable.
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"weights file {path} does not exist")
    if path.suffix == DARKNET_SUFFIX:
        return _load_darknet(model, path, trunk_only)
    checkpoint = load_checkpoint(path)
    state = _strip_wrappers(model_state(checkpoint, path))
    target = model.state_dict()
    if trunk_only:
        if not hasattr(model, "trunk"):
            raise WeightsError(f"{path}: trunk_only needs a model with a Darknet-19 trunk, got {type(model).__name__}")
        state = {k[len(TRUNK_PREFIX):]: v for k, v in state.items() if k.startswith(TRUNK_PREFIX)}
        if not state:
            raise WeightsError(f"{path}: no '{TRUNK_PREFIX}*' entries to load into the trunk; the checkpoint was "
                               f"trained for {trained_for(checkpoint)}")
        target = model.trunk.state_dict()
        _check_fit(target, state, path, checkpoint)
        model.trunk.load_state_dict(state)
    else:
        _check_fit(target, state, path, checkpoint)
        _check_anchors(target, state, path)
        model.load_state_dict(state)
    return {"format": "checkpoint", "path": str(path), "seen": checkpoint.get("seen"), "step": checkpoint.get("step"),
            "tensors": len(state), "trunk_only": trunk_only}


def _load_darknet(model: nn.Module, path: Path, trunk_only: bool) -> dict[str, Any]:
    # Imported here: darknet I/O is only needed for .weights files.
    from yolo9000 import darknet

    if trunk_only:
        seen = darknet.load_darknet_trunk(model, path)
    else:
        seen = darknet.load_darknet_weights(model, path)
    check_finite((model.trunk if trunk_only else model).state_dict(), path)
    tensors = len((model.trunk if trunk_only else model).state_dict())
    return {"format": "darknet", "path": str(path), "seen": int(seen), "step": None, "tensors": tensors,
            "trunk_only": trunk_only}
