# The AdamW step alone (random gradients) for ConvMixer-256/12 and the quick preset's ConvMixer-128/4: default, foreach
# and fused.  Run: python docs/benchmarks/optimizer_step.py  (raw output: docs/benchmarks.md)
import time, torch, sys
torch.set_num_threads(2)

from convmixer_lit.models import ConvMixer
for spec in [dict(dim=256, depth=12, kernel_size=7, patch_size=7), dict(dim=128, depth=4, kernel_size=5, patch_size=4)]:
    m = ConvMixer(**spec)
    ps = [p for p in m.parameters()]
    for p in ps: p.grad = torch.randn_like(p)
    for kw in [dict(), dict(foreach=True), dict(fused=True)]:
        opt = torch.optim.AdamW(ps, lr=1e-3, **kw)
        for _ in range(3): opt.step()
        s = time.perf_counter()
        for _ in range(20): opt.step()
        print(spec["dim"], spec["depth"], len(ps), kw, "%.2f ms" % ((time.perf_counter()-s)/20*1000))
