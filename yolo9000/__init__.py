"""yolo9000: YOLOv2 and YOLO9000 (Redmon & Farhadi, "YOLO9000: Better, Faster, Stronger", 2016) in PyTorch.

    from yolo9000 import Detector, build, load_config, train
    model, criterion, postprocess = build(load_config("configs/yolo9000.yaml"))   # what a config means
    detector = Detector.from_run("runs/demo")                                     # inference: raw -> detections
    detections = detector("photo.jpg")

Names are imported on first use, so `import yolo9000` stays fast.
"""
from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "yolo9000.api": ("Detector", "DetectorOptions", "RandomWeightsWarning"),
    "yolo9000.builder": ("build", "build_model", "build_criterion", "build_postprocess", "resolve_config",
                       "resolve_model_config", "TRUNKS"),
    "yolo9000.config": ("Config", "ModelConfig", "LossConfig", "DataConfig", "TrainConfig", "ConfigError",
                        "load_config", "save_config"),
    "yolo9000.engine": ("train", "TrainResult"),
    "yolo9000.evaluate": ("evaluate_detection", "evaluate_classification", "coco_map"),
    "yolo9000.postprocess": ("PostProcess", "DecisionScorer", "CategoryScorer", "Detection", "PathStep", "Kept"),
    "yolo9000.decode": ("decode",),
    "yolo9000.model.load": ("load_weights", "WeightsError"),
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = sorted(_MODULE_OF)


def __getattr__(name: str) -> Any:
    if name not in _MODULE_OF:
        raise AttributeError(f"module 'yolo9000' has no attribute {name!r}")
    value = getattr(importlib.import_module(_MODULE_OF[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
