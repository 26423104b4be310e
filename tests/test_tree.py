"""WordTree: darknet's 9k tree figures, the tensor layout, lookups and construction errors (issue 2 §3, §5)."""
from __future__ import annotations

import pytest
import torch

from wordtree.tree import TreeError, WordTree


def test_darknet_9k_tree_has_the_published_shape(darknet_9k_tree):
    tree = darknet_9k_tree
    stats = tree.stats()
    assert (tree.num_nodes, tree.num_leaves, tree.num_groups, tree.max_depth) == (9418, 7573, 1846, 16)
    assert stats["internal"] == 1845 and stats["largest_group"] == 149 and stats["mean_leaf_depth"] == 7.86
    assert [tree.wnids[r] for r in tree.roots] == ["n00002452", "n00020827", "n00002684", "n11425580"]
    assert [tree.names[r] for r in tree.roots] == ["thing", "matter", "object", "atmospheric phenomenon"]


def test_9k_layout_matches_darknet_read_tree(darknet_9k_tree):
    """Rebuild darknet's read_tree bookkeeping with a plain loop and compare every tensor."""
    tree = darknet_9k_tree
    parents = tree.parent.tolist()
    group, offsets, sizes, last = [], [], [], None
    child = [-1] * len(parents)
    for i, p in enumerate(parents):
        if i == 0 or p != last:
            offsets.append(i)
            sizes.append(0)
            last = p
        group.append(len(offsets) - 1)
        sizes[-1] += 1
        if p >= 0:
            child[p] = len(offsets) - 1
        assert p < i  # parents precede children
    assert tree.group.tolist() == group
    assert tree.group_offset.tolist() == offsets and tree.group_size.tolist() == sizes
    assert tree.child_group.tolist() == child
    assert tree.group_parent.tolist() == [parents[o] for o in offsets]
    # paths: row i ends at i at column depth[i], each entry is the parent of the next.
    for i in (0, 5, 100, 4242, 9417):
        path = tree.path(i)
        assert path[-1] == i and len(path) == int(tree.depth[i]) + 1
        assert all(parents[b] == a for a, b in zip(path, path[1:])) and parents[path[0]] == -1
        assert (tree.paths[i, len(path):] == -1).all()


def test_tiny_tree_tensors(tiny_tree):
    t = tiny_tree
    assert t.parent.tolist() == [-1, -1, 0, 0, 0, 1, 4, 4, 5, 8, 8]
    assert t.group.tolist() == [0, 0, 1, 1, 1, 2, 3, 3, 4, 5, 5]
    assert t.group_offset.tolist() == [0, 2, 5, 6, 8, 9]
    assert t.group_size.tolist() == [2, 3, 1, 2, 1, 2]
    assert t.group_parent.tolist() == [-1, 0, 1, 4, 5, 8]
    assert t.child_group.tolist() == [1, 2, -1, -1, 3, 4, -1, -1, 5, -1, -1]
    assert t.depth.tolist() == [0, 0, 1, 1, 1, 1, 2, 2, 2, 3, 3]
    assert t.paths[9].tolist() == [1, 5, 8, 9] and t.paths[6].tolist() == [0, 4, 6, -1]
    assert t.is_leaf.tolist() == [False, False, True, True, False, False, True, True, False, True, True]
    assert repr(t) == "WordTree(nodes=11, leaves=6, groups=6, roots=2, max_depth=3)"


def test_lookups_on_tiny_tree(tiny_tree):
    t = tiny_tree
    assert t.index("a3") == 4 and "a3" in t and "zz" not in t
    with pytest.raises(KeyError, match="wnid 'zz' is not in this tree"):
        t.index("zz")
    assert t.find("A3") == [4] and t.find("a3") == [4] and t.find("nope") == []
    assert t.resolve("a3") == [4] and t.resolve(4) == [4] and t.resolve("4") == [4] and t.resolve("B1X") == [8]
    with pytest.raises(KeyError, match="out of range"):
        t.resolve(11)
    assert t.ancestors(9) == [8, 5, 1] and t.ancestors(0) == []
    assert t.path(7) == [0, 4, 7]
    assert t.children(0) == [2, 3, 4] and t.children(2) == [] and t.children(5) == [8]
    assert t.siblings(3) == [2, 3, 4] and t.siblings(5) == [5]
    assert t.subtree(4) == [4, 6, 7] and t.subtree(1) == [1, 5, 8, 9, 10] and t.subtree(9) == [9]
    assert t.subtree_mask(8).tolist() == [False] * 8 + [True] * 3
    assert t.leaves() == [2, 3, 6, 7, 9, 10]
    assert t.lowest_common_ancestor(6, 7) == 4 and t.lowest_common_ancestor(6, 2) == 0
    assert t.lowest_common_ancestor(4, 7) == 4 and t.lowest_common_ancestor(9, 9) == 9
    assert t.lowest_common_ancestor(6, 9) == -1  # different roots
    assert t.describe(4) == "a3 A3"


