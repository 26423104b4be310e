"""`yolo9000 tree ...` through yolo9000.cli.main, and run_tree_demo (issue 2 §3 CLI, §4)."""
from __future__ import annotations

import io
import json

import numpy as np
import pytest

from wordtree.io import read_darknet, read_json, write_darknet, write_json
from wordtree.ops import grouped_log_softmax
from yolo9000.cli import main


def run(capsys, *argv: str) -> tuple[int, str, str]:
    status = main(["tree", *argv])
    out, err = capsys.readouterr()
    return status, out, err


def assert_one_line_error(status: int, err: str, *fragments: str) -> None:
    assert status == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err and lines[0].startswith("yolo9000 tree ")
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


@pytest.fixture
def tiny_files(tiny_tree, tmp_path):
    write_darknet(tiny_tree, tmp_path / "tiny")
    write_json(tiny_tree, tmp_path / "tiny.json")
    return tmp_path


def test_build_classes(capsys, tmp_path):
    classes = tmp_path / "classes.txt"
    # dog, dalmatian, pug, tabby, car, and communication (abstract: no path to physical_entity)
    classes.write_text("n02084071\nn02110341\nn02110958\nn02123045\nn02958343\nn00033020\n")
    status, out, _ = run(capsys, "build", "--classes", str(classes), "--out", str(tmp_path / "mine"),
                         "--format", "darknet", "json")
    assert status == 0
    tree = read_darknet(tmp_path / "mine.tree")
    assert read_json(tmp_path / "mine.json").wnids == tree.wnids
    assert (tmp_path / "mine.labels").read_text().split() == list(tree.wnids)
    assert "n02110341" in tree and tree.wnids[int(tree.parent[tree.index("n02110341")])] == "n02084071"
    assert f"tree: {tree.num_nodes} nodes, {tree.num_leaves} leaves" in out and f"{tree.num_groups} groups" in out
    assert f"max depth {tree.max_depth}" in out
    assert "1 targets have no hypernym path to physical entity (n00001930)" in out
    assert "n00033020 communication (WordNet hypernyms: n00002137 abstraction)" in out
    assert "graft" in out and "--overrides FILE" in out


def test_build_with_root_as_synset_name_and_overrides(capsys, tmp_path):
    classes = tmp_path / "classes.txt"
    classes.write_text("n02110341\nn02123045\nn00033020\n")
    overrides = tmp_path / "o.yaml"
    overrides.write_text("exclude: [n00033020]\n")
    status, out, _ = run(capsys, "build", "--classes", str(classes), "--root", "carnivore.n.01",
                         "--overrides", str(overrides), "--out", str(tmp_path / "c"))
    assert status == 0 and "root: carnivore.n.01 n02075296" in out and "unreachable targets: none" in out
    tree = read_darknet(tmp_path / "c.tree")
    assert "n02075296" not in tree and set(tree.wnids) >= {"n02110341", "n02123045"}


def test_build_json_summary_and_json_tree_only(capsys, tmp_path):
    """`--format json` writes only PREFIX.json; `--json` means the summary as JSON, as in every command."""
    classes = tmp_path / "classes.txt"
    classes.write_text("n02110341\nn02123045\nn00033020\n")
    status, out, _ = run(capsys, "build", "--classes", str(classes), "--out", str(tmp_path / "j"),
                         "--format", "json", "--json")
    assert status == 0
    summary = json.loads(out)
    tree = read_json(tmp_path / "j.json")
    assert not (tmp_path / "j.tree").exists() and summary["written"] == [str(tmp_path / "j.json")]
    assert summary["targets"] == 3 and summary["unreachable"] == ["n00033020"] and summary["root"] == "n00001930"
    assert summary["tree"]["nodes"] == tree.num_nodes and summary["roots"] == [tree.wnids[r] for r in tree.roots]
    status, out, _ = run(capsys, "build", "--classes", str(classes), "--out", str(tmp_path / "k"),
                         "--json", str(tmp_path / "summary.json"))
    assert status == 0 and "wrote " in out and (tmp_path / "k.tree").exists() and not (tmp_path / "k.json").exists()
    assert json.loads((tmp_path / "summary.json").read_text())["tree"] == summary["tree"]


def test_build_preset_9k_uses_darknets_grafts(capsys, tmp_path):
    status, out, _ = run(capsys, "build", "--preset", "9k", "--out", str(tmp_path / "k9"))
    assert status == 0
    tree = read_darknet(tmp_path / "k9.tree")
    assert abs(tree.num_nodes - 9418) <= 15 and "unreachable targets: none" in out
    assert "darknet's 4 hand grafts" in out and "vs darknet's 9k.tree:" in out and "parent agreement 98." in out


