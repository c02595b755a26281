# What kernels/allocator.py buys: ConvMixer-256/12 k7 p7 training steps (160 px, batch 64, the kit's compute path)
# in fresh processes with glibc's default malloc thresholds and with the kit's, alternating, with the CPU time each
# spent in the kernel (page faults of re-mapped activation memory).  Run: python docs/benchmarks/allocator.py
import subprocess
import sys

CHILD = """
import os, sys, time, torch, torch.nn.functional as F
if sys.argv[1] == "kit":
    from convmixer_lit.kernels.allocator import keep_freed_memory
    keep_freed_memory()
from convmixer_lit.models import ConvMixer
torch.manual_seed(0)
x = torch.randn(64, 3, 160, 160).contiguous(memory_format=torch.channels_last)
y = torch.randint(0, 10, (64,))
net = ConvMixer(dim=256, depth=12, kernel_size=7, patch_size=7).to(memory_format=torch.channels_last).net
opt = torch.optim.AdamW(net.parameters(), 1e-3, fused=True)
def step():
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = F.cross_entropy(net(x), y)
    loss.backward(); opt.step(); opt.zero_grad(set_to_none=True)
step(); step()
t0, start = os.times(), time.perf_counter()
for _ in range(8):
    step()
t1, wall = os.times(), time.perf_counter() - start
print(f"{8 * 64 / wall:.1f} img/s, user {t1.user - t0.user:.1f} s, kernel {t1.system - t0.system:.1f} s, wall {wall:.1f} s")
"""

for round in range(2):
    for mode in ("glibc default", "kit"):
        out = subprocess.run([sys.executable, "-c", CHILD, mode.split()[0]], capture_output=True, text=True)
        print(f"{mode:14s} {out.stdout.strip() or out.stderr[-500:]}", flush=True)
