"""`python -m convmixer_lit.evaluate --ckpt_path CKPT`: top-1, per-class accuracy and a confusion matrix.

Everything comes from the checkpoint: the model class and its hyper-parameters (LightningCLI records the class path),
the data module's hyper-parameters (any `--data.*` flag overrides one) and the run's precision. Validation runs
through the model's own `validation_step` and metric, on one device, so the accuracy printed is the `val/acc` the
run logged for that checkpoint's epoch.
"""

from __future__ import annotations

import inspect
import json
import sys
from pathlib import Path
from typing import Any

import lightning as L
import torch
import yaml
from jsonargparse import ArgumentParser
from lightning.fabric.utilities.exceptions import MisconfigurationException
from torchmetrics.classification import MulticlassConfusionMatrix

from convmixer_lit.base import ImageClassifier, import_class
from convmixer_lit.callbacks import CudaSpeedups
from convmixer_lit.checkpoint import checkpoint_class_path, read_checkpoint
from convmixer_lit.data import ImagenetteDataModule, recorded_stats
from convmixer_lit.errors import CheckpointError, ConfigError, DataError, UserError, exit_with, one_line
from convmixer_lit.kernels.allocator import keep_freed_memory

# ---- shared with `predict` ---------------------------------------------------------------------------------------


def load_model(ckpt: dict[str, Any], path: str | Path, **overrides: Any) -> ImageClassifier:
    """Rebuild the model a checkpoint was trained as, from its recorded class path and hyper-parameters."""
    class_path = checkpoint_class_path(ckpt)
    hparams = {k: v for k, v in ckpt["hyper_parameters"].items() if k not in ("_class_path", "_instantiator")}
    if class_path is None:
        raise CheckpointError(f"{path} does not record its model class; it was not written by convmixer_lit.fit")
    name = class_path.rsplit(".", 1)[-1]
    try:
        cls = import_class(class_path)
    except (ImportError, AttributeError) as e:
        raise CheckpointError(f"{path} holds a {class_path} model, which cannot be imported ({e}); put its module "
                              f"on PYTHONPATH") from None
    if hasattr(cls, "saved_hparams"):  # options it predates: as it was trained
        hparams = cls.saved_hparams(hparams)
    try:
        model = cls(**{**hparams, **overrides})
    except TypeError as e:
        raise CheckpointError(f"{path}: its hyper-parameters no longer fit {class_path} ({e}); use the version of "
                              f"that class the checkpoint was trained with") from None
    try:
        model.load_state_dict(ckpt["state_dict"])
    except RuntimeError:
        raise CheckpointError(f"{path}: its weights do not fit the {name} its hyper-parameters describe; the file "
                              f"is damaged or was edited") from None
    model.eval()
    return model


def run_precision(ckpt: dict[str, Any], path: str | Path) -> str:
    """The precision the run trained and validated in: from the checkpoint, else from the run's config.yaml.

    bf16 autocast changes logits enough to flip a few borderline images, so evaluating in another precision would
    not reproduce the logged accuracy.
    """
    if ckpt.get("precision"):
        return str(ckpt["precision"])
    config = Path(path).resolve().parent.parent / "config.yaml"  # <run>/checkpoints/<file>.ckpt
    if config.is_file():
        precision = (yaml.safe_load(config.read_text()) or {}).get("trainer", {}).get("precision")
        if precision:
            return str(precision)
    return "32-true"


# ---- evaluation --------------------------------------------------------------------------------------------------


class ConfusionMatrix(L.Callback):
    """Fills a confusion matrix during `trainer.validate` without changing the model's steps.

    A forward hook keeps each batch's logits; the batch end pairs them with that batch's labels.
    """

    def __init__(self, num_classes: int) -> None:
        self.matrix = MulticlassConfusionMatrix(num_classes)
        self._logits: torch.Tensor | None = None
        self._hook = None

    def _keep(self, module, args, output: torch.Tensor) -> None:
        self._logits = output.detach()

    def on_validation_start(self, trainer, pl_module) -> None:
        self.matrix = self.matrix.to(pl_module.device)
        self.matrix.reset()
        self._hook = pl_module.register_forward_hook(self._keep)

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self.matrix.update(self._logits.float(), batch[1])

    def on_validation_end(self, trainer, pl_module) -> None:
        self._hook.remove()


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog="python -m convmixer_lit.evaluate",
                            description="Evaluate a checkpoint on its validation set: top-1 and per-class accuracy, "
                                        "a confusion matrix (PNG and TensorBoard) and metrics.json.")
    parser.add_argument("--ckpt_path", type=str, required=True, help="A .ckpt file written by convmixer_lit.fit.")
    parser.add_class_arguments(ImagenetteDataModule, "data", help="Data; default: the checkpoint's own values.")
    parser.add_argument("--output", type=str | None, default=None,
                        help="Folder for confusion_matrix.png, metrics.json and TensorBoard files (default: "
                             "<run folder>/evaluate/<checkpoint name>/). Earlier files there are replaced.")
    parser.add_argument("--accelerator", type=str, default="auto", help="cpu, gpu, ... (Lightning's names).")
    parser.add_argument("--precision", type=str | None, default=None,
                        help="Default: the precision the run was trained in, which reproduces its logged numbers.")
    return parser


def parse(args: list[str]) -> tuple[Any, dict[str, Any]]:
    """Parse twice: the first pass finds the checkpoint, whose data hyper-parameters become the flags' defaults."""
    parser = build_parser()
    ckpt = read_checkpoint(parser.parse_args(args).ckpt_path)
    known = set(inspect.signature(ImagenetteDataModule.__init__).parameters) - {"self"}
    saved = ckpt.get("datamodule_hyper_parameters") or {}
    parser.set_defaults({f"data.{k}": v for k, v in saved.items() if k in known})
    # the normalisation the model was trained with, whatever data it is evaluated on: an Imagenette checkpoint on a
    # folder (`--data.dataset folder`) must not have the folder's own statistics measured for it
    mean, std = recorded_stats(saved)
    parser.set_defaults({"data.mean": mean, "data.std": std})
    return parser.parse_args(args), ckpt


