"""ConvMixer's depthwise convolution with a faster CPU backward; the same function as nn.Conv2d everywhere.

On the CPU, oneDNN's depthwise weight gradient was the largest part of ConvMixer's training step, ~3x slower in bf16
than in fp32 (docs/benchmarks.md). This layer's backward replaces it:
- the weight gradient by `depthwise.c` (compiled once per machine with the system C compiler into the user's cache
  folder, loaded with ctypes, one call per thread over a share of the channels), which reads fp32 or bf16
  activations and accumulates in fp32; so under bf16 autocast the whole layer stays in bf16 (no casts of the
  activations) and its weight gradient is still summed in fp32;
- the input gradient by a forward convolution of the output gradient with the flipped kernel (the same sum, on
  oneDNN's fast forward path).
Anything the C loop does not cover (GPUs, other dtypes, strides, even kernels, channels not a multiple of 16, no C
compiler, Windows, CONVMIXER_LIT_NO_KERNELS=1) falls back to PyTorch's own kernels, in fp32 under CPU autocast
(kernels/precision.py), so results never depend on whether the loop could be built.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from convmixer_lit.kernels import precision
from convmixer_lit.kernels.native import in_parallel, library, loaded, shares

KERNEL_SIZES = (3, 5, 7, 9)  # the sizes depthwise.c compiles a loop for
LANES = 16  # channels per block in depthwise.c (one AVX-512 vector, two AVX2 ones)


def weight_grad(x: torch.Tensor, grad_out: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """dW (C, 1, K, K), fp32, of a stride-1 'same' depthwise conv from its input and output gradient (N, C, H, W),
    both fp32 or both bf16."""
    lib = library()
    n, c, h, w = x.shape
    x_nhwc = x.permute(0, 2, 3, 1).contiguous()  # free for channels-last tensors
    g_nhwc = grad_out.to(x.dtype).permute(0, 2, 3, 1).contiguous()
    is_bf16 = {torch.float32: 0, torch.bfloat16: 1}[x.dtype]
    out = torch.empty(c, 1, kernel_size, kernel_size, dtype=torch.float32)

    def part(_: int, c0: int, c1: int) -> int:
        return lib.depthwise_weight_grad(x_nhwc.data_ptr(), g_nhwc.data_ptr(), out.data_ptr(), n, h, w, c,
                                         kernel_size, c0, c1, is_bf16)

    if any(in_parallel(part, shares(c, LANES))):
        raise RuntimeError(f"depthwise.c has no loop for kernel size {kernel_size}")
    return out


# The loop as a PyTorch operator, so torch.compile (--model.compile true) keeps it in the graph as an opaque call.
@torch.library.custom_op("convmixer_lit::depthwise_weight_grad", mutates_args=())
def weight_grad_op(x: torch.Tensor, grad_out: torch.Tensor, kernel_size: int) -> torch.Tensor:
    return weight_grad(x, grad_out, kernel_size)


@weight_grad_op.register_fake
def _(x: torch.Tensor, grad_out: torch.Tensor, kernel_size: int) -> torch.Tensor:
    return x.new_empty((x.shape[1], 1, kernel_size, kernel_size), dtype=torch.float32)


class _DepthwiseConv(torch.autograd.Function):
    """F.conv2d forward in x's dtype; backward by the flipped-kernel convolution (input) and depthwise.c (weight,
    in fp32 whatever x's dtype)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        w = weight.to(x.dtype)
        ctx.save_for_backward(x, w)
        ctx.has_bias = bias is not None
        return F.conv2d(x, w, None if bias is None else bias.to(x.dtype), padding=w.shape[-1] // 2,
                        groups=w.shape[0])

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out: torch.Tensor):
        x, w = ctx.saved_tensors
        k = w.shape[-1]
        grad_out = grad_out.to(x.dtype)
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_x = F.conv2d(grad_out, w.flip(-1, -2), padding=k // 2, groups=w.shape[0])
        if ctx.needs_input_grad[1]:
            grad_w = weight_grad_op(x, grad_out, k)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_b = grad_out.sum((0, 2, 3), dtype=torch.float32)
        return grad_x, grad_w, grad_b


class DepthwiseConv2d(nn.Conv2d):
    """nn.Conv2d(dim, dim, k, groups=dim, padding='same') with the CPU speed-ups above; same parameters and state."""

    def _compute_dtype(self, x: torch.Tensor) -> torch.dtype | None:
        """bf16 or fp32 when the fast path applies to `x`, else None (PyTorch's own layer runs)."""
        k = self.kernel_size
        if not (precision.ENABLED and x.device.type == "cpu" and torch.is_grad_enabled()
                and self.weight.dtype == torch.float32 and k[0] == k[1] and k[0] in KERNEL_SIZES
                and self.stride == (1, 1) and self.dilation == (1, 1) and self.padding_mode == "zeros"
                and self.padding in ("same", (k[0] // 2, k[0] // 2))
                and self.groups == self.in_channels == self.out_channels and self.in_channels % LANES == 0):
            return None
        if torch.is_autocast_enabled("cpu"):  # autocast's dtype, as a stock conv would run
            dtype = torch.get_autocast_dtype("cpu")
        else:  # as stock: the input's dtype, which must be the weight's
            dtype = x.dtype if x.dtype == self.weight.dtype else None
        if dtype not in (torch.float32, torch.bfloat16):
            return None
        return dtype if loaded() else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = self._compute_dtype(x)
        if dtype is not None:
            with torch.autocast("cpu", enabled=False):
                return _DepthwiseConv.apply(x.to(dtype), self.weight, self.bias)
        return precision.float32_on_cpu(super().forward, x)
