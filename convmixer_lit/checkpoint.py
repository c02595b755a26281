"""Checkpoint files: written atomically, and checked before a run resumes from one or a command loads one."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

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
    return hp.get("_class_path") or (hp.get("_instantiator") and None)


def check_checkpoint(path: str | Path, model: torch.nn.Module) -> None:
    """Refuse a resume from a file that is not a checkpoint, or is one of a different architecture or size."""
    ckpt = read_checkpoint(path)
    expected = set(model.state_dict())
    found = set(ckpt["state_dict"])
    class_path = checkpoint_class_path(ckpt)
    mine = f"{type(model).__module__}.{type(model).__qualname__}"
    if class_path and class_path != mine:
        raise CheckpointError(f"{path} holds a {class_path.rsplit('.', 1)[-1]} model, not "
                              f"{type(model).__name__}; pick that model or another checkpoint")
    shapes_differ = [k for k in expected & found if ckpt["state_dict"][k].shape != model.state_dict()[k].shape]
    if expected != found or shapes_differ:
        raise CheckpointError(f"{path} was trained with other hyper-parameters (its weights do not fit this "
                              f"model); pass the same --model.* flags, or use --config with that run's config.yaml")
