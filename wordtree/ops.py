"""Tensor ops of the hierarchical softmax over a WordTree (YOLO9000 section 4, darknet `tree.c`, `region_layer.c`).

A WordTree model predicts one logit per node and one softmax per sibling group, so each output is a conditional
probability P(node | parent). The absolute probability of a node is the product of the conditionals on its
root path. Training (darknet `delta_region_class`) applies the softmax cross-entropy of every group on the path
from the label up to the root, and nothing below the label.

Every op works on Float[..., N] with any leading dims, on any device, is autograd-friendly where it makes sense,
and never loops over groups or nodes in Python: grouped softmax uses `scatter_add` on the `group` index (on CPU
in row blocks of about 4 MB, a cache tiling whose count depends on the tensor size only), loss and absolute
probabilities gather along the root paths, and the decision walk loops over tree depth only.
bf16 inputs are computed and returned in float32 (a 9418-way softmax loses too much in bf16); float64 stays float64.
"""
from __future__ import annotations

import weakref
from dataclasses import dataclass

import torch
from torch import Tensor

from wordtree.tree import WordTree

DECIDE_MODES = ("paper", "darknet")


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """float32 for half/bf16/float32 inputs, float64 for float64."""
    return torch.promote_types(dtype, torch.float32)


def _check_nodes(x: Tensor, tree: WordTree, what: str) -> None:
    if x.dim() == 0 or x.shape[-1] != tree.num_nodes:
        raise ValueError(f"{what}: expected shape [..., {tree.num_nodes}] (one value per tree node), "
                         f"got {tuple(x.shape)}")


def _on(t: Tensor, device: torch.device) -> Tensor:
    return t if t.device == device else t.to(device)


def _underflow_limit(dtype: torch.dtype) -> float:
    """A group sum below this (after the per-row shift) may have lost precision to subnormals.

    If the sum is >= tiny * 2**24, its largest term is >= tiny * 2**24 / group_size, a normal number for any group of
    fewer than 2**24 nodes, so log(sum) is accurate to the dtype's precision.
    """
    return torch.finfo(dtype).tiny * 2.0 ** 24


# ---------------------------------------------------------------------------------------------------- softmax


def group_logsumexp(logits: Tensor, tree: WordTree) -> Tensor:
    """Log-sum-exp of each sibling group, differentiable to any order by plain autograd.

    (grouped_log_softmax has its own faster path, _GroupedLogSoftmax; this form serves any other use of the group
    normalisers and is the independent formula its tests compare against.) Shifts each row by its own max (one cheap reduction instead of a per-group `scatter_reduce(amax)`), then sums
    `exp` per group with `scatter_add`. A group whose logits all sit far (about 70+ in float32) below the row max
    would underflow; only such rows are recomputed with an exact per-group max, so the result is exact for any
    logits and the common case pays for one row reduction.

    Args:
        logits: Float[R, N] (float32 or float64).
        tree: the WordTree (tensors moved to the logits' device as needed).
    Returns:
        Float[R, G], log sum_{j in group g} exp(logits[r, j]).
    """
    R, N = logits.shape
    G = tree.num_groups
    group = _on(tree.group, logits.device)
    index = group.expand(R, N)
    # The shift is a constant for autograd: d lse / dx = softmax whatever the shift.
    shift = logits.detach().amax(dim=-1, keepdim=True)
    shift = torch.where(torch.isfinite(shift), shift, torch.zeros_like(shift))
    sums = logits.new_zeros(R, G).scatter_add(1, index, (logits - shift).exp())
    bad = (sums.detach() < _underflow_limit(logits.dtype)).any(dim=-1)
    # Bad rows are recomputed below; log(1) keeps log(0)'s infinite derivative out of their backward (0 * inf).
    lse = shift + torch.where(bad[:, None], torch.ones_like(sums), sums).log()
    if bool(bad.any()):
        rows = bad.nonzero().squeeze(1)
        x = logits[rows]
        group_max = x.detach().new_full((rows.numel(), G), -torch.inf).scatter_reduce(1, index[rows], x.detach(),
                                                                                      "amax", include_self=True)
        group_max = torch.where(torch.isfinite(group_max), group_max, torch.zeros_like(group_max))
        exact_sums = x.new_zeros(rows.numel(), G).scatter_add(1, index[rows], (x - group_max[:, group]).exp())
        lse = lse.index_put((rows,), group_max + exact_sums.log())
    return lse


