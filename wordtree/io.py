"""Darknet tree files (`.tree`, `.names`, `.labels`, `.map`) and a JSON form.

`.tree`: one node per line, `<wnid> <parent_index>`, parent -1 for roots; line number = node index.
`.names`: display names, same order. `.labels`: the wnid column. `.map`: one tree index per line (class k -> node).
"""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Sequence

from wordtree.tree import TreeError, WordTree


def parse_tree_lines(lines: Sequence[str], source: str = "tree") -> tuple[list[str], list[int]]:
    """Parse `.tree` lines into wnids and parent indices, naming the 1-based line of any malformed row."""
    wnids, parents = [], []
    for i, line in enumerate(lines):
        fields = line.split()
        if len(fields) != 2:
            raise TreeError(f"{source} line {i + 1}: wrong line format {line.rstrip()!r}: "
                            "expected '<wnid> <parent_index>'")
        try:
            parents.append(int(fields[1]))
        except ValueError:
            raise TreeError(f"{source} line {i + 1}: wrong line format {line.rstrip()!r}: parent index "
                            f"{fields[1]!r} is not an integer") from None
        wnids.append(fields[0])
    return wnids, parents


def read_text(path: str | Path, error: type[Exception] = TreeError) -> str:
    """UTF-8 text with a leading BOM stripped (an editor's BOM would otherwise stick to the first wnid); `error`
    naming the file when it does not exist, is not UTF-8 or cannot be read."""
    path = Path(path)
    try:
        return path.read_bytes().decode("utf-8-sig")
    except FileNotFoundError:
        raise error(f"{path} does not exist") from None
    except UnicodeDecodeError as err:
        raise error(f"{path}: not UTF-8 text (byte {err.start})") from None
    except OSError as err:
        raise error(f"{path}: cannot read ({err.strerror or err})") from None


def _read_lines(path: Path) -> list[str]:
    # darknet's fgetl + sscanf ignores a trailing CR; so do we. A final newline does not make an empty node.
    text = read_text(path)
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [ln.rstrip("\r") for ln in lines]


def read_darknet(tree_path: str | Path, names_path: str | Path | None = None) -> WordTree:
    """Read darknet's `.tree` (and optionally `.names`; default: `<stem>.names` beside it when present)."""
    tree_path = Path(tree_path)
    wnids, parents = parse_tree_lines(_read_lines(tree_path), source=str(tree_path))
    if not wnids:
        raise TreeError(f"{tree_path}: empty tree file (no '<wnid> <parent_index>' line)")
    if names_path is None:
        guess = tree_path.with_suffix(".names")
        names_path = guess if guess.exists() else None
    names = None
    if names_path is not None:
        names = _read_lines(Path(names_path))
        if len(names) != len(wnids):
            raise TreeError(f"{names_path}: names file has {len(names)} lines but {tree_path} has {len(wnids)} nodes")
    return WordTree.from_parents(wnids, parents, names, source=str(tree_path))


def write_darknet(tree: WordTree, prefix: str | Path) -> list[Path]:
    """Write `PREFIX.tree`, `PREFIX.names`, `PREFIX.labels`; returns the paths written."""
    prefix = Path(prefix)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    out = []
    rows = {
        ".tree": [f"{w} {p}" for w, p in zip(tree.wnids, tree.parent.tolist())],
        ".names": list(tree.names),
        ".labels": list(tree.wnids),
    }
    for suffix, lines in rows.items():
        path = prefix.with_name(prefix.name + suffix)
        path.write_text("".join(line + "\n" for line in lines))
        out.append(path)
    return out


def tree_text(tree: WordTree) -> str:
    """The exact `.tree` file text (byte-identical to darknet's `9k.tree` for that tree)."""
    return "".join(f"{w} {p}\n" for w, p in zip(tree.wnids, tree.parent.tolist()))


