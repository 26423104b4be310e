"""build_tree: the paper's rule, collapse, lift, overrides and roots on a hand-made WordNet; the 9k stand-in build
against darknet's tree; target selection; diff (issue 2 §3, §4, §5)."""
from __future__ import annotations

from pathlib import Path

import pytest
from test_wordnet import LICENCE, synset

from wordtree.build import (DARKNET_9K_OVERRIDES, Overrides, build_tree, targets_9k_standin, targets_from_file,
                            targets_from_imagenet_root)
from wordtree.diff import diff
from wordtree.io import tree_text
from wordtree.tree import TreeError, WordTree
from wordtree.wordnet import WordNet
from yolo9000.reference import darknet_file, nltk_dir

REPO = Path(__file__).resolve().parents[1]


def w(offset: int) -> str:
    return f"n{offset:08d}"


# The hand-made WordNet (offsets; everything hangs under entity 1):
#
#   entity 1 ─┬─ physical_entity 2 ─┬─ animal 10 ─┬─ dog 11* ── puppy 12*     (lift: puppy joins dog's siblings)
#             │                     │             ├─ cat 13*
#             │                     │             └─ pet 31* (also under companion 30)
#             │                     ├─ plant 20 ── woody_plant 21 ── oak 22*   (collapse: oak rises to a root)
#             │                     ├─ companion 30 ── pet 31*
#             │                     └─ star 51 ─┬─ sun 50* (instance hypernym)
#             │                                 └─ nova 52*
#             └─ abstraction 3 ── idea 40 ── notion 41*                         (no path to physical_entity)
#   * = target
HAND_MADE = [
    (1, "entity", []), (2, "physical_entity", [1]), (3, "abstraction", [1]),
    (10, "animal", [2]), (11, "dog", [10]), (12, "puppy", [11]), (13, "cat", [10]),
    (20, "plant", [2]), (21, "woody_plant", [20]), (22, "oak", [21]),
    (30, "companion", [2]), (31, "pet", [30, 10]),  # companion first: the paper's rule must still pick animal
    (40, "idea", [3]), (41, "notion", [40]),
    (51, "star", [2]), (52, "nova", [51]),
]
TARGETS = [w(31), w(11), w(12), w(13), w(22), w(41), w(50), w(52)]  # pet first: single-path targets go first anyway


@pytest.fixture(scope="module")
def hand_wordnet() -> WordNet:
    lines = [LICENCE] + [synset(o, [name], hypernyms=ups) for o, name, ups in HAND_MADE]
    lines.append(synset(50, ["sun"], instance_of=[51]))
    return WordNet.parse(lines)


def edges(tree: WordTree) -> dict[str, str | None]:
    return {tree.names[i]: (tree.names[p] if p >= 0 else None) for i, p in enumerate(tree.parent.tolist())}


def test_paper_rule_collapse_and_lift(hand_wordnet):
    result = build_tree(TARGETS, hand_wordnet, root=w(2))
    tree = result.tree
    assert edges(tree) == {
        "animal": None, "oak": None, "star": None,                   # roots: physical_entity is not a node
        "dog": "animal", "puppy": "animal", "cat": "animal", "pet": "animal",
        "sun": "star", "nova": "star"}
    # darknet layout: breadth-first, each sibling group contiguous, the lifted puppy right after dog
    assert tree.names == ("animal", "oak", "star", "dog", "puppy", "cat", "pet", "sun", "nova")
    assert result.unreachable == (w(41),)
    st = result.stats
    assert (st["targets"], st["single_path"], st["unreachable"]) == (8, 6, 1)
    # paper rule: animal dog puppy cat plant woody_plant oak star sun nova + pet = 11; then 2 collapsed, 1 lifted
    assert (st["nodes_paper"], st["collapsed"], st["lifted"], st["nodes"]) == (11, 2, 1, 9)


def test_fewest_new_nodes_wins_even_against_hypernym_order(hand_wordnet):
    # With animal absent from the tree (no animal targets), pet's two paths tie at 2 new nodes: the first
    # (companion) is taken, then collapse leaves pet as a root in either case.
    result = build_tree([w(31), w(22)], hand_wordnet, root=w(2))
    assert edges(result.tree) == {"pet": None, "oak": None}
    # With dog present, the animal path adds 1 node against companion's 2.
    result = build_tree([w(31), w(11), w(13)], hand_wordnet, root=w(2))
    assert edges(result.tree)["pet"] == "animal" and "companion" not in edges(result.tree)


