# Where ConvMixer-256/12 k7 p7's training step spends its time on this CPU (160 px, batch 64, the kit's compute path:
# bf16 autocast, channels-last, kernels/), by torch.profiler self time, plus the step rate with the kit's CPU layer
# choices on and off.  Run: python docs/benchmarks/profile_convmixer_step.py  (raw output: docs/benchmarks.md)
import time

import torch
import torch.nn.functional as F
from torch.profiler import profile

from convmixer_lit.kernels import precision
from convmixer_lit.models import ConvMixer

torch.manual_seed(0)
model = ConvMixer(dim=256, depth=12, kernel_size=7, patch_size=7).to(memory_format=torch.channels_last)
opt = torch.optim.AdamW(model.parameters(), 1e-3)
x = torch.randn(64, 3, 160, 160).contiguous(memory_format=torch.channels_last)
y = torch.randint(0, 10, (64,))


def step():
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = F.cross_entropy(model(x), y)
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)


for enabled in (False, True, False, True):
    precision.ENABLED = enabled
    step()
    start = time.perf_counter()
    for _ in range(3):
        step()
    print(f"{'kit layers' if enabled else 'stock layers'}: {3 * 64 / (time.perf_counter() - start):.1f} img/s",
          flush=True)
precision.ENABLED = True
with profile() as prof:
    step()
print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=14, max_name_column_width=40))
