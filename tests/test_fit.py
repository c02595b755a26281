"""`convmixer_lit.fit` end to end: the real entry point, TensorBoard files read back, checkpoints, configs."""

import json
import subprocess
import textwrap
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from convmixer_lit.fit import main

from conftest import TINY_CONVMIXER, run_cli, tiny_fit_args

MODEL_FLAGS = {
    "convmixer": TINY_CONVMIXER,
    "vit": ["--model", "vit", "--model.dim", "16", "--model.depth", "1", "--model.num_heads", "2",
            "--model.patch_size", "8", "--model.lr", "1e-3"],
    "resnet18": ["--model", "resnet18"],
    "resnet9": ["--model", "resnet9", "--model.width", "4"],
}


def scalars(run_dir: Path) -> dict[str, list[float]]:
    acc = EventAccumulator(str(run_dir))
    acc.Reload()
    return {tag: [e.value for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


@pytest.mark.parametrize("model", list(MODEL_FLAGS))
def test_fit_each_model_writes_curves_checkpoints_config_and_result(model, fake_root, tmp_path):
    summary = main(tiny_fit_args(fake_root, tmp_path, "--trainer.max_epochs", "2", model=MODEL_FLAGS[model]))
    run = tmp_path / "lightning_logs" / model / "version_0"
    assert run.is_dir()
    curves = scalars(run)
    assert len(curves["train/loss_epoch"]) == 2 and len(curves["val/acc"]) == 2
    assert len(curves["train/loss"]) >= 1 and all(v == v for v in curves["train/loss"])  # per-step, finite
    assert "lr-AdamW/decay" in curves and "val/acc_best" in curves
    assert curves["val/acc_best"][-1] == pytest.approx(max(curves["val/acc"]))
    assert (run / "checkpoints" / "last.ckpt").is_file()
    assert len(list((run / "checkpoints").glob("best-epoch*.ckpt"))) == 1
    assert (run / "config.yaml").is_file()
    result = json.loads((run / "result.json").read_text())
    assert result == summary
    assert result["model"] == model and result["epochs"] == 2 and result["completed"]
    assert result["best_val_acc"] == pytest.approx(max(curves["val/acc"]), abs=1e-6)
    assert result["parameters"] > 0 and result["train_flops_per_image"] > 0
    assert result["global_step"] == 2 * (36 // 8)  # drop_last: 4 steps an epoch
    assert result["data_pipeline"] == "fast"  # --data.pipeline auto on a CPU
    assert result["torch_threads"] == torch.get_num_threads()  # one run alone: every core
    head = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True,
                          cwd=Path(__file__).parent).stdout.strip()
    assert head and result["code_version"].startswith(head)  # the tests run from a git checkout (CI: a clone)


def test_schedule_peaks_at_max_lr_and_ends_near_zero(fake_root, tmp_path):
    main(tiny_fit_args(fake_root, tmp_path, "--trainer.max_epochs", "3", "--model.lr", "0.02",
                       "--trainer.log_every_n_steps", "1"))
    lrs = scalars(tmp_path / "lightning_logs" / "convmixer" / "version_0")["lr-AdamW/decay"]
    assert len(lrs) == 12  # one per step: stepped per batch, sized to the whole run
    assert max(lrs) == pytest.approx(0.02, rel=1e-3)
    assert lrs.index(max(lrs)) == 2  # warm-up: 25% of 12 steps, peak on step 3
    assert lrs[-1] < 0.02 * 1e-3


def test_second_run_gets_its_own_folder_and_keeps_the_first(fake_root, tmp_path):
    main(tiny_fit_args(fake_root, tmp_path))
    first = (tmp_path / "lightning_logs" / "convmixer" / "version_0" / "result.json").read_text()
    main(tiny_fit_args(fake_root, tmp_path))
    assert (tmp_path / "lightning_logs" / "convmixer" / "version_1" / "result.json").is_file()
    assert (tmp_path / "lightning_logs" / "convmixer" / "version_0" / "result.json").read_text() == first


def test_config_file_and_overrides(fake_root, tmp_path):
    cfg = tmp_path / "exp.yaml"
    cfg.write_text(textwrap.dedent("""
        model:
          class_path: convmixer_lit.models.ConvMixer
          init_args: {dim: 8, depth: 1, patch_size: 8, kernel_size: 3, lr: 0.005}
        trainer: {max_epochs: 1}
    """))
    summary = main(["--config", str(cfg), *tiny_fit_args(fake_root, tmp_path, model=[]), "--model.dim", "12"])
    assert summary["hparams"]["dim"] == 12 and summary["hparams"]["lr"] == 0.005
    saved = (tmp_path / "lightning_logs" / "convmixer" / "version_0" / "config.yaml").read_text()
    assert "dim: 12" in saved and "seed_everything: 0" in saved


@pytest.mark.parametrize("config", sorted(Path("experiments").glob("*.yaml")), ids=lambda p: p.stem)
def test_shipped_configs_parse(config, capsys):
    with pytest.raises(SystemExit) as e:
        main(["--config", str(config), "--print_config"])
    assert e.value.code == 0
    printed = capsys.readouterr().out
    assert "class_path: convmixer_lit.models" in printed and "max_epochs:" in printed


def test_new_architecture_by_subclassing(fake_root, tmp_path, monkeypatch):
    """The README's example, verbatim in spirit: one subclass in the user's own module, then `--model`."""
    (tmp_path / "my_models.py").write_text(textwrap.dedent('''
        from torch import nn
        from convmixer_lit import ImageClassifier

        class TinyCNN(ImageClassifier):
            """Two conv layers and a linear head."""
            channels_last = True

            def __init__(self, width: int = 16, **kwargs):
                super().__init__(**kwargs)
                self.net = nn.Sequential(
                    nn.Conv2d(3, width, 3, stride=2), nn.ReLU(), nn.BatchNorm2d(width),
                    nn.Conv2d(width, width, 3, stride=2), nn.ReLU(), nn.BatchNorm2d(width),
                    nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, self.num_classes))
    '''))
    monkeypatch.syspath_prepend(str(tmp_path))
    summary = main(tiny_fit_args(fake_root, tmp_path, model=["--model", "my_models.TinyCNN", "--model.width", "8"]))
    assert summary["model"] == "tinycnn" and summary["hparams"]["width"] == 8
    assert (tmp_path / "lightning_logs" / "tinycnn" / "version_0" / "result.json").is_file()
    # once imported, the short name works too
    summary = main(tiny_fit_args(fake_root, tmp_path, model=["--model", "tinycnn"]))
    assert summary["model"] == "tinycnn"
    ckpt = torch.load(tmp_path / "lightning_logs" / "tinycnn" / "version_1" / "checkpoints" / "last.ckpt",
                      weights_only=False)
    assert ckpt["hyper_parameters"]["width"] == 16


@pytest.mark.slow
def test_unknown_model_is_one_clear_line(tmp_path):
    r = run_cli("convmixer_lit.fit", "--model", "vitt", cwd=tmp_path)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == ["error: unknown model 'vitt'; available: convmixer, isotropic, "
                                             "resnet18, resnet9, timm_vit, vit, or a class path such as "
                                             "my_package.my_module.MyNet"]


@pytest.mark.slow
def test_fit_through_the_real_command(fake_root, tmp_path):
    r = run_cli("convmixer_lit.fit", *tiny_fit_args(fake_root, tmp_path), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "convmixer: best val top-1" in r.stdout and "run folder:" in r.stdout
    assert "parameters" in r.stdout + r.stderr


@pytest.mark.slow
def test_fit_on_real_data_each_model(real_root, tmp_path):
    """The issue's smoke command, scaled down: real JPEGs decoded by the standard pipeline through every model (the
    fast pipeline's cache of real JPEGs is test_fast_pipeline's; loading the whole real cache for two batches would
    cost more than the three fits)."""
    for model, flags in (("convmixer", ["--model.patch_size", "8"]), ("vit", ["--model.patch_size", "8"]),
                         ("resnet18", [])):
        summary = main(["--model", model, *flags, "--data.root", str(real_root), "--data.image_size", "64",
                        "--data.pipeline", "standard", "--data.num_workers", "0",
                        "--trainer.accelerator", "cpu", "--trainer.max_epochs", "1",
                        "--trainer.limit_train_batches", "2", "--trainer.limit_val_batches", "1",
                        "--data.batch_size", "16", "--trainer.default_root_dir", str(tmp_path),
                        "--trainer.enable_progress_bar", "false"])
        assert summary["global_step"] == 2 and summary["final_val_acc"] is not None
        assert scalars(tmp_path / "lightning_logs" / model / "version_0")["val/acc"]


def test_named_run_is_never_overwritten(fake_root, tmp_path):
    main(tiny_fit_args(fake_root, tmp_path, "--run_name", "seed0"))
    run = tmp_path / "lightning_logs" / "convmixer" / "seed0"
    assert (run / "result.json").is_file()
    before = (run / "result.json").read_text()
    with pytest.raises(SystemExit) as e:
        main(tiny_fit_args(fake_root, tmp_path, "--run_name", "seed0"))
    assert e.value.code == 2
    assert (run / "result.json").read_text() == before


@pytest.mark.parametrize("flags", [["--model.help", "isotropic"], ["--model.help=isotropic"]])
def test_model_help_takes_the_short_model_name_and_lists_its_own_flags(flags, capsys):
    """The README's way to see a model's options: `--model NAME --help` lists the data and Trainer flags only, so
    `--model.help NAME` must accept the name `--model` takes."""
    with pytest.raises(SystemExit) as stop:
        main(flags)
    assert stop.value.code == 0
    out = capsys.readouterr().out
    assert "--model.mixer" in out and "--model.pooled_norm" in out and "(type: bool, default: True)" in out
