"""Darknet-19, YOLOv2 and YOLO9000 networks. They return raw tensors."""
from yolo9000.model.build import build_model, num_outputs
from yolo9000.model.darknet19 import Darknet19, Darknet19Classifier
from yolo9000.model.layers import ConvBNLeaky, DarknetBatchNorm2d, MaxPoolDarknet, Reorg
from yolo9000.model.yolo import YOLODetector

__all__ = ["build_model", "num_outputs", "Darknet19", "Darknet19Classifier", "YOLODetector", "ConvBNLeaky",
           "DarknetBatchNorm2d", "MaxPoolDarknet", "Reorg"]
