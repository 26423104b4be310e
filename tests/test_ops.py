"""wordtree.ops against slow references written here (loops over groups, nodes and rows), on the tiny hand-built
tree and darknet's 9k tree; gradcheck; tree_nll's gradient support (issue 2 §3, §5)."""
from __future__ import annotations

import math

import pytest
import torch

from wordtree import ops
from wordtree.ops import (absolute_log_probs, absolute_probs, decide, decision_path, group_logsumexp,
                          grouped_log_softmax, subtree_prob, topk_leaves, tree_nll)

# ---------------------------------------------------------------------------------------------------- references


def ref_grouped_log_softmax(logits, tree):
    """One log-softmax per sibling group: plain Python over rows and groups (darknet's softmax_tree), float64."""
    offsets, sizes = tree.group_offset.tolist(), tree.group_size.tolist()
    out = []
    for row in logits.detach().double().reshape(-1, tree.num_nodes).tolist():
        res = []
        for off, size in zip(offsets, sizes):
            vals = row[off:off + size]
            top = max(vals)
            shift = top if math.isfinite(top) else 0.0
            lse = shift + math.log(sum(math.exp(v - shift) for v in vals))
            res += [v - lse for v in vals]
        out.append(res)
    return torch.tensor(out, dtype=torch.float64).view(logits.shape).to(logits.dtype)


def ref_absolute_probs(cond, tree):
    """darknet's hierarchy_predictions: in index order p[j] *= p[parent[j]]."""
    parents = tree.parent.tolist()
    out = []
    for row in cond.double().reshape(-1, tree.num_nodes).tolist():
        for j, p in enumerate(parents):
            if p >= 0:
                row[j] *= row[p]
        out.append(row)
    return torch.tensor(out, dtype=torch.float64).view(cond.shape).to(cond.dtype)


def ref_tree_nll(logits, labels, tree):
    """darknet's delta_region_class: cross-entropy of every group from the label up to its root."""
    flat, lab = logits.reshape(-1, tree.num_nodes), labels.reshape(-1).tolist()
    out = torch.zeros(len(lab), dtype=logits.dtype)
    for r, node in enumerate(lab):
        while node >= 0:
            g = int(tree.group[node])
            off, size = int(tree.group_offset[g]), int(tree.group_size[g])
            out[r] = out[r] - flat[r, off:off + size].log_softmax(-1)[node - off]
            node = int(tree.parent[node])
    return out.view(labels.shape)


def ref_decide_paper(cond, tree, threshold):
    """The paper's walk, one row, scalar loop: multiply conditionals while the product stays above threshold."""
    p, group, decided = 1.0, 0, None
    while True:
        off, size = int(tree.group_offset[group]), int(tree.group_size[group])
        best = max(range(off, off + size), key=lambda j: (cond[j], -j))  # first maximum
        if decided is None:
            decided = best  # the best root answers even below the threshold
        if p * cond[best] <= threshold:
            return decided
        p, decided = p * cond[best], best
        group = int(tree.child_group[best])
        if group < 0:
            return decided


def ref_hierarchy_top_prediction(predictions, tree, thresh):
    """darknet's src/tree.c hierarchy_top_prediction, transcribed line by line (darknet_yolo9000.md section 5)."""
    p, group = 1.0, 0
    while True:
        max_val, max_i = 0.0, 0
        for i in range(int(tree.group_size[group])):
            index = i + int(tree.group_offset[group])
            val = predictions[index]
            if val > max_val:
                max_i, max_val = index, val
        if p * max_val > thresh:
            p = p * max_val
            group = int(tree.child_group[max_i])
            if int(tree.child_group[max_i]) < 0:
                return max_i
        elif group == 0:
            return max_i
        else:
            return int(tree.parent[int(tree.group_offset[group])])


