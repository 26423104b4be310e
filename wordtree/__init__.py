"""WordTree: class hierarchies built from WordNet, as in YOLO9000 (Redmon & Farhadi, 2016, section 4).

This package knows nothing about detection: it builds, reads, writes, validates and queries trees, and
provides the batched tensor ops of the hierarchical softmax.
"""