def test_configurable_root(hand_wordnet):
    result = build_tree(TARGETS, hand_wordnet, root=w(10))
    assert edges(result.tree) == {"dog": None, "puppy": None, "cat": None, "pet": None}
    assert result.unreachable == (w(22), w(41), w(50), w(52))
    everything = build_tree(TARGETS, hand_wordnet, root=w(1))
    assert everything.unreachable == () and edges(everything.tree)["notion"] is None  # idea, abstraction collapse
    assert set(r for r, p in edges(everything.tree).items() if p is None) == {"physical entity", "notion"}


def test_grafts_excludes_and_unknown_targets(hand_wordnet, tmp_path):
    overrides_file = tmp_path / "o.yaml"
    overrides_file.write_text(f"graft:\n  {w(41)}: {w(10)}\nexclude: [{w(13)}]\n")
    overrides = Overrides.load(overrides_file)
    assert overrides == Overrides(graft={w(41): w(10)}, exclude=(w(13),))
    result = build_tree(TARGETS + ["n99999999"], hand_wordnet, overrides, root=w(2))
    tree_edges = edges(result.tree)
    assert tree_edges["notion"] == "animal" and "cat" not in tree_edges
    assert result.unreachable == ("n99999999",) and result.stats["excluded"] == 1
    with pytest.raises(TreeError, match=r"graft n00000010 -> n00000011 creates a cycle: "
                                        r"n00000011 dog -> n00000010 animal -> n00000011 dog"):
        build_tree([w(11)], hand_wordnet, Overrides(graft={w(10): w(11)}), root=w(2))


# A WordNet with diamonds, where the old path search saw cycles (issue 12): rifle has two hypernyms, firearm and
# weapon, and firearm is itself a weapon; both routes meet again at instrument.
#
#   physical_entity 2 ── instrument 60 ─┬─ weapon 61 ──────────┬─ firearm 62 ─┬─ rifle 63* (hypernyms: weapon, firearm)
#                                       │                      │              └─ pistol 64*
#                                       └─ device 70 ──────────┴─ (firearm 62 also under device 70)
#   sling 65* hangs under weapon only; musket 66* under rifle and firearm (a second diamond, one level lower).
DIAMONDS = [
    (1, "entity", []), (2, "physical_entity", [1]),
    (60, "instrument", [2]), (61, "weapon", [60]), (70, "device", [60]),
    (62, "firearm", [61, 70]), (63, "rifle", [61, 62]), (64, "pistol", [62]), (65, "sling", [61]),
    (66, "musket", [63, 62]),
]


@pytest.fixture(scope="module")
def diamond_wordnet() -> WordNet:
    return WordNet.parse([LICENCE] + [synset(o, [name], hypernyms=ups) for o, name, ups in DIAMONDS])


def test_diamonds_build_in_every_target_order(diamond_wordnet):
    import itertools
    targets = [w(63), w(64), w(65), w(66)]
    texts = set()
    for order in itertools.permutations(targets):
        result = build_tree(list(order), diamond_wordnet, root=w(2))
        assert result.unreachable == ()
        texts.add((tree_text(result.tree), result.tree.names))
    assert len(texts) == 1
    # sling (one path) goes first: instrument, weapon, sling. Then in wnid order: rifle's path via weapon adds 1 node
    # (against 2 and 3 via firearm); pistol via weapon > firearm adds 2 (via device 3); musket via rifle or firearm
    # adds 1 each, the tie goes to the first in hypernym order (rifle). Collapse splices instrument and firearm
    # (non-targets with one child), and lift hands musket, rifle's only child, to weapon right after rifle.
    assert edges(result.tree) == {"weapon": None, "sling": "weapon", "rifle": "weapon", "musket": "weapon",
                                  "pistol": "weapon"}
    assert result.tree.names == ("weapon", "sling", "rifle", "musket", "pistol")
    assert (result.stats["nodes_paper"], result.stats["collapsed"], result.stats["lifted"]) == (7, 2, 1)


