"""GELU then BatchNorm2d as one layer, with a fused fp32 CPU path; the same function as the two stock layers.

In fp32 (CPUs without native bf16) ConvMixer's GELU and batch-norm passes, forward and backward, are about a third of
its training step, and each is a pass over a tensor larger than most caches. `gelu_bn.c` computes BN(GELU(z)) with
GELU and the batch statistics in one pass, and BN's and GELU's backward in one pass after the sums: 10 tensor passes
instead of 13, with PyTorch's count of GELU evaluations (inference: one pass from z to y).

`fuse_gelu_batchnorm(net)` swaps every nn.GELU -> nn.BatchNorm2d pair of an nn.Sequential for nn.Identity ->
GeluBatchNorm2d, the pattern PyTorch's own `fuse_modules` uses: the parameters and buffers stay the same objects
under the same names, so checkpoints load either way.

The fused path applies on the CPU to fp32 channels-last inputs with channels a multiple of 16, outside autocast,
where the C loops are built; anything else (GPUs, bf16 autocast, NCHW, no C compiler, CONVMIXER_LIT_NO_KERNELS=1,
`bench`'s stock layers) runs the stock `batch_norm(gelu(z))`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from convmixer_lit.kernels import precision
from convmixer_lit.kernels.native import in_parallel, library, loaded, shares

LANES = 16  # channels must be a multiple of this (one AVX-512 vector, two AVX2 ones)


def _rows(t: torch.Tensor) -> torch.Tensor:
    """A channels-last (N, C, H, W) tensor as the (N*H*W, C) rows the C loops read (a view: no copy)."""
    return t.permute(0, 2, 3, 1).reshape(-1, t.shape[1])


def _sums(fn, *args, channels: int, rows: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Two per-channel fp64 sums from a C reduction over all rows: each thread sums its share of the rows."""
    parts = shares(rows)
    out = torch.zeros(2, len(parts), channels, dtype=torch.float64)
    pointers = [a.data_ptr() for a in args]
    in_parallel(lambda t, r0, r1: fn(*pointers, out[0, t].data_ptr(), out[1, t].data_ptr(), channels, r0, r1), parts)
    return out[0].sum(0), out[1].sum(0)


def gelu_and_stats(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """gelu(z) (channels-last, like z) and its per-channel mean and biased variance in fp64, the sums shifted by the
    first row's values for precision."""
    x, a = _rows(z), torch.empty_like(z)
    shift = F.gelu(x[0]).contiguous()
    s1, s2 = _sums(library().gelu_bn_stats, x, shift, _rows(a), channels=x.shape[1], rows=x.shape[0])
    mean_shifted = s1 / x.shape[0]
    return a, shift.double() + mean_shifted, (s2 / x.shape[0] - mean_shifted ** 2).clamp_min(0)


def _affine(x: torch.Tensor, mean: torch.Tensor, scale: torch.Tensor, beta: torch.Tensor,
            apply_gelu: bool) -> torch.Tensor:
    """(x - mean) * scale + beta per channel (gelu(x) first with `apply_gelu`), channels-last like x."""
    y = torch.empty_like(x)
    rows, out = _rows(x), _rows(y)
    m, s, b = (t.float().contiguous() for t in (mean, scale, beta))
    in_parallel(lambda _, r0, r1: library().gelu_bn_forward(rows.data_ptr(), m.data_ptr(), s.data_ptr(), b.data_ptr(),
                                                            out.data_ptr(), int(apply_gelu), rows.shape[1], r0, r1),
                shares(rows.shape[0]))
    return y


class _GeluBatchNorm(torch.autograd.Function):
    """y = (a - mean) * weight * invstd + bias per channel, a = gelu(z) computed (and detached) by the caller; backward
    through BN (batch statistics when `training`, else fixed ones) and GELU, by gelu_bn.c."""

    @staticmethod
    def forward(ctx, z: torch.Tensor, a: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, mean: torch.Tensor,
                invstd: torch.Tensor, training: bool) -> torch.Tensor:
        ctx.save_for_backward(z, a, weight, mean, invstd)
        ctx.training = training
        return _affine(a, mean, weight.double() * invstd, bias, apply_gelu=False)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_y: torch.Tensor):
        z, a, weight, mean, invstd = ctx.saved_tensors
        lib = library()
        x, ax = _rows(z), _rows(a)
        dy = _rows(grad_y.contiguous(memory_format=torch.channels_last))
        n, c = x.shape
        sum_dy, sum_dy_a = _sums(lib.gelu_bn_backward_sums, ax, dy, mean.float(), channels=c, rows=n)
        k_dy = weight.double() * invstd  # d y / d gelu(z) with the statistics held fixed
        if ctx.training:  # the batch statistics depend on z too
            k_a = -k_dy * invstd ** 2 * sum_dy_a / n  # times (a - mean)
            k_0 = -k_dy * sum_dy / n
        else:
            k_a, k_0 = torch.zeros_like(k_dy), torch.zeros_like(k_dy)
        grad_z = torch.empty_like(z)
        gz = _rows(grad_z)
        k = [t.float().contiguous() for t in (mean, k_dy, k_a, k_0)]
        pointers = [t.data_ptr() for t in (x, ax, dy, *k, gz)]
        in_parallel(lambda _, r0, r1: lib.gelu_bn_backward(*pointers, c, r0, r1), shares(n))
        grad_weight = (sum_dy_a * invstd).float() if ctx.needs_input_grad[2] else None
        grad_bias = sum_dy.float() if ctx.needs_input_grad[3] else None
        return grad_z, None, grad_weight, grad_bias, None, None, None


class GeluBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d(GELU(x)): nn.BatchNorm2d's parameters, buffers and running-statistics rules, with GELU first."""

    def fast_path(self, z: torch.Tensor) -> bool:
        """Whether gelu_bn.c computes this call (else the stock layers do)."""
        return (precision.ENABLED and z.device.type == "cpu" and z.dtype == torch.float32 and z.dim() == 4
                and not torch.is_autocast_enabled("cpu") and z.shape[1] % LANES == 0
                and z.is_contiguous(memory_format=torch.channels_last) and z.shape[0] * z.shape[2] * z.shape[3] > 1
                and (self.weight is None or self.weight.dtype == torch.float32) and loaded())

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if not self.fast_path(z):
            return super().forward(F.gelu(z))
        ones = torch.ones(z.shape[1]) if self.weight is None else self.weight
        zeros = torch.zeros(z.shape[1]) if self.bias is None else self.bias
        batch_stats_used = self.training or self.running_mean is None
        needs_grad = torch.is_grad_enabled() and (z.requires_grad or ones.requires_grad or zeros.requires_grad)
        if not batch_stats_used and not needs_grad:  # inference: one pass from z to y
            with torch.no_grad():
                return _affine(z, self.running_mean, ones.double() * (self.running_var.double() + self.eps).rsqrt(),
                               zeros, apply_gelu=True)
        with torch.no_grad():
            if not batch_stats_used:  # eval mode with gradients (frozen statistics): GELU only, no statistics pass
                a = F.gelu(z.detach()).contiguous(memory_format=torch.channels_last)
                mean, var = self.running_mean.double(), self.running_var.double()
            else:
                a, mean, var = gelu_and_stats(z.detach())
                if self.training and self.track_running_stats:  # nn.BatchNorm2d's rules for running statistics
                    self.num_batches_tracked.add_(1)
                    factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
                    n = z.numel() / z.shape[1]
                    self.running_mean.mul_(1 - factor).add_(mean.float(), alpha=factor)
                    self.running_var.mul_(1 - factor).add_((var * n / (n - 1)).float(), alpha=factor)
        return _GeluBatchNorm.apply(z, a, ones, zeros, mean, (var + self.eps).rsqrt(), batch_stats_used)


def fuse_gelu_batchnorm(net: nn.Module) -> int:
    """Swap each nn.GELU() -> nn.BatchNorm2d pair inside an nn.Sequential for nn.Identity -> GeluBatchNorm2d (the BN
    module itself, retyped: same parameters, buffers and state-dict names). Returns how many pairs were fused."""
    fused = 0
    for seq in [m for m in net.modules() if isinstance(m, nn.Sequential)]:
        names = list(seq._modules)
        for first, second in zip(names, names[1:]):
            gelu, bn = seq._modules[first], seq._modules[second]
            if type(gelu) is nn.GELU and gelu.approximate == "none" and type(bn) is nn.BatchNorm2d:
                seq._modules[first] = nn.Identity()
                bn.__class__ = GeluBatchNorm2d  # a subclass adding no state: the module keeps everything it holds
                fused += 1
    return fused
