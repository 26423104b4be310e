"""Benchmark: building WordTrees from WordNet for the label lists users bring, and loading WordNet (issue 12).

Lists (fetched by `yolo9000 setup` into the data dir): timm's ILSVRC-2012 1000 and ImageNet-22k 21841 wnids, darknet's
9k.labels, the 9k stand-in (9150 targets) and COCO's 80 through coco9k.map (these three with darknet's 4 grafts),
VOC's 20 by name.
Each build is timed once WordNet is loaded (median of repeats); the target is the 22k list in at most 10 s on 2 cores.

WordNet loading is timed separately, side by side in this process: our data.noun parse, the same graph from the
parse cache (`WordNet.load(..., cache_dir=)`), and, with --nltk, NLTK's own reader opening the corpus and reading
every noun, which also checks that both agree on every noun's lemmas and hypernym set.

The last line printed is one JSON object with the figures.

    .venv/bin/python bench/tree_build.py [--repeats 3] [--no-nltk]
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time

from wordtree.build import DARKNET_9K_OVERRIDES, build_tree, targets_9k_standin, targets_from_file
from wordtree.io import read_darknet
from wordtree.wordnet import WordNet, wnid_of
from yolo9000.data.combine import VOC_NAMES, builtin_category_wnids
from yolo9000.reference import darknet_file, label_list, nltk_dir


def timed(fn, repeats: int) -> tuple[float, object]:
    """Median seconds of `repeats` calls, and the last result."""
    times, out = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def nltk_load_and_compare(wordnet: WordNet) -> dict:
    import nltk
    from nltk.corpus.reader.wordnet import WordNetCorpusReader
    nltk.data.path.insert(0, str(nltk_dir()))
    try:
        start = time.perf_counter()
        reader = WordNetCorpusReader(nltk.data.find("corpora/wordnet"), None)
        opened = time.perf_counter() - start
        synsets = list(reader.all_synsets("n"))
        read_all = time.perf_counter() - start
        disagree = 0
        for s in synsets:
            wnid = wnid_of(s.offset())
            ups = {wnid_of(h.offset()) for h in s.hypernyms() + s.instance_hypernyms()}
            lemmas = tuple(lemma.name() for lemma in s.lemmas())
            disagree += ups != set(wordnet.hypernym_map.get(wnid, ())) or lemmas != wordnet.lemmas.get(wnid)
    finally:
        nltk.data.path.remove(str(nltk_dir()))
    return {"nltk_open_s": round(opened, 3), "nltk_all_nouns_s": round(read_all, 3), "nltk_nouns": len(synsets),
            "nltk_disagreeing_nouns": disagree}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-nltk", dest="nltk", action="store_false", help="skip NLTK's reader (15-20 s)")
    args = parser.parse_args()

    figures: dict = {}
    parse_s, wordnet = timed(lambda: WordNet.load(nltk_dir()), args.repeats)
    with tempfile.TemporaryDirectory() as cache:
        WordNet.load(nltk_dir(), cache_dir=cache)  # writes the cache
        cached_s, cached = timed(lambda: WordNet.load(nltk_dir(), cache_dir=cache), args.repeats)
    assert cached.hypernym_map == wordnet.hypernym_map and cached.lemmas == wordnet.lemmas
    figures["wordnet"] = {"nouns": len(wordnet), "parse_s": round(parse_s, 3), "cached_s": round(cached_s, 3),
                          "parse_over_cached": round(parse_s / cached_s, 2)}
    if args.nltk:
        figures["wordnet"].update(nltk_load_and_compare(wordnet))
        figures["wordnet"]["nltk_all_over_parse"] = round(figures["wordnet"]["nltk_all_nouns_s"] / parse_s, 2)
    print(f"WordNet 3.0 nouns: {figures['wordnet']}")

    tree_9k = read_darknet(darknet_file("9k.tree"), darknet_file("9k.names"))
    names = builtin_category_wnids(wordnet)
    lists = {
        "ilsvrc1k": (targets_from_file(label_list("imagenet_synsets.txt")), None),
        "imagenet22k": (targets_from_file(label_list("imagenet22k_synsets.txt")), None),
        "darknet9k_labels": (darknet_file("9k.labels").read_text().split(), DARKNET_9K_OVERRIDES),
        "standin9k": (targets_9k_standin(tree_9k, darknet_file("imagenet.labels.list"),
                                         darknet_file("coco9k.map")), DARKNET_9K_OVERRIDES),
        # with darknet's grafts, as `data combine` builds: traffic light and stop sign are under abstraction
        "coco80": ([names[n] for n in darknet_file("coco.names").read_text().splitlines() if n.strip()],
                   DARKNET_9K_OVERRIDES),
        "voc20": ([names[n] for n in VOC_NAMES], None),
    }
    figures["builds"] = {}
    for name, (targets, overrides) in lists.items():
        seconds, result = timed(lambda: build_tree(targets, wordnet, overrides), args.repeats)
        s = result.tree.stats()
        row = {"targets": len(set(targets)), "nodes": s["nodes"], "leaves": s["leaves"], "max_depth": s["max_depth"],
               "roots": s["roots"], "unreachable": len(result.unreachable), "build_s": round(seconds, 3)}
        figures["builds"][name] = row
        print(f"{name:>17}: {row}")
    figures["imagenet22k_build_over_10s_target"] = round(figures["builds"]["imagenet22k"]["build_s"] / 10.0, 3)
    print(json.dumps(figures, separators=(",", ":")))


if __name__ == "__main__":
    main()