# Rows per block of the CPU grouped softmax: about 4 MB of logits, so the several passes over a block stay in cache
# (L2/L3) and its temporaries are reused heap memory rather than fresh page-faulting allocations.
_CPU_BLOCK_BYTES = 4 << 20


def _rows_per_block(x: Tensor) -> int:
    """All rows at once on accelerators; on CPU, blocks that fit in cache (see _GroupedLogSoftmax)."""
    if x.device.type != "cpu":
        return max(x.shape[0], 1)
    return max(1, _CPU_BLOCK_BYTES // (x.shape[1] * x.element_size()))


def _spread(per_group: Tensor, group: Tensor, index: Tensor, out: Tensor) -> Tensor:
    """out[r, n] = per_group[r, group[n]]: each group's value copied to its nodes.

    index_select is the cheapest on one thread but runs single-threaded on CPU; gather with the expanded index
    splits over threads (measured on 106 x 9418 blocks, 2 threads: 23 ms against 29 ms for index_select; 1 thread:
    44 ms against 28 ms).
    """
    if per_group.device.type == "cpu" and torch.get_num_threads() > 1:
        return torch.gather(per_group, 1, index, out=out)
    return torch.index_select(per_group, 1, group, out=out)


def _block_logsumexp(x: Tensor, index: Tensor, group: Tensor, num_groups: int, scratch: Tensor | None = None) -> Tensor:
    """Float[b, G] log-sum-exp per group of a block of rows, exact for any logits; no autograd.

    exp(x) unshifted is exact whenever no group sum overflows or loses its largest term to subnormals, which the
    sums themselves reveal; only a block where that fails pays for the per-group max shift. `scratch` (the block's
    shape, or None) receives the exponentials, so a caller looping over blocks allocates them once.
    """
    exps = torch.exp(x, out=scratch) if scratch is not None else x.exp()
    sums = x.new_zeros(x.shape[0], num_groups).scatter_add_(1, index, exps)
    low, high = (float(v) for v in torch.aminmax(sums))
    if low >= _underflow_limit(x.dtype) and high < torch.inf:  # False for NaN too: the exact path keeps the NaN
        return sums.log_()
    group_max = x.new_full(sums.shape, -torch.inf).scatter_reduce_(1, index, x, "amax")
    group_max = torch.where(torch.isfinite(group_max), group_max, torch.zeros_like(group_max))
    sums = x.new_zeros(sums.shape).scatter_add_(1, index, (x - group_max.index_select(1, group)).exp_())
    return sums.log_().add_(group_max)


class _GroupedLogSoftmax(torch.autograd.Function):
    """Float[R, N] -> log-softmax per sibling group, with a hand-written backward.

    Written as a Function for memory traffic: autograd through group_logsumexp keeps five R x N temporaries, each
    a fresh allocation and a pass through main memory, where a flat log_softmax is one fused kernel. Here the only
    R x N allocations are the output and the input gradient; on CPU the work runs in row blocks of about 4 MB, so
    the exp / scatter_add / index_select / subtract passes of a block hit the cache (a tiling of rows, not a loop
    over groups: the block count depends on R * N only). Block temporaries go to one scratch block allocated per
    call: a fresh 4 MB temporary per block costs page faults, which do not parallelise (at 2 threads they made
    index_select a third of the time). The backward is log-softmax's rule applied per group:
    d x = g - softmax * (sum of g over the group).
    """

    @staticmethod
    def forward(ctx, x: Tensor, group: Tensor, num_groups: int, rows_per_block: int) -> Tensor:
        R, N = x.shape
        out = torch.empty((R, N), dtype=x.dtype, device=x.device)
        index = group.expand(min(R, rows_per_block), N)
        scratch = torch.empty((min(R, rows_per_block), N), dtype=x.dtype, device=x.device)
        for start in range(0, R, rows_per_block):
            block = x[start:start + rows_per_block]
            rows = block.shape[0]
            lse = _block_logsumexp(block, index[:rows], group, num_groups, scratch[:rows])
            target = out[start:start + rows]
            _spread(lse, group, index[:rows], target)
            torch.sub(block, target, out=target)
        ctx.save_for_backward(out, group)
        ctx.num_groups, ctx.rows_per_block = num_groups, rows_per_block
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None, None, None]:
        out, group = ctx.saved_tensors
        R, N = out.shape
        step = ctx.rows_per_block
        grad_in = torch.empty_like(out)
        index = group.expand(min(R, step), N)
        scratch = torch.empty((min(R, step), N), dtype=out.dtype, device=out.device)
        for start in range(0, R, step):
            g = grad[start:start + step]
            rows = g.shape[0]
            group_grad = g.new_zeros(rows, ctx.num_groups).scatter_add_(1, index[:rows], g)
            target = grad_in[start:start + rows]
            _spread(group_grad, group, index[:rows], scratch[:rows])
            torch.exp(out[start:start + rows], out=target).mul_(scratch[:rows])   # softmax x group sum of g
            torch.sub(g, target, out=target)
        return grad_in, None, None, None


