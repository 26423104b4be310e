"""Validate a darknet tree set as users hand-edit it: PREFIX.tree, PREFIX.names, PREFIX.labels, PREFIX.map.

`WordTree.from_parents` stops at the first broken invariant, which is right for loading; an editor wants every problem
at once, each with its file and line, like a compiler. Checked here:

  every file   UTF-8 with no byte-order mark (darknet would read the BOM into the first wnid), not empty, no blank
               lines (darknet reads a blank line as a node or a class)
  .tree        `<wnid> <parent>` rows; wnids look like n02084071 and are unique; parents in -1..N-1 (not dangling);
               no cycles; parents before children; each parent's children contiguous (darknet's sibling groups)
  .labels      the .tree's wnid column, line for line
  .names       one name per node; a name differing from every WordNet lemma of its wnid is reported (WordNet given)
  .map         one tree index per line, each in 0..N-1
  WordNet      (when given) every wnid is a WordNet 3.0 noun
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from wordtree.errors import InputError
from wordtree.wordnet import WordNet

_WNID = re.compile(r"^n\d{8}$")
SUFFIXES = (".tree", ".labels", ".names", ".map")


@dataclass(frozen=True)
class Problem:
    file: str
    line: int          # 1-based; 0 for the file as a whole
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.message}" if self.line else f"{self.file}: {self.message}"


def _lines(path: Path, problems: list[Problem]) -> list[str] | None:
    """The file's lines (CRs dropped as darknet's fgetl does), after the whole-file checks; None if unreadable."""
    data = path.read_bytes()
    if data.startswith(b"\xef\xbb\xbf"):
        problems.append(Problem(str(path), 1, "UTF-8 byte-order mark at the start (darknet reads it into the first "
                                              "entry): save the file without BOM"))
        data = data[3:]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data[:err.start].count(b"\n") + 1
        problems.append(Problem(str(path), line, f"not UTF-8 text ({err.reason} at byte {err.start})"))
        return None
    if not text.strip():
        problems.append(Problem(str(path), 0, "empty file"))
        return None
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()  # the final newline does not make a line
    lines = [ln.rstrip("\r") for ln in lines]
    for i, ln in enumerate(lines):
        if not ln.strip():
            problems.append(Problem(str(path), i + 1, "blank line (darknet would read it as an entry)"))
    return lines


def _check_tree(path: Path, lines: list[str], problems: list[Problem]) -> tuple[list[str], list[int]]:
    """Rows of .tree -> (wnids, parents), -2 marking unparseable parents; every structural problem reported."""
    file = str(path)
    wnids, parents = [], []
    for i, ln in enumerate(lines):
        fields = ln.split()
        if not fields:
            wnids.append("")
            parents.append(-2)
            continue
        wnids.append(fields[0])
        if len(fields) != 2:
            problems.append(Problem(file, i + 1, f"expected '<wnid> <parent index>', got {ln.strip()!r}"))
            parents.append(-2)
            continue
        try:
            parents.append(int(fields[1]))
        except ValueError:
            problems.append(Problem(file, i + 1, f"parent {fields[1]!r} is not an integer"))
            parents.append(-2)
        if not _WNID.match(fields[0]):
            problems.append(Problem(file, i + 1, f"{fields[0]!r} is not a wnid like n02084071"))
    n = len(wnids)
    first: dict[str, int] = {}
    for i, w in enumerate(wnids):
        if w and w in first:
            problems.append(Problem(file, i + 1, f"duplicate wnid {w} (first at line {first[w] + 1})"))
        first.setdefault(w, i)
    valid = [p if -1 <= p < n else -2 for p in parents]
    for i, p in enumerate(parents):
        if p != -2 and not -1 <= p < n:
            problems.append(Problem(file, i + 1, f"dangling parent {p} for {wnids[i]} (the tree has {n} nodes, "
                                                 f"lines 0..{n - 1} as indices)"))
    # Cycles: follow parents from every node; colour 1 = on the current walk, 2 = known to reach a root.
    state = [0] * n
    in_cycle: set[int] = set()
    for start in range(n):
        walk, j = [], start
        while j >= 0 and state[j] == 0:
            state[j] = 1
            walk.append(j)
            j = valid[j]
        if j >= 0 and state[j] == 1:  # closed a loop on this walk
            loop = walk[walk.index(j):]
            in_cycle.update(loop)
            if len(loop) == 1:
                problems.append(Problem(file, j + 1, f"cycle: {wnids[j]} is its own parent"))
            else:
                chain = " -> ".join(f"{wnids[k]} (line {k + 1})" for k in loop[:6])
                problems.append(Problem(file, min(loop) + 1, f"cycle of {len(loop)} nodes: {chain} -> back to "
                                                             f"{wnids[loop[0]]}{' ...' if len(loop) > 6 else ''}"))
        for k in walk:
            state[k] = 2
    for i, p in enumerate(valid):
        if p > i and i not in in_cycle:
            problems.append(Problem(file, i + 1, f"parent after child: {wnids[i]}'s parent {wnids[p]} is at line "
                                                 f"{p + 1}; parents must come before their children"))
    owner: dict[int, int] = {}
    for i, p in enumerate(valid):
        if p == -2:
            continue
        if i and p == valid[i - 1]:
            continue
        if p in owner:
            whose = "the roots" if p < 0 else f"{wnids[p]} (line {p + 1})"
            problems.append(Problem(file, i + 1, f"siblings not contiguous: children of {whose} start at line "
                                                 f"{owner[p] + 1} and again here"))
        else:
            owner[p] = i
    return wnids, valid


def validate(prefix: str | Path, wordnet: WordNet | None = None, maps: list[Path] | tuple[Path, ...] = ()
             ) -> tuple[list[Problem], list[Path]]:
    """Every problem of the tree set at `prefix` (PREFIX.tree required; .labels, .names, .map when present).

    Args:
        prefix: path without suffix (`data/9k` for data/9k.tree ...); a path ending in one of the suffixes is
            accepted too.
        wordnet: when given, wnids are checked to be WordNet nouns and names to be one of their lemmas.
        maps: extra `.map` files to check against the tree (darknet's coco9k.map does not share the prefix).
    Returns:
        (problems in file then line order, files checked).
    Raises:
        InputError: when PREFIX.tree (or a --map file) does not exist.
    """
    prefix = Path(prefix)
    if prefix.suffix in SUFFIXES:
        prefix = prefix.with_suffix("")
    tree_path = prefix.with_name(prefix.name + ".tree")
    if not tree_path.is_file():
        raise InputError(f"{tree_path} does not exist (give the prefix of a darknet tree set, e.g. data/9k "
                                "for data/9k.tree, .names, .labels, .map)")
    problems: list[Problem] = []
    checked = [tree_path]
    lines = _lines(tree_path, problems)
    wnids, _ = _check_tree(tree_path, lines, problems) if lines is not None else ([], [])
    n = len(wnids)
    if wordnet is not None:
        for i, w in enumerate(wnids):
            if _WNID.match(w) and w not in wordnet:
                problems.append(Problem(str(tree_path), i + 1, f"{w} is not a WordNet 3.0 noun synset"))

    labels_path = prefix.with_name(prefix.name + ".labels")
    if labels_path.is_file():
        checked.append(labels_path)
        labels = _lines(labels_path, problems)
        if labels is not None and lines is not None:
            if len(labels) != n:
                problems.append(Problem(str(labels_path), 0, f"{len(labels)} lines but {tree_path.name} has {n} "
                                                             "nodes"))
            for i, (label, w) in enumerate(zip(labels, wnids)):
                if label.strip() and label.strip() != w:
                    problems.append(Problem(str(labels_path), i + 1, f"{label.strip()!r} but {tree_path.name} line "
                                                                     f"{i + 1} has {w!r}"))

    names_path = prefix.with_name(prefix.name + ".names")
    if names_path.is_file():
        checked.append(names_path)
        names = _lines(names_path, problems)
        if names is not None and lines is not None:
            if len(names) != n:
                problems.append(Problem(str(names_path), 0, f"{len(names)} names but {tree_path.name} has {n} "
                                                            "nodes"))
            if wordnet is not None:
                for i, (name, w) in enumerate(zip(names, wnids)):
                    if not name.strip() or w not in wordnet:
                        continue
                    lemmas = [lemma.replace("_", " ") for lemma in wordnet.lemmas[w]]
                    if name.strip().lower() not in {lemma.lower() for lemma in lemmas}:
                        problems.append(Problem(str(names_path), i + 1, f"{name.strip()!r} differs from WordNet's "
                                                                        f"names for {w}: {', '.join(lemmas)}"))

    map_paths = [prefix.with_name(prefix.name + ".map")] + [Path(m) for m in maps]
    for map_path in dict.fromkeys(map_paths):
        if map_path == map_paths[0] and not map_path.is_file():
            continue
        if not map_path.is_file():
            raise InputError(f"map file {map_path} does not exist")
        checked.append(map_path)
        rows = _lines(map_path, problems)
        for i, row in enumerate(rows or []):
            if not row.strip():
                continue
            try:
                index = int(row.strip())
            except ValueError:
                problems.append(Problem(str(map_path), i + 1, f"{row.strip()!r} is not a tree index"))
                continue
            if lines is not None and not 0 <= index < n:
                problems.append(Problem(str(map_path), i + 1, f"index {index} outside the tree (0..{n - 1})"))
    order = {str(p): k for k, p in enumerate(checked)}
    problems.sort(key=lambda p: (order.get(p.file, len(order)), p.line))
    return problems, checked
