"""Darknet building blocks: conv + batch norm + leaky ReLU, darknet's max-pool padding, and the passthrough reorg.

The details here decide whether darknet `.weights` give darknet's outputs (darknet_yolo9000.md section 10):
batch norm at inference divides by `sqrt(var) + 1e-6` (epsilon on the standard deviation), max-pool pads
`size - 1` starting at `-pad // 2`, and `reorg` is not `pixel_unshuffle`.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

LEAKY_SLOPE = 0.1
DARKNET_BN_EPS = 1e-6  # added to the standard deviation at inference (darknet's normalize_cpu)


class DarknetBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d that, in eval mode, normalises as darknet does: `(x - mean) / (sqrt(var) + 1e-6)`.

    Training uses PyTorch's batch statistics unchanged. Keeping darknet's formula at inference (rather than
    converting the stored variance) makes `.weights` load and save bit-exactly, and gives darknet's outputs on
    channels whose rolling variance is 0, which trained darknet weights contain.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)

    def forward(self, x: Tensor) -> Tensor:
        if self.training or not self.track_running_stats:
            return super().forward(x)
        # darknet's order (normalize_cpu, scale_bias, add_bias): subtracting the mean first keeps channels whose
        # variance is 0 exact; `x * scale + shift` would multiply float32 rounding by 1e6 there.
        # Two passes over x (subtract, then one fused multiply-add) instead of four: dividing the small per-channel
        # weight by the std first moves the rounding by an ulp, never by the 1e6 a zero variance gives.
        scale = (self.weight / (self.running_var.sqrt() + DARKNET_BN_EPS)).view(1, -1, 1, 1).to(x.dtype)
        mean = self.running_mean.view(1, -1, 1, 1).to(x.dtype)
        return torch.addcmul(self.bias.view(1, -1, 1, 1).to(x.dtype), x - mean, scale)


class ConvBNLeaky(nn.Module):
    """Darknet `[convolutional] batch_normalize=1 activation=leaky pad=1`: conv (no bias), BN, leaky ReLU 0.1.

    Args:
        in_channels: input channels.
        out_channels: filters.
        kernel_size: odd kernel size; padding is `kernel_size // 2` so the spatial size is kept (stride 1).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False)
        self.bn = DarknetBatchNorm2d(out_channels)
        self.act = nn.LeakyReLU(LEAKY_SLOPE, inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        """Float[B, Cin, H, W] -> Float[B, Cout, H, W]."""
        return self.act(self.bn(self.conv(x)))


class MaxPoolDarknet(nn.Module):
    """Darknet `[maxpool]`: padding `size - 1` in total, the window starting at `-(pad // 2)`.

    Output size is `(in + pad - size) // stride + 1`: size 2 stride 2 maps 26 -> 13 and 27 -> 14 (PyTorch's
    floor mode gives 13), and size 2 stride 1 keeps the size (tiny cfgs). Padded cells never win the max.
    """

    def __init__(self, size: int = 2, stride: int = 2) -> None:
        super().__init__()
        self.size, self.stride = size, stride
        pad = size - 1
        self.pad_before, self.pad_after = pad // 2, pad - pad // 2

    def forward(self, x: Tensor) -> Tensor:
        """Float[B, C, H, W] -> Float[B, C, (H + size - 1 - size) // stride + 1, ...]."""
        H, W = x.shape[-2:]
        # Skip the pad when it cannot reach a window (even input, size == stride): that is the common case and
        # keeps the graph a plain max_pool2d for ONNX and for speed.
        needs_pad = self.size != self.stride or H % self.stride or W % self.stride
        if needs_pad and self.size > 1:
            x = F.pad(x, (self.pad_before, self.pad_after, self.pad_before, self.pad_after), value=float("-inf"))
        elif self.size == 2 and self.stride == 2 and _plain_cpu_inference(x):
            # The CPU max_pool2d kernel for NCHW tensors also computes the argmax indices and runs 5-10x slower
            # than two elementwise maximums (of row pairs, then column pairs), which give the same values. Only
            # without gradients: on ties torch.maximum splits the gradient where darknet routes it to one input.
            rows = torch.maximum(x[..., 0::2, :], x[..., 1::2, :])
            return torch.maximum(rows[..., 0::2], rows[..., 1::2])
        return F.max_pool2d(x, self.size, self.stride)

    def extra_repr(self) -> str:
        return f"size={self.size}, stride={self.stride}"


def _plain_cpu_inference(x: Tensor) -> bool:
    """An NCHW CPU tensor needing no gradient, outside tracing, compiling and export (which want max_pool2d)."""
    return (x.device.type == "cpu" and not (torch.is_grad_enabled() and x.requires_grad)
            and not x.is_contiguous(memory_format=torch.channels_last) and x.dim() == 4
            and not (torch.jit.is_tracing() or torch.compiler.is_compiling() or torch.onnx.is_in_onnx_export()))


class Reorg(nn.Module):
    """Darknet `[reorg] stride=s` (no `reverse`), YOLOv2's passthrough: Float[B, C, H, W] -> [B, s²C, H/s, W/s].

    Darknet's `reorg_cpu(..., forward=0)` loops over (k, j, i) in a (C, H, W) output buffer and, with
    `c2 = k % (C/s²)`, `offset = k // (C/s²)`, copies the input element at (c2, j*s + offset % s, i*s + offset // s)
    of the input memory *viewed as* (C/s², sH, sW); the buffer is then read as (s²C, H/s, W/s). Both views
    reinterpret memory, so rows and channels mix in a way no named op reproduces.
    This is not `pixel_unshuffle`; the golden test in tests/test_model.py checks the element order.
    """

    def __init__(self, stride: int = 2) -> None:
        super().__init__()
        self.stride = stride

    def forward(self, x: Tensor) -> Tensor:
        B, C, H, W = x.shape
        s = self.stride
        if C % (s * s) or H % s or W % s:
            raise ValueError(f"Reorg(stride={s}): input {tuple(x.shape)} needs C divisible by {s * s} and H, W by {s}")
        # View the memory as (C/s², H, s, W, s) = (C/s², sH, sW) split into (row, dy) and (col, dx).
        out = x.reshape(B, C // (s * s), H, s, W, s).permute(0, 3, 5, 1, 2, 4)
        return out.reshape(B, s * s * C, H // s, W // s)

    def extra_repr(self) -> str:
        return f"stride={self.stride}"
