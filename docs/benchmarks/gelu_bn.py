# GELU -> BatchNorm2d forward + backward at ConvMixer-256's 160 px shape (batch 64, 256 channels, 22x22, fp32,
# channels-last, training mode): PyTorch's two layers vs the kit's fused layer (kernels/gelu_bn.c), alternating,
# median of 3 rounds of 6 calls each, and the largest difference of their outputs and gradients.
# Run: python docs/benchmarks/gelu_bn.py   (prefix the ISA caps to emulate the AVX2 class; output: docs/benchmarks.md)
import statistics
import time

import torch
from torch import nn

from convmixer_lit.hardware import describe
from convmixer_lit.kernels.allocator import keep_freed_memory
from convmixer_lit.kernels.gelu_bn import fuse_gelu_batchnorm

keep_freed_memory()  # as fit does
torch.manual_seed(0)
stock = nn.Sequential(nn.GELU(), nn.BatchNorm2d(256))
fused = nn.Sequential(nn.GELU(), nn.BatchNorm2d(256))
fused.load_state_dict(stock.state_dict())
fuse_gelu_batchnorm(fused)
shape = (64, 256, 22, 22)
xs = [torch.randn(*shape).contiguous(memory_format=torch.channels_last).requires_grad_() for _ in range(6)]
grad = torch.randn(*shape).contiguous(memory_format=torch.channels_last)
print(f"{describe('cpu')}, {torch.get_num_threads()} threads; GELU -> BN forward + backward, {shape}")


def ms_per_call(module: nn.Module) -> float:
    start = time.perf_counter()
    for x in xs:
        module(x).backward(grad)
        x.grad = None  # as a training step frees it: no accumulation pass
    return (time.perf_counter() - start) / len(xs) * 1e3


ms_per_call(stock), ms_per_call(fused)  # warm-up
times = {"stock": [], "fused": []}
for _ in range(3):
    times["stock"].append(ms_per_call(stock))
    times["fused"].append(ms_per_call(fused))
for name, t in times.items():
    print(f"{name}: median {statistics.median(t):6.1f} ms  (rounds: {', '.join(f'{v:.1f}' for v in t)})")
x = xs[0].detach().clone().requires_grad_()
y_stock = stock(x)
y_stock.backward(grad)
g_stock, x.grad = x.grad, None
y_fused = fused(x)
y_fused.backward(grad)
print(f"max |difference|: output {(y_fused - y_stock).abs().max():.2e}, input grad {(x.grad - g_stock).abs().max():.2e}")
