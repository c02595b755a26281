"""Attribution for docs/benchmarks/denormal-ab.json: the working tree alone, `fit` resumed from the attention cell's
checkpoint (after 2 of its 4 epochs) for 24 steps (the first 3 step times dropped), --flush_denormal false vs true.
Usage: python docs/benchmarks/denormal_attribution.py CKPT true|false STEPS   (from the repository root; as run)
"""
import sys, tempfile, shutil, importlib, time
from pathlib import Path
ckpt, flush, steps = sys.argv[1], sys.argv[2], int(sys.argv[3])
from convmixer_lit.fit import main
import torch
import convmixer_lit.bench as B
_orig = B.StepClock.on_train_batch_end
def _stop(self, trainer, pl_module, *a):
    _orig(self, trainer, pl_module, *a)
    if len(B.StepClock.ticks) > steps:
        trainer.should_stop = True
B.StepClock.on_train_batch_end = _stop
c = torch.load(ckpt, weights_only=False, map_location="cpu")
start = c["global_step"]
out = tempfile.mkdtemp()
main(["--config", "experiments/mixer-study/patch-attention.yaml", "--data.root", "../shared/data",
      "--trainer.precision", "32-true", "--trainer.limit_val_batches", "0", "--trainer.num_sanity_val_steps", "0",
      "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
      "--trainer.default_root_dir", out, "--trainer.callbacks+=convmixer_lit.bench.StepClock",
      "--ckpt_path", ckpt, "--seed_everything", "0",
      "--flush_denormal", flush])
ticks = importlib.import_module("convmixer_lit.bench").StepClock.ticks
d = [b - a for a, b in zip(ticks, ticks[1:])][3:]
import statistics
print(f"RESULT flush={flush} from step {start}: median {statistics.median(d):.3f} s/step = {64/statistics.median(d):.1f} img/s over {len(d)} steps")
shutil.rmtree(out, ignore_errors=True)
