"""Darknet-19, YOLOv2 and YOLO9000 networks. They return raw tensors."""
