"""`yolo9000 tree`: build, inspect, compare, query and plot WordTrees (YOLO9000 section 4).

    yolo9000 tree build (--preset 9k | --classes FILE | --imagenet-root DIR --top K) [--root WNID] --out PREFIX
        [--format darknet json] [--json [FILE]]
    yolo9000 tree stats FILE
    yolo9000 tree diff A B
    yolo9000 tree show WNID|NAME [--tree FILE]
    yolo9000 tree query --logits FILE.npy|- [--tree FILE] [--hier T] [--json [FILE]]
    yolo9000 tree plot WNID|NAME --out PNG [--depth K] [--tree FILE]
    yolo9000 tree validate PREFIX [--map FILE ...] [--no-wordnet]

A tree argument is `9k` (darknet's 9k.tree from the reference data), a darknet `.tree` file (its `.names` beside it
is used when present) or a `.json` tree. User mistakes (unknown node, missing or malformed file) end with a one-line
message and exit status 2. This module and `run_tree_demo` are the only parts of `wordtree` that reach into
`yolo9000` (for the reference data), and they do it lazily.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Callable

import torch

from wordtree.build import (DARKNET_9K_OVERRIDES, PHYSICAL_ENTITY, BuildResult, Overrides, build_tree,
                            targets_9k_standin, targets_from_file, targets_from_imagenet_root)
from wordtree.diff import diff
from wordtree.errors import CliError
from wordtree.io import DARKNET_9K, load_tree, write_darknet, write_json
from wordtree.tree import WordTree
from wordtree.wordnet import WordNet

DALMATIAN = "n02110341"
_WNID = re.compile(r"^n\d{8}$")
_SYNSET_NAME = re.compile(r"^.+\.n\.\d+$")


# ---------------------------------------------------------------------------------------------------- resources


def _darknet_file(name: str) -> Path:
    from yolo9000.reference import darknet_file  # lazy: wordtree itself never needs yolo9000
    return darknet_file(name)


def load_wordnet(folder: Path | None) -> WordNet:
    """WordNet from `folder`, else the reference data dir of `yolo9000 setup`, else NLTK's search path; the parsed
    graph is kept in the data dir's `cache/` for the next load."""
    cache = None
    try:
        from yolo9000.reference import wordnet_cache_dir, wordnet_nltk_root
        cache = wordnet_cache_dir()
        if folder is None:
            folder = wordnet_nltk_root()
    except ImportError:  # wordtree used without the yolo9000 package
        pass
    return WordNet.load(folder, cache_dir=cache)


class _LazyWordNet:
    """WordNet loaded only when a synset name has to be resolved (`WordTree.resolve`)."""

    def __init__(self, folder: Path | None) -> None:
        self.folder = folder

    def wnid_for(self, name: str) -> str:
        return load_wordnet(self.folder).wnid_for(name)


def resolve_root(key: str, wordnet: WordNet) -> str:
    """--root as a wnid (`n00001930`) or an NLTK synset name (`physical_entity.n.01`)."""
    if _WNID.match(key):
        if key not in wordnet:
            raise CliError(f"--root {key} is not a WordNet 3.0 noun synset")
        return key
    if _SYNSET_NAME.match(key):
        return wordnet.wnid_for(key)
    raise CliError(f"--root {key!r}: give a wnid like n00001930 or a synset name like physical_entity.n.01")


def _name_of(wordnet: WordNet, wnid: str) -> str:
    return wordnet.name(wnid) if wnid in wordnet else "(not a WordNet 3.0 noun)"


# ---------------------------------------------------------------------------------------------------- build


def _targets(args: argparse.Namespace) -> tuple[list[str], str]:
    if args.preset:
        tree_9k = load_tree(DARKNET_9K)
        targets = targets_9k_standin(tree_9k, _darknet_file("imagenet.labels.list"), _darknet_file("coco9k.map"))
        return targets, "preset 9k: darknet 9k.tree nodes that are ImageNet-22k synsets, plus the COCO-mapped nodes"
    if args.classes:
        if not args.classes.is_file():
            raise CliError(f"--classes {args.classes} does not exist (one wnid per line)")
        targets = targets_from_file(args.classes)
        if not targets:
            raise CliError(f"--classes {args.classes} holds no wnid")
        return targets, f"{args.classes}"
    if args.top is None or args.top <= 0:
        raise CliError("--imagenet-root needs --top K (K > 0): the K wnid folders with the most images")
    targets = targets_from_imagenet_root(args.imagenet_root, args.top)
    return targets, f"top {len(targets)} wnid folders of {args.imagenet_root} by image count"