def grouped_log_softmax(logits: Tensor, tree: WordTree) -> Tensor:
    """log P(node | parent): one log-softmax per sibling group.

    Args:
        logits: Float[..., N], one logit per tree node (any dtype, any leading dims, any strides).
        tree: the WordTree.
    Returns:
        Float[..., N] log conditional probabilities (float32 for bf16/half/float32 input, float64 for float64);
        exp of each group sums to 1. Differentiable once (the backward is hand-written; no double backward).
    """
    _check_nodes(logits, tree, "grouped_log_softmax: logits")
    x = logits.to(_compute_dtype(logits.dtype)).reshape(-1, tree.num_nodes)
    out = _GroupedLogSoftmax.apply(x, _on(tree.group, x.device), tree.num_groups, _rows_per_block(x))
    return out.view(logits.shape)


def absolute_log_probs(log_cond: Tensor, tree: WordTree) -> Tensor:
    """log P(node): the sum of the log conditionals along each node's root path.

    Accumulates top-down, one tree level per step (parents precede children, so a parent's total is final
    before its children read it): D small index ops whose total work is one pass over the N columns.

    Args:
        log_cond: Float[..., N] log P(node | parent) (e.g. from grouped_log_softmax).
        tree: the WordTree.
    Returns:
        Float[..., N] log absolute probabilities, same dtype as log_cond.
    """
    _check_nodes(log_cond, tree, "absolute_log_probs: log_cond")
    return _accumulate_down(log_cond, tree, torch.add)


def absolute_probs(log_cond: Tensor, tree: WordTree) -> Tensor:
    """P(node) = product of the conditional probabilities along the node's root path.

    Args:
        log_cond: Float[..., N] log P(node | parent).
        tree: the WordTree.
    Returns:
        Float[..., N] absolute probabilities (float32 for bf16/half input). Leaves under one root sum to that
        root's probability; all nodes at depth 0 sum to 1.
    """
    x = log_cond.to(_compute_dtype(log_cond.dtype))
    return absolute_log_probs(x, tree).exp()


def _accumulate_down(values: Tensor, tree: WordTree, op) -> Tensor:
    """out[n] = op(values[n], out[parent[n]]) in darknet's order (`hierarchy_predictions`), level by level.

    With op=torch.mul on conditional probabilities this is bitwise what darknet computes in its index-order loop,
    since every node is combined once with its parent's final value.
    """
    out = values.clone()
    device = values.device
    depth, parent = tree.depth, tree.parent
    for d in range(1, tree.max_depth + 1):
        nodes = _on((depth == d).nonzero().squeeze(1), device)
        parents = _on(parent, device)[nodes]
        out[..., nodes] = op(values[..., nodes], out[..., parents])
    return out


