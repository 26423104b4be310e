"""Compare two WordTrees by wnid: sizes, shared nodes, parent agreement, roots, and where parents differ.

Trees are compared by wnid, never by index or name (darknet's 9k.names repeats 585 names).
"""
from __future__ import annotations

from dataclasses import dataclass

from wordtree.tree import WordTree


@dataclass(frozen=True)
class ParentChange:
    """One shared node whose parent differs: wnid, its name, and each tree's parent (wnid, name; None = a root)."""

    wnid: str
    name: str
    parent_a: tuple[str, str] | None
    parent_b: tuple[str, str] | None


@dataclass(frozen=True)
class TreeDiff:
    """How tree `a` differs from tree `b`.

    Attributes:
        nodes_a, nodes_b: node counts.
        common: number of wnids in both trees.
        same_parent: shared nodes whose parent wnid is the same (both roots counts as the same).
        only_a, only_b: wnids in one tree only, in that tree's order.
        roots_a, roots_b: root wnids of each tree.
        changes: shared nodes whose parents differ, in `b`'s order.
    """

    nodes_a: int
    nodes_b: int
    common: int
    same_parent: int
    only_a: tuple[str, ...]
    only_b: tuple[str, ...]
    roots_a: tuple[str, ...]
    roots_b: tuple[str, ...]
    changes: tuple[ParentChange, ...]

    @property
    def parent_agreement(self) -> float:
        """Fraction of shared nodes with the same parent."""
        return self.same_parent / self.common if self.common else 0.0

    @property
    def parent_agreement_b(self) -> float:
        """Fraction of `b`'s nodes present in `a` with the same parent (how much of the reference is reproduced)."""
        return self.same_parent / self.nodes_b if self.nodes_b else 0.0

    def format(self, label_a: str = "A", label_b: str = "B", max_changes: int = 20) -> str:
        """Human-readable report; lists at most `max_changes` differing parents (all when negative)."""
        lines = [
            f"nodes: {label_a} {self.nodes_a}, {label_b} {self.nodes_b}; common {self.common} "
            f"(only in {label_a}: {len(self.only_a)}, only in {label_b}: {len(self.only_b)})",
            f"parent agreement: {self.same_parent}/{self.common} common nodes = {100 * self.parent_agreement:.2f} %"
            f" ({100 * self.parent_agreement_b:.2f} % of {label_b}'s {self.nodes_b} nodes)",
            f"roots {label_a}: {', '.join(self.roots_a)}",
            f"roots {label_b}: {', '.join(self.roots_b)}" + (" (same)" if set(self.roots_a) == set(self.roots_b)
                                                             else ""),
        ]
        shown = self.changes if max_changes < 0 else self.changes[:max_changes]
        if shown:
            lines.append(f"differing parents ({len(self.changes)}), node: {label_a} parent | {label_b} parent")

        def fmt(p: tuple[str, str] | None) -> str:
            return "(root)" if p is None else f"{p[0]} {p[1]}"
        lines += [f"  {c.wnid} {c.name}: {fmt(c.parent_a)} | {fmt(c.parent_b)}" for c in shown]
        if len(shown) < len(self.changes):
            lines.append(f"  ... {len(self.changes) - len(shown)} more")
        return "\n".join(lines)


def _parent_wnids(tree: WordTree) -> dict[str, str | None]:
    return {w: (tree.wnids[p] if p >= 0 else None) for w, p in zip(tree.wnids, tree.parent.tolist())}


def diff(a: WordTree, b: WordTree) -> TreeDiff:
    """Compare `a` with `b` (b is usually the reference, e.g. darknet's 9k.tree)."""
    parents_a, parents_b = _parent_wnids(a), _parent_wnids(b)
    common = [w for w in b.wnids if w in parents_a]
    changes = []
    for w in common:
        pa, pb = parents_a[w], parents_b[w]
        if pa != pb:
            changes.append(ParentChange(
                w, b.names[b.index(w)],
                None if pa is None else (pa, a.names[a.index(pa)]),
                None if pb is None else (pb, b.names[b.index(pb)])))
    return TreeDiff(
        nodes_a=a.num_nodes, nodes_b=b.num_nodes, common=len(common), same_parent=len(common) - len(changes),
        only_a=tuple(w for w in a.wnids if w not in parents_b), only_b=tuple(w for w in b.wnids if w not in parents_a),
        roots_a=tuple(a.wnids[r] for r in a.roots), roots_b=tuple(b.wnids[r] for r in b.roots),
        changes=tuple(changes))