def test_build_imagenet_root_top_k(capsys, tmp_path):
    root = tmp_path / "imagenet"
    # dalmatian 3 images, pug 2, tabby 2, car 1: the top 3 by count (ties by wnid) leave the car out
    for wnid, count in (("n02110341", 3), ("n02110958", 2), ("n02123045", 2), ("n02958343", 1)):
        (root / wnid).mkdir(parents=True)
        for k in range(count):
            (root / wnid / f"{wnid}_{k}.JPEG").write_bytes(b"")
    status, out, _ = run(capsys, "build", "--imagenet-root", str(root), "--top", "3", "--out", str(tmp_path / "t"))
    assert status == 0 and "targets: 3 (top 3 wnid folders" in out
    tree = read_darknet(tmp_path / "t.tree")
    assert {"n02110341", "n02110958", "n02123045"} <= set(tree.wnids) and "n02958343" not in tree


def test_build_errors(capsys, tmp_path):
    out = str(tmp_path / "x")
    assert_one_line_error(*run(capsys, "build", "--classes", str(tmp_path / "none.txt"), "--out", out)[::2],
                          "none.txt does not exist")
    bad = tmp_path / "bad.txt"
    bad.write_text("n02084071\ndog\n")
    assert_one_line_error(*run(capsys, "build", "--classes", str(bad), "--out", out)[::2], "bad.txt line 2")
    assert_one_line_error(*run(capsys, "build", "--imagenet-root", str(tmp_path), "--out", out)[::2],
                          "needs --top K")
    assert_one_line_error(*run(capsys, "build", "--preset", "9k", "--root", "zzyzx.n.01", "--out", out)[::2],
                          "no noun lemma 'zzyzx'")
    assert_one_line_error(*run(capsys, "build", "--preset", "9k", "--root", "n09999999", "--out", out)[::2],
                          "--root n09999999 is not a WordNet 3.0 noun synset")
    with pytest.raises(SystemExit):  # argparse: exactly one source of targets
        main(["tree", "build", "--out", out])
    assert list(tmp_path.glob("x.*")) == []  # nothing written on errors


def test_stats(capsys, tiny_files):
    status, out, _ = run(capsys, "stats", "9k")
    assert status == 0
    assert "9k: 9418 nodes, 7573 leaves, 1845 internal, 1846 groups, 4 roots, max depth 16" in out
    assert "largest groups (parent, children): herb 149, flower 100, person 100" in out
    assert "display names used more than once: 585" in out and "nodes with exactly one child: 46" in out
    status, out, _ = run(capsys, "stats", str(tiny_files / "tiny.json"))
    assert status == 0 and "11 nodes, 6 leaves" in out and "nodes per depth: 0:2 1:4 2:3 3:2" in out


def test_diff(capsys, tiny_files, tiny_tree):
    other = tiny_tree.from_parents(["a", "b", "a1", "a2", "a3", "b1"], [-1, -1, 0, 0, 1, 1])
    write_json(other, tiny_files / "other.json")
    status, out, _ = run(capsys, "diff", str(tiny_files / "other.json"), str(tiny_files / "tiny.tree"))
    assert status == 0
    assert "common 6 (only in" in out and "parent agreement: 5/6 common nodes = 83.33 %" in out
    assert "a3 A3: b b | a A" in out


def test_show_every_match_and_paths(capsys):
    status, out, _ = run(capsys, "show", "car", "--max-children", "2")
    assert status == 0 and out.startswith("3 nodes are named 'car' (names are not unique):")
    assert out.count("path from its root:") == 3 and "n02958343 car" in out and "... 24 more" in out
    status, out, _ = run(capsys, "show", "n02110341")
    assert status == 0 and "n02110341 dalmatian" in out and "leaf" in out
    lines = out.splitlines()
    start = lines.index("  path from its root:")
    assert [ln.strip() for ln in lines[start + 1:]][-3:] == ["n02083346 canine", "n02084071 dog",
                                                             "n02110341 dalmatian"]
    status, out, _ = run(capsys, "show", "dog.n.01", "--max-children", "-1")
    assert status == 0 and "children (18):" in out and "n02112826 corgi  (2 children)" in out


def test_show_errors(capsys, tiny_files):
    assert_one_line_error(*run(capsys, "show", "n09999999")[::2], "wnid n09999999 is not in this tree")
    assert_one_line_error(*run(capsys, "show", "dalmatin")[::2], "no node named 'dalmatin'")
    assert_one_line_error(*run(capsys, "show", "dalm")[::2], "names containing it: dalmatian")
    assert_one_line_error(*run(capsys, "show", "a", "--tree", str(tiny_files / "missing.tree"))[::2],
                          "missing.tree does not exist")
    broken = tiny_files / "broken.tree"
    broken.write_text("a -1\nb 2\nc 0\n")
    assert_one_line_error(*run(capsys, "show", "a", "--tree", str(broken))[::2],
                          "broken.tree line 2: parent after child")