# ---------------------------------------------------------------------------------------------------- loss


def tree_nll(logits: Tensor, labels: Tensor, tree: WordTree) -> Tensor:
    """darknet's hierarchical loss: softmax cross-entropy of every sibling group on the label's root path.

    loss = -sum_{k on path(label)} log P(k | parent(k)) = sum_k (logsumexp(group(k)) - logit[k]). Groups below the
    label and groups off the path are never touched: the loss gathers only the logits of the path's groups, so
    every other logit gets exactly zero gradient, and rows with label -1 get loss 0 and no gradient. Since only
    about 2 % of the 9418 logits of a row lie in the groups of a leaf's path, this is several times cheaper than
    a full grouped softmax. exp(-tree_nll) is P(label), the absolute probability YOLO9000 uses to pick the best
    box for a classification image.

    Args:
        logits: Float[..., N] node logits (any dtype, leading dims and strides; computed in float32 or float64).
        labels: Long[...] node indices (internal nodes allowed), -1 = ignore; shape logits.shape[:-1].
        tree: the WordTree.
    Returns:
        Float[...] per-row loss (float32, or float64 for float64 logits); 0 where the label is -1.
    Raises:
        ValueError: naming the bad shape or the first out-of-range label.
    """
    _check_nodes(logits, tree, "tree_nll: logits")
    if labels.shape != logits.shape[:-1]:
        raise ValueError(f"tree_nll: labels have shape {tuple(labels.shape)}, expected logits.shape[:-1] = "
                         f"{tuple(logits.shape[:-1])}")
    if labels.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8, torch.int8):
        raise ValueError(f"tree_nll: labels must be integer node indices, got dtype {labels.dtype}")
    if labels.dim() == 0:
        return tree_nll(logits[None], labels[None], tree)[0]
    N = tree.num_nodes
    bad = (labels < -1) | (labels >= N)
    if logits.device.type != "cpu":
        # Accelerators: fixed shapes and a device-side check, so a training step never waits on the host.
        torch._assert_async(~bad.any(), f"tree_nll: a label is out of range (node indices are 0..{N - 1}, -1 ignore)")
        return _tree_nll_fixed(logits, labels, tree)
    if bool(bad.any()):
        raise ValueError(f"tree_nll: label {int(labels[bad][0])} out of range: node indices are 0..{N - 1}, "
                         f"-1 means ignore")
    device = logits.device
    dtype = _compute_dtype(logits.dtype)
    where = (labels >= 0).nonzero()                     # [K, L]: positions of the labelled rows
    label = labels[labels >= 0].long()                  # [K]
    path = _on(tree.paths, device)[label]               # [K, D+1] root -> label, -1 padded
    on_path = path >= 0
    node = path.clamp(min=0)
    group = _on(tree.group, device)[node]               # [K, D+1]
    size = torch.where(on_path, _on(tree.group_size, device)[group], 0).flatten()      # [S], S = K*(D+1)
    offset = _on(tree.group_offset, device)[group].flatten()                           # [S]
    # Flatten the groups of all paths into one list of (segment, column): segment s = (row k, depth d).
    total = int(size.sum())
    segment = torch.repeat_interleave(torch.arange(size.numel(), device=device), size, output_size=total)  # [T]
    start = size.cumsum(0) - size
    column = offset[segment] + (torch.arange(total, device=device) - start[segment])                       # [T]
    row = segment.div(path.shape[1], rounding_mode="floor")                                                # [T]
    leading = tuple(where[row].unbind(1))
    # One gather of just the path groups' logits: its backward is the only full-size gradient buffer.
    x = logits[leading + (column,)].to(dtype)           # [T] the logits of every path group, nothing else
    # Per-segment max as a constant shift keeps exp in range (groups are small, so this is exact and cheap).
    shift = x.detach().new_full((size.numel(),), -torch.inf).scatter_reduce(0, segment, x.detach(), "amax")
    shift = torch.where(torch.isfinite(shift), shift, torch.zeros_like(shift))
    sums = x.new_zeros(size.numel()).index_add(0, segment, (x - shift[segment]).exp())
    lse = torch.where(on_path.flatten(), shift + sums.log(), 0.0).view(path.shape)    # [K, D+1]
    # The path node's own logit sits inside its group's segment of x, at start + (node - offset).
    at = (start + node.flatten() - offset).clamp(0, max(total - 1, 0))
    target = torch.where(on_path, x[at].view(path.shape), 0.0)                        # [K, D+1] path logits
    row_loss = (lse - target).sum(dim=1)                                               # [K]
    return logits.new_zeros(labels.shape, dtype=dtype).index_put(tuple(where.unbind(1)), row_loss)