def test_lookups_on_9k_tree(darknet_9k_tree):
    t = darknet_9k_tree
    cars = t.find("car")
    assert len(cars) == 3 and all(t.names[i] == "car" for i in cars)
    assert sorted(t.wnids[i] for i in cars) == ["n02958343", "n02959942", "n02960352"]
    dog, dalmatian = t.index("n02084071"), t.index("n02110341")
    assert t.parent[dalmatian] == dog and dalmatian in t.children(dog)
    assert [t.names[i] for i in t.ancestors(dalmatian)[:3]] == ["dog", "canine", "carnivore"]
    assert t.names[t.path(dalmatian)[0]] == "object"
    assert t.lowest_common_ancestor(dalmatian, t.index("n02123045")) == t.index("n02075296")  # tabby: carnivore
    assert set(t.subtree(dog)) >= {dog, dalmatian} and all(t.lowest_common_ancestor(dog, i) == dog
                                                            for i in t.subtree(dog))


def test_to_device_keeps_everything(tiny_tree):
    moved = tiny_tree.to("cpu")
    assert moved.wnids == tiny_tree.wnids and moved.names == tiny_tree.names
    for name in ("parent", "group", "group_offset", "group_size", "group_parent", "child_group", "depth", "paths"):
        assert torch.equal(getattr(moved, name), getattr(tiny_tree, name))


def test_tree_is_immutable(tiny_tree):
    with pytest.raises(AttributeError):
        tiny_tree.wnids = ()


@pytest.mark.parametrize("parents, problem", [
    ([-1, 0, 5], r"line 3: dangling parent 5 for c"),
    ([-1, 2, 0], r"line 2: parent after child: b has parent c at line 3"),
    ([-1, 2, 1], r"line 2: cycle through b and its parent c"),
    ([-1, 1, 0], r"line 2: cycle: b is its own parent"),
    ([0, -1, 1], r"line 1: cycle: a is its own parent"),
    ([-1, 0, -1], r"line 3: non-contiguous siblings: children of the roots start at line 1 and again here"),
])
def test_from_parents_names_line_and_problem(parents, problem):
    with pytest.raises(TreeError, match=problem):
        WordTree.from_parents(["a", "b", "c"], parents)


def test_from_parents_other_errors():
    with pytest.raises(TreeError, match="line 3: duplicate wnid a \\(first at line 1\\)"):
        WordTree.from_parents(["a", "b", "a"], [-1, 0, 0])
    with pytest.raises(TreeError, match="names file has 2 lines but the tree has 3 nodes"):
        WordTree.from_parents(["a", "b", "c"], [-1, 0, 0], names=["x", "y"])
    with pytest.raises(TreeError, match="line 1: parent after child: a has parent b at line 2"):
        WordTree.from_parents(["a", "b"], [1, -1])  # the first node can only be a root


def test_from_edges_lays_out_breadth_first():
    edges = [("dog", "animal"), ("animal", None), ("cat", "animal"), ("oak", "plant"), ("plant", None),
             ("puppy", "dog")]
    t = WordTree.from_edges(edges, names={"dog": "Dog"})
    assert t.wnids == ("animal", "plant", "dog", "cat", "oak", "puppy")
    assert t.parent.tolist() == [-1, -1, 0, 0, 1, 2]
    assert t.names[2] == "Dog" and t.names[0] == "animal"
    with pytest.raises(TreeError, match="not reachable from a root"):
        WordTree.from_edges([("a", "b"), ("b", "a")])
