"""`yolo9000 tree validate`: every problem of a hand-edited darknet tree set, with file and line (issue 12 §4)."""
from __future__ import annotations

from pathlib import Path

import pytest
from test_wordnet import LICENCE, synset

from wordtree.validate import validate
from wordtree.wordnet import WordNet
from yolo9000.cli import main

# A good set: animal and plant are roots; dog, cat under animal; oak under plant. Offsets are a hand-made WordNet's.
TREE = "n00000010 -1\nn00000020 -1\nn00000011 0\nn00000013 0\nn00000022 1\n"
LABELS = "n00000010\nn00000020\nn00000011\nn00000013\nn00000022\n"
NAMES = "animal\nplant\ndog\ncat\noak\n"
MAP = "2\n3\n"


@pytest.fixture(scope="module")
def wordnet() -> WordNet:
    rows = [(1, ["entity"], []), (10, ["animal", "beast"], [1]), (11, ["dog", "domestic_dog"], [10]),
            (13, ["cat"], [10]), (20, ["plant", "flora"], [1]), (22, ["oak", "oak_tree"], [20])]
    return WordNet.parse([LICENCE] + [synset(o, words, hypernyms=ups) for o, words, ups in rows])


def write_set(folder: Path, **files: str | bytes) -> Path:
    """Write the good set with `files` (suffix -> content; None removes the file) replaced."""
    contents = {"tree": TREE, "labels": LABELS, "names": NAMES, "map": MAP, **files}
    for suffix, text in contents.items():
        if text is None:
            continue
        path = folder / f"mine.{suffix}"
        path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return folder / "mine"


def problems(prefix: Path, wordnet: WordNet | None) -> list[str]:
    return [str(p).replace(str(prefix.parent) + "/", "") for p in validate(prefix, wordnet)[0]]


def test_a_good_set_has_no_problems(tmp_path, wordnet):
    prefix = write_set(tmp_path)
    found, checked = validate(prefix, wordnet)
    assert found == [] and [p.name for p in checked] == ["mine.tree", "mine.labels", "mine.names", "mine.map"]
    # synonyms are fine (any WordNet lemma, case and underscores aside) and CRLF line ends are what darknet accepts
    prefix = write_set(tmp_path, names="Beast\nflora\ndomestic dog\ncat\noak tree\n", map="2\r\n3\r\n")
    assert problems(prefix, wordnet) == []


@pytest.mark.parametrize("files, expected", [
    ({"names": "\ufeffanimal\nplant\ndog\ncat\noak\n"},
     ["mine.names:1: UTF-8 byte-order mark at the start (darknet reads it into the first entry): save the file "
      "without BOM"]),
    ({"labels": ""}, ["mine.labels: empty file"]),
    ({"map": "\n\n"}, ["mine.map: empty file"]),
    ({"names": "animal\nplant\n\ncat\noak\n"},
     ["mine.names:3: blank line (darknet would read it as an entry)"]),
    ({"tree": TREE.replace("n00000013 0", "n00000011 0"), "labels": LABELS.replace("n00000013", "n00000011"),
      "names": NAMES.replace("cat", "dog")},
     ["mine.tree:4: duplicate wnid n00000011 (first at line 3)"]),
    ({"tree": TREE.replace("n00000022 1", "n00000022 7")},
     ["mine.tree:5: dangling parent 7 for n00000022 (the tree has 5 nodes, lines 0..4 as indices)"]),
    ({"tree": "n00000010 -1\nn00000020 3\nn00000011 0\nn00000013 1\nn00000022 1\n"},
     ["mine.tree:2: cycle of 2 nodes: n00000020 (line 2) -> n00000013 (line 4) -> back to n00000020"]),
    ({"tree": TREE.replace("n00000022 1", "n00000022 4")}, ["mine.tree:5: cycle: n00000022 is its own parent"]),
    ({"tree": "n00000010 -1\nn00000020 -1\nn00000011 0\nn00000022 1\nn00000013 0\n",
      "labels": "n00000010\nn00000020\nn00000011\nn00000022\nn00000013\n", "names": "animal\nplant\ndog\noak\ncat\n"},
     ["mine.tree:5: siblings not contiguous: children of n00000010 (line 1) start at line 3 and again here"]),
    ({"tree": "n00000011 2\nn00000010 -1\nn00000020 -1\nn00000013 1\nn00000022 2\n",
      "labels": "n00000011\nn00000010\nn00000020\nn00000013\nn00000022\n", "names": "dog\nanimal\nplant\ncat\noak\n"},
     ["mine.tree:1: parent after child: n00000011's parent n00000020 is at line 3; parents must come before their "
      "children",
      "mine.tree:5: siblings not contiguous: children of n00000020 (line 3) start at line 1 and again here"]),
    ({"tree": TREE.replace("n00000013 0", "n00000099 0"), "labels": LABELS.replace("n00000013", "n00000099")},
     ["mine.tree:4: n00000099 is not a WordNet 3.0 noun synset"]),
    ({"tree": TREE.replace("n00000013 0", "cat 0")}, ["mine.tree:4: 'cat' is not a wnid like n02084071",
                                                      "mine.labels:4: 'n00000013' but mine.tree line 4 has 'cat'"]),
    ({"tree": TREE.replace("n00000022 1", "n00000022")},
     ["mine.tree:5: expected '<wnid> <parent index>', got 'n00000022'"]),
    ({"labels": LABELS.replace("n00000011", "n00000013")},
     ["mine.labels:3: 'n00000013' but mine.tree line 3 has 'n00000011'"]),
    ({"labels": LABELS + "n00000013\n"}, ["mine.labels: 6 lines but mine.tree has 5 nodes"]),
    ({"names": "animal\nplant\ndog\nkitten\noak\n"},
     ["mine.names:4: 'kitten' differs from WordNet's names for n00000013: cat"]),
    ({"names": "animal\nplant\ndog\ncat\n"}, ["mine.names: 4 names but mine.tree has 5 nodes"]),
    ({"map": "2\n5\nx\n"}, ["mine.map:2: index 5 outside the tree (0..4)", "mine.map:3: 'x' is not a tree index"]),
    ({"tree": b"n00000010 -1\nn000000\xff0 -1\n"}, ["mine.tree:2: not UTF-8 text (invalid start byte at byte 20)"]),
], ids=["bom", "empty", "empty-whitespace", "blank-line", "duplicate", "dangling", "cycle", "self-parent",
        "siblings", "parent-after-child", "not-in-wordnet", "not-a-wnid", "bad-row", "labels-differ", "labels-count",
        "name-differs", "names-count", "map-index", "not-utf8"])
