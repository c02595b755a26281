# Micro-benchmark behind kernels/depthwise.py: the depthwise 7x7 conv's backward (256 channels, batch 64, fp32,
# channels-last) by oneDNN (PyTorch's builtin) vs the kit's kernels, at the token grids of 64 px p4 (16x16) and
# 160 px p7 (22x22).  Run: python docs/benchmarks/depthwise_backward.py  (raw output: docs/benchmarks.md)
import time

import torch
import torch.nn.functional as F

from convmixer_lit.kernels import depthwise


def ms(fn, n=10):
    fn(); fn()
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - start) / n * 1000


N, C, K = 64, 256, 7
assert depthwise.library() is not None, "no C compiler: the kit's weight-gradient kernel could not be built"
for H in (16, 22):
    x = torch.randn(N, C, H, H).contiguous(memory_format=torch.channels_last)
    g = torch.randn(N, C, H, H).contiguous(memory_format=torch.channels_last)
    w = torch.randn(C, 1, K, K)
    ref_w = torch.nn.grad.conv2d_weight(x.double(), w.shape, g.double(), padding=K // 2, groups=C)
    ref_x = torch.nn.grad.conv2d_input(x.shape, w.double(), g.double(), padding=K // 2, groups=C)
    cases = [
        ("weight grad", "builtin (oneDNN)", lambda: torch.nn.grad.conv2d_weight(x, w.shape, g, padding=K // 2, groups=C), ref_w),
        ("weight grad", "kit (depthwise.c)", lambda: depthwise.weight_grad(x, g, K), ref_w),
        ("input grad", "builtin (oneDNN)", lambda: torch.ops.aten.convolution_backward(
            g, x, w, None, [1, 1], [K // 2] * 2, [1, 1], False, [0, 0], C, [True, False, False])[0], ref_x),
        ("input grad", "kit (flipped fwd)", lambda: F.conv2d(g, w.flip(-1, -2), padding=K // 2, groups=C), ref_x),
    ]
    for what, name, fn, ref in cases:
        err = ((fn().double() - ref).abs().max() / ref.abs().max()).item()
        print(f"H={H} {what:11s} {name:18s} {ms(fn):7.2f} ms  rel err {err:.1e}", flush=True)
