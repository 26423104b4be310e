"""WordTree: class hierarchies built from WordNet, as in YOLO9000 (Redmon & Farhadi, 2016, section 4).

This package knows nothing about detection: it builds, reads, writes, validates and queries trees, and
provides the batched tensor ops of the hierarchical softmax.

    from wordtree import load_tree, grouped_log_softmax, decide
    tree = load_tree("my.tree")                      # or "9k", a .json; one loader for every command
    node = tree.resolve_one("dog")                   # one resolver: index, wnid, name

Names are imported on first use, so `import wordtree` stays fast.
"""
from __future__ import annotations

from wordtree._lazy import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(__name__, {
    "wordtree.tree": ("WordTree", "TreeBuffers"),
    "wordtree.errors": ("WordTreeError", "TreeError", "NodeError", "AmbiguousNodeError", "WordNetError", "InputError"),
    "wordtree.build": ("build_tree", "BuildResult", "Overrides"),
    "wordtree.io": ("load_tree", "load", "read_darknet", "write_darknet", "read_json", "write_json", "read_map",
                    "write_map", "to_json", "from_json"),
    "wordtree.ops": ("grouped_log_softmax", "absolute_log_probs", "absolute_probs", "tree_nll", "decide",
                     "decision_path", "subtree_prob", "topk_leaves"),
    "wordtree.wordnet": ("WordNet",),
})
