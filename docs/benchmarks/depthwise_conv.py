# Micro-benchmark behind kernels/precision.py: depthwise 7x7 conv (256 ch, batch 64) forward/backward by dtype and
# memory layout on the CPU.  Run: python docs/benchmarks/depthwise_conv.py  (raw output: docs/benchmarks.md)
import torch, time
from torch import nn
def t(fn, n=10):
    fn(); fn()
    s = time.perf_counter()
    for _ in range(n): fn()
    return (time.perf_counter() - s) / n * 1000
for H in (16, 22):
  for dtype in (torch.bfloat16, torch.float32):
    for cl in (True, False):
        conv = nn.Conv2d(256, 256, 7, groups=256, padding="same").to(dtype)
        x = torch.randn(64, 256, H, H, dtype=dtype, requires_grad=True)
        if cl:
            conv = conv.to(memory_format=torch.channels_last)
            x = x.detach().contiguous(memory_format=torch.channels_last).requires_grad_()
        g = torch.randn_like(conv(x))
        def fwd(): return conv(x)
        def fb():
            out = conv(x); out.backward(g)
        def bwd_w():
            out = conv(x); torch.autograd.grad(out, conv.weight, g)
        def bwd_x():
            out = conv(x); torch.autograd.grad(out, x, g)
        print(f"H={H} {str(dtype):15s} cl={cl!s:5s} fwd {t(fwd):6.1f} ms  fwd+bwd {t(fb):6.1f}  fwd+gradW {t(bwd_w):6.1f}  fwd+gradX {t(bwd_x):6.1f}", flush=True)
