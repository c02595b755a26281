"""Issue 15: any CUDA GPU, macOS and Windows — the paths this CPU-only Linux machine cannot run, with the device and
platform queries stubbed: the non-finite-loss check without a host sync per step, TF32 and cuDNN autotuning on
CUDA, and the package without the Linux-only calls (the DDP cache budget is in test_fast_pipeline.py, the kernels'
platform switches in test_kernels.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch

from convmixer_lit.callbacks import CudaSpeedups, FiniteLoss
from convmixer_lit.cli import KitCLI, resolve_model_names
from convmixer_lit.data import ImagenetteDataModule
from convmixer_lit.errors import TrainingError

from conftest import tiny_fit_args


# ---- the non-finite-loss check ------------------------------------------------------------------------------------
class Run:
    """Drives a FiniteLoss callback as Lightning's training loop does: one batch start and one backward per step."""

    def __init__(self, callback: FiniteLoss, world_size: int = 1, others_bad: bool = False) -> None:
        self.callback = callback
        self.trainer = SimpleNamespace(current_epoch=0, global_step=0, world_size=world_size,
                                       strategy=SimpleNamespace(reduce_boolean_decision=lambda bad, all: bad or
                                                                others_bad))

    def step(self, loss: torch.Tensor) -> None:
        self.callback.on_train_batch_start(self.trainer, None, None, self.trainer.global_step)
        self.callback.on_before_backward(self.trainer, None, loss)
        self.trainer.global_step += 1


def losses(n: int, bad: int | None = None) -> list[torch.Tensor]:
    return [torch.tensor(float("nan") if i == bad else 2.0 - i / 100) for i in range(n)]


def test_on_the_cpu_a_bad_loss_stops_before_its_backward():
    run = Run(FiniteLoss())
    for loss in losses(3):
        run.step(loss)
    with pytest.raises(TrainingError, match=r"^the training loss became nan at epoch 0, step 3 \(batch 3\); lower "
                                            r"--model.lr or use --trainer.precision 32-true. Checkpoints saved"):
        run.step(torch.tensor(float("nan")))


def test_on_a_gpu_no_loss_is_read_until_the_fiftieth_step():
    """A meta tensor stands in for a GPU loss: it has a device but no data, so any read of it raises. 49 steps read
    nothing (no host sync); the 50th reads them all at once."""
    run = Run(FiniteLoss())
    for _ in range(FiniteLoss.ACCELERATOR_EVERY_N_STEPS - 1):
        run.step(torch.empty((), device="meta"))
    with pytest.raises(NotImplementedError, match="meta tensor"):
        run.step(torch.empty((), device="meta"))


def test_deferred_reads_name_the_first_bad_step():
    run = Run(FiniteLoss(every_n_steps=4))
    for loss in losses(3, bad=1):  # steps 0-2: nothing read yet
        run.step(loss)
    with pytest.raises(TrainingError, match=r"became nan at epoch 0, step 1 \(batch 1\)"):
        run.step(torch.tensor(float("nan")))  # the fourth step reads steps 0-3


@pytest.mark.parametrize("hook", ["on_validation_start", "on_save_checkpoint", "on_train_epoch_end", "on_train_end"])
def test_pending_losses_are_read_before_validation_and_every_checkpoint(hook):
    """A checkpoint is never written from weights a bad loss has updated, however few steps are pending."""
    run = Run(FiniteLoss(every_n_steps=50))
    for loss in losses(3, bad=2):
        run.step(loss)
    args = (run.trainer, None, {}) if hook == "on_save_checkpoint" else (run.trainer, None)
    with pytest.raises(TrainingError, match=r"step 2 \(batch 2\)"):
        getattr(run.callback, hook)(*args)
    getattr(run.callback, hook)(*args)  # read once: nothing left pending


def test_under_ddp_every_rank_stops_when_one_rank_sees_a_bad_loss():
    run = Run(FiniteLoss(every_n_steps=2), world_size=2, others_bad=True)
    run.step(torch.tensor(1.0))
    with pytest.raises(TrainingError, match=r"became non-finite on another process by epoch 0, step 1 \(batch 1\)"):
        run.step(torch.tensor(1.0))


# ---- CUDA settings -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("device, expected", [("cpu", []), ("cuda:0", ["high"])])
def test_tf32_matmuls_on_cuda_only(device, expected, monkeypatch):
    calls = []
    monkeypatch.setattr(torch, "set_float32_matmul_precision", calls.append)
    CudaSpeedups().setup(SimpleNamespace(strategy=SimpleNamespace(root_device=torch.device(device))), None, "fit")
    assert calls == expected


@pytest.mark.parametrize("flags, expected", [([], True), (["--trainer.deterministic", "true"], False),
                                             (["--trainer.benchmark", "false"], False)])
def test_fit_turns_cudnn_autotuning_on_unless_determinism_or_the_user_says_otherwise(flags, expected, fake_root,
                                                                                     tmp_path, monkeypatch):
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", torch.backends.cudnn.benchmark)  # restored afterwards
    cli = KitCLI(args=resolve_model_names(tiny_fit_args(fake_root, tmp_path, *flags)))
    assert torch.backends.cudnn.benchmark is expected
    assert bool(cli.config.trainer.benchmark) is expected
    assert any(isinstance(c, CudaSpeedups) for c in cli.trainer.callbacks)


# ---- macOS and Windows ---------------------------------------------------------------------------------------------
def test_the_data_module_counts_cores_without_sched_getaffinity(fake_root, monkeypatch):
    """macOS and Windows have no os.sched_getaffinity: all cores count."""
    monkeypatch.delattr(os, "sched_getaffinity", raising=False)
    dm = ImagenetteDataModule(root=str(fake_root), download=False)
    assert dm.num_workers == min(8, os.cpu_count())


WITHOUT_LINUX_CALLS = """
import os, sys
import torch  # first: the standard library's `random` registers a fork handler wherever os.fork exists
del os.sched_getaffinity, os.register_at_fork  # as on Windows (macOS has register_at_fork, not the affinity)
import convmixer_lit.evaluate, convmixer_lit.fit, convmixer_lit.predict
from convmixer_lit.data import ImagenetteDataModule
from convmixer_lit.models import ConvMixer

for pipeline in ("standard", "fast"):
    dm = ImagenetteDataModule(root=sys.argv[1], image_size=32, batch_size=4, download=False, pipeline=pipeline)
    images, labels = next(dm.train_batches(limit=1))
    model = ConvMixer(num_classes=dm.num_classes, image_size=32, dim=16, depth=1, kernel_size=3, patch_size=8)
    model(images).sum().backward()
    print(pipeline, dm.num_workers, tuple(images.shape))
"""


@pytest.mark.slow
def test_the_package_imports_and_trains_without_the_linux_only_calls(fake_root):
    r = subprocess.run([sys.executable, "-c", WITHOUT_LINUX_CALLS, str(fake_root)], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    workers = min(8, os.cpu_count())
    assert r.stdout.split("\n")[:2] == [f"standard {workers} (4, 3, 32, 32)", f"fast {workers} (4, 3, 32, 32)"]
