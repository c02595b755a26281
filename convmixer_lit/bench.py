"""`python -m convmixer_lit.bench`: how fast the kit trains on this machine, side by side with what it could be.

For each model it measures training images/s three ways — the naive path (stock PyTorch layers and AdamW, fp32,
NCHW, plain loop), the kit's own `fit` on the real data (with each input pipeline), and the kit's compute step on
synthetic data already on the device (the ceiling; on a bf16 CPU also with stock layers, to show what kernels/
buys) — plus a plain PyTorch loop over the same model, batch and data to price Lightning's overhead, the data
pipelines' images/s per core, and each model's FLOPs against the measured GEMM peak of the dtype it computes in
(fp32, or bf16 / fp16 under mixed precision). It prints the machine's CPU class (hardware.py), then a table and,
with `--output`, saves the same figures (with the machine and library versions) as JSON. Nothing is estimated:
every figure is a timing.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib
import json
import os
import subprocess
import sys
import tempfile
import time
import typing
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F

import convmixer_lit.models  # noqa: F401  (registers the built-in architectures)
from convmixer_lit.base import MODELS, ImageClassifier
from convmixer_lit.data import ImagenetteDataModule
from convmixer_lit.errors import ConfigError, UserError, exit_with
from convmixer_lit.hardware import default_precision, describe, environment
from convmixer_lit.kernels import precision as precision_layers
from convmixer_lit.kernels.allocator import keep_freed_memory


@dataclass(frozen=True)
class Spec:
    """A model to time: its `--model` name, init args and input size."""

    label: str
    model: str
    init: dict[str, Any] = field(default_factory=dict)
    image_size: int = 160

    def build(self) -> ImageClassifier:
        return MODELS[self.model](num_classes=10, image_size=self.image_size, **self.init)

    def fit_flags(self) -> list[str]:
        flags = ["--model", self.model, "--data.image_size", str(self.image_size)]
        for key, value in self.init.items():
            flags += [f"--model.{key}", str(value)]
        return flags


SPECS = {
    "convmixer": Spec("ConvMixer-256/12 k7 p7, 160 px", "convmixer"),
    "vit": Spec("ViT-128/6, 8 heads, p7, 160 px", "vit"),
    "resnet18": Spec("ResNet-18, 160 px", "resnet18"),
    "quick": Spec("quick: ConvMixer-128/4 k5 p4, 64 px", "convmixer",
                  dict(dim=128, depth=4, kernel_size=5, patch_size=4), 64),
}
# the mixer study's attention cell (experiments/mixer-study/): the model whose fp32 training produces subnormals; its
# per-token norm pinned (pooled_norm=False, the default until 2026-12-07), as the committed figures were measured
ATTENTION_CELL = Spec("mixer-study patch + attention cell, 64 px", "isotropic",
                      dict(stem="patch", mixer="attention", dim=128, depth=6, patch_size=4, num_heads=4, kernel_size=7,
                           lr=0.003, weight_decay=0.05, pooled_norm=False), 64)
TINY = Spec("ConvMixer-16/1 k3 p8, 64 px", "convmixer", dict(dim=16, depth=1, kernel_size=3, patch_size=8), 64)
BATCH = 64


# ---- timing helpers --------------------------------------------------------------------------------------------
def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def rate(ticks: list[float], warmup: int, per_tick: int) -> float:
    """Items/s between tick `warmup` and the last tick (the first steps build kernels and workers: not counted)."""
    if len(ticks) <= warmup + 1:
        raise ValueError(f"need more than {warmup + 1} steps to time, got {len(ticks)}")
    return per_tick * (len(ticks) - 1 - warmup) / (ticks[-1] - ticks[warmup])


def gemm_peak(dtype: torch.dtype, device: torch.device, n: int = 2048, repeats: int = 10) -> float:
    """GFLOP/s of a square matmul: the ceiling the models' FLOPs are compared with."""
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    ticks = []
    for _ in range(repeats + 2):
        a @ b
        sync(device)
        ticks.append(time.perf_counter())
    return rate(ticks, 1, 2 * n ** 3) / 1e9


def compute_dtype(precision: str) -> torch.dtype:
    """The dtype a precision's matmuls run in, whose GEMM peak its models are priced against."""
    return {"bf16": torch.bfloat16, "16": torch.float16}.get(precision.split("-")[0], torch.float32)


def autocast(precision: str, device: torch.device):
    """The autocast context Lightning uses for a precision string (bf16-mixed, 16-mixed, 32-true)."""
    dtype = compute_dtype(precision)
    return contextlib.nullcontext() if dtype == torch.float32 else torch.autocast(device.type, dtype=dtype)


