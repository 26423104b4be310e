"""Draw a subtree of a WordTree to PNG (networkx graph, matplotlib Agg): `yolo9000 tree plot`.

The drawing runs left to right, one column per level, one row per drawn leaf, parents centred on their children and
joined by elbow edges: the layout stays readable for the wide sibling groups of WordNet trees (herb has 149
children), where a top-down drawing would overlap its labels.
"""
from __future__ import annotations

import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display; set before pyplot is imported
import matplotlib.pyplot as plt  # noqa: E402
import networkx as nx  # noqa: E402

from wordtree.tree import WordTree  # noqa: E402

MORE = -1  # pseudo-node id base for "... N more" entries (negative: never a tree index)


def select_levels(tree: WordTree, node: int, depth: int, max_nodes: int) -> tuple[list[list[int]], dict[int, int]]:
    """The nodes to draw, level by level, and elided child counts.

    Whole levels are added while the total stays within `max_nodes`; when even the node's own children do not fit,
    the first `max_nodes - 2` are drawn and the rest become one "... N more" entry.

    Returns:
        (levels: lists of node indices, levels[0] == [node]; elided: parent -> number of children not drawn).
    """
    levels, count, elided = [[node]], 1, {}
    for _ in range(depth):
        nxt = [c for p in levels[-1] for c in tree.children(p)]
        if not nxt:
            break
        if count + len(nxt) > max_nodes:
            if len(levels) == 1:
                keep = nxt[:max(max_nodes - 2, 1)]
                levels.append(keep)
                elided[node] = len(nxt) - len(keep)
            break
        levels.append(nxt)
        count += len(nxt)
    return levels, elided


def plot_subtree(tree: WordTree, node: int, out: str | Path, depth: int = 2, max_nodes: int = 150) -> dict:
    """Draw `node` and up to `depth` levels below it to the PNG `out`.

    Returns:
        {"shown": nodes drawn, "subtree": nodes in the whole subtree, "depth": levels drawn below the node}.
    """
    levels, elided = select_levels(tree, node, depth, max_nodes)
    shown = {n for level in levels for n in level}
    graph = nx.DiGraph()
    graph.add_node(node)
    for level in levels[1:]:
        for child in level:
            graph.add_edge(int(tree.parent[child]), child)
    for parent, hidden in elided.items():
        graph.add_edge(parent, MORE)

    # Rows: drawn leaves (and the "more" entry) in depth-first tree order; parents centred on their children.
    pos: dict[int, tuple[float, float]] = {}
    next_row = [0]

    def place(n: int, level: int) -> float:
        kids = list(graph.successors(n))
        if not kids:
            y = float(next_row[0])
            next_row[0] += 1
        else:
            ys = [place(c, level + 1) for c in kids]
            y = (ys[0] + ys[-1]) / 2
        pos[n] = (float(level), -y)
        return y

    place(node, 0)
    rows = next_row[0]
    columns = len(levels) + (1 if elided and len(levels) == 1 else 0)

    hidden_below = {n: int(tree.subtree_mask(n).sum()) - 1 for n in shown
                    if tree.children(n) and not any(c in shown for c in tree.children(n))}
    fig_h = max(2.0, 0.26 * rows + 0.8)
    fig_w = 3.0 + 3.2 * max(columns - 1, 1)
    fig, ax = plt.subplots(figsize=(fig_w, fig_h))
    cmap = plt.get_cmap("viridis")

    def colour(n: int) -> tuple:
        return cmap(0.15 + 0.7 * pos[n][0] / max(columns - 1, 1))

    tree_nodes = [n for n in graph.nodes if n != MORE]
    nx.draw_networkx_edges(graph, pos, ax=ax, arrows=True, arrowstyle="-", edge_color="#9a9a9a", width=0.9,
                           connectionstyle="angle,angleA=-90,angleB=180,rad=0", node_size=0)
    leaves = [n for n in tree_nodes if tree.is_leaf[n]]
    folded = [n for n in tree_nodes if n in hidden_below]
    inner = [n for n in tree_nodes if n not in leaves and n not in folded]
    nx.draw_networkx_nodes(graph, pos, nodelist=inner, ax=ax, node_size=70, node_shape="o",
                           node_color=[colour(n) for n in inner], edgecolors="black", linewidths=0.6)
    nx.draw_networkx_nodes(graph, pos, nodelist=folded, ax=ax, node_size=55, node_shape="s",
                           node_color=[colour(n) for n in folded], edgecolors="black", linewidths=0.6)
    nx.draw_networkx_nodes(graph, pos, nodelist=leaves, ax=ax, node_size=28, node_shape="o",
                           node_color=[colour(n) for n in leaves], edgecolors="none")

    for n in tree_nodes:
        x, y = pos[n]
        label = tree.names[n]
        if n in hidden_below:
            label += f"  (+{hidden_below[n]})"
        if graph.out_degree(n):
            # Parents sit on a vertical edge: write above the marker, on a white box over the line.
            ax.annotate(label, (x, y), xytext=(0, 6), textcoords="offset points", ha="center", va="bottom",
                        fontsize=8.5, fontweight="bold", bbox=dict(boxstyle="round,pad=0.15", fc="white",
                                                                    ec="none", alpha=0.85))
            ax.annotate(tree.wnids[n], (x, y), xytext=(0, -6), textcoords="offset points", ha="center", va="top",
                        fontsize=6.5, color="#777777", bbox=dict(boxstyle="round,pad=0.1", fc="white", ec="none",
                                                                 alpha=0.85))
        else:
            name = ax.annotate(label, (x, y), xytext=(7, 0), textcoords="offset points", ha="left",
                               va="center", fontsize=8)
            # The wnid follows the name, placed relative to the name's own box.
            ax.annotate(tree.wnids[n], (1, 0.5), xycoords=name, xytext=(5, 0), textcoords="offset points",
                        ha="left", va="center", fontsize=6.5, color="#888888")
    if elided:
        x, y = pos[MORE]
        ax.annotate(f"... {elided[node]} more children", (x, y), xytext=(7, 0), textcoords="offset points",
                    ha="left", va="center", fontsize=8, style="italic", color="#555555")

    path = " \u203a ".join(tree.names[j] for j in tree.path(node))
    total = int(tree.subtree_mask(node).sum())
    leaf_count = int((tree.subtree_mask(node) & tree.is_leaf).sum())
    title = "\n".join(textwrap.wrap(path, width=max(40, int(fig_w * 11))))
    ax.set_title(title, fontsize=10, loc="left")
    legend = (f"{tree.wnids[node]} {tree.names[node]}: {total - 1} descendants, {leaf_count} leaves; drawn "
              f"{len(tree_nodes)} nodes, {len(levels) - 1} levels.  \u25cf inner  \u25a0 (+n) = n hidden "
              "descendants  \u2022 leaf")
    ax.annotate(legend, (0, 0), xycoords="axes fraction", xytext=(0, -2), textcoords="offset points", ha="left",
                va="top", fontsize=7.5, color="#444444")
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.02, top=0.98)
    ax.set_xlim(-0.25, max(columns - 1, 1) + 0.9)
    ax.set_ylim(-(rows - 1) - 0.7, 0.9)
    ax.axis("off")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return {"shown": len(tree_nodes), "subtree": total, "depth": len(levels) - 1,
            "limited": bool(elided) or (len(levels) - 1 < depth and any(tree.children(n) for n in levels[-1]))}
