"""Dataset category -> label index (a WordTree node, or a flat class index when there is no tree).

A class map is one of:
  * a darknet `.map` file: line k holds the tree index of the dataset's k-th category (darknet's `coco9k.map`);
  * a YAML mapping `category -> wnid` (or -> tree index), categories given by name or id;
  * nothing: category names that are wnids map to their tree node (ImageNet), otherwise, with no tree,
    categories get flat indices in their given order.
Categories that map nowhere return no entry: sources skip them and report counts, never relabel silently.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path


from wordtree.io import read_map
from wordtree.tree import WordTree
from yolo9000.errors import ClassMapError  # noqa: F401  (re-exported)
from yolo9000.yaml_io import read_yaml


def _tree_index(value: object, tree: WordTree | None, source: str) -> int:
    if isinstance(value, int):
        if tree is not None and not 0 <= value < tree.num_nodes:
            raise ClassMapError(f"{source}: index {value} outside the tree (0..{tree.num_nodes - 1})")
        return value
    if tree is None:
        raise ClassMapError(f"{source}: maps to wnid {value!r} but no tree is given")
    if value not in tree:
        raise ClassMapError(f"{source}: wnid {value!r} is not in the tree ({tree.num_nodes} nodes)")
    return tree.index(str(value))


def _read_yaml_map(path: Path) -> object:
    return read_yaml(path, ClassMapError, "a YAML class map")


def category_labels(categories: Sequence[tuple[int, str]], tree: WordTree | None,
                    class_map: str | Path | dict | None = None) -> dict[int, int]:
    """Label index for each dataset category.

    Args:
        categories: (category id, name) in the dataset's canonical order (COCO: sorted by id = `coco.names` order).
        tree: the WordTree labels index into, or None for flat labels.
        class_map: a darknet `.map` path, a YAML path, a dict, or None (see module docstring).
    Returns:
        {category id: label index}; categories that map nowhere are absent.
    """
    if class_map is None:
        if tree is None:
            return {cid: k for k, (cid, _) in enumerate(categories)}
        return {cid: tree.index(name) for cid, name in categories if name in tree}
    if isinstance(class_map, (str, Path)) and Path(class_map).suffix == ".map":
        indices = read_map(class_map, tree)
        if len(indices) < len(categories):
            raise ClassMapError(f"{class_map}: {len(indices)} lines for {len(categories)} categories")
        return {cid: indices[k] for k, (cid, _) in enumerate(categories)}
    source = str(class_map) if not isinstance(class_map, dict) else "class_map"
    mapping = class_map if isinstance(class_map, dict) else _read_yaml_map(Path(class_map))
    if not isinstance(mapping, dict):
        raise ClassMapError(f"{source}: expected a mapping category -> wnid")
    out = {}
    for cid, name in categories:
        key = name if name in mapping else cid if cid in mapping else str(cid) if str(cid) in mapping else None
        if key is not None:
            out[cid] = _tree_index(mapping[key], tree, f"{source} entry {key!r}")
    return out