def _overrides(args: argparse.Namespace) -> tuple[Overrides | None, str]:
    if args.overrides is not None:
        if not args.overrides.is_file():
            raise CliError(f"--overrides {args.overrides} does not exist")
        ov = Overrides.load(args.overrides)
        return ov, f"{args.overrides} ({len(ov.graft)} grafts, {len(ov.exclude)} exclusions)"
    if args.preset and not args.no_overrides:
        return DARKNET_9K_OVERRIDES, "darknet's 4 hand grafts (built in; also datasets/9k_overrides.yaml)"
    return None, "none"


def format_unreachable(result: BuildResult, wordnet: WordNet, root: str) -> list[str]:
    """Lines naming each unreachable target with its WordNet hypernyms, and what to do about them."""
    if not result.unreachable:
        return ["unreachable targets: none"]
    lines = [f"{len(result.unreachable)} targets have no hypernym path to {_name_of(wordnet, root)} ({root}) and are "
             "NOT in the tree:"]
    for w in result.unreachable:
        if w in wordnet:
            ups = ", ".join(f"{h} {wordnet.name(h)}" for h in wordnet.hypernyms(w)) or "none"
            lines.append(f"  {w} {wordnet.name(w)} (WordNet hypernyms: {ups})")
        else:
            lines.append(f"  {w} (not a WordNet 3.0 noun synset)")
    first = result.unreachable[0]
    lines.append(f"  to keep them, graft each under a node of the tree in an overrides YAML (graft: {{{first}: "
                 "<parent wnid>}) and pass --overrides FILE; to drop them quietly, list them under exclude:; "
                 "or pick a higher --root (e.g. entity.n.01)")
    return lines


def format_stats(tree: WordTree) -> str:
    s = tree.stats()
    return (f"{s['nodes']} nodes, {s['leaves']} leaves, {s['internal']} internal, {s['groups']} groups, "
            f"{s['roots']} roots, max depth {s['max_depth']}, mean leaf depth {s['mean_leaf_depth']}, "
            f"largest group {s['largest_group']}")


def cmd_build(args: argparse.Namespace) -> int:
    wordnet = load_wordnet(args.wordnet)
    root = resolve_root(args.root, wordnet)
    targets, origin = _targets(args)
    overrides, ov_text = _overrides(args)
    result = build_tree(targets, wordnet, overrides, root=root)
    tree, st = result.tree, result.stats
    summary = {"targets": len(targets), "origin": origin, "root": root, "overrides": ov_text,
               "build": st, "tree": tree.stats(), "roots": [tree.wnids[r] for r in tree.roots],
               "unreachable": list(result.unreachable)}
    lines = [f"targets: {len(targets)} ({origin})",
             f"root: {wordnet.synset_name(root)} {root} (not a node; its children in the tree are the roots)",
             f"overrides: {ov_text}",
             f"built in {st['seconds']:.2f} s: paper rule {st['nodes_paper']} nodes, collapsed {st['collapsed']}, "
             f"lifted {st['lifted']}",
             f"tree: {format_stats(tree)}",
             "roots: " + ", ".join(tree.describe(r) for r in tree.roots),
             *format_unreachable(result, wordnet, root)]
    if args.preset:
        d = diff(tree, load_tree(DARKNET_9K))
        summary["vs_9k"] = {"common": d.common, "parent_agreement": d.parent_agreement,
                            "parent_agreement_9k": d.parent_agreement_b, "nodes_9k": d.nodes_b}
        lines.append(f"vs darknet's 9k.tree: {d.common} common nodes, parent agreement {100 * d.parent_agreement:.2f}"
                     f" % ({100 * d.parent_agreement_b:.2f} % of its {d.nodes_b} nodes); `yolo9000 tree diff "
                     f"{args.out}.tree 9k` lists the differences")
    written = write_darknet(tree, args.out) if "darknet" in args.format else []
    if "json" in args.format:
        written.append(Path(f"{args.out}.json"))
        write_json(tree, written[-1])
    summary["written"] = [str(p) for p in written]
    lines.append("wrote " + ", ".join(summary["written"]))
    _emit(lines, summary, args.json)
    return 0


