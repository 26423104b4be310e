"""Layer table, parameter count and darknet's operation count of a network (`yolo9000 info`).

Darknet counts `2 * filters * size² * in_channels/groups * out_h * out_w` per convolution and nothing else; the
Darknet-19 classifier at 224x224 comes to 5.58 billion, the paper's figure. A meta-device model works too: only
shapes flow through it, so the 50M-parameter networks are summarised without allocating or computing anything.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from yolo9000.model.layers import ConvBNLeaky, MaxPoolDarknet, Reorg


@dataclass(frozen=True)
class LayerRow:
    """One table row: a darknet-level layer in execution order."""

    name: str
    kind: str
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    params: int
    flops: int


@dataclass(frozen=True)
class Summary:
    rows: tuple[LayerRow, ...]
    output_shape: tuple[int, ...]
    params: int
    flops: int


def conv_flops(conv: nn.Conv2d, out_shape: tuple[int, ...]) -> int:
    """Darknet's count for one image: 2 * C_out * kh * kw * C_in/groups * H_out * W_out."""
    kh, kw = conv.kernel_size
    h, w = out_shape[-2:]
    return 2 * conv.out_channels * kh * kw * (conv.in_channels // conv.groups) * h * w


def _block_conv(module: nn.Module) -> nn.Conv2d | None:
    """The convolution inside a conv block (ours or a darknet cfg's), else None."""
    from yolo9000.model.darknet_net import DarknetConv  # imported here: darknet_net imports yolo9000.darknet

    return module.conv if isinstance(module, (ConvBNLeaky, DarknetConv)) else None


def _layer_kind(module: nn.Module) -> str | None:
    if isinstance(module, ConvBNLeaky):
        conv = module.conv
        return f"conv {conv.out_channels} {conv.kernel_size[0]}x{conv.kernel_size[1]} bn leaky"
    if isinstance(module, nn.Conv2d):
        return f"conv {module.out_channels} {module.kernel_size[0]}x{module.kernel_size[1]} linear"
    if isinstance(module, MaxPoolDarknet):
        return f"max {module.size}x{module.size}/{module.stride}"
    if isinstance(module, Reorg):
        return f"reorg /{module.stride}"
    return getattr(module, "summary_kind", None)


def summarize(model: nn.Module, size: int | tuple[int, int], in_channels: int = 3) -> Summary:
    """Run one image of `size` through `model` (on the model's device, meta included) and tabulate its layers.

    Args:
        model: any network built from ConvBNLeaky / Conv2d / MaxPoolDarknet / Reorg layers.
        size: input side, or (height, width), in pixels.
    Returns:
        Summary with per-layer rows, the output shape for batch 1, total parameters and darknet flops.
    """
    height, width = (size, size) if isinstance(size, int) else size
    rows: list[LayerRow] = []
    hooks = []
    inside_conv_block = {id(_block_conv(m)) for m in model.modules() if _block_conv(m) is not None}

    def hook(name: str, kind: str):
        def record(module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> None:
            conv = _block_conv(module) or module
            flops = conv_flops(conv, tuple(output.shape)) if isinstance(conv, nn.Conv2d) else 0
            params = sum(p.numel() for p in module.parameters())
            in_shape = tuple(inputs[0].shape[1:]) if inputs and isinstance(inputs[0], Tensor) else ()
            rows.append(LayerRow(name, kind, in_shape, tuple(output.shape[1:]), params, flops))
        return record

    for name, module in model.named_modules():
        kind = _layer_kind(module)
        if kind is None or id(module) in inside_conv_block:
            continue
        hooks.append(module.register_forward_hook(hook(name, kind)))
    device = next(model.parameters()).device
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            out = model(torch.zeros(1, in_channels, height, width, device=device))
    finally:
        model.train(was_training)
        for h in hooks:
            h.remove()
    params = sum(p.numel() for p in model.parameters())
    return Summary(tuple(rows), tuple(out.shape), params, sum(r.flops for r in rows))


def format_summary(summary: Summary) -> str:
    """The layer table, then `output: ...`, `params: <int>`, `flops: <int>` as the last lines."""
    lines = [f"{'#':>3}  {'layer':<22} {'type':<26} {'input':>18} -> {'output':<18} {'params':>10} {'BFLOPs':>8}"]
    for i, r in enumerate(summary.rows):
        shape_in = "x".join(map(str, r.in_shape))
        shape_out = "x".join(map(str, r.out_shape))
        lines.append(f"{i:>3}  {r.name:<22} {r.kind:<26} {shape_in:>18} -> {shape_out:<18} {r.params:>10} "
                     f"{r.flops / 1e9:>8.3f}")
    lines.append(f"output: {'x'.join(map(str, summary.output_shape))}")
    lines.append(f"params: {summary.params}")
    lines.append(f"flops: {summary.flops}")
    return "\n".join(lines)
