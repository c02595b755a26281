# Where the data-bound `fit` at 160 px spends its time (issue 16: fast pipeline 2.2x standard end to end there, 4.4x
# per core): each pipeline's batches alone on 2 threads, the tiny model's training step alone on one fixed batch,
# and the plain loop of both (bench's train_loop) — median of 3 rounds of 30 batches of 64 after 3 warm-up.
# Run: python docs/benchmarks/data_bound_160.py ../shared/data   (output: docs/benchmarks.md)
import statistics
import sys
import time

import torch

from convmixer_lit.bench import BATCH, TINY, forever, train_loop
from convmixer_lit.data import ImagenetteDataModule
from convmixer_lit.hardware import describe
from convmixer_lit.kernels.allocator import keep_freed_memory

keep_freed_memory()
root, size, steps, cpu = sys.argv[1], 160, 30, torch.device("cpu")
spec = TINY.__class__(TINY.label, TINY.model, TINY.init, size)
print(f"{describe('cpu')}, {torch.get_num_threads()} threads; {TINY.label.split(',')[0]} at {size} px, batch {BATCH}")


def rate(ticks: list[float]) -> float:
    return BATCH * (len(ticks) - 4) / (ticks[-1] - ticks[3])


for pipeline in ("standard", "fast"):
    dm = ImagenetteDataModule(root=root, image_size=size, batch_size=BATCH, download=False, pipeline=pipeline)
    batches = forever(dm, cpu)
    fixed = next(batches)
    results = {"pipeline alone": [], "model step alone": [], "plain loop (both)": []}
    for _ in range(3):
        ticks = [time.perf_counter()]
        for _, _batch in zip(range(steps + 3), batches):
            ticks.append(time.perf_counter())
        results["pipeline alone"].append(rate(ticks))
        results["model step alone"].append(rate(train_loop(spec.build(), iter(lambda: fixed, None), steps + 3,
                                                           "32-true", cpu, kit_path=True)))
        results["plain loop (both)"].append(rate(train_loop(spec.build(), batches, steps + 3, "32-true", cpu,
                                                            kit_path=True)))
    for name, values in results.items():
        print(f"{pipeline:>8s} {name:>18s}: median {statistics.median(values):7.1f} img/s  "
              f"({', '.join(f'{v:.1f}' for v in values)})", flush=True)
