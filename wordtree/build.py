"""Build a WordTree from WordNet for a set of target concepts (YOLO9000 section 4, "Hierarchical classification").

The paper's rule: WordNet is a graph, so for each target look at its hypernym paths up to the root; add every target
that has a single path first, then take the remaining targets one by one and add the path that grows the tree by as
little as possible. Two clean-up rules make the result match darknet's `9k.tree` (wordtree_build.md; they are facts
about the reference tree, not in the paper):

1. collapse: a node that is not a target and has exactly one child is spliced out (its child takes its place);
2. lift: a target whose only child is a leaf gives that child to its own parent (the two become siblings).

The `root` synset itself is not a node: its children in the built tree become the roots (darknet's tree has 4 roots
under physical_entity). Targets without a path to `root` are reported in `BuildResult.unreachable`, never dropped
silently; an `Overrides` file can graft them somewhere (`graft: {wnid: parent}`) or exclude them.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import yaml

from wordtree.io import read_map
from wordtree.tree import TreeError, WordTree
from wordtree.errors import InputError
from wordtree.wordnet import WordNet, WordNetError

PHYSICAL_ENTITY = "n00001930"  # physical_entity.n.01: the 9k tree lives below it


@dataclass(frozen=True)
class Overrides:
    """Hand edits applied before building.

    Attributes:
        graft: wnid -> parent wnid. Replaces the wnid's WordNet hypernyms by this one parent, for the wnid as a target
            and wherever it lies on another target's path (darknet grafts signal -> device, sign -> signal, ...).
        exclude: wnids removed from the targets.
    """

    graft: dict[str, str] = field(default_factory=dict)
    exclude: tuple[str, ...] = ()

    @classmethod
    def load(cls, path: str | Path) -> "Overrides":
        """Read a YAML file with optional keys `graft: {wnid: parent_wnid}` and `exclude: [wnid, ...]`.

        Raises:
            ValueError: naming the file and the bad key or value.
        """
        data = yaml.safe_load(Path(path).read_text()) or {}
        if not isinstance(data, dict):
            raise InputError(f"{path}: expected a mapping with keys 'graft' and 'exclude', got {type(data).__name__}")
        unknown = set(data) - {"graft", "exclude"}
        if unknown:
            raise InputError(f"{path}: unknown key(s) {sorted(unknown)}; allowed: graft, exclude")
        graft = data.get("graft") or {}
        exclude = data.get("exclude") or []
        if not isinstance(graft, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in graft.items()):
            raise InputError(f"{path}: 'graft' must map wnid strings to parent wnid strings")
        if not isinstance(exclude, list) or not all(isinstance(w, str) for w in exclude):
            raise InputError(f"{path}: 'exclude' must be a list of wnid strings")
        return cls(dict(graft), tuple(exclude))


# darknet's 4 hand edits to WordNet 3.0 in 9k.tree (wordtree_build.md, "edges vs WordNet"); also written out as
# datasets/9k_overrides.yaml. Without them 7 stand-in targets have no hypernym path to physical_entity.
DARKNET_9K_OVERRIDES = Overrides(graft={
    "n09229709": "n03964744",  # bubble -> plaything (WordNet: bubble -> globule, under abstraction)
    "n06791372": "n03183080",  # signal -> device (WordNet: signal -> communication)
    "n06793231": "n06791372",  # sign -> signal (WordNet: sign -> communication)
    "n06794110": "n06791372",  # street sign -> signal (WordNet: street sign -> sign)
})


@dataclass(frozen=True)
class BuildResult:
    """What `build_tree` made.

    Attributes:
        tree: the built tree (darknet layout: breadth-first, siblings contiguous, in insertion order).
        unreachable: targets with no hypernym path to the root (or unknown to WordNet), in target order.
        stats: counts of each stage (targets, single_path, paths_added_nodes, collapsed, lifted, nodes, seconds).
    """

    tree: WordTree
    unreachable: tuple[str, ...]
    stats: dict[str, float]


class _Paths:
    """Hypernym paths below `root` with grafts applied; memoised (targets share most of their ancestors)."""

    def __init__(self, wordnet: WordNet, root: str, graft: dict[str, str]):
        self.wordnet, self.root, self.graft = wordnet, root, graft
        self.cache: dict[str, tuple[tuple[str, ...], ...]] = {root: ((),)}

    def hypernyms(self, wnid: str) -> tuple[str, ...]:
        if wnid in self.graft:
            return (self.graft[wnid],)
        return self.wordnet.hypernym_map.get(wnid, ())

    def below_root(self, wnid: str) -> tuple[tuple[str, ...], ...]:
        """Distinct paths from just below `root` down to `wnid` (inclusive), in hypernym order; () if none.

        Raises:
            TreeError: when a graft closes a hypernym cycle (naming the graft and the cycle); WordNet's own noun
                graph is acyclic, so a cycle without a graft on it means corrupt WordNet data (WordNetError).
        """
        cache = self.cache
        if wnid in cache:
            return cache[wnid]
        # Iterative depth-first post-order (WordNet chains are ~20 deep, a graft could make them deeper). Only the
        # nodes on the current path count for cycles: WordNet has diamonds (a synset reached from an ancestor by two
        # routes), so a node met again that is merely waiting further down the stack is not a cycle.
        path, on_path, todo = [wnid], {wnid}, [iter(self.hypernyms(wnid))]
        while path:
            for h in todo[-1]:
                if h in cache:
                    continue
                if h in on_path:
                    raise self._cycle_error(path[path.index(h):] + [h])
                path.append(h)
                on_path.add(h)
                todo.append(iter(self.hypernyms(h)))
                break
            else:
                w = path.pop()
                on_path.discard(w)
                todo.pop()
                seen: dict[tuple[str, ...], None] = {}
                for h in self.hypernyms(w):
                    for p in cache[h]:
                        seen.setdefault(p + (w,), None)
                cache[w] = tuple(seen)
        return cache[wnid]

    def _cycle_error(self, cycle: list[str]) -> Exception:
        """`cycle`: child -> hypernym -> ... -> the child again."""
        def named(w: str) -> str:
            return f"{w} {self.wordnet.name(w)}" if w in self.wordnet else w
        chain = " -> ".join(named(w) for w in cycle)
        grafts = [w for w in cycle[:-1] if w in self.graft]
        if not grafts:
            return WordNetError(f"{self.wordnet.source}: WordNet's hypernyms form a cycle ({chain}); the data is "
                                "corrupt (WordNet 3.0's noun graph is acyclic)")
        which = ", ".join(f"{w} -> {self.graft[w]}" for w in grafts)
        return TreeError(f"overrides: graft {which} creates a cycle: {chain}")


def build_tree(targets: Sequence[str], wordnet: WordNet, overrides: Overrides | None = None,
               root: str = PHYSICAL_ENTITY) -> BuildResult:
    """Build a WordTree holding every reachable target, by the paper's rule plus collapse and lift.

    Args:
        targets: wnids to classify. Their order does not matter: they are placed in wnid order, so a shuffled list
            gives the identical tree (node order included).
        wordnet: the WordNet noun graph.
        overrides: grafts and exclusions applied before building.
        root: the synset under which the tree lives; not itself a node (its children in the tree are the roots).

    Returns:
        BuildResult with the tree, the unreachable targets (in wnid order) and stage counts.

    Raises:
        TreeError: a graft that closes a cycle, naming the graft.
    """
    start = time.perf_counter()
    overrides = overrides or Overrides()
    excluded = set(overrides.exclude)
    # wnid order, not the caller's: which of a target's paths adds the fewest nodes depends on what is already in the
    # tree, so placing targets in a canonical order is what makes the result independent of the list's order.
    wanted = sorted(set(targets) - excluded)
    paths = _Paths(wordnet, root, overrides.graft)
    reachable: dict[str, tuple[tuple[str, ...], ...]] = {}
    unreachable = []
    for t in wanted:
        found = paths.below_root(t) if (t in wordnet or t in overrides.graft) and t != root else ()
        if found:
            reachable[t] = found
        else:
            unreachable.append(t)

    parent: dict[str, str | None] = {}  # node -> parent (None: a root); insertion order = layout order

    def add(path: tuple[str, ...], start_at: int) -> None:
        for i in range(start_at, len(path)):
            parent[path[i]] = path[i - 1] if i else None

    def attach_point(path: tuple[str, ...]) -> int:
        """Index of the first node to add: one below the deepest path node already in the tree."""
        for i in range(len(path) - 1, -1, -1):
            if path[i] in parent:
                return i + 1
        return 0

    single = [t for t, ps in reachable.items() if len(ps) == 1]
    for t in single:
        path = reachable[t][0]
        add(path, attach_point(path))
    for t, ps in reachable.items():
        if len(ps) == 1 or t in parent:
            continue
        # Fewest new nodes wins; ties go to the first path in hypernym order (min is stable).
        best = min(ps, key=lambda p: len(p) - attach_point(p))
        add(best, attach_point(best))
    nodes_paper = len(parent)

    children = _children_of(parent)
    target_set = set(reachable)
    collapsed = _collapse(parent, children, target_set)
    lifted = _lift(parent, children, target_set)

    order = _layout(children)
    index = {w: i for i, w in enumerate(order)}
    names = [wordnet.name(w) if w in wordnet else w for w in order]
    tree = WordTree.from_parents(order, [-1 if parent[w] is None else index[parent[w]] for w in order], names,
                                 source="build")
    stats = {"targets": len(wanted), "excluded": len(set(targets) & excluded),
             "unreachable": len(unreachable), "single_path": len(single), "nodes_paper": nodes_paper,
             "collapsed": collapsed, "lifted": lifted, "nodes": tree.num_nodes,
             "seconds": round(time.perf_counter() - start, 3)}
    return BuildResult(tree, tuple(unreachable), stats)


def _children_of(parent: dict[str, str | None]) -> dict[str | None, list[str]]:
    children: dict[str | None, list[str]] = {None: []}
    for w in parent:
        children.setdefault(w, [])
    for w, p in parent.items():
        children[p].append(w)
    return children


def _collapse(parent: dict[str, str | None], children: dict[str | None, list[str]], targets: set[str]) -> int:
    """Splice out every non-target with exactly one child, in place; the child takes its slot. Returns the count.

    Splicing keeps every other node's child count, so one pass over a snapshot of the nodes suffices.
    """
    spliced = 0
    for w in list(parent):
        if w in targets or len(children[w]) != 1:
            continue
        (child,) = children.pop(w)
        up = parent.pop(w)
        siblings = children[up]
        siblings[siblings.index(w)] = child
        parent[child] = up
        spliced += 1
    return spliced


def _lift(parent: dict[str, str | None], children: dict[str | None, list[str]], targets: set[str]) -> int:
    """A target whose only child is a leaf hands that child to its own parent, placed right after it. In place.

    After a lift the target is a leaf and its parent has two or more children, so no new case appears: one pass.
    """
    lifted = 0
    for w in list(parent):
        kids = children[w]
        if w not in targets or len(kids) != 1 or children[kids[0]]:
            continue
        child = kids.pop()
        up = parent[w]
        siblings = children[up]
        siblings.insert(siblings.index(w) + 1, child)
        parent[child] = up
        lifted += 1
    return lifted


def _layout(children: dict[str | None, list[str]]) -> list[str]:
    """Breadth-first order: parents before children, each sibling group contiguous (darknet's layout)."""
    order: list[str] = []
    frontier = list(children[None])
    while frontier:
        order.extend(frontier)
        frontier = [c for w in frontier for c in children[w]]
    return order


# ---------------------------------------------------------------------- target selection
def targets_from_file(path: str | Path) -> list[str]:
    """One wnid per line (blank lines and `#` comments ignored), in file order.

    Raises:
        ValueError: naming the line of anything that is not a wnid like `n02084071`.
    """
    out = []
    for lineno, line in enumerate(Path(path).read_text().splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        if not (len(line) == 9 and line[0] == "n" and line[1:].isdigit()):
            raise InputError(f"{path} line {lineno}: {line!r} is not a WordNet noun id like n02084071")
        out.append(line)
    return out


def targets_from_imagenet_root(root: str | Path, top_k: int) -> list[str]:
    """The paper's selection: the `top_k` wnid sub-folders of an ImageNet-22k tree by image count.

    Ties in image count are broken by wnid so the selection is deterministic.
    """
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"ImageNet root {root} is not a folder")
    counts = [(sum(1 for f in d.iterdir() if f.is_file()), d.name) for d in root.iterdir()
              if d.is_dir() and len(d.name) == 9 and d.name[0] == "n" and d.name[1:].isdigit()]
    if not counts:
        raise InputError(f"ImageNet root {root} has no wnid sub-folders (like n02084071/)")
    counts.sort(key=lambda c: (-c[0], c[1]))
    return [w for _, w in counts[:top_k]]


def targets_9k_standin(tree_9k: WordTree, imagenet_labels_path: str | Path, coco9k_map_path: str | Path) -> list[str]:
    """The stand-in for the unpublished "9000 ImageNet classes": nodes of darknet's 9k tree that are ImageNet-22k
    synsets (`imagenet.labels.list`) plus the nodes COCO classes map to (`coco9k.map`), in tree order."""
    imagenet = set(Path(imagenet_labels_path).read_text().split())
    coco = set(read_map(coco9k_map_path, tree_9k))
    return [w for i, w in enumerate(tree_9k.wnids) if w in imagenet or i in coco]