def test_a_graft_cycle_through_a_diamond_names_the_graft(diamond_wordnet):
    with pytest.raises(TreeError, match=r"graft n00000060 -> n00000064 creates a cycle: .*n00000064 pistol"):
        build_tree([w(64)], diamond_wordnet, Overrides(graft={w(60): w(64)}), root=w(2))
    # a graft that only adds a second route (a diamond), not a cycle, builds
    result = build_tree([w(64), w(65)], diamond_wordnet, Overrides(graft={w(65): w(70)}), root=w(2))
    assert edges(result.tree)["sling"] in ("device", "instrument")


def test_overrides_file_errors(tmp_path):
    path = tmp_path / "o.yaml"
    for text, message in (("- a\n", "expected a mapping"), ("grafts: {}\n", r"unknown key\(s\) \['grafts'\]"),
                          ("graft: [a, b]\n", "'graft' must map wnid strings"),
                          ("exclude: n01\n", "'exclude' must be a list")):
        path.write_text(text)
        with pytest.raises(ValueError, match=message):
            Overrides.load(path)


def test_darknet_overrides_file_matches_the_built_in_grafts():
    assert Overrides.load(REPO / "yolo9000" / "datasets" / "9k_overrides.yaml") == DARKNET_9K_OVERRIDES


def test_targets_from_file(tmp_path):
    path = tmp_path / "classes.txt"
    path.write_text("# my classes\nn02084071\n\n  n02121808  # cat\n")
    assert targets_from_file(path) == ["n02084071", "n02121808"]
    path.write_text("n02084071\ndog\n")
    with pytest.raises(ValueError, match="classes.txt line 2: 'dog' is not a WordNet noun id"):
        targets_from_file(path)


def test_targets_from_imagenet_root(tmp_path):
    for wnid, count in (("n00000003", 2), ("n00000001", 3), ("n00000002", 3), ("n00000004", 1)):
        (tmp_path / wnid).mkdir()
        for k in range(count):
            (tmp_path / wnid / f"{k}.JPEG").write_bytes(b"")
    (tmp_path / "README").write_text("not a class")
    (tmp_path / "misc").mkdir()
    assert targets_from_imagenet_root(tmp_path, 3) == ["n00000001", "n00000002", "n00000003"]  # ties by wnid
    with pytest.raises(ValueError, match="is not a folder"):
        targets_from_imagenet_root(tmp_path / "nope", 3)
    with pytest.raises(ValueError, match="no wnid sub-folders"):
        targets_from_imagenet_root(tmp_path / "misc", 3)


def test_diff_on_small_trees():
    a = WordTree.from_parents(["r", "x", "y", "z", "q"], [-1, 0, 0, 1, 1], names=["R", "X", "Y", "Z", "Q"])
    b = WordTree.from_parents(["r", "s", "x", "y", "z"], [-1, -1, 0, 0, 3], names=["R", "S", "X", "Y", "Z"])
    d = diff(a, b)
    assert (d.nodes_a, d.nodes_b, d.common, d.same_parent) == (5, 5, 4, 3)
    assert d.only_a == ("q",) and d.only_b == ("s",) and d.roots_a == ("r",) and d.roots_b == ("r", "s")
    assert [(c.wnid, c.parent_a, c.parent_b) for c in d.changes] == [("z", ("x", "X"), ("y", "Y"))]
    assert d.parent_agreement == 0.75 and d.parent_agreement_b == 0.6
    text = d.format("A", "B")
    assert "parent agreement: 3/4 common nodes = 75.00 %" in text and "z Z: x X | y Y" in text
    assert diff(a, a).parent_agreement == 1.0 and diff(a, a).changes == ()


# ---------------------------------------------------------------------------------------------------- real data


@pytest.fixture(scope="module")
def wordnet() -> WordNet:
    return WordNet.load(nltk_dir())


@pytest.fixture(scope="module")
def standin(darknet_9k_tree) -> list[str]:
    return targets_9k_standin(darknet_9k_tree, darknet_file("imagenet.labels.list"), darknet_file("coco9k.map"))


def test_9k_standin_build_reproduces_darknet(wordnet, standin, darknet_9k_tree):
    assert len(standin) == 9150
    result = build_tree(standin, wordnet, DARKNET_9K_OVERRIDES)
    d = diff(result.tree, darknet_9k_tree)
    assert abs(result.tree.num_nodes - 9418) <= 15
    assert d.parent_agreement >= 0.985 and d.parent_agreement_b >= 0.985
    assert set(d.roots_a) == set(d.roots_b) and result.unreachable == ()
    again = build_tree(list(standin), wordnet, DARKNET_9K_OVERRIDES)
    assert tree_text(again.tree) == tree_text(result.tree) and again.tree.names == result.tree.names


