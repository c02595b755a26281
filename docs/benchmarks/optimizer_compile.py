# ConvMixer-256/12 k7 p7 at 160 px, batch 64, the kit's compute step (bf16 autocast, channels-last, kernels/) with
# PyTorch's default AdamW, foreach AdamW, fused AdamW, and fused AdamW + torch.compile of the network; 6 steps after 2
# warm-up each.  Run: python docs/benchmarks/optimizer_compile.py [modes...]  (raw output: docs/benchmarks.md)
import time, sys, torch, torch.nn.functional as F

from convmixer_lit.models import ConvMixer
torch.manual_seed(0)
x = torch.randn(64, 3, 160, 160).contiguous(memory_format=torch.channels_last)
y = torch.randint(0, 10, (64,))
def bench(net, opt, steps=6, warm=2):
    def step():
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = F.cross_entropy(net(x), y)
        loss.backward(); opt.step(); opt.zero_grad(set_to_none=True)
    for _ in range(warm): step()
    s = time.perf_counter()
    for _ in range(steps): step()
    return steps * 64 / (time.perf_counter() - s)
modes = sys.argv[1:] or ["default", "foreach", "fused", "compile"]
for mode in modes:
    m = ConvMixer(dim=256, depth=12, kernel_size=7, patch_size=7).to(memory_format=torch.channels_last)
    net = m.net
    kw = {"fused": True} if mode in ("fused", "compile") else {"foreach": True} if mode == "foreach" else {}
    opt = torch.optim.AdamW(net.parameters(), 1e-3, **kw)
    t0 = time.perf_counter()
    if mode == "compile":
        net = torch.compile(net)
    r = bench(net, opt)
    print(f"{mode:10s} {r:6.1f} img/s  (incl. warm-up {time.perf_counter() - t0:.0f} s)", flush=True)