def ref_subtree_prob(probs, tree, node):
    """Sum of P(leaf) over the leaves whose ancestor chain reaches `node`."""
    parents, leaf = tree.parent.tolist(), tree.is_leaf.tolist()
    under = []
    for j in range(tree.num_nodes):
        k = j
        while k >= 0 and k != node:
            k = parents[k]
        if leaf[j] and k == node:
            under.append(j)
    return torch.tensor([sum(row[j] for j in under) for row in probs.double().tolist()], dtype=probs.dtype)


@pytest.fixture(params=["tiny", "9k"])
def tree(request, tiny_tree, darknet_9k_tree):
    return tiny_tree if request.param == "tiny" else darknet_9k_tree


def random_logits(tree, rows, scale=3.0, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(rows, tree.num_nodes, generator=g, dtype=dtype) * scale


# ---------------------------------------------------------------------------------------------------- softmax


@pytest.mark.parametrize("scale", [1.0, 3.0, 60.0, 400.0])
def test_grouped_log_softmax_matches_loop(tree, scale):
    """Large scales push exp past float32's range both ways and exercise the exact per-group-max fallback."""
    logits = random_logits(tree, 5, scale)
    expected = ref_grouped_log_softmax(logits, tree)
    torch.testing.assert_close(grouped_log_softmax(logits, tree), expected)
    got32 = grouped_log_softmax(logits.float(), tree)
    assert got32.dtype == torch.float32
    torch.testing.assert_close(got32, expected.float(), rtol=1e-5, atol=1e-5 * scale)
    torch.testing.assert_close(group_logsumexp(logits, tree),
                               torch.stack([logits[:, o:o + s].logsumexp(-1) for o, s in
                                            zip(tree.group_offset.tolist(), tree.group_size.tolist())], 1))


def test_grouped_log_softmax_groups_sum_to_one_and_keep_shape(tree):
    logits = random_logits(tree, 6).view(2, 3, tree.num_nodes).permute(1, 0, 2)  # non-contiguous, 2 leading dims
    out = grouped_log_softmax(logits, tree)
    assert out.shape == (3, 2, tree.num_nodes)
    sums = torch.zeros(3, 2, tree.num_groups, dtype=out.dtype).index_add_(-1, tree.group, out.exp())
    torch.testing.assert_close(sums, torch.ones_like(sums))
    by_column = random_logits(tree, 4).t().contiguous().t()  # class axis with stride R, as a raw head output
    torch.testing.assert_close(grouped_log_softmax(by_column, tree), ref_grouped_log_softmax(by_column, tree))
    # .sum() hands backward an expanded (stride 0) gradient: d/dx sum_j log p_j = 1 - group_size * softmax
    x = by_column.clone().requires_grad_(True)
    grouped_log_softmax(x, tree).sum().backward()
    expected = 1 - tree.group_size[tree.group] * ref_grouped_log_softmax(by_column, tree).exp()
    torch.testing.assert_close(x.grad, expected)


def test_grouped_log_softmax_handles_masked_and_half_inputs(tiny_tree):
    logits = random_logits(tiny_tree, 3)
    logits[0, 2] = -math.inf  # one masked logit: probability 0, the rest of its group renormalised
    out = grouped_log_softmax(logits, tiny_tree)
    assert out[0, 2] == -math.inf
    torch.testing.assert_close(out[0, 3:5], logits[0, 3:5].log_softmax(-1))
    bf16 = grouped_log_softmax(logits[1:].bfloat16(), tiny_tree)
    assert bf16.dtype == torch.float32
    torch.testing.assert_close(bf16, ref_grouped_log_softmax(logits[1:].bfloat16().double(), tiny_tree).float())


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("rows_per_block", [1, 2, 7, 1000])
def test_grouped_log_softmax_row_blocks_agree(darknet_9k_tree, rows_per_block, threads, monkeypatch):
    """CPU runs in row blocks, accelerators in one block (rows_per_block >= R): both give the same values and
    gradients, including rows that need the exact fallback; on one thread and on several (index_select or gather
    spreads the group values)."""
    monkeypatch.setattr(torch, "get_num_threads", lambda: threads)
    tree = darknet_9k_tree
    logits = random_logits(tree, 7, 3.0)
    logits[3] *= 200
    weights = random_logits(tree, 7, 1.0, seed=1)
    x = logits.clone().requires_grad_(True)
    out = ops._GroupedLogSoftmax.apply(x, tree.group, tree.num_groups, rows_per_block)
    (out * weights).sum().backward()
    # Gradient reference: autograd through an independent formula (scatter-based group_logsumexp, checked against
    # the loop above), since the Function's backward is hand-written.
    x_ref = logits.clone().requires_grad_(True)
    ((x_ref - group_logsumexp(x_ref, tree)[:, tree.group]) * weights).sum().backward()
    torch.testing.assert_close(out, ref_grouped_log_softmax(logits, tree))
    torch.testing.assert_close(x.grad, x_ref.grad)


def test_gradcheck_on_tiny_tree(tiny_tree):
    x = random_logits(tiny_tree, 3).requires_grad_(True)
    labels = torch.tensor([9, 4, -1])
    assert torch.autograd.gradcheck(lambda v: grouped_log_softmax(v, tiny_tree), (x,))
    assert torch.autograd.gradcheck(lambda v: group_logsumexp(v, tiny_tree), (x,))
    assert torch.autograd.gradcheck(lambda v: tree_nll(v, labels, tiny_tree), (x,))
    assert torch.autograd.gradcheck(lambda v: absolute_probs(grouped_log_softmax(v, tiny_tree), tiny_tree), (x,))


# ---------------------------------------------------------------------------------------------------- absolute


def test_absolute_probs_match_darknet_loop(tree):
    cond = grouped_log_softmax(random_logits(tree, 4), tree).exp()
    expected = ref_absolute_probs(cond, tree)
    got = absolute_probs(cond.log(), tree)
    torch.testing.assert_close(got, expected)
    torch.testing.assert_close(absolute_log_probs(cond.log(), tree), expected.log())
    roots = tree.parent < 0
    torch.testing.assert_close(got[:, roots].sum(-1), torch.ones(4, dtype=got.dtype))
    torch.testing.assert_close(got[:, tree.is_leaf].sum(-1), torch.ones(4, dtype=got.dtype))


# ---------------------------------------------------------------------------------------------------- tree_nll


def test_tree_nll_matches_loop_with_internal_labels_and_ignore(tree):
    logits = random_logits(tree, 12)
    g = torch.Generator().manual_seed(3)
    labels = torch.randint(0, tree.num_nodes, (12,), generator=g)
    labels[2] = -1
    labels[5] = int((~tree.is_leaf).nonzero()[-1])  # a deep internal node
    labels[7] = tree.roots[-1]                      # a root: only the roots' group
    got = tree_nll(logits, labels, tree)
    torch.testing.assert_close(got, ref_tree_nll(logits, labels, tree))
    assert got[2] == 0
    # exp(-loss) is P(label): the absolute probability of the labelled node.
    probs = absolute_probs(grouped_log_softmax(logits, tree), tree)
    keep = labels >= 0
    torch.testing.assert_close((-got[keep]).exp(), probs[keep].gather(1, labels[keep, None]).squeeze(1))


def test_tree_nll_leading_dims_strides_and_float32(darknet_9k_tree):
    tree = darknet_9k_tree
    raw = random_logits(tree, 6).view(2, tree.num_nodes, 3)  # class axis in the middle, as in a raw head output
    logits = raw.permute(0, 2, 1)                              # [2, 3, N], non-contiguous
    labels = torch.tensor([[5, -1, 9000], [7000, 17, -1]])
    got = tree_nll(logits, labels, tree)
    assert got.shape == (2, 3)
    torch.testing.assert_close(got, ref_tree_nll(logits.contiguous(), labels, tree))
    got32 = tree_nll(logits.float(), labels, tree)
    assert got32.dtype == torch.float32
    torch.testing.assert_close(got32, got.float())
    assert tree_nll(logits[0, 0], torch.tensor(5), tree).shape == ()


def test_tree_nll_gradient_only_on_path_groups(tree):
    logits = random_logits(tree, 4).requires_grad_(True)
    leaf = tree.leaves()[-1]
    labels = torch.tensor([leaf, int(tree.parent[leaf]), -1, tree.roots[0]])
    tree_nll(logits, labels, tree).sum().backward()
    for r, label in enumerate(labels.tolist()):
        on_path = torch.zeros(tree.num_nodes, dtype=torch.bool)
        for node in (tree.path(label) if label >= 0 else []):
            on_path |= tree.group == tree.group[node]
        assert (logits.grad[r, ~on_path] == 0).all(), f"row {r}: gradient outside the path groups"
        if label >= 0:
            # a one-node group has softmax 1 whatever its logit, so only groups of two or more get a gradient
            assert (logits.grad[r, on_path & (tree.group_size[tree.group] > 1)] != 0).all()
            # each group's gradient is softmax - onehot: it sums to zero
            torch.testing.assert_close(logits.grad[r, on_path].sum(), torch.tensor(0.0, dtype=torch.float64))


def test_tree_nll_all_ignored_still_backpropagates(tiny_tree):
    logits = random_logits(tiny_tree, 3).requires_grad_(True)
    loss = tree_nll(logits, torch.full((3,), -1), tiny_tree)
    assert (loss == 0).all()
    loss.sum().backward()
    assert (logits.grad == 0).all()


def test_tree_nll_errors(tiny_tree):
    logits = random_logits(tiny_tree, 2)
    with pytest.raises(ValueError, match="label 11 out of range: node indices are 0..10"):
        tree_nll(logits, torch.tensor([0, 11]), tiny_tree)
    with pytest.raises(ValueError, match="labels have shape \\(3,\\), expected"):
        tree_nll(logits, torch.tensor([0, 1, 2]), tiny_tree)
    with pytest.raises(ValueError, match="must be integer node indices"):
        tree_nll(logits, torch.tensor([0.0, 1.0]), tiny_tree)
    with pytest.raises(ValueError, match=r"expected shape \[..., 11\]"):
        tree_nll(logits[:, :5], torch.tensor([0, 1]), tiny_tree)


# ---------------------------------------------------------------------------------------------------- decide


@pytest.mark.parametrize("threshold", [0.0, 0.3, 0.5, 0.9])
def test_decide_matches_scalar_walks(tree, threshold):
    logits = random_logits(tree, 8, scale=4.0, seed=5)
    leaf = tree.leaves()[len(tree.leaves()) // 2]
    logits[0, tree.path(leaf)] += 40.0  # one confident row that walks all the way down
    cond = grouped_log_softmax(logits, tree).exp()
    absolute = ref_absolute_probs(cond, tree)
    paper = decide(cond, tree, threshold, mode="paper")
    darknet = decide(cond, tree, threshold, mode="darknet")
    for r in range(8):
        row = cond[r].tolist()
        expected = ref_decide_paper(row, tree, threshold)
        assert int(paper.node[r]) == expected
        assert int(darknet.node[r]) == ref_hierarchy_top_prediction(absolute[r].tolist(), tree, threshold)
        torch.testing.assert_close(paper.prob[r], absolute[r, expected])
        assert int(paper.depth[r]) == int(tree.depth[expected])
    if threshold <= 0.5:
        assert int(paper.node[0]) == leaf


def test_decide_modes_differ_as_documented(tiny_tree):
    """Conditionals .9 at each level: the paper multiplies .9 * .9 = .81 > .7 and reaches depth 1, while darknet
    multiplies absolute probabilities .9 * .81 = .729 ... and stops one level above where the paper does."""
    t = tiny_tree
    cond = torch.zeros(t.num_nodes, dtype=torch.float64)
    cond[[0, 1]] = torch.tensor([0.9, 0.1], dtype=torch.float64)
    cond[[2, 3, 4]] = torch.tensor([0.05, 0.05, 0.9], dtype=torch.float64)
    cond[[6, 7]] = torch.tensor([0.9, 0.1], dtype=torch.float64)
    cond[5] = cond[8] = 1.0
    cond[[9, 10]] = 0.5
    paper = decide(cond, t, threshold=0.7, mode="paper")
    darknet = decide(cond, t, threshold=0.7, mode="darknet")
    assert int(paper.node) == 6      # .9 * .9 * .9 = .729 > .7: reaches the leaf a3x
    assert int(darknet.node) == 4    # .9 * .81 * .729 < .7: darknet stops, returning the last accepted node a3
    assert int(decide(cond, t, threshold=0.95).node) == 0  # nothing passes: the best root
    torch.testing.assert_close(paper.prob, torch.tensor(0.729, dtype=torch.float64))
    path = decision_path(cond, t, int(paper.node))
    assert [n for n, _ in path] == [0, 4, 6] and math.prod(p for _, p in path) == pytest.approx(0.729)
    with pytest.raises(ValueError, match="mode 'best' is not one of"):
        decide(cond, t, mode="best")


def ref_decide_from(cond, tree, threshold, start):
    """The paper's walk restricted to `start`'s subtree, scalar loop: P(. | start), `start` when nothing passes."""
    p, decided, group = 1.0, start, int(tree.child_group[start])
    while group >= 0:
        off, size = int(tree.group_offset[group]), int(tree.group_size[group])
        best = max(range(off, off + size), key=lambda j: (cond[j], -j))
        if p * cond[best] <= threshold:
            return decided
        p, decided, group = p * cond[best], best, int(tree.child_group[best])
    return decided


def ref_darknet_from(absolute, tree, thresh, start):
    """darknet's walk begun in `start`'s children on P(. | start) = P(.) / P(start)."""
    p, group = 1.0, int(tree.child_group[start])
    if group < 0:
        return start
    while True:
        max_val, max_i = 0.0, 0
        for i in range(int(tree.group_size[group])):
            index = i + int(tree.group_offset[group])
            val = absolute[index] / absolute[start]
            if val > max_val:
                max_i, max_val = index, val
        if p * max_val > thresh:
            p = p * max_val
            group = int(tree.child_group[max_i])
            if group < 0:
                return max_i
        else:
            return int(tree.parent[int(tree.group_offset[group])])


def ref_leaf(cond, tree):
    """Argmax down to a leaf, whatever the probabilities."""
    group, best = 0, None
    while group >= 0:
        off, size = int(tree.group_offset[group]), int(tree.group_size[group])
        best = max(range(off, off + size), key=lambda j: (cond[j], -j))
        group = int(tree.child_group[best])
    return best


@pytest.mark.parametrize("threshold", [0.0, 0.3, 0.6])
def test_decide_inside_a_subtree_and_to_a_leaf(tree, threshold):
    logits = random_logits(tree, 8, scale=4.0, seed=7)
    cond = grouped_log_softmax(logits, tree).exp()
    absolute = ref_absolute_probs(cond, tree)
    internal = [i for i in range(tree.num_nodes) if not bool(tree.is_leaf[i])]
    starts = [internal[0], internal[len(internal) // 2], internal[-1], tree.leaves()[0]]
    for start in starts:
        subtree = set(tree.subtree(start)) | {start}
        paper = decide(cond, tree, threshold, start=start)
        darknet = decide(cond, tree, threshold, mode="darknet", start=start)
        for r in range(8):
            row = cond[r].tolist()
            expected = ref_decide_from(row, tree, threshold, start)
            assert int(paper.node[r]) == expected and expected in subtree
            # score = P(X) x P(node | X) = P(node)
            torch.testing.assert_close(paper.prob[r], absolute[r, expected])
            assert int(darknet.node[r]) == ref_darknet_from(absolute[r].tolist(), tree, threshold, start)
            assert int(darknet.node[r]) in subtree
    # --leaf: a leaf whatever the threshold, the argmax descent; with a start, a leaf below it
    for mode in ("paper", "darknet"):
        leafward = decide(cond, tree, 0.99, mode=mode, leaf=True)
        assert [int(n) for n in leafward.node] == [ref_leaf(cond[r].tolist(), tree) for r in range(8)]
        assert bool(tree.is_leaf[leafward.node].all())
        below = decide(cond, tree, 0.99, mode=mode, start=internal[0], leaf=True)
        assert bool(tree.is_leaf[below.node].all())
        assert all(int(n) in set(tree.subtree(internal[0])) for n in below.node)
    with pytest.raises(ValueError, match="start node 9999 outside the tree"):
        decide(cond, tree, start=9999)


def test_decide_keeps_leading_dims(tiny_tree):
    cond = grouped_log_softmax(random_logits(tiny_tree, 6).view(2, 3, -1), tiny_tree).exp()
    d = decide(cond, tiny_tree)
    assert d.node.shape == d.prob.shape == d.depth.shape == (2, 3)


# ---------------------------------------------------------------------------------------------------- queries


def test_subtree_prob_matches_leaf_loop(tree):
    probs = absolute_probs(grouped_log_softmax(random_logits(tree, 3), tree), tree)
    nodes = [tree.roots[0], tree.leaves()[3], int((~tree.is_leaf).nonzero()[len(tree.roots) + 1])]
    for node in nodes:
        got = subtree_prob(probs, tree, node)
        torch.testing.assert_close(got, ref_subtree_prob(probs, tree, node))
        torch.testing.assert_close(got, probs[:, node])  # tree-softmax probabilities: P(node) itself
    with pytest.raises(ValueError, match="out of range"):
        subtree_prob(probs, tree, tree.num_nodes)


def test_topk_leaves_match_sorting(tree):
    probs = absolute_probs(grouped_log_softmax(random_logits(tree, 3), tree), tree)
    leaves = tree.leaves()
    values, nodes = topk_leaves(probs, tree, k=4)
    for r in range(3):
        expected = sorted(leaves, key=lambda j: -float(probs[r, j]))[:4]
        assert nodes[r].tolist() == expected
        torch.testing.assert_close(values[r], probs[r, expected])
    subset = torch.tensor(leaves[:5])
    v_idx, n_idx = topk_leaves(probs, tree, k=2, leaves=subset)
    mask = torch.zeros(tree.num_nodes, dtype=torch.bool)
    mask[subset] = True
    v_mask, n_mask = topk_leaves(probs, tree, k=2, leaves=mask)
    assert torch.equal(n_idx, n_mask) and set(n_idx.flatten().tolist()) <= set(leaves[:5])
    with pytest.raises(ValueError, match="k=6 but there are 5 leaves"):
        topk_leaves(probs, tree, k=6, leaves=subset)


@pytest.mark.parametrize("which", ["tiny", "9k"])
def test_fixed_shape_tree_nll_matches_the_cpu_version(which, tiny_tree, darknet_9k_tree):
    """Accelerators take `_tree_nll_fixed` (no host sync); it must give the CPU version's loss and gradient."""
    tree = tiny_tree if which == "tiny" else darknet_9k_tree
    g = torch.Generator().manual_seed(7)
    logits = torch.randn(3, tree.num_nodes, 40, generator=g).transpose(1, 2) * 4  # strided, as the loss passes it
    labels = torch.randint(-1, tree.num_nodes, (3, 40), generator=g)
    labels[0] = -1  # a block of ignored rows
    a, b = logits.detach().requires_grad_(), logits.detach().clone().transpose(1, 2).requires_grad_()
    assert not b.transpose(1, 2).is_contiguous()
    expected, got = tree_nll(a, labels, tree), ops._tree_nll_fixed(b.transpose(1, 2), labels, tree)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-4)
    expected.sum().backward()
    got.sum().backward()
    torch.testing.assert_close(b.grad.transpose(1, 2), a.grad, rtol=1e-5, atol=1e-6)
    columns, depth, paths = ops.path_columns(tree)
    for node in (0, tree.num_nodes - 1, tree.num_nodes // 2):
        want = sorted(c for k in tree.path(node) for c in tree.siblings(k))
        assert sorted(c for c in columns[node].tolist() if c >= 0) == want
        assert (depth[node] >= 0).sum() == len(want)