def test_9k_standin_without_grafts_reports_the_abstract_targets(wordnet, standin, darknet_9k_tree):
    result = build_tree(standin, wordnet)
    assert abs(result.tree.num_nodes - 9418) <= 15
    assert diff(result.tree, darknet_9k_tree).parent_agreement >= 0.985
    names = {wordnet.name(u) for u in result.unreachable}
    assert len(result.unreachable) == 7 and {"traffic light", "street sign", "bubble", "cairn"} <= names


# ---------------------------------------------------------------------------------------------------- real label lists
# The lists users bring (issue 12), fetched by `yolo9000 setup` into the cache: timm's ILSVRC-2012 1000 and
# ImageNet-22k 21841 wnids, darknet's 9k.labels, COCO's 80 through coco9k.map, VOC's 20 by name.


def _real_list(name: str, darknet_9k_tree: WordTree) -> list[str]:
    from yolo9000.data.combine import VOC_NAMES, builtin_category_wnids
    from yolo9000.reference import label_list
    if name == "ilsvrc1k":
        return targets_from_file(label_list("imagenet_synsets.txt"))
    if name == "imagenet22k":
        return targets_from_file(label_list("imagenet22k_synsets.txt"))
    if name == "darknet9k":
        return darknet_file("9k.labels").read_text().split()
    names = builtin_category_wnids()
    if name == "coco80":
        return [names[n] for n in darknet_file("coco.names").read_text().splitlines() if n.strip()]
    return [names[n] for n in VOC_NAMES]


def _ancestors(wnid: str, wordnet: WordNet, graft: dict[str, str]) -> set[str]:
    """Every hypernym above `wnid`, grafts applied (a slow, obviously right walk)."""
    seen, todo = set(), [wnid]
    while todo:
        w = todo.pop()
        for h in ([graft[w]] if w in graft else wordnet.hypernym_map.get(w, ())):
            if h not in seen:
                seen.add(h)
                todo.append(h)
    return seen


def check_built(result, targets: list[str], wordnet: WordNet, overrides: Overrides | None) -> None:
    """What any build must satisfy: reachable targets are nodes, unreachable ones are cut off from physical_entity,
    every edge goes up WordNet (grafts applied), collapse left no non-target with one child."""
    graft = overrides.graft if overrides else {}
    tree, unreachable = result.tree, set(result.unreachable)
    assert set(targets) - unreachable <= set(tree.wnids) and unreachable <= set(targets)
    for u in unreachable:
        assert u not in wordnet or "n00001930" not in _ancestors(u, wordnet, graft)
    target_set = set(targets)
    for i, p in enumerate(tree.parent.tolist()):
        up = _ancestors(tree.wnids[i], wordnet, graft)
        assert "n00001930" in up and (p < 0 or tree.wnids[p] in up)
        if tree.wnids[i] not in target_set:
            assert len(tree.children(i)) >= 2


@pytest.mark.parametrize("name", ["ilsvrc1k", "darknet9k", "coco80", "voc20"])
def test_real_label_lists_build_and_order_does_not_matter(name, wordnet, darknet_9k_tree):
    import random
    targets = _real_list(name, darknet_9k_tree)
    assert len(set(targets)) == {"ilsvrc1k": 1000, "darknet9k": 9418, "coco80": 80, "voc20": 20}[name]
    overrides = DARKNET_9K_OVERRIDES if name == "darknet9k" else None
    result = build_tree(targets, wordnet, overrides)
    check_built(result, targets, wordnet, overrides)
    if name == "darknet9k":  # with darknet's grafts every node of darknet's own tree is reachable
        assert result.unreachable == ()
    shuffled = list(targets)
    random.Random(12).shuffle(shuffled)
    again = build_tree(shuffled, wordnet, overrides)
    assert tree_text(again.tree) == tree_text(result.tree) and again.tree.names == result.tree.names
    assert again.unreachable == result.unreachable


def test_imagenet22k_builds(wordnet, darknet_9k_tree):
    targets = _real_list("imagenet22k", darknet_9k_tree)
    result = build_tree(targets, wordnet)
    assert len(set(targets)) == 21841
    check_built(result, targets, wordnet, None)
