"""Checkpoint files: written atomically, and checked before a run resumes from one or a command loads one."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO

from convmixer_lit.base import import_class
from convmixer_lit.errors import CheckpointError


class AtomicCheckpointIO(TorchCheckpointIO):
    """Write to a temporary file, fsync, then rename: a kill mid-write never replaces a good checkpoint."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options=None) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            with open(tmp, "wb") as f:
                torch.save(checkpoint, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)


class BestAndLastCheckpoint(ModelCheckpoint):
    """ModelCheckpoint whose `last.ckpt` follows every epoch, not only the epochs that save a new best.

    With `save_last=True`, Lightning 2.6 rewrites last.ckpt only when a top-k checkpoint is saved at the same step: once
    the monitored metric stops improving, last.ckpt stops moving. A killed run then resumed from its best epoch and
    redid the rest, and a finished run's last.ckpt held the best epoch's weights instead of the final ones.
    """

    @property
    def state_key(self) -> str:
        # ModelCheckpoint's key: runs checkpointed before this class existed resume with their best-model records
        return super().state_key.replace(type(self).__qualname__, ModelCheckpoint.__qualname__, 1)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        if self._should_save_on_train_epoch_end(trainer):
            self._save_last_as_well(trainer)

    def on_validation_end(self, trainer, pl_module) -> None:
        super().on_validation_end(trainer, pl_module)
        if not self._should_save_on_train_epoch_end(trainer):
            self._save_last_as_well(trainer)

    def _save_last_as_well(self, trainer) -> None:
        if self.save_last and not self._should_skip_saving_checkpoint(trainer):  # skipped when just saved
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint of this kit on the CPU, or raise CheckpointError saying why it is not one."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} not found")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # noqa: BLE001  (pickle, zip and torch errors all mean "not a checkpoint")
        raise CheckpointError(f"{path} is not a readable checkpoint ({type(e).__name__}); pass a .ckpt file "
                              f"written by convmixer_lit.fit") from None
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt or "hyper_parameters" not in ckpt:
        raise CheckpointError(f"{path} is not a Lightning checkpoint of this kit (no state_dict/hyper_parameters)")
    return ckpt


def checkpoint_class_path(ckpt: dict[str, Any]) -> str | None:
    hp = ckpt.get("hyper_parameters", {})
    return hp.get("_class_path")


def _is_class(class_path: str, cls: type) -> bool:
    """Whether `class_path` names `cls`: a config's re-export (convmixer_lit.models.ConvMixer) names it too."""
    if class_path == f"{cls.__module__}.{cls.__qualname__}":
        return True
    try:
        return import_class(class_path) is cls
    except (ImportError, AttributeError, ValueError):
        return False


def check_checkpoint(path: str | Path, model: torch.nn.Module, datamodule: Any = None) -> None:
    """Refuse a resume from a file that is not a checkpoint, or is one of a different architecture or size, or that
    was trained on other classes than `datamodule` now reads (a renamed class folder keeps the count and would
    shift every label). A run that measured its normalisation continues with the checkpoint's numbers, not ones
    measured again from a folder that may have changed since (given --data.mean/--data.std win)."""
    ckpt = read_checkpoint(path)
    if datamodule is not None:
        trained = (ckpt.get("hyper_parameters") or {}).get("class_names")
        if trained is not None and list(trained) != list(datamodule.class_names):
            raise CheckpointError(f"{path} was trained on the classes {list(trained)[:6]}, the data now holds "
                                  f"{list(datamodule.class_names)[:6]}: its labels would shift; resume with the "
                                  f"data it was trained on, or start a new run")
        saved = ckpt.get("datamodule_hyper_parameters") or {}
        hp = getattr(datamodule, "hparams", None)
        if hp is not None and hp.get("mean") is None and saved.get("mean") is not None:
            hp["mean"], hp["std"] = saved["mean"], saved["std"]
    expected = set(model.state_dict())
    found = set(ckpt["state_dict"])
    class_path = checkpoint_class_path(ckpt)
    if class_path and not _is_class(class_path, type(model)):
        raise CheckpointError(f"{path} holds a {class_path.rsplit('.', 1)[-1]} model, not "
                              f"{type(model).__name__}; pick that model or another checkpoint")
    shapes_differ = [k for k in expected & found if ckpt["state_dict"][k].shape != model.state_dict()[k].shape]
    if expected != found or shapes_differ:
        raise CheckpointError(f"{path} was trained with other hyper-parameters (its weights do not fit this "
                              f"model); pass the same --model.* flags, or use --config with that run's config.yaml")
    saved_hparams = getattr(type(model), "saved_hparams", None)
    if saved_hparams is not None:  # what the weights cannot tell: a mixer without weights, where a norm sits
        saved, now = saved_hparams(ckpt.get("hyper_parameters") or {}), getattr(model, "hparams", {})
        for key in getattr(model, "weightless_hparams", ()):
            if key in saved and key in now and saved[key] != now[key]:
                raise CheckpointError(f"{path} was trained with --model.{key} {_flag_value(saved[key])}, this run "
                                      f"builds {_flag_value(now[key])}: its weights would load and compute something "
                                      f"else; pass --model.{key} {_flag_value(saved[key])}, or start a new run")


def _flag_value(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)
