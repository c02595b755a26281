"""Callbacks the kit adds to every run: a result file per run, a stop on a non-finite loss, CUDA settings."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import lightning as L
import torch

from convmixer_lit.errors import TrainingError
from convmixer_lit.hardware import machine

RESULT_FILE = "result.json"
JOBS_VARIABLE = "CONVMIXER_LIT_JOBS"  # set by compare's local launcher for each run it starts: runs at once


def write_json_atomic(path: Path, obj) -> None:
    """Write `obj` as JSON to a temporary file, then rename: a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(obj, indent=2) + "\n")
    os.replace(tmp, path)


def code_version() -> str | None:
    """The kit's git commit, with `-dirty` when tracked files differ from it; None outside a git checkout.

    Stored in every result.json, so a number can be traced to the code that produced it.
    """
    try:
        out = subprocess.run(["git", "describe", "--always", "--dirty", "--abbrev=12"], capture_output=True,
                             text=True, timeout=10, cwd=Path(__file__).resolve().parent)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def machine_load() -> float | None:
    """The 1-minute load average (runnable threads, all processes): a run's speed is its own only where this stayed
    near its own thread count. None where the OS has none (Windows)."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


def concurrent_runs() -> int:
    """How many runs a study trained at once beside this one (its `--jobs`); 1 for a plain `fit`."""
    try:
        return max(1, int(os.environ.get(JOBS_VARIABLE, "1")))
    except ValueError:
        return 1


def _scalar(metrics: dict, key: str) -> float | None:
    value = metrics.get(key)
    return None if value is None else float(value)


class RunSummary(L.Callback):
    """Times training, keeps a per-epoch history and writes `<run folder>/result.json` when fit ends.

    The file is what `compare` reads, so a study can be resumed and committed without its checkpoints.
    Wall time and images seen accumulate across resumes (they are part of the checkpoint's callback state).
    """

    def __init__(self) -> None:
        self.history: list[dict] = []
        self.wall_time = 0.0  # seconds in fit, summed over resumes
        self.train_time = 0.0  # seconds inside training epochs (data loading included, validation excluded)
        self.train_images = 0
        self._t_fit = self._t_epoch = self._t_last_batch = None
        self.summary: dict | None = None
        self.code_version: str | None = None
        self.flush_denormal: bool | None = None  # set by the CLI (--flush_denormal): whether subnormals were flushed

    def state_dict(self) -> dict:
        return {"history": self.history, "wall_time": self._elapsed(), "train_time": self.train_time,
                "train_images": self.train_images}

    def load_state_dict(self, state_dict: dict) -> None:
        self.history = state_dict["history"]
        self.wall_time, self.train_time = state_dict["wall_time"], state_dict["train_time"]
        self.train_images = state_dict["train_images"]

    def _elapsed(self) -> float:
        return self.wall_time + (time.perf_counter() - self._t_fit if self._t_fit is not None else 0.0)

    def on_fit_start(self, trainer, pl_module) -> None:
        self._t_fit = time.perf_counter()
        self.code_version = code_version()

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._t_epoch = self._t_last_batch = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._t_last_batch = time.perf_counter()
        self.train_images += int(batch[1].shape[0]) * trainer.world_size

    def on_validation_start(self, trainer, pl_module) -> None:
        self._close_train_epoch()

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self._close_train_epoch()
        m = trainer.callback_metrics
        if self.history and self.history[-1]["epoch"] == trainer.current_epoch:
            self.history[-1].update(train_loss=_scalar(m, "train/loss_epoch"), train_acc=_scalar(m, "train/acc"))

    def _close_train_epoch(self) -> None:
        if self._t_epoch is not None:
            self.train_time += self._t_last_batch - self._t_epoch
            self._t_epoch = None

    def on_validation_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking:
            return
        m = trainer.callback_metrics
        row = {"epoch": trainer.current_epoch, "step": trainer.global_step, "val_acc": _scalar(m, "val/acc"),
               "val_loss": _scalar(m, "val/loss"), "wall_time": round(self._elapsed(), 2),
               "load_1min": machine_load()}
        # the epoch's training metrics so far, now: the checkpoint written after validation must hold them (a
        # resumed run's history would lack them); on_train_epoch_end then sets the values Lightning logged
        for key, name in (("train_loss", "train_loss"), ("train_acc", "train_acc")):
            metric = getattr(pl_module, name, None)
            if metric is not None and getattr(metric, "update_called", False):
                row[key] = float(metric.compute())
        self.history.append(row)

    def on_fit_end(self, trainer, pl_module) -> None:
        self.summary = self.build(trainer, pl_module)
        log_dir = trainer.log_dir  # a broadcast under DDP: every rank must ask, or rank 0 waits on the others
        if trainer.is_global_zero and log_dir:
            write_json_atomic(Path(log_dir) / RESULT_FILE, self.summary)

    def build(self, trainer, pl_module) -> dict:
        val = [h for h in self.history if h.get("val_acc") is not None]
        best = max(val, key=lambda h: h["val_acc"]) if val else {}
        return {
            "model": pl_module.model_name,
            "class_path": f"{type(pl_module).__module__}.{type(pl_module).__qualname__}",
            "hparams": {k: v for k, v in pl_module.hparams.items() if k != "class_names"},
            "seed": int(os.environ.get("PL_GLOBAL_SEED", -1)),
            "parameters": pl_module.num_parameters(),
            "forward_flops_per_image": getattr(pl_module, "forward_flops", None),
            "train_flops_per_image": 3 * getattr(pl_module, "forward_flops", 0) or None,
            "best_val_acc": best.get("val_acc"),
            "best_epoch": best.get("epoch"),
            "final_val_acc": val[-1]["val_acc"] if val else None,
            "best_val_loss": min((h["val_loss"] for h in val), default=None),
            "epochs": trainer.current_epoch,
            "max_epochs": trainer.max_epochs,
            "global_step": trainer.global_step,
            "completed": not trainer.interrupted,
            "wall_time_s": round(self._elapsed(), 2),
            "train_images_per_s": round(self.train_images / self.train_time, 2) if self.train_time else None,
            "precision": str(trainer.precision),
            "accelerator": type(trainer.accelerator).__name__.removesuffix("Accelerator").lower(),
            "world_size": trainer.world_size,
            "hardware": machine(),  # the CPU class (ISA, native bf16) and GPU that the speed and precision depend on
            "torch_threads": torch.get_num_threads(),  # fewer than the cores: one of several runs at once (--jobs N)
            "flush_denormal": self.flush_denormal,  # subnormal floats treated as zero on the CPU (--flush_denormal)
            # how alone it trained: runs at once (compare --jobs) and the machine's 1-minute load at each epoch end
            # (history); the report quotes speed only from runs that had the machine to themselves
            "concurrent_runs": concurrent_runs(),
            "load_1min_max": max((h["load_1min"] for h in self.history if h.get("load_1min") is not None),
                                 default=None),
            "data_pipeline": getattr(trainer.datamodule, "pipeline", None),  # `auto` resolved: what really ran
            "holdout": self._holdout(trainer.datamodule),  # the part of train it validated on, where not val
            "command": " ".join(["python", "-m", "convmixer_lit.fit", *sys.argv[1:]]),
            "code_version": self.code_version,
            "history": self.history,
        }

    @staticmethod
    def _holdout(datamodule) -> dict | None:
        """The held-out split a tuning trial was scored on (fraction, seed, sizes, digest of the files), else None."""
        if getattr(datamodule, "eval_split", "val") != "holdout":
            return None
        return datamodule.holdout_record()


class CudaSpeedups(L.Callback):
    """TF32 tensor cores for fp32 matmuls on CUDA GPUs, which PyTorch leaves off by default.

    `torch.set_float32_matmul_precision("high")`: the fp32 matmuls left outside autocast (all of them in a `32-true`
    run) run on tensor cores with 10-bit-mantissa inputs on Ampere and later GPUs (no effect on older ones). A
    process-wide setting, so `evaluate` and `predict` make it too and reproduce the run's numbers. cuDNN's
    convolution autotuner is Lightning's own `--trainer.benchmark`, which `fit` turns on (see cli.py).
    """

    @staticmethod
    def apply(device: torch.device) -> None:
        if device.type == "cuda":
            torch.set_float32_matmul_precision("high")

    def setup(self, trainer, pl_module, stage: str) -> None:
        self.apply(trainer.strategy.root_device)


class FiniteLoss(L.Callback):
    """Stops at the first non-finite training loss, naming epoch and step; checkpoints already saved are kept.

    On the CPU every loss is read before its backward pass (reading costs nothing there), so a bad loss never updates
    the weights. On a GPU reading the loss would make the host wait for the device every step, so the losses are
    kept on the device and read together every `every_n_steps` steps, before every validation and before every
    checkpoint: training runs ahead of the host, no checkpoint is written from weights a bad loss has touched, and
    the step named is still the first bad one. Under DDP all ranks read at the same steps and stop together (a rank
    that went on would wait in the gradient all-reduce forever).

    Args:
        every_n_steps: read the losses every this many steps; default: every step on the CPU, every 50 elsewhere.
    """

    ACCELERATOR_EVERY_N_STEPS = 50

    def __init__(self, every_n_steps: int | None = None) -> None:
        self.every_n_steps = every_n_steps
        self._pending: list[tuple[torch.Tensor, int, int, int]] = []  # (loss, epoch, step, batch) not yet read
        self._batch_idx = -1

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._batch_idx = batch_idx

    def on_before_backward(self, trainer, pl_module, loss) -> None:
        self._pending.append((loss.detach(), trainer.current_epoch, trainer.global_step, self._batch_idx))
        every = self.every_n_steps or (1 if loss.device.type == "cpu" else self.ACCELERATOR_EVERY_N_STEPS)
        if len(self._pending) >= every:
            self.check(trainer)

    def on_validation_start(self, trainer, pl_module) -> None:
        self.check(trainer)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.check(trainer)

    def on_save_checkpoint(self, trainer, pl_module, checkpoint) -> None:
        self.check(trainer)

    def on_train_end(self, trainer, pl_module) -> None:
        self.check(trainer)

    def check(self, trainer) -> None:
        """Read the losses not yet read (one device-to-host copy) and raise TrainingError if any is not finite."""
        if not self._pending:
            return
        pending, self._pending = self._pending, []
        values = torch.stack([loss.float() for loss, *_ in pending]).tolist()
        first = next((i for i, v in enumerate(values) if not math.isfinite(v)), None)
        bad = first is not None
        if trainer.world_size > 1:
            bad = trainer.strategy.reduce_boolean_decision(bad, all=False)
        if not bad:
            return
        if first is None:  # this rank's losses were finite: another rank's were not
            _, epoch, step, batch_idx = pending[-1]
            what = f"became non-finite on another process by epoch {epoch}, step {step} (batch {batch_idx})"
        else:
            _, epoch, step, batch_idx = pending[first]
            what = f"became {values[first]} at epoch {epoch}, step {step} (batch {batch_idx})"
        raise TrainingError(f"the training loss {what}; lower --model.lr or use --trainer.precision 32-true. "
                            f"Checkpoints saved before this point are kept")
