"""yolo9000: YOLOv2 and YOLO9000 (Redmon & Farhadi, "YOLO9000: Better, Faster, Stronger", 2016) in PyTorch."""

__version__ = "0.1.0"
