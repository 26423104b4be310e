"""Resolve a tree spec from a config (`"9k"`, a `.tree`/`.json` path, or None for a flat model) to a WordTree."""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from wordtree.io import load, read_darknet
from wordtree.tree import WordTree
from yolo9000.reference import darknet_file
from wordtree.errors import TreeError

DARKNET_9K = "9k"


@lru_cache(maxsize=8)
def _load_cached(spec: str) -> WordTree:
    if spec == DARKNET_9K:
        return read_darknet(darknet_file("9k.tree"), darknet_file("9k.names"))
    path = Path(spec).expanduser()
    if not path.exists():
        raise TreeError(f"tree file {path} does not exist (give a .tree or .json file, or '9k' for darknet's)")
    return load(path)


def load_tree(spec: str | Path | None) -> WordTree | None:
    """The WordTree named by a config's `tree` value, or None for a flat model. Cached: trees are immutable."""
    if spec is None:
        return None
    return _load_cached(str(spec))