_PATH_COLUMNS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def path_columns(tree: WordTree, device: torch.device | str | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """Every column of every sibling group on each node's root path, cached per tree and device.

    Args:
        tree: the WordTree.
        device: where the tables are wanted (default the tree's own device); copied there once.
    Returns:
        columns: Long[N, C] node indices, -1 padded; C = the largest such count (221 for darknet's 9k tree).
        depth: Long[N, C] the path step (depth) of the group each column belongs to, -1 where padded.
        paths: Long[N, D+1] `tree.paths` on `device`.
    """
    device = torch.device(device) if device is not None else tree.paths.device
    per_device = _PATH_COLUMNS.setdefault(tree, {})
    if device in per_device:
        return per_device[device]
    on_path = tree.paths >= 0
    groups = tree.group[tree.paths.clamp(min=0)]                                 # [N, D+1]
    sizes = torch.where(on_path, tree.group_size[groups], 0)                     # [N, D+1]
    starts = sizes.cumsum(1) - sizes                                             # column where each step starts
    width = int(sizes.sum(1).max())
    column = torch.arange(width, device=sizes.device)
    # The step of column j: the last step starting at or before j (empty steps past the label never start).
    step = ((starts[:, None, :] <= column[None, :, None]) & (sizes[:, None, :] > 0)).sum(-1).sub(1).clamp(min=0)
    within = column[None] - starts.gather(1, step)
    valid = within < sizes.gather(1, step)
    columns = torch.where(valid, tree.group_offset[groups].gather(1, step) + within, -1)
    tables = (columns.to(device), torch.where(valid, step, -1).to(device), tree.paths.to(device))
    per_device[device] = tables
    return tables


def _tree_nll_fixed(logits: Tensor, labels: Tensor, tree: WordTree) -> Tensor:
    """`tree_nll` with shapes fixed by the tree alone (no nonzero, no host-side sizes): each row gathers the C
    columns of its label's path groups from `path_columns`, -1 labels included and masked at the end. Twice the
    gathered elements of the CPU version, so it is for accelerators, where a host sync costs more."""
    columns, depth, paths = path_columns(tree, logits.device)
    dtype = _compute_dtype(logits.dtype)
    label = labels.reshape(-1)
    # Index every leading dim instead of reshaping: the loss passes strided views of the network output, and a
    # reshape would copy all N logits of every row.
    rows = tuple(i[:, None] for i in torch.unravel_index(torch.arange(label.numel(), device=logits.device),
                                                         tuple(labels.shape)))
    node = label.clamp(min=0).long()
    cols, steps = columns[node], depth[node]                                    # [R, C]
    valid = cols >= 0
    step = steps.clamp(min=0)
    x = logits[rows + (cols.clamp(min=0),)].to(dtype)                          # [R, C]
    num_steps = tree.paths.shape[1]
    # Per-step max as a constant shift (exact: d logsumexp / dx is the softmax whatever the shift).
    masked = torch.where(valid, x.detach(), -torch.inf)
    shift = masked.new_full((x.shape[0], num_steps), -torch.inf).scatter_reduce(1, step, masked, "amax")
    shift = torch.where(torch.isfinite(shift), shift, torch.zeros_like(shift))
    exps = torch.where(valid, (x - shift.gather(1, step)).exp(), 0.0)
    sums = x.new_zeros(x.shape[0], num_steps).scatter_add(1, step, exps)
    path = paths[node]                                                          # [R, D+1]
    on_path = path >= 0
    lse = torch.where(on_path, shift + torch.where(on_path, sums, 1.0).log(), 0.0)
    target = torch.where(on_path, logits[rows + (path.clamp(min=0),)].to(dtype), 0.0)
    loss = torch.where(label >= 0, (lse - target).sum(1), 0.0)
    return loss.view(labels.shape)


# ---------------------------------------------------------------------------------------------------- decisions


@dataclass(frozen=True)
class Decision:
    """Result of the top-down walk, one per row.

    Attributes:
        node: Long[...], decided node index.
        prob: Float[...], P(node): the product of the conditionals on its root path.
        depth: Long[...], depth of the node (0 = a root).
    """

    node: Tensor
    prob: Tensor
    depth: Tensor


def _group_argmax(values: Tensor, group: Tensor, tree: WordTree, darknet: bool = False) -> tuple[Tensor, Tensor]:
    """Argmax over one sibling group per row (the first maximum on ties).

    Args:
        values: Float[R, N].
        group: Long[R] group index per row.
        darknet: mimic C's `max = 0; max_i = 0; if (val > max) ...`: node 0 and value 0 where no value in the
            group exceeds 0.
    Returns:
        (node Long[R], value Float[R]).
    """
    device = values.device
    width = int(tree.group_size.max())
    offset = _on(tree.group_offset, device)[group]
    size = _on(tree.group_size, device)[group]
    lane = torch.arange(width, device=device)
    inside = lane < size[:, None]                                                  # [R, width]
    cols = torch.where(inside, offset[:, None] + lane, 0)
    vals = torch.where(inside, values.gather(1, cols), -torch.inf)
    best_val, best_lane = vals.max(dim=1)     # first maximum, like darknet's strict `val > max`
    node = offset + best_lane
    if not darknet:
        return node, best_val
    positive = best_val > 0
    return torch.where(positive, node, 0), torch.where(positive, best_val, torch.zeros_like(best_val))


@torch.no_grad()
def decide(cond_probs: Tensor, tree: WordTree, threshold: float = 0.5, mode: str = "paper", start: int | None = None,
           leaf: bool = False) -> Decision:
    """The top-down decision walk of YOLO9000 (paper section 4; darknet `hierarchy_top_prediction`).

    mode "paper" (default): from the roots' group, take the most probable child, multiply its conditional into
    the running product and descend while the product stays above `threshold`; stop at a leaf. The decision is
    the last accepted node, or the best root when even that is below the threshold.

    mode "darknet": darknet's exact walk, which runs on ABSOLUTE probabilities (`hierarchy_predictions` first):
    it multiplies P(child) into a product of earlier absolute probabilities, so it stops earlier than the paper;
    a failed step in a non-root group returns the group's parent, in the roots' group the best root.

    `start` restricts the decision to a subtree (issue 12, "--node X"): the walk begins in X's children with
    P(. | X), i.e. the running product starts at 1 at X and the threshold applies to P(node | X); when no child of X
    passes, the decision is X. `leaf` walks to a leaf whatever the threshold (the most specific answer).

    Args:
        cond_probs: Float[..., N] conditional probabilities P(node | parent) (exp of grouped_log_softmax).
        tree: the WordTree.
        threshold: darknet's `hier_thresh` (.5 in its CLI).
        mode: "paper" or "darknet".
        start: node index X whose subtree the decision is restricted to (None: the whole tree).
        leaf: descend to a leaf regardless of the threshold.
    Returns:
        Decision with node, prob = P(node) (absolute: for a walk from X, P(X) x P(node | X)), depth, each shaped
        cond_probs.shape[:-1].
    """
    _check_nodes(cond_probs, tree, "decide: cond_probs")
    if mode not in DECIDE_MODES:
        raise ValueError(f"decide: mode {mode!r} is not one of {DECIDE_MODES}")
    if start is not None and not 0 <= int(start) < tree.num_nodes:
        raise ValueError(f"decide: start node {start} outside the tree (0..{tree.num_nodes - 1})")
    cond = cond_probs.to(_compute_dtype(cond_probs.dtype)).reshape(-1, tree.num_nodes)
    absolute = _accumulate_down(cond, tree, torch.mul)
    # Every accepted step multiplies a probability <= 1 into a product > threshold: below 0 nothing is refused.
    threshold = -1.0 if leaf else threshold
    if mode == "paper":
        node = _walk_paper(cond, tree, threshold, start)
    else:
        # darknet's walk reads absolute probabilities; below X they are P(. | X) = P(.) / P(X).
        tiny = torch.finfo(absolute.dtype).tiny
        relative = absolute if start is None else absolute / absolute[:, int(start), None].clamp_min(tiny)
        node = _walk_darknet(relative, tree, threshold, start)
    device = cond.device
    lead = cond_probs.shape[:-1]
    prob = absolute.gather(1, node[:, None]).squeeze(1)
    return Decision(node=node.view(lead), prob=prob.view(lead), depth=_on(tree.depth, device)[node].view(lead))


def _walk_paper(cond: Tensor, tree: WordTree, threshold: float, start: int | None = None) -> Tensor:
    """Long[R]: multiply conditionals down the argmax path while the product stays > threshold (from `start`'s
    children when given, deciding `start` itself when none passes)."""
    R = cond.shape[0]
    device = cond.device
    child_group = _on(tree.child_group, device)
    first_group = 0 if start is None else int(tree.child_group[int(start)])
    group = torch.full((R,), max(first_group, 0), dtype=torch.long, device=device)
    product = torch.ones(R, dtype=cond.dtype, device=device)
    active = torch.full((R,), first_group >= 0, dtype=torch.bool, device=device)
    decided = torch.full((R,), -1 if start is None else int(start), dtype=torch.long, device=device)
    for step in range(tree.max_depth + 1):
        best, value = _group_argmax(cond, group, tree)
        candidate = product * value
        accept = active & (candidate > threshold)
        if step == 0 and start is None:
            # Even a root below the threshold is an answer: the best guess at the top level.
            decided = best
        decided = torch.where(accept, best, decided)
        product = torch.where(accept, candidate, product)
        next_group = child_group[best]
        active = accept & (next_group >= 0)
        group = torch.where(active, next_group, group)
        if not bool(active.any()):
            break
    return decided


def _walk_darknet(absolute: Tensor, tree: WordTree, threshold: float, start: int | None = None) -> Tensor:
    """Long[R]: darknet's `hierarchy_top_prediction` over absolute probabilities, transcribed with its quirks. From
    `start`, the walk begins in its children's group (whose failure returns the group's parent, `start`)."""
    R = absolute.shape[0]
    device = absolute.device
    child_group = _on(tree.child_group, device)
    parent = _on(tree.parent, device)
    group_offset = _on(tree.group_offset, device)
    first_group = 0 if start is None else int(tree.child_group[int(start)])
    group = torch.full((R,), max(first_group, 0), dtype=torch.long, device=device)
    product = torch.ones(R, dtype=absolute.dtype, device=device)
    active = torch.full((R,), first_group >= 0, dtype=torch.bool, device=device)
    decided = torch.full((R,), 0 if start is None else int(start), dtype=torch.long, device=device)
    # Each accepted step descends one level, so the walk ends within max_depth + 1 steps.
    for _ in range(tree.max_depth + 1):
        max_i, max_val = _group_argmax(absolute, group, tree, darknet=True)
        candidate = product * max_val
        accept = active & (candidate > threshold)
        next_group = child_group[max_i]
        # if (p*max > thresh) { p *= max; group = child[max_i]; if (child[max_i] < 0) return max_i; }
        leaf_stop = accept & (next_group < 0)
        # else if (group == 0) return max_i; else return parent[group_offset[group]];
        reject = active & ~accept
        fallback = torch.where(group == 0, max_i, parent[group_offset[group]])
        decided = torch.where(leaf_stop, max_i, torch.where(reject, fallback, decided))
        product = torch.where(accept, candidate, product)
        group = torch.where(accept, next_group, group)
        active = accept & (next_group >= 0)
        if not bool(active.any()):
            break
    return decided


def decision_path(cond_probs: Tensor, tree: WordTree, node: int) -> list[tuple[int, float]]:
    """The root-to-node path of one row with each step's conditional probability.

    Args:
        cond_probs: Float[N], one row of conditional probabilities P(node | parent).
        tree: the WordTree.
        node: the node index (e.g. Decision.node of that row).
    Returns:
        [(node index, P(node | parent)), ...] from the root down to `node`; the product of the probabilities
        is P(node).
    """
    if cond_probs.dim() != 1 or cond_probs.shape[0] != tree.num_nodes:
        raise ValueError(f"decision_path: expected one row Float[{tree.num_nodes}], got {tuple(cond_probs.shape)}")
    if not 0 <= int(node) < tree.num_nodes:
        raise ValueError(f"decision_path: node {node} out of range 0..{tree.num_nodes - 1}")
    path = tree.path(int(node))
    values = cond_probs.detach()[torch.tensor(path, device=cond_probs.device)].double().tolist()
    return list(zip(path, values))


# ---------------------------------------------------------------------------------------------------- queries


def subtree_prob(probs: Tensor, tree: WordTree, node: int) -> Tensor:
    """Probability that the object is `node` or any of its descendants.

    Computed as the sum of the absolute probabilities of the leaves under `node` (the node itself if it is a
    leaf). For probabilities that come from the tree's own softmax this equals probs[..., node]: each internal
    node has exactly one child group whose conditionals sum to 1, so P(node) = sum over its children of
    P(child) = ... = sum over its leaves. Summing leaves also gives the right answer for inputs where only the
    leaves are meaningful (a flat classifier over leaves, darknet's `only_leaves` mode).

    Args:
        probs: Float[..., N] absolute probabilities.
        tree: the WordTree.
        node: node index.
    Returns:
        Float[...].
    """
    _check_nodes(probs, tree, "subtree_prob: probs")
    if not 0 <= int(node) < tree.num_nodes:
        raise ValueError(f"subtree_prob: node {node} out of range 0..{tree.num_nodes - 1}")
    leaves = (tree.subtree_mask(int(node)) & tree.is_leaf).nonzero().squeeze(1)
    return probs.index_select(-1, _on(leaves, probs.device)).sum(dim=-1)


def topk_leaves(abs_probs: Tensor, tree: WordTree, k: int = 5,
                leaves: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Top-k over the tree's leaves, or over a given leaf set (darknet `change_leaves`, e.g. the 1k classes).

    Args:
        abs_probs: Float[..., N] absolute probabilities.
        tree: the WordTree.
        k: how many.
        leaves: None (the tree's leaves), Bool[N] mask or Long[L] node indices.
    Returns:
        (values Float[..., k], node indices Long[..., k]), best first.
    """
    _check_nodes(abs_probs, tree, "topk_leaves: abs_probs")
    if leaves is None:
        index = tree.is_leaf.nonzero().squeeze(1)
    elif leaves.dtype == torch.bool:
        if leaves.shape != (tree.num_nodes,):
            raise ValueError(f"topk_leaves: a leaf mask must be Bool[{tree.num_nodes}], got {tuple(leaves.shape)}")
        index = leaves.nonzero().squeeze(1)
    else:
        index = leaves.long().flatten()
        if index.numel() and (int(index.min()) < 0 or int(index.max()) >= tree.num_nodes):
            raise ValueError(f"topk_leaves: leaf indices must lie in 0..{tree.num_nodes - 1}")
    if not 0 < k <= index.numel():
        raise ValueError(f"topk_leaves: k={k} but there are {index.numel()} leaves to choose from")
    index = _on(index, abs_probs.device)
    values, position = abs_probs.index_select(-1, index).topk(k, dim=-1)
    return values, index[position]
