"""Trunks, heads and layers; `yolo9000.builder` assembles them. The networks return raw tensors."""
from yolo9000.model.darknet19 import Darknet19
from yolo9000.model.layers import ConvBNLeaky, DarknetBatchNorm2d, MaxPoolDarknet, Reorg
from yolo9000.model.yolo import Classifier, YOLODetector

__all__ = ["Darknet19", "Classifier", "YOLODetector", "ConvBNLeaky", "DarknetBatchNorm2d", "MaxPoolDarknet", "Reorg"]