def read_map(path: str | Path, tree: WordTree | None = None) -> list[int]:
    """darknet `.map`: line k = tree index of class k (darknet's `read_map`). Checked against `tree` if given."""
    out = []
    for i, line in enumerate(_read_lines(Path(path))):
        try:
            out.append(int(line.strip()))
        except ValueError:
            raise TreeError(f"{path} line {i + 1}: {line!r} is not a tree index") from None
        if tree is not None and not 0 <= out[-1] < tree.num_nodes:
            raise TreeError(f"{path} line {i + 1}: index {out[-1]} outside the tree (0..{tree.num_nodes - 1})")
    return out


def write_map(indices: Sequence[int], path: str | Path) -> None:
    Path(path).write_text("".join(f"{i}\n" for i in indices))


def to_json(tree: WordTree) -> dict:
    return {"format": "wordtree/1", "nodes": [
        {"wnid": w, "name": n, "parent": p} for w, n, p in zip(tree.wnids, tree.names, tree.parent.tolist())]}


def from_json(data: dict, source: str = "json") -> WordTree:
    if data.get("format") != "wordtree/1":
        raise TreeError(f"{source}: not a wordtree JSON (format {data.get('format')!r}, expected 'wordtree/1')")
    nodes = data.get("nodes")
    if not isinstance(nodes, list) or not nodes:
        raise TreeError(f"{source}: 'nodes' must be a non-empty list")
    for i, node in enumerate(nodes):
        if not isinstance(node, dict):
            raise TreeError(f"{source} node {i}: expected an object with wnid, name and parent")
        missing = {"wnid", "name", "parent"} - set(node)
        if missing:
            raise TreeError(f"{source} node {i}: missing {sorted(missing)}")
        if not isinstance(node["parent"], int) or isinstance(node["parent"], bool):
            raise TreeError(f"{source} node {i}: parent {node['parent']!r} is not an integer")
    return WordTree.from_parents([n["wnid"] for n in nodes], [int(n["parent"]) for n in nodes],
                                 [n["name"] for n in nodes], source=source)


def write_json(tree: WordTree, path: str | Path) -> None:
    Path(path).write_text(json.dumps(to_json(tree), indent=1))


def read_json(path: str | Path) -> WordTree:
    try:
        data = json.loads(read_text(Path(path)))
    except json.JSONDecodeError as err:
        raise TreeError(f"{path} line {err.lineno}: not valid JSON ({err.msg})") from None
    if not isinstance(data, dict):
        raise TreeError(f"{path}: not a wordtree JSON (a {type(data).__name__}, expected an object)")
    return from_json(data, source=str(path))


def load(path: str | Path) -> WordTree:
    """Load a tree from `.tree` (darknet) or `.json`."""
    path = Path(path)
    if path.suffix == ".json":
        return read_json(path)
    return read_darknet(path)


DARKNET_9K = "9k"


@lru_cache(maxsize=16)
def _load_cached(spec: str, stamp: tuple[int, int] | None) -> WordTree:
    if spec == DARKNET_9K:
        from yolo9000.reference import darknet_file  # lazy: only darknet's own tree needs the reference data
        return read_darknet(darknet_file("9k.tree"), darknet_file("9k.names"))
    return load(spec)


def load_tree(spec: str | Path | None) -> WordTree | None:
    """The one tree loader: a config's or a command's tree spec to a WordTree.

    Args:
        spec: None (a flat model: returns None), "9k" (darknet's 9k.tree and 9k.names from the reference data of
            `yolo9000 setup`), or the path of a darknet `.tree` (its `.names` beside it is used when present) or a
            `.json` tree.
    Raises:
        TreeError: the file does not exist, or breaks a tree invariant (names the file and line).
    Trees are immutable, so a spec is read once (again if the file changes).
    """
    if spec is None:
        return None
    spec = str(spec)
    if spec == DARKNET_9K:
        return _load_cached(spec, None)
    path = Path(spec).expanduser()
    if not path.is_file():
        raise TreeError(f"tree file {spec} does not exist (give a .tree or .json file, or '9k' for darknet's tree)")
    stat = path.stat()
    return _load_cached(str(path), (stat.st_mtime_ns, stat.st_size))