def test_each_bad_file_is_reported_with_file_and_line(tmp_path, wordnet, files, expected):
    found = problems(write_set(tmp_path, **files), wordnet)
    assert found == expected


def test_every_problem_at_once_in_file_then_line_order(tmp_path, wordnet):
    prefix = write_set(tmp_path, tree="\ufeff" + TREE.replace("n00000022 1", "n00000022 9"),
                       names="animal\n\ndog\ncat\nacorn\n", map="7\n")
    assert problems(prefix, wordnet) == [
        "mine.tree:1: UTF-8 byte-order mark at the start (darknet reads it into the first entry): save the file "
        "without BOM",
        "mine.tree:5: dangling parent 9 for n00000022 (the tree has 5 nodes, lines 0..4 as indices)",
        "mine.names:2: blank line (darknet would read it as an entry)",
        "mine.names:5: 'acorn' differs from WordNet's names for n00000022: oak, oak tree",
        "mine.map:1: index 7 outside the tree (0..4)",
    ]
    # without WordNet only the structural problems remain
    assert [p for p in problems(prefix, None) if "WordNet" in p] == []


def test_cli_exit_codes_and_output(tmp_path, capsys):
    prefix = write_set(tmp_path, tree=TREE.replace("n00000022 1", "n00000022 9"))
    assert main(["tree", "validate", str(prefix), "--no-wordnet"]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out == [f"{prefix}.tree:5: dangling parent 9 for n00000022 (the tree has 5 nodes, lines 0..4 as indices)",
                   "1 problem in mine.tree, mine.labels, mine.names, mine.map (structure only (--no-wordnet))"]
    good = write_set(tmp_path)
    extra = tmp_path / "other.map"
    extra.write_text("4\n12\n")
    assert main(["tree", "validate", f"{good}.tree", "--no-wordnet", "--map", str(extra)]) == 1
    assert capsys.readouterr().out.splitlines()[0] == f"{extra}:2: index 12 outside the tree (0..4)"
    extra.write_text("4\n")
    assert main(["tree", "validate", str(good), "--no-wordnet", "--map", str(extra)]) == 0
    assert capsys.readouterr().out.strip() == "ok: mine.tree, mine.labels, mine.names, mine.map, other.map " \
                                              "(structure only (--no-wordnet))"
    assert main(["tree", "validate", str(tmp_path / "nothing")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nothing.tree does not exist" in err[0]


def test_darknet_9k_set_is_structurally_sound(capsys):
    # darknet's own files, with its maps: no structural problem; the only findings are names darknet chose that are
    # none of WordNet's lemmas (e.g. 'surfboard' for aquaplane)
    from yolo9000.reference import darknet_dir
    folder = darknet_dir()
    status = main(["tree", "validate", str(folder / "9k"), "--map", str(folder / "coco9k.map"),
                   "--map", str(folder / "inet9k.map")])
    lines = capsys.readouterr().out.splitlines()
    assert status == 1 and lines[-1].startswith(f"{len(lines) - 1} problems in 9k.tree, 9k.labels, 9k.names, "
                                                "coco9k.map, inet9k.map")
    assert all(line.startswith(f"{folder / '9k.names'}:") and "differs from WordNet's names" in line
               for line in lines[:-1])
    assert any("'surfboard' differs from WordNet's names for n02731900: aquaplane" in line for line in lines)