def _emit(lines: list[str], summary: object, json_to: str | None) -> None:
    """`--json [FILE]`, the same in every command: JSON on stdout instead of the text, or the text and JSON to
    FILE."""
    if json_to == "-":
        print(json.dumps(summary, indent=1))
        return
    if json_to:
        Path(json_to).write_text(json.dumps(summary, indent=1) + "\n")
    print("\n".join(lines))


# ---------------------------------------------------------------------------------------------------- stats, diff


def cmd_stats(args: argparse.Namespace) -> int:
    tree = load_tree(args.tree)
    print(f"{args.tree}: {format_stats(tree)}")
    print("roots: " + ", ".join(tree.describe(r) for r in tree.roots))
    sizes, order = tree.group_size.sort(descending=True, stable=True)
    biggest = []
    for g, size in zip(order[:5].tolist(), sizes[:5].tolist()):
        p = int(tree.group_parent[g])
        biggest.append(f"{'(roots)' if p < 0 else tree.names[p]} {size}")
    print("largest groups (parent, children): " + ", ".join(biggest))
    per_depth = torch.bincount(tree.depth, minlength=tree.max_depth + 1).tolist()
    print("nodes per depth: " + " ".join(f"{d}:{n}" for d, n in enumerate(per_depth)))
    one_child = int((tree.group_size[tree.child_group[~tree.is_leaf]] == 1).sum())
    repeated = sum(1 for count in Counter(tree.names).values() if count > 1)
    print(f"nodes with exactly one child: {one_child}; display names used more than once: {repeated}")
    return 0


def cmd_diff(args: argparse.Namespace) -> int:
    a, b = load_tree(args.a), load_tree(args.b)
    print(diff(a, b).format(args.a, args.b, max_changes=args.max))
    return 0


# ---------------------------------------------------------------------------------------------------- show


def describe_node(tree: WordTree, node: int, max_children: int) -> list[str]:
    kids = tree.children(node)
    below = int((tree.subtree_mask(node) & tree.is_leaf).sum())
    kind = "leaf" if not kids else f"{len(kids)} children, {below} leaves below"
    lines = [f"{tree.describe(node)}  (node {node}, depth {int(tree.depth[node])}, {kind}, "
             f"{len(tree.siblings(node)) - 1} siblings)"]
    lines.append("  path from its root:")
    lines += [f"    {'  ' * d}{tree.describe(j)}" for d, j in enumerate(tree.path(node))]
    if kids:
        shown = kids if max_children < 0 else kids[:max_children]
        lines.append(f"  children ({len(kids)}):")
        lines += [f"    {tree.describe(c)}" + ("" if tree.is_leaf[c] else f"  ({len(tree.children(c))} children)")
                  for c in shown]
        if len(shown) < len(kids):
            lines.append(f"    ... {len(kids) - len(shown)} more (--max-children -1 shows all)")
    return lines


def cmd_show(args: argparse.Namespace) -> int:
    tree = load_tree(args.tree)
    nodes = tree.resolve(args.node, _LazyWordNet(args.wordnet))
    if len(nodes) > 1:
        print(f"{len(nodes)} nodes are named {args.node!r} (names are not unique):")
    for k, node in enumerate(nodes):
        if k:
            print()
        print("\n".join(describe_node(tree, node, args.max_children)))
    return 0


# ---------------------------------------------------------------------------------------------------- query


