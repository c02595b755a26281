"""`python -m convmixer_lit.predict --ckpt_path CKPT IMAGE...`: the top-k classes of each image, by name.

Images go through the validation pipeline unchanged (`images.val_transform` at the checkpoint's image size, then
`images.normalize` with the mean and std the run normalised with, recorded in the checkpoint, so no data folder is
needed) and the model runs in the precision the run trained in (`evaluate.run_precision`), so a validation image gets
the same class here as it does in `evaluate` and in the run's logged `val/acc`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import lightning as L
import torch
from jsonargparse import ArgumentParser, Namespace

from convmixer_lit.base import ImageClassifier
from convmixer_lit.callbacks import CudaSpeedups
from convmixer_lit.checkpoint import read_checkpoint
from convmixer_lit.data import recorded_stats
from convmixer_lit.errors import ConfigError, DataError, UserError, exit_with
from convmixer_lit.evaluate import load_model, run_precision
from convmixer_lit.images import IMAGENET_MEAN, IMAGENET_STD, load_rgb, normalize, val_transform

BATCH_SIZE = 64  # images per forward pass: bounds activation memory when many files are given


def build_parser() -> ArgumentParser:
    """The command's flags; like `evaluate`'s, so the two commands read the same."""
    parser = ArgumentParser(prog="python -m convmixer_lit.predict",
                            description="Classify images with a trained checkpoint: the top-k class names and "
                                        "their probabilities for each image.")
    parser.add_argument("--ckpt_path", type=str, required=True, help="A .ckpt file written by convmixer_lit.fit.")
    parser.add_argument("images", type=str, nargs="+", help="Image files (JPEG, PNG, ...; any mode, read as RGB).")
    parser.add_argument("--top_k", type=int, default=5, help="Classes to show per image (at most all of them).")
    parser.add_argument("--json", action="store_true", help="Print one JSON document instead of text.")
    parser.add_argument("--accelerator", type=str, default="auto", help="cpu, gpu, ... (Lightning's names).")
    parser.add_argument("--precision", type=str | None, default=None,
                        help="Default: the precision the run was trained in, which reproduces its predictions.")
    return parser


def load_images(paths: list[str], image_size: int) -> torch.Tensor:
    """uint8 (N, 3, S, S) through the validation transform; every file is read before the model runs, so a bad
    path stops the command before any output (a `--json` consumer never sees half a document)."""
    transform = val_transform(image_size)
    images = []
    for path in paths:
        if not Path(path).exists():
            raise DataError(f"image {path} not found")
        if Path(path).is_dir():
            raise DataError(f"{path} is a folder; pass image files, e.g. {Path(path) / '*.JPEG'}")
        images.append(transform(load_rgb(path)))
    return torch.stack(images)


def class_names(model: ImageClassifier) -> list[str]:
    """The names the model was trained with (`fit` stores them in its hyper-parameters); else the label numbers."""
    names = model.hparams.get("class_names")
    return list(names) if names else [str(i) for i in range(model.num_classes)]


@torch.no_grad()
def probabilities(model: ImageClassifier, images: torch.Tensor, precision: str, accelerator: str = "auto",
                  stats: tuple = (IMAGENET_MEAN, IMAGENET_STD)) -> torch.Tensor:
    """Softmax over classes, float32 (N, C) on the CPU; Fabric applies the precision the same way the Trainer did,
    `stats` (mean, std) the normalisation the data module applied."""
    try:
        fabric = L.Fabric(accelerator=accelerator, devices=1, precision=precision)
    except (ValueError, RuntimeError) as e:  # an unknown or unavailable accelerator or precision
        raise ConfigError(f"--accelerator {accelerator} --precision {precision}: {e}") from None
    CudaSpeedups.apply(fabric.device)  # as the run trained and `evaluate` validates
    module = fabric.setup_module(model)
    probs = [module(normalize(fabric.to_device(chunk), *stats)).float().softmax(-1).cpu()
             for chunk in images.split(BATCH_SIZE)]
    return torch.cat(probs)


def predict(cfg: Namespace) -> dict[str, Any]:
    """Classify `cfg.images` (parsed by `build_parser`); returns what `--json` prints."""
    if cfg.top_k < 1:
        raise ConfigError(f"--top_k must be at least 1, got {cfg.top_k}")
    ckpt = read_checkpoint(cfg.ckpt_path)
    model = load_model(ckpt, cfg.ckpt_path)
    images = load_images(cfg.images, model.image_size)
    precision = cfg.precision or run_precision(ckpt, cfg.ckpt_path)
    probs = probabilities(model, images, precision, cfg.accelerator,
                          recorded_stats(ckpt.get("datamodule_hyper_parameters")))
    names = class_names(model)
    top = probs.topk(min(cfg.top_k, probs.shape[1]), dim=1)  # sorted, highest first
    return {
        "checkpoint": str(Path(cfg.ckpt_path).resolve()), "model": model.model_name,
        "image_size": model.image_size, "precision": precision,
        "predictions": [
            {"image": path, "top_k": [{"class": names[i], "index": int(i), "probability": float(p)}
                                      for p, i in zip(values.tolist(), indices.tolist())]}
            for path, values, indices in zip(cfg.images, top.values, top.indices)],
    }


def report(result: dict[str, Any]) -> str:
    """Text for people: each image's path, then its top-k classes, one per line, most probable first."""
    width = max(len(c["class"]) for r in result["predictions"] for c in r["top_k"])
    lines = []
    for r in result["predictions"]:
        lines.append(r["image"])
        lines += [f"  {n}. {c['class']:<{width}}  {100 * c['probability']:6.2f}%" for n, c in enumerate(r["top_k"], 1)]
    return "\n".join(lines)


def main(args: list[str] | None = None) -> dict[str, Any]:
    """The command: a user error is one `error: ...` line and exit status 2; returns the result for callers."""
    cfg = build_parser().parse_args(sys.argv[1:] if args is None else args)
    try:
        result = predict(cfg)
    except UserError as e:
        exit_with(e)
    print(json.dumps(result, indent=2) if cfg.json else report(result))
    return result


if __name__ == "__main__":
    main()
