"""Issue 14: --jobs 1 vs --jobs 2 on the mixer study's full-length runs, from their committed results.

Seeds 0 and 1 of the 8 cells ran one at a time (each run with both cores), seed 2 two at a time (one core each);
the cells' compute is identical across seeds. A run's training img/s at --jobs 1 is taken as the best of its cell's
seed-0/1 runs (some of those shared the machine with test runs, which only slows them, so this favours --jobs 1), and
the seed's machine time as the sum of the cells' shortest seed-0/1 wall times. Seed 2's machine time is its
elapsed time from compare's log (first start to last end).
Usage: python docs/benchmarks/study_jobs_from_results.py docs/results/mixer-study START END
   START, END: seed 2's first start and last end as ISO times (from compare's console log)."""

import json
import sys
from datetime import datetime
from pathlib import Path

CELLS = ["patch-attention", "patch-conv", "patch-pool", "patch-identity",
         "conv-attention", "conv-conv", "conv-pool", "conv-identity"]
out = Path(sys.argv[1])
start, end = (datetime.fromisoformat(t) for t in sys.argv[2:4])
runs = {(c, s): json.loads((out / "results" / f"{c}-seed{s}.json").read_text()) for c in CELLS for s in (0, 1, 2)}
env = runs[(CELLS[0], 2)]
print(f"machine: {env['hardware']['cpu']} ({env['hardware']['cpu_isa']}), {env['environment']['cpu_cores']} cores; "
      f"torch {env['environment']['torch']}, precision {env['precision']}")
print("cell | img/s, 1 at a time (threads) | img/s, 2 at a time (threads) | throughput, 2 at a time / 1 at a time")
alone_time = 0.0
for c in CELLS:
    best = max((runs[(c, s)] for s in (0, 1)), key=lambda r: r["train_images_per_s"])
    two = runs[(c, 2)]
    alone_time += min(runs[(c, s)]["wall_time_s"] for s in (0, 1))
    print(f"{c} | {best['train_images_per_s']:.1f} ({best.get('torch_threads', 'all')}) | "
          f"{two['train_images_per_s']:.1f} ({two['torch_threads']}) | "
          f"{2 * two['train_images_per_s'] / best['train_images_per_s']:.2f}x")
elapsed = (end - start).total_seconds()
print(f"one seed of the 8 cells: one at a time {alone_time / 60:.1f} min (sum of the shortest seed-0/1 wall times), "
      f"two at a time {elapsed / 60:.1f} min (seed 2, elapsed): {alone_time / elapsed:.2f}x the runs per hour")