def read_logits(spec: str, stdin=None) -> torch.Tensor:
    """Float[R, N] (R >= 1) from a .npy file, a text file or '-' (numbers on stdin, whitespace or comma separated)."""
    if spec == "-":
        text = (stdin or sys.stdin).read()
        source = "stdin"
    else:
        path = Path(spec)
        if not path.is_file():
            raise CliError(f"logits file {spec} does not exist")
        source = str(path)
        if path.suffix == ".npy":
            import numpy as np
            try:
                array = np.load(path, allow_pickle=False)
            except ValueError as err:
                raise CliError(f"{path}: not a numeric .npy array ({err})") from None
            if array.dtype.kind not in "fiu":
                raise CliError(f"{path}: expected a numeric array, got dtype {array.dtype}")
            if array.ndim not in (1, 2) or array.size == 0:
                raise CliError(f"{path}: expected logits of shape [N] or [R, N], got {array.shape}")
            return torch.from_numpy(array.astype("float64")).reshape(-1, array.shape[-1])
        text = path.read_text()
    rows = []
    for lineno, line in enumerate(text.replace(",", " ").splitlines(), 1):
        if line.strip():
            try:
                rows.append([float(v) for v in line.split()])
            except ValueError:
                raise CliError(f"{source} line {lineno}: not a list of numbers: {line.strip()[:60]!r}") from None
    if not rows:
        raise CliError(f"{source}: no logits found")
    if len({len(r) for r in rows}) == 1 and len(rows) > 1 and len(rows[0]) > 1:
        return torch.tensor(rows, dtype=torch.float64)            # one row of logits per line
    return torch.tensor([v for r in rows for v in r], dtype=torch.float64)[None]  # one vector, any line breaks


def query_row(tree: WordTree, logits: torch.Tensor, threshold: float, top: int) -> dict:
    """Both decision walks and the top leaves for one row of logits Float[N]."""
    from wordtree.ops import absolute_probs, decide, decision_path, grouped_log_softmax, topk_leaves
    log_cond = grouped_log_softmax(logits, tree)
    cond, probs = log_cond.exp(), absolute_probs(log_cond, tree)
    out: dict = {}
    for mode in ("paper", "darknet"):
        decision = decide(cond, tree, threshold, mode=mode)
        node = int(decision.node)
        steps = []
        running = 1.0
        for j, p in decision_path(cond, tree, node):
            running *= p
            steps.append({"node": j, "wnid": tree.wnids[j], "name": tree.names[j], "cond": p, "prob": running})
        out[mode] = {"node": node, "wnid": tree.wnids[node], "name": tree.names[node], "prob": float(decision.prob),
                     "depth": int(decision.depth), "path": steps}
    k = min(top, tree.num_leaves)
    values, nodes = topk_leaves(probs, tree, k)
    out["top_leaves"] = [{"node": int(n), "wnid": tree.wnids[int(n)], "name": tree.names[int(n)], "prob": float(v)}
                         for v, n in zip(values, nodes)]
    return out


def format_query(result: dict, threshold: float) -> list[str]:
    notes = {"paper": "multiplies conditionals while the product stays above the threshold",
             "darknet": "darknet's hierarchy_top_prediction: walks absolute probabilities, stops earlier"}
    lines = []
    for mode in ("paper", "darknet"):
        r = result[mode]
        lines.append(f"{mode} walk (threshold {threshold:g}; {notes[mode]}): {r['wnid']} {r['name']}, "
                     f"P = {r['prob']:.4f}, depth {r['depth']}")
        lines.append(f"  {'depth':>5}  {'P(node|parent)':>14}  {'P(node)':>8}  node")
        lines += [f"  {d:>5}  {s['cond']:>14.4f}  {s['prob']:>8.4f}  {s['wnid']} {s['name']}"
                  for d, s in enumerate(r["path"])]
    lines.append(f"top-{len(result['top_leaves'])} leaves: " + " | ".join(
        f"{t['prob']:.4f} {t['wnid']} {t['name']}" for t in result["top_leaves"]))
    return lines


def cmd_query(args: argparse.Namespace) -> int:
    tree = load_tree(args.tree)
    logits = read_logits(args.logits)
    if logits.shape[-1] != tree.num_nodes:
        raise CliError(f"logits have {logits.shape[-1]} values per row but tree {args.tree} has {tree.num_nodes} "
                       "nodes (one logit per node, in tree order)")
    if not 0.0 <= args.threshold <= 1.0:
        raise CliError(f"--hier {args.threshold} must lie in [0, 1]")
    rows = range(logits.shape[0]) if args.row is None else [args.row]
    if args.row is not None and not 0 <= args.row < logits.shape[0]:
        raise CliError(f"--row {args.row} out of range: the logits have {logits.shape[0]} rows")
    results = [query_row(tree, logits[r], args.threshold, args.top) for r in rows]
    lines = []
    for r, result in zip(rows, results):
        lines += [f"row {r}:"] * (len(results) > 1) + format_query(result, args.threshold)
    _emit(lines, results[0] if len(results) == 1 else results, args.json)
    return 0


