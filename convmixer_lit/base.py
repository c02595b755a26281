"""The one LightningModule every architecture subclasses: training step, metrics and optimisation live here.

A subclass only builds `self.net` (see `models/`); everything else — loss, accuracy, logging, AdamW + OneCycleLR,
channels_last, torch.compile — is shared, so architectures differ in nothing but their network.
"""

from __future__ import annotations

import importlib
import os
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.utilities import rank_zero_info
from torch import nn
from torchmetrics import MaxMetric, MeanMetric
from torchmetrics.classification import MulticlassAccuracy

from convmixer_lit.errors import ConfigError
from convmixer_lit.hardware import compile_cache_per_cpu_class
from convmixer_lit.kernels.gelu_bn import fuse_gelu_batchnorm

MODELS: dict[str, type[ImageClassifier]] = {}


def import_class(class_path: str) -> type:
    """`package.module.Name` -> the object `Name` of that module: how a `--model` class path, a config's
    `class_path` and a checkpoint's recorded `_class_path` become the model class.

    Raises ImportError (no such module), AttributeError (no such name) or ValueError (not a dotted path); each
    caller words its own error.
    """
    module, name = class_path.rsplit(".", 1)
    return getattr(importlib.import_module(module), name)


class ImageClassifier(L.LightningModule):
    """Base class for an image classifier trained with the kit's recipe.

    Args:
        num_classes: output classes; `fit` links it from the data.
        image_size: input side in pixels; `fit` links it from `--data.image_size` (ViT's position embedding and
            the patch-size check need it).
        class_names: human-readable class names, linked from the data, kept so a checkpoint can label images.
        lr: peak learning rate of the one-cycle schedule.
        weight_decay: AdamW weight decay, applied to weights only (not to norms and biases).
        label_smoothing: cross-entropy label smoothing.
        warmup_pct: fraction of all steps spent warming up to `lr` (OneCycleLR's `pct_start`).
        compile: run the network through `torch.compile`.
    """

    channels_last: bool = False  # conv nets set True: faster convolutions on CPU (oneDNN) and GPU (cuDNN)
    model_name: str | None = None  # the `--model` name; default: the class name in lower case
    # Hyper-parameters that change what the network computes but not its weights' names or shapes (a mixer without
    # weights, a head count, where a norm sits): the weights cannot tell them apart, so a resume checks them.
    weightless_hparams: tuple[str, ...] = ()
    # Defaults that changed, or options added later: the value that a checkpoint or a study record which does not
    # name the hyper-parameter was made with. Reloading and resuming read it, so old files keep their meaning.
    former_defaults: dict[str, Any] = {}

    def __init_subclass__(cls, **kwargs) -> None:
        """Register every subclass under its short name, so `--model <name>` finds it with no registry edit."""
        super().__init_subclass__(**kwargs)
        name = cls.__dict__.get("model_name") or cls.__name__.lower()
        cls.model_name = name
        MODELS[name] = cls

    def __init__(self, num_classes: int = 10, image_size: int = 160, class_names: list[str] | None = None,
                 lr: float = 1e-2, weight_decay: float = 0.05, label_smoothing: float = 0.1,
                 warmup_pct: float = 0.25, compile: bool = False) -> None:
        super().__init__()
        if lr <= 0:
            raise ConfigError(f"--model.lr must be positive, got {lr}")
        if weight_decay < 0:
            raise ConfigError(f"--model.weight_decay must be 0 or more, got {weight_decay}")
        if not 0 <= label_smoothing < 1:
            raise ConfigError(f"--model.label_smoothing must be in [0, 1), got {label_smoothing}")
        if not 0 < warmup_pct < 1:
            raise ConfigError(f"--model.warmup_pct must be in (0, 1), got {warmup_pct}")
        if num_classes < 2:
            raise ConfigError(f"a classifier needs at least 2 classes, got {num_classes}")
        self.save_hyperparameters()  # the subclass's arguments too: a checkpoint alone rebuilds the model
        self.num_classes, self.image_size = num_classes, image_size
        self.net: nn.Module = nn.Identity()
        # no NaN check inside the metric (a host sync every step): FiniteLoss already stops on a non-finite loss
        self.train_loss, self.val_loss = MeanMetric(nan_strategy="disable"), MeanMetric(nan_strategy="disable")
        self.train_acc = MulticlassAccuracy(num_classes, average="micro")
        self.val_acc = MulticlassAccuracy(num_classes, average="micro")
        self.val_acc_best = MaxMetric()

    @classmethod
    def saved_hparams(cls, hparams: dict[str, Any]) -> dict[str, Any]:
        """A checkpoint's hyper-parameters, with those it predates filled in as it was trained (`former_defaults`)."""
        return {**cls.former_defaults, **hparams}

    @classmethod
    def load_from_checkpoint(cls, checkpoint_path, *args, **kwargs):
        """Lightning's, with the hyper-parameters a checkpoint predates filled in as it was trained (`former_defaults`),
        so an old file rebuilds the network it was trained as (explicit keyword arguments still win)."""
        if cls.former_defaults and isinstance(checkpoint_path, (str, os.PathLike)) and os.path.isfile(checkpoint_path):
            saved = torch.load(checkpoint_path, map_location="cpu", mmap=True, weights_only=False)
            kwargs = {**{k: v for k, v in cls.former_defaults.items()
                         if k not in (saved.get("hyper_parameters") or {})}, **kwargs}
        return super().load_from_checkpoint(checkpoint_path, *args, **kwargs)

    @staticmethod
    def check_positive(**values: int) -> None:
        """Refuse a zero or negative size (width, depth, heads, kernel, ...) with the flag that set it."""
        for name, value in values.items():
            if value < 1:
                raise ConfigError(f"--model.{name} must be a positive integer, got {value}")

    def check_patch_size(self, patch_size: int) -> None:
        if not 1 <= patch_size <= self.image_size:
            raise ConfigError(f"--model.patch_size {patch_size} does not fit a {self.image_size}px image; use a "
                              f"patch between 1 and --data.image_size")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)  # no-op when it already is
        return self.net(x)

    # ---- steps -------------------------------------------------------------------------------------------
    def _shared_step(self, batch, loss_metric: MeanMetric, acc_metric: MulticlassAccuracy) -> torch.Tensor:
        images, labels = batch
        logits = self(images)
        loss = F.cross_entropy(logits, labels, label_smoothing=self.hparams.label_smoothing)
        loss_metric.update(loss.detach(), weight=labels.numel())
        acc_metric.update(logits.detach(), labels)
        return loss

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        loss = self._shared_step(batch, self.train_loss, self.train_acc)
        self.log("train/loss", loss, prog_bar=True)  # per step (every `log_every_n_steps`)
        self.log_dict({"train/loss_epoch": self.train_loss, "train/acc": self.train_acc}, on_step=False, on_epoch=True)
        return loss

    def validation_step(self, batch, batch_idx: int) -> None:
        self._shared_step(batch, self.val_loss, self.val_acc)
        self.log_dict({"val/loss": self.val_loss, "val/acc": self.val_acc}, prog_bar=True)

    test_step = validation_step

    def on_train_start(self) -> None:
        if self.trainer.global_step == 0:
            self.val_acc_best.reset()  # forget the sanity-check batches; a resumed run keeps its restored best
        self._check_resumed_schedule()

    def _check_resumed_schedule(self) -> None:
        """A resumed run keeps its restored one-cycle schedule, so it must be as long as the run it continues.

        OneCycleLR cannot be stretched (it would fail "Tried to step N times" at the old end): a longer or shorter
        resume is refused here, before any step; a longer run is a new run.
        """
        configs = self.trainer.lr_scheduler_configs
        planned = getattr(configs[0].scheduler, "total_steps", None) if configs else None
        now = self.trainer.estimated_stepping_batches
        if planned is None or planned == max(1, int(now)):
            return
        was = getattr(self, "_resumed_max_epochs", None)
        raise ConfigError(f"the resumed run's learning-rate schedule spans {planned} steps"
                          f"{f' (--trainer.max_epochs {was})' if was is not None else ''}, these settings give "
                          f"{int(now)}: resume with the run's own --trainer.max_epochs and --data.batch_size, or "
                          f"start a new run (without --ckpt_path) to train longer")

    def on_validation_epoch_end(self) -> None:
        if not self.trainer.sanity_checking:
            self.val_acc_best.update(self.val_acc.compute())
        # a plain value (logging the MaxMetric itself would reset it each epoch); already equal on every rank
        self.log("val/acc_best", self.val_acc_best.compute() if self.val_acc_best.update_called else 0.0,
                 prog_bar=True, sync_dist=True)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """Record the run's precision: `evaluate`/`predict` reuse it, so they reproduce the logged numbers."""
        checkpoint["precision"] = str(self.trainer.precision)
        checkpoint["max_epochs"] = self.trainer.max_epochs  # named in the error of a resume with another length
        if self.val_acc_best.update_called:  # outside the state_dict, so older checkpoints still load
            checkpoint["val_acc_best"] = float(self.val_acc_best.compute())

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self._resumed_max_epochs = checkpoint.get("max_epochs")
        if checkpoint.get("val_acc_best") is not None:  # a resumed run's val/acc_best curve continues
            self.val_acc_best.update(torch.tensor(checkpoint["val_acc_best"]))

    # ---- optimisation ------------------------------------------------------------------------------------
    def configure_optimizers(self):
        """AdamW (fused) without decay on norms/biases; OneCycleLR stepped per batch, sized to end when training
        ends."""
        decay = [p for p in self.parameters() if p.requires_grad and p.ndim >= 2]
        no_decay = [p for p in self.parameters() if p.requires_grad and p.ndim < 2]
        # fused: one kernel for all parameters instead of ~10 per tensor (ConvMixer-256/12's optimizer step: 3.9 ->
        # 1.0 ms on our CPU, a small share of its training step); PyTorch has it for CPU and CUDA tensors only
        fused = all(p.device.type in ("cpu", "cuda") and p.dtype.is_floating_point for p in decay + no_decay)
        optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": self.hparams.weight_decay, "name": "decay"},
                                       {"params": no_decay, "weight_decay": 0.0, "name": "no_decay"}],
                                      lr=self.hparams.lr, fused=fused or None)
        if self.trainer.estimated_stepping_batches == float("inf"):
            raise ConfigError("the one-cycle schedule needs a run of known length: set --trainer.max_epochs or "
                              "--trainer.max_steps to a positive number")
        total_steps = max(1, int(self.trainer.estimated_stepping_batches))
        # OneCycleLR needs at least ~1.5 warm-up steps; only matters for runs of a handful of steps
        pct_start = min(max(self.hparams.warmup_pct, 1.5 / total_steps), 0.75)
        scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=self.hparams.lr, total_steps=total_steps,
                                                        pct_start=pct_start)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    # ---- set-up ------------------------------------------------------------------------------------------
    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.net.parameters())

    def flops_per_image(self) -> int:
        """Forward FLOPs for one image (torch's FlopCounterMode; training is about 3x this).

        Attention is counted through SDPA's math backend with MultiheadAttention's inference fast path off: the
        counter has no formula for the fused kernels, which would leave a ViT's attention out entirely.
        """
        from torch.nn.attention import SDPBackend, sdpa_kernel
        from torch.utils.flop_counter import FlopCounterMode

        x = torch.zeros(1, 3, self.image_size, self.image_size, device=self.device)
        was_training, fast_path = self.training, torch.backends.mha.get_fastpath_enabled()
        self.eval()
        torch.backends.mha.set_fastpath_enabled(False)
        try:
            with FlopCounterMode(display=False) as counter, torch.no_grad(), sdpa_kernel(SDPBackend.MATH):
                self(x)
        finally:
            torch.backends.mha.set_fastpath_enabled(fast_path)
            self.train(was_training)
        return int(counter.get_total_flops())

    def prepare_net(self) -> None:
        """The kit's compute path for this network, the same function: channels-last memory where the model asks for
        it, and each GELU -> BatchNorm2d pair fused into one layer (kernels/gelu_bn.py) when training on the CPU —
        not under torch.compile (which fuses by itself), nor with `--trainer.sync_batchnorm` (its conversion would
        turn the fused layer back into a plain BatchNorm and drop the GELU). `setup` calls it; `bench` too, to time
        the path `fit` trains."""
        strategy = self._trainer.strategy if self._trainer is not None else None
        cpu_without_layer_sync = strategy is None or (strategy.root_device.type == "cpu"
                                                      and getattr(strategy, "_layer_sync", None) is None)
        if not self.hparams.compile and cpu_without_layer_sync:
            fuse_gelu_batchnorm(self.net)
        if self.channels_last:
            self.to(memory_format=torch.channels_last)

    def setup(self, stage: str) -> None:
        self.prepare_net()
        self.forward_flops = self.flops_per_image()  # before compiling: the counter needs eager mode
        if self.hparams.compile:
            compile_cache_per_cpu_class()  # kernels cached for another instruction set compute wrong results
            self.net.compile()  # in place: checkpoints keep the eager parameter names
        rank_zero_info(f"{self.model_name}: {self.num_parameters():,} parameters, "
                       f"{self.forward_flops / 1e9:.3f} GFLOPs per {self.image_size}px image (forward)")
