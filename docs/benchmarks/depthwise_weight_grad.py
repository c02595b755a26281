# Micro-benchmark: ways to compute the depthwise-conv weight gradient on the CPU (builtin vs grouped-conv trick vs
# unfold+einsum), fp32 and bf16.  Run: python docs/benchmarks/depthwise_weight_grad.py  (raw output: docs/benchmarks.md)
import torch, time
import torch.nn.functional as F
def t(fn, n=10):
    fn(); fn()
    s = time.perf_counter()
    for _ in range(n): fn()
    return (time.perf_counter() - s) / n * 1000
N, C, H, K = 64, 256, 16, 7
for dtype in (torch.float32, torch.bfloat16):
    x = torch.randn(N, C, H, H, dtype=dtype).contiguous(memory_format=torch.channels_last)
    g = torch.randn(N, C, H, H, dtype=dtype).contiguous(memory_format=torch.channels_last)
    w = torch.randn(C, 1, K, K, dtype=dtype)
    ref = torch.nn.grad.conv2d_weight(x.float(), w.shape, g.float(), padding=K//2, groups=C)
    def trick():
        xi = x.transpose(0, 1).reshape(1, C * N, H, H)
        gi = g.transpose(0, 1).reshape(C, N, H, H)
        return F.conv2d(xi, gi, padding=K // 2, groups=C).view(C, 1, K, K)
    def trick_cl():
        xi = x.permute(1, 0, 2, 3).reshape(1, C * N, H, H).contiguous(memory_format=torch.channels_last)
        gi = g.permute(1, 0, 2, 3).reshape(C, N, H, H).contiguous(memory_format=torch.channels_last)
        return F.conv2d(xi, gi, padding=K // 2, groups=C).view(C, 1, K, K)
    def unfold_bmm():
        # (C, N*H*W) x (C, N*H*W, K*K) via unfold of padded x per offset
        xp = F.pad(x, (K//2,)*4)
        cols = xp.unfold(2, H, 1).unfold(3, H, 1)  # N, C, K, K, H, W
        return torch.einsum("nckluv,ncuv->ckl", cols, g).view(C, 1, K, K)
    def builtin():
        return torch.nn.grad.conv2d_weight(x, w.shape, g, padding=K//2, groups=C)
    for name, fn in [("builtin", builtin), ("trick", trick), ("trick_cl", trick_cl), ("unfold_einsum", unfold_bmm)]:
        out = fn()
        err = (out.float() - ref).abs().max().item() / ref.abs().max().item()
        print(f"{str(dtype):15s} {name:14s} {t(fn):7.2f} ms  rel err {err:.2e}", flush=True)