# ---------------------------------------------------------------------------------------------------- plot


def cmd_plot(args: argparse.Namespace) -> int:
    from wordtree.plot import plot_subtree  # matplotlib is slow to import: only here
    tree = load_tree(args.tree)
    node = tree.resolve_one(args.node, _LazyWordNet(args.wordnet))
    if args.depth < 1:
        raise CliError(f"--depth {args.depth} must be at least 1")
    info = plot_subtree(tree, node, args.out, depth=args.depth, max_nodes=args.max_nodes)
    note = f" (limited by --max-nodes {args.max_nodes})" if info["limited"] else ""
    print(f"wrote {args.out}: {tree.describe(node)}, {info['shown']} of {info['subtree']} subtree nodes, "
          f"depth {info['depth']}{note}")
    return 0


# ---------------------------------------------------------------------------------------------------- validate


def cmd_validate(args: argparse.Namespace) -> int:
    from wordtree.validate import validate
    wordnet = None if args.no_wordnet else load_wordnet(args.wordnet)
    problems, checked = validate(args.prefix, wordnet, args.map)
    for problem in problems:
        print(problem)
    files = ", ".join(p.name for p in checked)
    scope = "structure only (--no-wordnet)" if wordnet is None else "structure and WordNet 3.0"
    if problems:
        print(f"{len(problems)} problem{'s' if len(problems) > 1 else ''} in {files} ({scope})")
        return 1
    print(f"ok: {files} ({scope})")
    return 0


# ---------------------------------------------------------------------------------------------------- demo


def run_tree_demo(log: Callable[[str], None] = print) -> dict:
    """The tree part of `yolo9000 demo` (issue 2 §4): darknet's 9k tree against one built from WordNet.

    Loads darknet's 9k.tree, builds a tree from WordNet 3.0 for the 9k stand-in targets (darknet's 4 hand grafts
    applied, as `tree build --preset 9k` does), prints the diff and the path of n02110341 (dalmatian) up to its
    root in both trees.

    Returns:
        {"darknet_nodes", "darknet_leaves", "darknet_groups", "darknet_roots", "darknet_max_depth", "targets",
        "built_nodes", "built_leaves", "built_groups", "common_nodes", "parent_agreement" (fraction of common nodes
        with darknet's parent), "parent_agreement_darknet" (fraction of darknet's nodes), "roots_match",
        "unreachable_without_grafts" (list of wnids), "build_seconds", "dalmatian_path" (wnids, root first, in the
        built tree), "dalmatian_path_matches"}.
    Raises:
        yolo9000.reference.ReferenceDataError / WordNetError when `yolo9000 setup` has not been run.
    """
    tree_9k = load_tree(DARKNET_9K)
    log(f"darknet 9k.tree: {format_stats(tree_9k)}")
    wordnet = load_wordnet(None)
    targets = targets_9k_standin(tree_9k, _darknet_file("imagenet.labels.list"), _darknet_file("coco9k.map"))
    start = time.perf_counter()
    result = build_tree(targets, wordnet, DARKNET_9K_OVERRIDES)
    seconds = time.perf_counter() - start
    built = result.tree
    log(f"built from WordNet 3.0 for {len(targets)} stand-in targets in {seconds:.2f} s "
        f"(paper rule {result.stats['nodes_paper']} nodes, collapsed {result.stats['collapsed']}, "
        f"lifted {result.stats['lifted']}; darknet's 4 grafts applied): {format_stats(built)}")
    bare = build_tree(targets, wordnet)
    log(f"without the grafts {len(bare.unreachable)} targets have no path to physical_entity: "
        + ", ".join(f"{w} {wordnet.name(w)}" for w in bare.unreachable))
    d = diff(built, tree_9k)
    log(d.format("built", "darknet", max_changes=5))
    dalmatian = built.index(DALMATIAN)
    path = [built.wnids[j] for j in built.path(dalmatian)]
    same = path == [tree_9k.wnids[j] for j in tree_9k.path(tree_9k.index(DALMATIAN))]
    log(f"path of {DALMATIAN} in the built tree ({'same as' if same else 'differs from'} darknet's):")
    for depth, j in enumerate(built.path(dalmatian)):
        log(f"  {'  ' * depth}{built.describe(j)}")
    return {
        "darknet_nodes": tree_9k.num_nodes, "darknet_leaves": tree_9k.num_leaves, "darknet_groups": tree_9k.num_groups,
        "darknet_roots": len(tree_9k.roots), "darknet_max_depth": tree_9k.max_depth, "targets": len(targets),
        "built_nodes": built.num_nodes, "built_leaves": built.num_leaves, "built_groups": built.num_groups,
        "common_nodes": d.common, "parent_agreement": round(d.parent_agreement, 5),
        "parent_agreement_darknet": round(d.parent_agreement_b, 5), "roots_match": set(d.roots_a) == set(d.roots_b),
        "unreachable_without_grafts": list(bare.unreachable), "build_seconds": round(seconds, 3),
        "dalmatian_path": path, "dalmatian_path_matches": same,
    }