def train_loop(model: ImageClassifier, batches: Iterator, steps: int, precision: str, device: torch.device,
               kit_path: bool, fused: bool = True) -> list[float]:
    """A plain PyTorch loop (AdamW + OneCycle, cross-entropy): returns the time after each step. `kit_path`: the
    network as `fit` prepares it (channels-last where the model uses it, fused layers; False: as built, NCHW).
    `fused`: the kit's fused AdamW (False: PyTorch's default one, for the naive path)."""
    model.to(device).train()
    if kit_path:
        model.prepare_net()
    channels_last = kit_path and model.channels_last
    optimizer = torch.optim.AdamW(model.parameters(), lr=model.hparams.lr, weight_decay=model.hparams.weight_decay,
                                  fused=fused or None)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, model.hparams.lr, total_steps=steps)
    ticks = [time.perf_counter()]
    for _, (images, labels) in zip(range(steps), batches):
        images, labels = images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
        if channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        with autocast(precision, device):
            loss = F.cross_entropy(model.net(images), labels, label_smoothing=model.hparams.label_smoothing)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        sync(device)
        ticks.append(time.perf_counter())
    return ticks


def forever(dm: ImagenetteDataModule, device: torch.device) -> Iterator:
    """Normalised training batches on `device`, epoch after epoch (a small dataset must not end a timing early)."""
    while True:
        yield from dm.train_batches(device)


def synthetic(spec: Spec, device: torch.device) -> Iterator:
    images = torch.randn(BATCH, 3, spec.image_size, spec.image_size, device=device)
    labels = torch.randint(0, 10, (BATCH,), device=device)
    while True:
        yield images, labels


class StepClock(L.Callback):
    """Records the time after every training step of a `fit` run (bench adds it with --trainer.callbacks+=), and
    stops the run after `stop_after_steps` steps or `stop_after_epochs` epochs where those are set (a resumed run
    must keep its schedule's length, so it cannot be shortened with --trainer.max_steps)."""

    ticks: list[float] = []
    stop_after_steps: int | None = None
    stop_after_epochs: int | None = None

    def on_train_start(self, trainer, pl_module) -> None:
        StepClock.ticks = [time.perf_counter()]

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        sync(pl_module.device)
        StepClock.ticks.append(time.perf_counter())
        if StepClock.stop_after_steps is not None and len(StepClock.ticks) > StepClock.stop_after_steps:
            trainer.should_stop = True

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if StepClock.stop_after_epochs is not None and trainer.current_epoch + 1 >= StepClock.stop_after_epochs:
            trainer.should_stop = True


def fit_path(spec: Spec, root: str, steps: int, accelerator: str, extra: list[str] = ()) -> list[float]:
    """The kit's real `fit` (real data, default precision and workers), `steps` steps, no validation."""
    from convmixer_lit.fit import main

    with tempfile.TemporaryDirectory() as out:
        main([*spec.fit_flags(), "--data.root", root, "--data.download", "false", "--data.batch_size", str(BATCH),
              "--trainer.accelerator", accelerator, "--trainer.max_steps", str(steps),
              "--trainer.limit_val_batches", "0", "--trainer.num_sanity_val_steps", "0",
              "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
              "--trainer.default_root_dir", out, "--trainer.callbacks+=convmixer_lit.bench.StepClock", *extra])
    # the callback the CLI built is convmixer_lit.bench's, not __main__'s when run as `python -m convmixer_lit.bench`
    return importlib.import_module("convmixer_lit.bench").StepClock.ticks


# One timed `fit` in a fresh interpreter: torch's worker threads keep the subnormal handling they started with, so
# two settings timed in one process would both run the first one's (seen: the workers kept flushing after
# --flush_denormal false). Prints the step times as one JSON line.
_FIT_IN_A_CHILD = """
import json, sys
import convmixer_lit.bench as bench
from convmixer_lit.fit import main
bench.StepClock.stop_after_steps = int(sys.argv[1]) or None
bench.StepClock.stop_after_epochs = int(sys.argv[2]) or None
main(sys.argv[3:])
print("TICKS " + json.dumps(bench.StepClock.ticks))
"""


