"""Inference-only preparation of a network: batch norm folded into the convolutions, channels_last memory.

`prepare_for_inference(model)` returns a copy that computes the same raw output as `model.eval()` (to float
rounding) faster; bench/model_speed.py measures each step. Folding uses darknet's inference formula
(darknet_yolo9000.md section 10), the one `DarknetBatchNorm2d` applies in eval mode:

    w' = w * scale / (sqrt(var) + 1e-6)        b' = bias - mean * scale / (sqrt(var) + 1e-6)

The folded copy has no BN parameters (each `ConvBNLeaky.bn` becomes `nn.Identity` and its conv gains a bias), so
it is for inference and export only: train, checkpoint and write `.weights` from the original.
"""
from __future__ import annotations

import copy

import torch
from torch import nn

from yolo9000.model.layers import DARKNET_BN_EPS, ConvBNLeaky, DarknetBatchNorm2d


def fold_conv_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """A biased convolution equal to `bn(conv(x))` with `bn` in eval mode (darknet's eps for DarknetBatchNorm2d)."""
    with torch.no_grad():
        var = bn.running_var.double()
        denom = var.sqrt() + DARKNET_BN_EPS if isinstance(bn, DarknetBatchNorm2d) else (var + bn.eps).sqrt()
        scale = bn.weight.double() / denom
        fused = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                          conv.dilation, conv.groups, bias=True, device=conv.weight.device, dtype=conv.weight.dtype)
        # float64 for the product, then back: the folded weights are the exact rounding of the real values.
        fused.weight.copy_(conv.weight.double() * scale.view(-1, 1, 1, 1))
        bias = conv.bias.double() if conv.bias is not None else torch.zeros_like(scale)
        fused.bias.copy_((bias - bn.running_mean.double()) * scale + bn.bias.double())
    return fused


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """Fold every `ConvBNLeaky`'s batch norm into its convolution, in place; returns `model`."""
    from yolo9000.model.darknet_net import DarknetConv  # imported here: darknet_net imports yolo9000.darknet

    for module in model.modules():
        if isinstance(module, ConvBNLeaky) and isinstance(module.bn, nn.BatchNorm2d):
            module.conv = fold_conv_bn(module.conv, module.bn)
            module.bn = nn.Identity()
        elif isinstance(module, DarknetConv) and module.bn is not None:  # a darknet cfg's network
            module.conv = fold_conv_bn(module.conv, module.bn)
            module.bn = None
    return model


def prepare_for_inference(model: nn.Module, fold_bn: bool = True, channels_last: bool = True,
                          dtype: torch.dtype | None = None) -> nn.Module:
    """A copy of `model` for inference: eval mode, no parameter gradients, BN folded, channels_last weights.

    Feed it channels_last inputs (`x.contiguous(memory_format=torch.channels_last)`) of its dtype for the full
    gain; the output is the same raw tensor as `model.eval()(x)`, to the dtype's rounding. On this project's
    2-core CPU (bench/model_speed.py) folding + channels_last make YOLOv2 1.4-2x faster than `model.eval()`;
    bfloat16 weights another 3.5x where the CPU has AMX/AVX512-BF16 (raw outputs then differ by ~1e-4 relative).

    Args:
        model: a network from `build_model` (left unchanged).
        fold_bn: fold batch norm into the convolutions (removes one elementwise pass per layer).
        channels_last: store conv weights NHWC, which oneDNN's CPU convolutions (and cuDNN's) prefer.
        dtype: cast parameters and buffers (e.g. `torch.bfloat16`); None keeps float32. Folding is done in
            float64 first, so the cast rounds the folded values once.
    Returns:
        The prepared copy.
    """
    prepared = copy.deepcopy(model).eval()
    if fold_bn:
        fold_batchnorm(prepared)
    prepared.requires_grad_(False)
    if dtype is not None:
        anchors = getattr(prepared, "anchors", None)
        prepared = prepared.to(dtype)
        if anchors is not None:  # decode's input, not the network's: keep its float32 precision
            prepared.anchors = anchors
    if channels_last:
        prepared = prepared.to(memory_format=torch.channels_last)
    return prepared
