# Micro-benchmark behind kernels/precision.py: attention forward+backward (64 x 8 heads x 256 tokens x 16 dims) by
# SDPA backend and dtype on the CPU.  Run: python docs/benchmarks/attention.py  (raw output: docs/benchmarks.md)
import torch, time
import torch.nn.functional as F
from torch.nn.attention import sdpa_kernel, SDPBackend
def t(fn, n=5):
    fn(); fn()
    s = time.perf_counter()
    for _ in range(n): fn()
    return (time.perf_counter() - s) / n * 1000
B, heads, L, hd = 64, 8, 256, 16
for dtype in (torch.bfloat16, torch.float32):
    q, k, v = (torch.randn(B, heads, L, hd, dtype=dtype, requires_grad=True) for _ in range(3))
    g = torch.randn(B, heads, L, hd, dtype=dtype)
    for be in (SDPBackend.FLASH_ATTENTION, SDPBackend.MATH):
        def fb():
            with sdpa_kernel([be]):
                out = F.scaled_dot_product_attention(q, k, v)
            out.backward(g)
        def manual():
            a = (q @ k.transpose(-1, -2) * hd ** -0.5).softmax(-1)
            (a @ v).backward(g)
        print(dtype, be, f"{t(fb):.1f} ms", flush=True)
    print(dtype, "manual", f"{t(manual):.1f} ms", flush=True)