# ---------------------------------------------------------------------------------------------------- argparse


def register(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="tree_command", metavar="SUBCOMMAND")
    tree_help = "a tree: '9k' (darknet's), a darknet .tree file (with its .names beside it) or a .json tree"
    wordnet_help = "WordNet 3.0 folder or NLTK data dir (default: the `yolo9000 setup` data dir, else NLTK's path)"

    p = sub.add_parser("build", help="build a tree from WordNet for a set of target wnids",
                       description="Build a WordTree from WordNet 3.0: the paper's rule (single-path targets first, "
                                   "then the path adding fewest nodes) plus collapse and lift. Writes PREFIX.tree, "
                                   "PREFIX.names, PREFIX.labels.")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--preset", choices=[DARKNET_9K],
                       help="9k: darknet's 9k-tree nodes that are ImageNet-22k synsets plus the COCO-mapped nodes "
                            "(9150 targets); applies darknet's 4 hand grafts (datasets/9k_overrides.yaml) by default")
    which.add_argument("--classes", type=Path, metavar="FILE", help="one wnid per line (# comments allowed)")
    which.add_argument("--imagenet-root", type=Path, metavar="DIR",
                       help="ImageNet-22k folder with one sub-folder per wnid: the --top K by image count")
    p.add_argument("--top", type=int, metavar="K", help="with --imagenet-root: how many wnids (the paper: 9000)")
    p.add_argument("--root", default=PHYSICAL_ENTITY, metavar="WNID",
                   help="synset the tree hangs under, not itself a node: wnid or synset name "
                        "(default n00001930 = physical_entity.n.01, as darknet's tree)")
    p.add_argument("--overrides", type=Path, metavar="FILE",
                   help="YAML with graft: {wnid: parent_wnid} and exclude: [wnid]; replaces the preset's grafts")
    p.add_argument("--no-overrides", action="store_true", help="with --preset 9k: pure WordNet, no hand grafts")
    p.add_argument("--wordnet", type=Path, metavar="DIR", help=wordnet_help)
    p.add_argument("--out", required=True, metavar="PREFIX", help="output prefix of the tree files")
    p.add_argument("--format", nargs="+", choices=("darknet", "json"), default=["darknet"], metavar="FORMAT",
                   help="tree files to write: darknet (PREFIX.tree/.names/.labels, the default) and/or json "
                        "(PREFIX.json)")
    p.add_argument("--json", nargs="?", const="-", metavar="FILE",
                   help="the build summary as JSON: on stdout instead of the text, or written to FILE")
    p.set_defaults(tree_func=cmd_build)

    p = sub.add_parser("stats", help="node, leaf, group and depth counts of a tree")
    p.add_argument("tree", metavar="FILE", help=tree_help)
    p.set_defaults(tree_func=cmd_stats)

    p = sub.add_parser("diff", help="compare two trees by wnid: counts, parent agreement, roots, differing parents")
    p.add_argument("a", metavar="A", help=tree_help)
    p.add_argument("b", metavar="B", help="the reference tree, same forms as A")
    p.add_argument("--max", type=int, default=20, metavar="N", help="differing parents to list (-1: all)")
    p.set_defaults(tree_func=cmd_diff)

    p = sub.add_parser("show", help="a node's path from its root and its children, with names")
    p.add_argument("node", metavar="WNID|NAME", help="wnid, display name (every match is shown), synset name or index")
    p.add_argument("--tree", default=DARKNET_9K, metavar="FILE", help=tree_help + " (default 9k)")
    p.add_argument("--max-children", type=int, default=40, metavar="N", help="children to list (-1: all)")
    p.add_argument("--wordnet", type=Path, metavar="DIR", help=wordnet_help + "; only for synset names")
    p.set_defaults(tree_func=cmd_show)

    p = sub.add_parser("query", help="decision walks (paper and darknet) and top leaves for a vector of logits")
    p.add_argument("--logits", required=True, metavar="FILE.npy|-",
                   help="one logit per node: a .npy array [N] or [R, N], a text file, or '-' for numbers on stdin")
    p.add_argument("--tree", default=DARKNET_9K, metavar="FILE", help=tree_help + " (default 9k)")
    p.add_argument("--hier", dest="threshold", type=float, default=0.5,
                   help="tree decision threshold, darknet's hier_thresh (default 0.5)")
    p.add_argument("--top", type=int, default=5, metavar="K", help="top-K leaves to list")
    p.add_argument("--row", type=int, metavar="R", help="only this row of a [R, N] array")
    p.add_argument("--json", nargs="?", const="-", metavar="FILE",
                   help="the results as JSON: on stdout instead of the text, or written to FILE")
    p.set_defaults(tree_func=cmd_query)

    p = sub.add_parser("plot", help="draw a subtree to PNG (networkx + matplotlib)")
    p.add_argument("node", metavar="WNID|NAME", help="subtree root: wnid, unique display name, synset name or index")
    p.add_argument("--out", required=True, type=Path, metavar="PNG", help="output image")
    p.add_argument("--depth", type=int, default=2, metavar="K", help="levels below the node to draw (default 2)")
    p.add_argument("--max-nodes", type=int, default=150, metavar="N",
                   help="draw at most this many nodes: depth is reduced, then children elided (default 150)")
    p.add_argument("--tree", default=DARKNET_9K, metavar="FILE", help=tree_help + " (default 9k)")
    p.add_argument("--wordnet", type=Path, metavar="DIR", help=wordnet_help + "; only for synset names")
    p.set_defaults(tree_func=cmd_plot)

    p = sub.add_parser("validate", help="check a hand-edited darknet tree set (.tree/.names/.labels/.map): every "
                                        "problem with file and line, exit 1 if any",
                       description="Check PREFIX.tree and, when present, PREFIX.labels, PREFIX.names and PREFIX.map: "
                                   "byte-order marks, empty files, blank lines, malformed rows, duplicate wnids, "
                                   "dangling parents, cycles, parents after children, non-contiguous siblings, "
                                   "labels that differ from the tree, map indices outside it, wnids that are not "
                                   "WordNet 3.0 nouns and names that are none of their wnid's WordNet lemmas. "
                                   "Prints FILE:LINE: problem for each; exit 1 if any.")
    p.add_argument("prefix", metavar="PREFIX", help="tree set prefix: data/9k checks data/9k.tree, .labels, .names, "
                                                   ".map")
    p.add_argument("--map", action="append", type=Path, default=[], metavar="FILE",
                   help="another .map file to check against the tree (repeatable), e.g. coco9k.map")
    p.add_argument("--no-wordnet", action="store_true", help="structure only: skip the WordNet checks")
    p.add_argument("--wordnet", type=Path, metavar="DIR", help=wordnet_help)
    p.set_defaults(tree_func=cmd_validate)

    parser.set_defaults(func=run, tree_parser=parser)


def run(args: argparse.Namespace) -> int:
    """Run the chosen `tree` subcommand. User errors (`WordTreeError`, and the reference data's when yolo9000 is
    installed) propagate to `yolo9000.cli.main`, which prints them as one line with exit status 2."""
    func = getattr(args, "tree_func", None)
    if func is None:
        args.tree_parser.print_help(sys.stderr)
        return 2
    return func(args)
