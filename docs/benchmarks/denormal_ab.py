"""Issue 21's speed check: `fit` on three mixer-study cells, commit ad4e8e4 (no denormal flushing) against the
working tree (flushing by default), side by side in one run.

A fresh network produces few subnormal floats, a trained one many (attention's softmax over tokens it has learnt
to ignore, and the gradients through it), so every timing resumes the same checkpoint, taken after 2 of the cell's
4 epochs (trained once, untimed, with the working tree), and times 24 training steps of `fit` (2 more as warm-up)
on the real data in fp32, the study's precision, default settings otherwise. The two commits alternate, 3 times
each per cell, so a drift in the machine's speed hits both alike; medians are compared.

Usage, from the repository root, on a quiet machine (nothing else training):
    python docs/benchmarks/denormal_ab.py DATA_ROOT OUT.json [--checkpoints-only]
(--checkpoints-only trains the untimed checkpoints and stops, so the quiet window is only the timing.)
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

OLD = "ad4e8e4"
CELLS = ("patch-attention", "patch-conv", "patch-identity")
STEPS, WARM, REPS, EPOCHS = 24, 2, 3, 2
CKPTS = Path("/tmp/denormal-ab-checkpoints")
HARNESS = r"""
import importlib, sys, tempfile, time
import convmixer_lit.bench as bench
from convmixer_lit.fit import main
cfg, root, ckpt, steps, epochs = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
clock = bench.StepClock
original = clock.on_train_batch_end
def stop_after(self, trainer, pl_module, *args):  # ad4e8e4's StepClock cannot stop a run: added here
    original(self, trainer, pl_module, *args)
    if steps and len(clock.ticks) > steps:
        trainer.should_stop = True
def stop_epochs(self, trainer, pl_module):
    if epochs and trainer.current_epoch + 1 >= epochs:
        trainer.should_stop = True
clock.on_train_batch_end, clock.on_train_epoch_end = stop_after, stop_epochs
out = tempfile.mkdtemp()
flags = ["--config", cfg, "--data.root", root, "--data.download", "false", "--trainer.precision", "32-true",
         "--trainer.limit_val_batches", "0", "--trainer.num_sanity_val_steps", "0", "--seed_everything", "0",
         "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
         "--trainer.callbacks+=convmixer_lit.bench.StepClock", "--trainer.default_root_dir", out]
if ckpt == "-":
    main([*flags, "--run_name", "warm"])
    print("CKPT", f"{out}/lightning_logs/isotropic/warm/checkpoints/last.ckpt")
else:
    main([*flags, "--ckpt_path", ckpt])
    ticks = clock.ticks
    print("TICKS", " ".join(f"{t:.6f}" for t in ticks))
"""


def run(tree: Path, *args: str) -> str:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    proc = subprocess.run([sys.executable, "-c", HARNESS, *args], cwd=tree, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{tree}: {proc.stderr[-3000:]}")
    return proc.stdout


def main() -> None:
    root, out = str(Path(sys.argv[1]).resolve()), Path(sys.argv[2])
    new = Path.cwd()
    old = Path("/tmp/denormal-ab-" + OLD)
    if not old.exists():
        subprocess.run(["git", "worktree", "add", "--detach", str(old), OLD], check=True, capture_output=True)
    result = {"old": OLD, "new": subprocess.run(["git", "describe", "--always", "--dirty"], capture_output=True,
                                                  text=True).stdout.strip(), "steps": STEPS, "warmup": WARM,
              "reps": REPS, "checkpoint_after_epochs": EPOCHS, "cells": {}}
    from convmixer_lit.hardware import environment

    result["environment"] = environment()
    for cell in CELLS:
        config = f"experiments/mixer-study/{cell}.yaml"
        ckpt = CKPTS / f"{cell}.ckpt"  # untimed, so it may be made beforehand: `... --checkpoints-only`
        if not ckpt.is_file():
            line = next(x for x in run(new, config, root, "-", "0", str(EPOCHS)).splitlines() if x.startswith("CKPT"))
            CKPTS.mkdir(parents=True, exist_ok=True)
            Path(line.split(" ", 1)[1]).replace(ckpt)
        if "--checkpoints-only" in sys.argv:
            continue
        ckpt = str(ckpt)
        rates: dict[str, list[float]] = {"old": [], "new": []}
        loads = []
        for _ in range(REPS):
            for name, tree in (("old", old), ("new", new)):
                text = run(tree, config, root, ckpt, str(STEPS + WARM), "0")
                ticks = [float(t) for t in next(x for x in text.splitlines() if x.startswith("TICKS")).split()[1:]]
                rates[name].append(STEPS * 64 / (ticks[-1] - ticks[WARM]))
                loads.append(round(os.getloadavg()[0], 2))
                print(f"{time.strftime('%H:%M:%S')} {cell} {name}: {rates[name][-1]:.1f} img/s (load {loads[-1]})",
                      flush=True)
        medians = {k: statistics.median(v) for k, v in rates.items()}
        result["cells"][cell] = {"img_per_s": rates, "median": medians, "new_over_old": medians["new"] / medians["old"],
                                 "load_1min": loads}
        print(f"{cell}: median old {medians['old']:.1f}, new {medians['new']:.1f} img/s -> "
              f"{medians['new'] / medians['old']:.2f}x", flush=True)
    if "--checkpoints-only" not in sys.argv:
        out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
