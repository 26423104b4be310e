"""WordTree: an immutable class hierarchy stored as tensors (YOLO9000 section 4, darknet `tree.c`).

Nodes are in darknet order: every parent precedes its children and each sibling group occupies contiguous indices,
so group g is `range(group_offset[g], group_offset[g] + group_size[g])`. Group 0 holds the roots.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cached_property
from typing import Iterable, Sequence

import torch
from torch import Tensor, nn

from wordtree.errors import AmbiguousNodeError, NodeError, TreeError  # noqa: F401  (re-exported)

_WNID = re.compile(r"^n\d{8}$")
_SYNSET_NAME = re.compile(r"^.+\.n\.\d+$")


@dataclass(frozen=True, eq=False)
class WordTree:
    """A class hierarchy: N nodes, G sibling groups, depth D (root depth 0).

    Attributes:
        wnids: N node ids (WordNet ids such as `n02084071`), unique.
        names: N display names (not unique).
        parent: Long[N], parent index, -1 for roots.
        group: Long[N], sibling-group index of each node.
        group_offset: Long[G], first node index of each group.
        group_size: Long[G], number of nodes in each group.
        group_parent: Long[G], the parent shared by the group's nodes (-1 for the roots' group).
        child_group: Long[N], group holding the node's children, -1 for leaves (darknet's `child[]`).
        depth: Long[N], 0 for roots.
        paths: Long[N, D+1], root-to-node indices, padded with -1 on the right.
    """

    wnids: tuple[str, ...]
    names: tuple[str, ...]
    parent: Tensor
    group: Tensor = field(repr=False)
    group_offset: Tensor = field(repr=False)
    group_size: Tensor = field(repr=False)
    group_parent: Tensor = field(repr=False)
    child_group: Tensor = field(repr=False)
    depth: Tensor = field(repr=False)
    paths: Tensor = field(repr=False)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_parents(cls, wnids: Sequence[str], parents: Sequence[int], names: Sequence[str] | None = None,
                     source: str = "tree") -> "WordTree":
        """Build from darknet-ordered (wnid, parent index) rows, validating every invariant.

        Raises:
            TreeError: naming the 1-based line of `source` and the problem (duplicate wnid, dangling parent,
                parent after child, cycle, non-contiguous siblings) or a names list of a different length.
        """
        n = len(wnids)
        if len(parents) != n:
            raise TreeError(f"{source}: {len(parents)} parents for {n} wnids")
        if names is None:
            names = tuple(wnids)
        elif len(names) != n:
            raise TreeError(f"{source}: names file has {len(names)} lines but the tree has {n} nodes")
        seen: dict[str, int] = {}
        for i, w in enumerate(wnids):
            if w in seen:
                raise TreeError(f"{source} line {i + 1}: duplicate wnid {w} (first at line {seen[w] + 1})")
            seen[w] = i
        for i, p in enumerate(parents):
            if p < -1 or p >= n:
                raise TreeError(f"{source} line {i + 1}: dangling parent {p} for {wnids[i]} (tree has {n} nodes)")
            if p == i:
                raise TreeError(f"{source} line {i + 1}: cycle: {wnids[i]} is its own parent")
        for i, p in enumerate(parents):
            if p > i:
                # A parent after its child is either a cycle or an ordering error; say which.
                j, hops = p, 0
                while j >= 0 and j != i and hops <= n:
                    j, hops = parents[j], hops + 1
                if j == i:
                    raise TreeError(f"{source} line {i + 1}: cycle through {wnids[i]} and its parent {wnids[p]} "
                                    f"(line {p + 1})")
                raise TreeError(f"{source} line {i + 1}: parent after child: {wnids[i]} has parent {wnids[p]} at "
                                f"line {p + 1}; parents must precede children")
        # Sibling groups are the runs of equal parent values; each parent may own one run only.
        offsets, sizes, gparents = [], [], []
        group = [0] * n
        owner: dict[int, int] = {}
        for i, p in enumerate(parents):
            if i == 0 or p != parents[i - 1]:
                if p in owner:
                    first = offsets[owner[p]]
                    raise TreeError(f"{source} line {i + 1}: non-contiguous siblings: children of "
                                    f"{'the roots' if p < 0 else wnids[p]} start at line {first + 1} and again here")
                owner[p] = len(offsets)
                offsets.append(i)
                sizes.append(0)
                gparents.append(p)
            group[i] = len(offsets) - 1
            sizes[-1] += 1
        child_group = [-1] * n
        for g, p in enumerate(gparents):
            if p >= 0:
                child_group[p] = g
        depth = [0] * n
        for i, p in enumerate(parents):
            depth[i] = 0 if p < 0 else depth[p] + 1
        max_depth = max(depth, default=0)
        # Parents precede children (checked above), so each root path extends its parent's. One tensor at the end:
        # element-wise tensor writes cost seconds for a 22k-node tree.
        rows: list[list[int]] = []
        for i, p in enumerate(parents):
            rows.append([i] if p < 0 else rows[p] + [i])
        paths = torch.tensor([r + [-1] * (max_depth + 1 - len(r)) for r in rows], dtype=torch.long).reshape(
            n, max_depth + 1)
        long = lambda xs: torch.tensor(list(xs), dtype=torch.long)  # noqa: E731
        return cls(tuple(wnids), tuple(names), long(parents), long(group), long(offsets), long(sizes), long(gparents),
                   long(child_group), long(depth), paths)

    @classmethod
    def from_edges(cls, edges: Iterable[tuple[str, str | None]], names: dict[str, str] | None = None) -> "WordTree":
        """Build from (wnid, parent wnid or None) pairs in any order: nodes are laid out breadth-first, children of
        each parent contiguous, in the order they first appear, which gives darknet's layout."""
        edges = list(edges)
        children: dict[str | None, list[str]] = {}
        for w, p in edges:
            children.setdefault(p, []).append(w)
        order: list[str] = []
        parent_of = dict(edges)
        queue = [None]
        while queue:
            nxt = []
            for p in queue:
                for c in children.get(p, []):
                    order.append(c)
                    nxt.append(c)
            queue = nxt
        if len(order) != len(edges):
            unreachable = sorted(set(parent_of) - set(order))
            raise TreeError(f"edges: {len(unreachable)} nodes are not reachable from a root (cycle or dangling "
                            f"parent), e.g. {unreachable[:5]}")
        index = {w: i for i, w in enumerate(order)}
        parents = [-1 if parent_of[w] is None else index[parent_of[w]] for w in order]
        node_names = [names.get(w, w) if names else w for w in order]
        return cls.from_parents(order, parents, node_names, source="edges")

    # ------------------------------------------------------------------ sizes
    @property
    def num_nodes(self) -> int:
        return len(self.wnids)

    @property
    def num_groups(self) -> int:
        return int(self.group_offset.numel())

    @property
    def max_depth(self) -> int:
        return self.paths.shape[1] - 1

    @cached_property
    def is_leaf(self) -> Tensor:
        """Bool[N]."""
        return self.child_group < 0

    @property
    def num_leaves(self) -> int:
        return int(self.is_leaf.sum())

    @cached_property
    def roots(self) -> list[int]:
        return (self.parent < 0).nonzero().flatten().tolist()

    # ------------------------------------------------------------------ lookups
    @cached_property
    def _index(self) -> dict[str, int]:
        return {w: i for i, w in enumerate(self.wnids)}

    @cached_property
    def _by_name(self) -> dict[str, list[int]]:
        out: dict[str, list[int]] = {}
        for i, name in enumerate(self.names):
            out.setdefault(name.lower(), []).append(i)
        return out

    def index(self, wnid: str) -> int:
        """Node index of a wnid. Raises KeyError naming the wnid."""
        try:
            return self._index[wnid]
        except KeyError:
            raise NodeError(f"wnid {wnid!r} is not in this tree ({self.num_nodes} nodes)") from None

    def __contains__(self, wnid: object) -> bool:
        return wnid in self._index

    def find(self, name: str) -> list[int]:
        """All nodes whose display name is `name` (case-insensitive): names are not unique."""
        return list(self._by_name.get(name.lower(), []))

    def resolve(self, key: str | int, wordnet: object | None = None) -> list[int]:
        """The one node resolver: the nodes `key` names, in tree order (display names are not unique).

        Args:
            key: a node index, a wnid (`n02084071`), a display name (case-insensitive, `_` read as a space) or,
                given `wordnet` (a `wordtree.wordnet.WordNet`), an NLTK synset name (`dog.n.01`).
        Raises:
            NodeError: nothing matches (with close names as suggestions).
        """
        if isinstance(key, int) or key.lstrip("-").isdigit():
            i = int(key)
            if not 0 <= i < self.num_nodes:
                raise NodeError(f"node index {i} out of range 0..{self.num_nodes - 1}")
            return [i]
        if key in self._index:
            return [self._index[key]]
        if _WNID.match(key):
            raise NodeError(f"wnid {key} is not in this tree ({self.num_nodes} nodes)")
        found = self.find(key) or self.find(key.replace("_", " "))
        if found:
            return found
        if wordnet is not None and _SYNSET_NAME.match(key):
            wnid = wordnet.wnid_for(key)
            if wnid not in self._index:
                raise NodeError(f"{key} is WordNet's {wnid}, which is not in this tree")
            return [self._index[wnid]]
        needle = key.lower()
        close = sorted({n for n in self.names if needle in n.lower()}, key=lambda n: (len(n), n))[:6]
        hint = f"; names containing it: {', '.join(close)}" if close else ""
        raise NodeError(f"no node named {key!r} in this tree: it is neither a wnid, a name nor an index (give a "
                        f"wnid like n02084071, a name or a synset name like dog.n.01){hint}")

    def resolve_one(self, key: str | int, wordnet: object | None = None) -> int:
        """The single node `key` names (see `resolve`).

        Raises:
            AmbiguousNodeError: a display name shared by several nodes (lists them with their paths).
            NodeError: nothing matches.
        """
        nodes = self.resolve(key, wordnet)
        if len(nodes) > 1:
            raise AmbiguousNodeError(str(key), nodes, self)
        return nodes[0]

    def ancestors(self, node: int) -> list[int]:
        """Indices from the node's parent up to its root."""
        path = self.path(node)
        return path[-2::-1]

    def path(self, node: int) -> list[int]:
        """Root-to-node indices, inclusive."""
        row = self.paths[node]
        return row[row >= 0].tolist()

    def children(self, node: int) -> list[int]:
        g = int(self.child_group[node])
        if g < 0:
            return []
        off = int(self.group_offset[g])
        return list(range(off, off + int(self.group_size[g])))

    def siblings(self, node: int) -> list[int]:
        g = int(self.group[node])
        off = int(self.group_offset[g])
        return list(range(off, off + int(self.group_size[g])))

    def subtree_mask(self, node: int) -> Tensor:
        """Bool[N]: the node and all its descendants."""
        return (self.paths == node).any(dim=1)

    def subtree(self, node: int) -> list[int]:
        return self.subtree_mask(node).nonzero().flatten().tolist()

    def leaves(self) -> list[int]:
        return self.is_leaf.nonzero().flatten().tolist()

    def lowest_common_ancestor(self, a: int, b: int) -> int:
        """Deepest node on both paths, or -1 when a and b are under different roots."""
        lca = -1
        for x, y in zip(self.path(a), self.path(b)):
            if x != y:
                break
            lca = x
        return lca

    def describe(self, node: int) -> str:
        return f"{self.wnids[node]} {self.names[node]}"

    def stats(self) -> dict[str, float]:
        leaf_depth = self.depth[self.is_leaf].float()
        return {
            "nodes": self.num_nodes, "leaves": self.num_leaves, "internal": self.num_nodes - self.num_leaves,
            "groups": self.num_groups, "roots": len(self.roots), "max_depth": self.max_depth,
            "mean_leaf_depth": round(float(leaf_depth.mean()), 2) if leaf_depth.numel() else 0.0,
            "largest_group": int(self.group_size.max()) if self.num_groups else 0,
        }

    def to(self, device: torch.device | str) -> "WordTree":
        """A copy with every tensor on `device` (the tree itself stays immutable)."""
        return WordTree(self.wnids, self.names, **{k: getattr(self, k).to(device) for k in TENSOR_FIELDS})

    def __len__(self) -> int:
        return self.num_nodes

    def __repr__(self) -> str:
        s = self.stats()
        return (f"WordTree(nodes={s['nodes']}, leaves={s['leaves']}, groups={s['groups']}, roots={s['roots']}, "
                f"max_depth={s['max_depth']})")


TENSOR_FIELDS = ("parent", "group", "group_offset", "group_size", "group_parent", "child_group", "depth", "paths")


class TreeBuffers(nn.Module):
    """A WordTree held as (non-persistent) buffers, so it moves with the module that owns it (`.to(device)`).

    `tree` is the WordTree on the buffers' current device; it is rebuilt (cheaply, without validation) only after
    the buffers moved. Nothing is saved in state dicts: the tree comes from the config.
    """

    def __init__(self, tree: WordTree) -> None:
        super().__init__()
        for name in TENSOR_FIELDS:
            self.register_buffer(name, getattr(tree, name), persistent=False)
        self._tree = tree

    @property
    def tree(self) -> WordTree:
        if self._tree.parent is not self.parent:
            self._tree = WordTree(self._tree.wnids, self._tree.names,
                                  **{name: getattr(self, name) for name in TENSOR_FIELDS})
        return self._tree