def fit_in_a_child(flags: list[str], stop_after_steps: int = 0, stop_after_epochs: int = 0) -> list[float]:
    """`fit` with `flags` in its own process (StepClock added and stopping it as asked); its step times."""
    proc = subprocess.run([sys.executable, "-c", _FIT_IN_A_CHILD, str(stop_after_steps), str(stop_after_epochs),
                           *flags, "--trainer.callbacks+=convmixer_lit.bench.StepClock"], capture_output=True,
                          text=True)
    line = next((x for x in proc.stdout.splitlines() if x.startswith("TICKS ")), None)
    if proc.returncode != 0 or line is None:
        raise UserError(f"a timed fit failed: {(proc.stderr.strip().splitlines() or ['no output'])[-1]}")
    return json.loads(line.removeprefix("TICKS "))


def denormal_path(root: str, epochs: int, steps: int, warm: int, reps: int, log=print) -> dict[str, Any]:
    """The attention cell's `fit` with and without --flush_denormal, where it matters: from a checkpoint after
    `epochs` epochs of its 4-epoch fp32 recipe (a fresh network produces few subnormals; a trained one's attention
    and gradients many), `steps` timed steps each, the two settings alternating `reps` times (so drift in the
    machine's speed hits both alike), each in its own process. Returns each run's images/s and the load average."""
    spec = ATTENTION_CELL
    flags = [*spec.fit_flags(), "--data.root", root, "--data.download", "false", "--data.batch_size", str(BATCH),
             "--trainer.precision", "32-true", "--trainer.accelerator", "cpu", "--trainer.max_epochs", "4",
             "--trainer.limit_val_batches", "0", "--trainer.num_sanity_val_steps", "0",
             "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
             "--seed_everything", "0"]
    rates: dict[str, list[float]] = {"true": [], "false": []}
    loads = [os.getloadavg()[0]] if hasattr(os, "getloadavg") else []
    with tempfile.TemporaryDirectory() as out:
        fit_in_a_child([*flags, "--trainer.default_root_dir", out, "--run_name", "warm"], stop_after_epochs=epochs)
        ckpt = Path(out) / "lightning_logs" / spec.model / "warm" / "checkpoints" / "last.ckpt"
        for rep in range(reps):
            for flush in ("true", "false"):
                ticks = fit_in_a_child([*flags, "--trainer.default_root_dir", f"{out}/{flush}{rep}", "--ckpt_path",
                                        str(ckpt), "--flush_denormal", flush], stop_after_steps=steps + warm)
                rates[flush].append(rate(ticks, warm, BATCH))
                log(f"denormals: {spec.label} after {epochs} epoch(s), --flush_denormal {flush}: "
                    f"{rates[flush][-1]:.1f} img/s")
    if hasattr(os, "getloadavg"):
        loads.append(os.getloadavg()[0])
    median = {k: sorted(v)[len(v) // 2] for k, v in rates.items()}
    return {"cell": spec.label, "after_epochs": epochs, "steps": steps, "flush": rates["true"],
            "no_flush": rates["false"], "speedup_of_medians": round(median["true"] / median["false"], 3),
            "load_1min_before_after": loads}


def plain_path(spec: Spec, root: str, steps: int, precision: str, device: torch.device) -> list[float]:
    """A plain loop over the same data module, model, batch and precision as `fit_path` (for Lightning's cost),
    with the fast pipeline: in the main process, so no worker competes with the model for cores and both
    timings see the same work."""
    dm = ImagenetteDataModule(root=root, image_size=spec.image_size, batch_size=BATCH, download=False,
                              pipeline="fast")
    model = spec.build()
    return train_loop(model, forever(dm, device), steps, precision, device, kit_path=True)


def data_path(root: str, pipeline: str, image_size: int, batches: int) -> float:
    """Training images/s of one data pipeline on one core (no workers, one thread), augmentation included."""
    # the fast pipeline's cache is built (or found) first, with the default workers: building it is not timed
    ImagenetteDataModule(root=root, image_size=image_size, batch_size=BATCH, download=False,
                         pipeline=pipeline).prepare_data()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        dm = ImagenetteDataModule(root=root, image_size=image_size, batch_size=BATCH, num_workers=0,
                                  download=False, pipeline=pipeline)
        ticks = [time.perf_counter()]
        for _ in zip(range(batches), forever(dm, torch.device("cpu"))):
            ticks.append(time.perf_counter())
        return rate(ticks, 1, BATCH)
    finally:
        torch.set_num_threads(threads)


@contextlib.contextmanager
def stock_layers():
    """PyTorch's own layers throughout: no fp32 opt-outs, no hand-written depthwise backward (kernels/)."""
    precision_layers.ENABLED = False
    try:
        yield
    finally:
        precision_layers.ENABLED = True


# ---- the run ---------------------------------------------------------------------------------------------------
def run(models: list[str], root: str | None, accelerator: str, quick: bool, log=print) -> dict[str, Any]:
    device = torch.device("cuda" if accelerator in ("gpu", "cuda") or (accelerator == "auto"
                                                                      and torch.cuda.is_available()) else "cpu")
    precision = default_precision(accelerator)
    steps = dict(naive=3, ceiling=4, fit=8, plain=8, data=4, data_bound=8) if quick else \
        dict(naive=4, ceiling=8, fit=20, plain=20, data=20, data_bound=100)
    warm = 1 if quick else 2
    result: dict[str, Any] = {"environment": environment(), "device": str(device), "precision": precision,
                              "batch_size": BATCH, "quick": quick, "steps": steps, "warmup_steps": warm,
                              "threads": torch.get_num_threads(), "peaks_gflops": {}, "models": {}, "data": {},
                              "data_bound_fit": {}}
    log(f"{describe(accelerator)} -> {precision}")
    # fp32 and the dtype the precision computes in, no other: default_precision picks bf16 only where it is native,
    # and where it is emulated a bf16 peak alone takes minutes (its matmul runs ~100x slower than fp32's)
    for dtype in dict.fromkeys([torch.float32, compute_dtype(precision)]):
        result["peaks_gflops"][str(dtype).removeprefix("torch.")] = round(
            gemm_peak(dtype, device, repeats=3 if quick else 10), 1)
    log(f"GEMM peak on {device}: {result['peaks_gflops']} GFLOP/s")
    peak = result["peaks_gflops"][str(compute_dtype(precision)).removeprefix("torch.")]
    for name in models:
        spec = SPECS[name]
        model = spec.build()
        train_flops = 3 * model.flops_per_image()
        row: dict[str, Any] = {"label": spec.label, "parameters": model.num_parameters(),
                               "train_flops_per_image": train_flops}
        with stock_layers():
            row["naive_fp32"] = rate(train_loop(spec.build(), synthetic(spec, device), steps["naive"] + warm,
                                                "32-true", device, kit_path=False, fused=False), warm, BATCH)
        row["ceiling"] = rate(train_loop(spec.build(), synthetic(spec, device), steps["ceiling"] + warm, precision,
                                         device, kit_path=True), warm, BATCH)
        if device.type == "cpu" and precision.startswith("bf16"):  # what the kit's CPU layer choices buy
            with stock_layers():
                row["ceiling_stock_bf16"] = rate(train_loop(spec.build(), synthetic(spec, device),
                                                          steps["ceiling"] + warm, precision, device,
                                                          kit_path=True), warm, BATCH)
        if root:
            # `fit` with each input pipeline (the fast one's cache is built, untimed, on first use)
            row["fit"] = rate(fit_path(spec, root, steps["fit"] + warm, accelerator, ["--data.pipeline", "standard"]),
                              warm, BATCH)
            row["fit_fast"] = rate(fit_path(spec, root, steps["fit"] + warm, accelerator,
                                            ["--data.pipeline", "fast"]), warm, BATCH)
            row["plain_loop"] = rate(plain_path(spec, root, steps["plain"] + warm, precision, device), warm, BATCH)
            row["lightning_overhead_pct"] = 100 * (row["plain_loop"] / row["fit_fast"] - 1)
        row["fraction_of_peak"] = row["ceiling"] * train_flops / 1e9 / peak
        # how close stock fp32 already is to the fp32 GEMM rate: what any fp32 speed-up can still buy
        row["naive_fraction_of_fp32_peak"] = row["naive_fp32"] * train_flops / 1e9 / result["peaks_gflops"]["float32"]
        result["models"][name] = {k: float(f"{v:.4g}") if isinstance(v, float) else v for k, v in row.items()}
        log(format_model(name, result["models"][name]))
    if root:
        for size in ([64] if quick else [160, 64]):
            for pipeline in pipelines():
                value = data_path(root, pipeline, size, steps["data"] + 1)
                result["data"][f"{pipeline}@{size}px"] = round(value, 1)
                log(f"data {pipeline:>8s} @ {size:3d}px: {value:8.1f} img/s per core")
        # data-bound end to end: a model so small that the input pipeline decides the speed of `fit`
        for size in ([64] if quick else [160, 64]):
            tiny = dataclasses.replace(TINY, label=f"{TINY.label.split(',')[0]}, {size} px", image_size=size)
            for pipeline in pipelines():
                value = rate(fit_path(tiny, root, steps["data_bound"] + warm, accelerator,
                                      ["--data.pipeline", pipeline]), warm, BATCH)
                result["data_bound_fit"][f"{pipeline}@{size}px"] = round(value, 1)
                log(f"data-bound fit ({tiny.label}), {pipeline:>8s} pipeline: {value:8.1f} img/s")
    return result


def pipelines() -> list[str]:
    """The data pipelines the data module offers (`--data.pipeline`, less `auto`, which picks one of them)."""
    choices = typing.get_args(typing.get_type_hints(ImagenetteDataModule.__init__)["pipeline"])
    return [p for p in choices if p != "auto"]


def format_model(name: str, row: dict[str, Any]) -> str:
    naive_share = 100 * row["naive_fraction_of_fp32_peak"]
    parts = [f"{name:>9s}: naive fp32 {row['naive_fp32']:7.1f} ({naive_share:.0f}% of fp32 peak)",
             f"ceiling {row['ceiling']:7.1f}"]
    if "ceiling_stock_bf16" in row:
        parts.append(f"(stock bf16 {row['ceiling_stock_bf16']:7.1f})")
    if "fit" in row:
        parts += [f"fit {row['fit']:7.1f}", f"fit --data.pipeline fast {row['fit_fast']:7.1f}",
                  f"plain loop {row['plain_loop']:7.1f} img/s",
                  f"Lightning overhead {row['lightning_overhead_pct']:+.1f}%"]
    parts.append(f"{row['train_flops_per_image'] / 1e9:.3f} GFLOP/img, {100 * row['fraction_of_peak']:.1f}% of peak")
    return " | ".join(parts)


def main(args: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m convmixer_lit.bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", choices=list(SPECS), default=None,
                        help="default: all (with --quick: quick)")
    parser.add_argument("--data.root", dest="root", default=os.environ.get("CONVMIXER_LIT_DATA"),
                        help="folder holding imagenette2-160/ (default: $CONVMIXER_LIT_DATA); without it only "
                             "the synthetic-data figures are measured")
    parser.add_argument("--accelerator", default="auto", choices=["auto", "cpu", "gpu", "cuda"])
    parser.add_argument("--quick", action="store_true", help="few steps, the 64 px model only (under 2 minutes)")
    parser.add_argument("--output", metavar="FILE.json", help="also save the figures as JSON")
    parser.add_argument("--denormal", action="store_true",
                        help="only the attention cell with and without --flush_denormal (needs --data.root): it "
                             "trains the cell for --denormal-epochs first, then times it from there (minutes)")
    parser.add_argument("--denormal-epochs", type=int, default=2, metavar="N",
                        help="epochs trained before the timing (default: 2 of the cell's 4)")
    opts = parser.parse_args(sys.argv[1:] if args is None else args)
    keep_freed_memory()  # as `fit` does, for every figure (the naive path's too: it is a process setting)
    try:
        if opts.root and not (Path(opts.root) / "imagenette2-160" / "train").is_dir():
            raise ConfigError(f"--data.root {opts.root}: no imagenette2-160/train there; pass the folder that "
                              f"holds it, or leave --data.root out for synthetic-data figures only")
        if opts.output:
            Path(opts.output).parent.mkdir(parents=True, exist_ok=True)
        if opts.denormal:
            if not opts.root:
                raise ConfigError("--denormal trains on the real data: pass --data.root (or set CONVMIXER_LIT_DATA)")
            print(describe("cpu") + " -> 32-true (the mixer study's precision)")
            result = {"environment": environment(), "batch_size": BATCH, "threads": torch.get_num_threads(),
                      "denormal": denormal_path(opts.root, opts.denormal_epochs, steps=8 if opts.quick else 24,
                                                warm=2, reps=1 if opts.quick else 3)}
            print(f"denormals: flushing trains the attention cell {result['denormal']['speedup_of_medians']:.2f}x "
                  f"as fast (median of {len(result['denormal']['flush'])} runs each)")
        else:
            models = opts.models or (["quick"] if opts.quick else list(SPECS))
            result = run(models, opts.root, opts.accelerator, opts.quick)
    except UserError as e:
        exit_with(e)
    result["command"] = " ".join(["python", "-m", "convmixer_lit.bench", *(sys.argv[1:] if args is None else args)])
    if opts.output:
        Path(opts.output).write_text(json.dumps(result, indent=2) + "\n")
        print(f"saved {opts.output}")
    return result


if __name__ == "__main__":
    main()
