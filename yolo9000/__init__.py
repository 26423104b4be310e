"""yolo9000: YOLOv2 and YOLO9000 (Redmon & Farhadi, "YOLO9000: Better, Faster, Stronger", 2016) in PyTorch.

    from yolo9000 import Detector, build, load_config, train
    model, criterion, postprocess = build(load_config("yolo9000"))   # what a config means
    detector = Detector.from_run("runs/demo")                        # inference: raw -> detections
    detections = detector("photo.jpg")

Names are imported on first use, so `import yolo9000` stays fast.
"""
from __future__ import annotations

from wordtree._lazy import lazy_exports

__version__ = "0.1.0"

__all__, __getattr__, __dir__ = lazy_exports(__name__, {
    "yolo9000.api": ("Detector", "DetectorOptions", "RandomWeightsWarning"),
    "yolo9000.builder": ("build", "build_model", "build_criterion", "build_postprocess", "resolve_config",
                         "resolve_model_config", "TRUNKS"),
    "yolo9000.config": ("Config", "ModelConfig", "LossConfig", "DataConfig", "TrainConfig", "load_config",
                        "save_config"),
    "yolo9000.errors": ("Yolo9000Error", "ConfigError", "CheckpointError", "WeightsError", "DatasetError",
                        "DescriptorError", "ImageLoadError"),
    "yolo9000.resources": ("config_file", "dataset_file"),
    "yolo9000.engine": ("train", "TrainResult"),
    "yolo9000.evaluate": ("evaluate_detection", "evaluate_classification", "coco_map"),
    "yolo9000.postprocess": ("PostProcess", "DecisionScorer", "CategoryScorer", "Detection", "PathStep", "Kept"),
    "yolo9000.decode": ("decode",),
    "yolo9000.model.load": ("load_weights",),
})