def test_query_npy_and_stdin(capsys, tiny_files, tiny_tree, monkeypatch):
    logits = np.zeros(tiny_tree.num_nodes, dtype=np.float32)
    logits[[1, 5, 8, 9]] = 5.0  # b > b1 > b1x > b1x_p
    np.save(tiny_files / "l.npy", logits)
    status, out, _ = run(capsys, "query", "--tree", str(tiny_files / "tiny.tree"), "--logits",
                         str(tiny_files / "l.npy"), "--json")
    assert status == 0
    result = json.loads(out)
    assert result["paper"]["wnid"] == "b1x_p" and [s["wnid"] for s in result["paper"]["path"]] == [
        "b", "b1", "b1x", "b1x_p"]
    cond = grouped_log_softmax(__import__("torch").from_numpy(logits).double(), tiny_tree).exp()
    assert result["paper"]["path"][0]["cond"] == pytest.approx(float(cond[1]))
    assert result["paper"]["prob"] == pytest.approx(float(cond[1] * cond[5] * cond[8] * cond[9]))
    assert result["top_leaves"][0]["wnid"] == "b1x_p"
    # darknet's walk multiplies absolute probabilities: .99 * .99 * .99 * .99^2 * ... stops earlier or at most equal
    assert len(result["darknet"]["path"]) <= len(result["paper"]["path"])

    monkeypatch.setattr("sys.stdin", io.StringIO(" ".join(str(v) for v in logits.tolist()) + "\n"))
    status, out, _ = run(capsys, "query", "--tree", str(tiny_files / "tiny.json"), "--logits", "-",
                         "--hier", "0.9", "--top", "2")
    assert status == 0 and "paper walk (threshold 0.9" in out and "darknet walk" in out
    assert "top-2 leaves: " in out and "b1x_p B1X_P" in out


def test_query_errors(capsys, tiny_files, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO("1 2 3\n"))
    assert_one_line_error(*run(capsys, "query", "--tree", str(tiny_files / "tiny.tree"), "--logits", "-")[::2],
                          "logits have 3 values per row but tree", "has 11 nodes")
    monkeypatch.setattr("sys.stdin", io.StringIO("1 2 x\n"))
    assert_one_line_error(*run(capsys, "query", "--logits", "-")[::2], "stdin line 1: not a list of numbers")
    assert_one_line_error(*run(capsys, "query", "--logits", str(tiny_files / "no.npy"))[::2], "does not exist")


def test_plot_writes_a_png(capsys, tiny_files):
    out_png = tiny_files / "plots" / "a.png"
    status, out, _ = run(capsys, "plot", "a", "--tree", str(tiny_files / "tiny.json"), "--out", str(out_png))
    assert status == 0 and "wrote" in out and "a A, 6 of 6 subtree nodes, depth 2" in out
    data = out_png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    status, out, _ = run(capsys, "plot", "n02084071", "--out", str(tiny_files / "dog.png"), "--depth", "3",
                         "--max-nodes", "30")
    assert status == 0 and "limited by --max-nodes 30" in out and (tiny_files / "dog.png").stat().st_size > 5000


def test_plot_errors(capsys, tiny_files):
    assert_one_line_error(*run(capsys, "plot", "car", "--out", str(tiny_files / "c.png"))[::2],
                          "'car' names 3 nodes", "give a wnid")
    assert_one_line_error(*run(capsys, "plot", "no such thing", "--out", str(tiny_files / "c.png"))[::2],
                          "no node named")
    assert not (tiny_files / "c.png").exists()


def test_tree_without_subcommand_prints_help(capsys):
    assert main(["tree"]) == 2
    assert "build" in capsys.readouterr().err


def test_run_tree_demo():
    from wordtree.cli import run_tree_demo
    lines: list[str] = []
    figures = run_tree_demo(log=lines.append)
    assert figures["darknet_nodes"] == 9418 and figures["darknet_groups"] == 1846
    assert abs(figures["built_nodes"] - 9418) <= 15 and figures["parent_agreement"] >= 0.985
    assert figures["roots_match"] and figures["build_seconds"] < 30
    assert figures["dalmatian_path"][-2:] == ["n02084071", "n02110341"]
    assert len(figures["unreachable_without_grafts"]) == 7
    text = "\n".join(lines)
    assert "parent agreement" in text and "n02110341 dalmatian" in text and "n00002684 object" in text
