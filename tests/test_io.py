"""Darknet tree files and JSON: byte-identical round trips and validation errors from bad files (issue 2 §3, §5)."""
from __future__ import annotations

import json

import pytest
import torch

from wordtree.io import (load, read_darknet, read_json, read_map, to_json, tree_text, write_darknet, write_json,
                         write_map)
from wordtree.tree import TreeError
from yolo9000.reference import darknet_file


def same_tree(a, b) -> bool:
    return a.wnids == b.wnids and a.names == b.names and torch.equal(a.parent, b.parent)


def test_9k_write_then_read_is_byte_identical(darknet_9k_tree, tmp_path):
    written = write_darknet(darknet_9k_tree, tmp_path / "sub" / "nine")
    assert [p.name for p in written] == ["nine.tree", "nine.names", "nine.labels"]
    for suffix, reference in ((".tree", "9k.tree"), (".names", "9k.names"), (".labels", "9k.labels")):
        assert (tmp_path / "sub" / f"nine{suffix}").read_bytes() == darknet_file(reference).read_bytes(), suffix
    assert tree_text(darknet_9k_tree) == darknet_file("9k.tree").read_text()
    again = read_darknet(tmp_path / "sub" / "nine.tree")  # finds nine.names beside it
    assert same_tree(again, darknet_9k_tree)


def test_json_round_trip(darknet_9k_tree, tiny_tree, tmp_path):
    for tree in (tiny_tree, darknet_9k_tree):
        write_json(tree, tmp_path / "t.json")
        assert same_tree(read_json(tmp_path / "t.json"), tree)
        assert same_tree(load(tmp_path / "t.json"), tree)
    data = to_json(tiny_tree)
    assert data["format"] == "wordtree/1" and data["nodes"][9] == {"wnid": "b1x_p", "name": "B1X_P", "parent": 8}


def test_read_without_names_uses_wnids_and_tolerates_crlf(tmp_path):
    (tmp_path / "t.tree").write_bytes(b"a -1\r\nb -1\r\nc 0\r\n")
    tree = read_darknet(tmp_path / "t.tree")
    assert tree.wnids == ("a", "b", "c") and tree.names == tree.wnids and tree.parent.tolist() == [-1, -1, 0]
    (tmp_path / "u.tree").write_text("a -1\nb 0")  # no final newline: still two nodes
    assert load(tmp_path / "u.tree").num_nodes == 2


# Each bad file: its lines, and the message it must produce (the line number and the problem).
BAD_TREES = {
    "dangling_parent": ("a -1\nb 0\nc 7\n", r"line 3: dangling parent 7 for c \(tree has 3 nodes\)"),
    "parent_after_child": ("a -1\nb 2\nc 0\n", r"line 2: parent after child: b has parent c at line 3"),
    "cycle": ("a -1\nb 2\nc 1\n", r"line 2: cycle through b and its parent c \(line 3\)"),
    "self_cycle": ("a -1\nb 1\n", r"line 2: cycle: b is its own parent"),
    "duplicate_wnid": ("a -1\nb 0\nb 0\n", r"line 3: duplicate wnid b \(first at line 2\)"),
    "non_contiguous_siblings": ("a -1\nb -1\nc 0\nd 1\ne 0\n",
                                r"line 5: non-contiguous siblings: children of a start at line 3 and again here"),
    "three_fields": ("a -1\nb 0 extra\n", r"line 2: wrong line format 'b 0 extra': expected '<wnid> <parent_index>'"),
    "one_field": ("a -1\nb\n", r"line 2: wrong line format 'b'"),
    "parent_not_integer": ("a -1\nb zero\n", r"line 2: wrong line format 'b zero': parent index 'zero' is not an int"),
    "blank_line": ("a -1\n\nb 0\n", r"line 2: wrong line format ''"),
}


@pytest.mark.parametrize("case", sorted(BAD_TREES))
def test_bad_tree_file_names_line_and_problem(case, tmp_path):
    text, message = BAD_TREES[case]
    path = tmp_path / f"{case}.tree"
    path.write_text(text)
    with pytest.raises(TreeError, match=message) as info:
        read_darknet(path)
    assert str(path) in str(info.value)  # the message names the file too


def test_names_file_of_a_different_length(tmp_path):
    (tmp_path / "t.tree").write_text("a -1\nb 0\nc 0\n")
    (tmp_path / "t.names").write_text("A\nB\n")
    with pytest.raises(TreeError, match=r"t.names: names file has 2 lines but .*t.tree has 3 nodes"):
        read_darknet(tmp_path / "t.tree")
    (tmp_path / "other.names").write_text("A\nB\nC\nD\n")
    with pytest.raises(TreeError, match="names file has 4 lines"):
        read_darknet(tmp_path / "t.tree", tmp_path / "other.names")


def test_bad_json(tmp_path):
    path = tmp_path / "t.json"
    path.write_text(json.dumps({"format": "something else", "nodes": []}))
    with pytest.raises(TreeError, match="not a wordtree JSON"):
        read_json(path)
    path.write_text(json.dumps({"format": "wordtree/1", "nodes": [{"wnid": "a", "parent": -1}]}))
    with pytest.raises(TreeError, match=r"node 0: missing \['name'\]"):
        read_json(path)
    path.write_text(json.dumps({"format": "wordtree/1", "nodes": [
        {"wnid": "a", "name": "A", "parent": -1}, {"wnid": "b", "name": "B", "parent": 3}]}))
    with pytest.raises(TreeError, match="line 2: dangling parent 3"):
        read_json(path)


def test_map_files(darknet_9k_tree, tmp_path):
    coco = read_map(darknet_file("coco9k.map"), darknet_9k_tree)
    assert len(coco) == 80 and len(set(coco)) == 80
    assert darknet_9k_tree.wnids[coco[0]] == "n00007846"  # COCO class 0, person -> person
    write_map(coco, tmp_path / "c.map")
    assert (tmp_path / "c.map").read_bytes() == darknet_file("coco9k.map").read_bytes()
    assert len(read_map(darknet_file("inet9k.map"), darknet_9k_tree)) == 200
    (tmp_path / "bad.map").write_text("3\nseven\n")
    with pytest.raises(TreeError, match=r"bad.map line 2: 'seven' is not a tree index"):
        read_map(tmp_path / "bad.map")
    (tmp_path / "far.map").write_text("3\n9418\n")
    with pytest.raises(TreeError, match=r"far.map line 2: index 9418 outside the tree \(0..9417\)"):
        read_map(tmp_path / "far.map", darknet_9k_tree)