def default_output(ckpt_path: str | Path) -> Path:
    path = Path(ckpt_path).resolve()
    run = path.parent.parent if path.parent.name == "checkpoints" else path.parent
    return run / "evaluate" / path.stem


def check_classes(model: ImageClassifier, dm: ImagenetteDataModule) -> list[str]:
    """The data's class names, after checking they are the ones the model was trained to output."""
    names = dm.class_names
    trained = model.hparams.get("class_names")
    if model.num_classes != len(names) or (trained is not None and list(trained) != names):
        raise DataError(f"{dm.folder} holds classes {names}, but the checkpoint was trained on "
                        f"{trained or model.num_classes}; point --data.root/--data.dataset at the data it was "
                        f"trained on")
    return names


def save_figure(matrix: MulticlassConfusionMatrix, names: list[str], title: str):
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed
    fig, ax = matrix.plot(labels=names)
    ax.set_title(title)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.tick_params(axis="x", labelrotation=45)
    size = max(6.0, 0.6 * len(names) + 2)
    fig.set_size_inches(size, size)
    fig.tight_layout()
    return fig


def evaluate(args: list[str] | None = None) -> dict[str, Any]:
    """Run the evaluation and write its files; returns what metrics.json holds."""
    cfg, ckpt = parse(sys.argv[1:] if args is None else args)
    model = load_model(ckpt, cfg.ckpt_path)
    dm = ImagenetteDataModule(**cfg.data.as_dict())
    names = check_classes(model, dm)
    precision = cfg.precision or run_precision(ckpt, cfg.ckpt_path)
    matrix = ConfusionMatrix(len(names))
    try:
        trainer = L.Trainer(accelerator=cfg.accelerator, devices=1, precision=precision, logger=False,
                            callbacks=[matrix, CudaSpeedups()], enable_checkpointing=False, enable_model_summary=False,
                            enable_progress_bar=sys.stdout.isatty())
    except (MisconfigurationException, ValueError, RuntimeError) as e:  # an unknown or unavailable one
        raise ConfigError(f"--accelerator {cfg.accelerator} --precision {precision}: {one_line(e)}") from None
    logged = trainer.validate(model, datamodule=dm, verbose=False)[0]

    counts = matrix.matrix.compute().cpu()
    per_class = counts.diag() / counts.sum(1).clamp(min=1)
    result = {
        "checkpoint": str(Path(cfg.ckpt_path).resolve()), "model": model.model_name,
        "class_path": f"{type(model).__module__}.{type(model).__qualname__}",
        "epoch": ckpt.get("epoch"), "global_step": ckpt.get("global_step"), "precision": precision,
        "data": str(dm.folder / "val"), "images": int(counts.sum()),
        "top1": logged["val/acc"], "loss": logged["val/loss"],
        "per_class": {n: {"accuracy": float(a), "images": int(c)}
                      for n, a, c in zip(names, per_class, counts.sum(1))},
        "class_names": names, "confusion_matrix": counts.tolist(),
    }
    out = Path(cfg.output) if cfg.output else default_output(cfg.ckpt_path)
    write_outputs(out, result, matrix.matrix, names)
    return result


def write_outputs(out: Path, result: dict[str, Any], matrix: MulticlassConfusionMatrix, names: list[str]) -> None:
    from torch.utils.tensorboard import SummaryWriter

    out.mkdir(parents=True, exist_ok=True)
    fig = save_figure(matrix, names, f"{result['model']} epoch {result['epoch']}: top-1 {100 * result['top1']:.2f}%")
    fig.savefig(out / "confusion_matrix.png", dpi=120)
    (out / "metrics.json").write_text(json.dumps(result, indent=2) + "\n")
    step = result["global_step"] or 0
    with SummaryWriter(str(out)) as writer:
        writer.add_scalar("eval/acc", result["top1"], step)
        writer.add_scalar("eval/loss", result["loss"], step)
        for name, c in result["per_class"].items():
            writer.add_scalar(f"eval/acc_per_class/{name}", c["accuracy"], step)
        writer.add_figure("eval/confusion_matrix", fig, step)  # also closes the figure
    result["output"] = str(out)


def report(result: dict[str, Any]) -> str:
    width = max(len(n) for n in result["class_names"])
    lines = [f"{result['model']} ({Path(result['checkpoint']).name}, epoch {result['epoch']}, step "
             f"{result['global_step']}) on {result['data']}: {result['images']:,} images, {result['precision']}",
             f"top-1 accuracy: {100 * result['top1']:.2f}%   (loss {result['loss']:.4f})",
             "per-class accuracy:"]
    lines += [f"  {name:<{width}}  {100 * c['accuracy']:6.2f}%  ({c['images']} images)"
              for name, c in result["per_class"].items()]
    out = Path(result["output"])
    lines += [f"confusion matrix: {out / 'confusion_matrix.png'}", f"metrics: {out / 'metrics.json'}",
              f"TensorBoard: tensorboard --logdir {out}"]
    return "\n".join(lines)


def main(args: list[str] | None = None) -> dict[str, Any]:
    keep_freed_memory()  # as `fit` does (kernels/allocator.py)
    try:
        result = evaluate(args)
    except UserError as e:
        exit_with(e)
    print(report(result))
    return result


if __name__ == "__main__":
    main()
