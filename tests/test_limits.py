"""Integer limits mean batches: `--trainer.limit_train_batches 1` trains one batch an epoch, `1.0` the whole epoch.

Lightning annotates the limits `float | int`, so its CLI alone reads "1" (or `1` in a YAML config) as 1.0 = 100%.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from convmixer_lit.cli import KitTrainer
from convmixer_lit.fit import main

from conftest import run_cli, tiny_fit_args

STEPS_PER_EPOCH = 36 // 8  # the synthetic data: 36 training images, batch 8, drop_last
LIMITS = ("limit_train_batches", "limit_val_batches", "limit_test_batches", "limit_predict_batches",
          "val_check_interval")


def trainer_parser():
    from lightning.pytorch.cli import LightningArgumentParser

    parser = LightningArgumentParser()
    parser.add_lightning_class_args(KitTrainer, "trainer")
    return parser


@pytest.mark.parametrize("value, parsed", [("1", 1), ("5", 5), ("1.0", 1.0), ("0.5", 0.5), ("0", 0)])
def test_an_integer_looking_value_stays_an_integer(value, parsed):
    parser = trainer_parser()
    config = parser.parse_args([arg for key in LIMITS for arg in (f"--trainer.{key}", value)])
    for key in LIMITS:
        got = config.trainer[key]
        assert got == parsed and type(got) is type(parsed), (key, got)


def test_an_integer_in_a_config_file_stays_an_integer(tmp_path):
    parser = trainer_parser()
    parser.add_argument("--config", action="config")
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"trainer": {"limit_train_batches": 1, "limit_val_batches": 1.0,
                                                "val_check_interval": 2}}))
    config = parser.parse_args(["--config", str(path)])
    assert type(config.trainer.limit_train_batches) is int and config.trainer.limit_train_batches == 1
    assert type(config.trainer.limit_val_batches) is float and config.trainer.limit_val_batches == 1.0
    assert type(config.trainer.val_check_interval) is int


def test_other_trainer_flags_are_still_lightnings():
    """KitTrainer only retypes the limits: every other Trainer flag, with its default, is still there."""
    from lightning.pytorch import Trainer
    from lightning.pytorch.cli import LightningArgumentParser

    stock = LightningArgumentParser()
    stock.add_lightning_class_args(Trainer, "trainer")
    assert trainer_parser().get_defaults().trainer == stock.get_defaults().trainer


def result_of(root: Path, model: str = "convmixer") -> dict:
    (run,) = (root / "lightning_logs" / model).iterdir()
    return json.loads((run / "result.json").read_text())


@pytest.mark.slow
def test_fit_command_trains_exactly_the_batches_asked_for(fake_root, tmp_path):
    """Through the real entry point: 1 means one batch, 1.0 the whole epoch; the saved config keeps the integer."""
    r = run_cli("convmixer_lit.fit", *tiny_fit_args(fake_root, tmp_path, "--trainer.limit_train_batches", "1",
                                                    "--trainer.limit_val_batches", "1"), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    result = result_of(tmp_path)
    assert result["global_step"] == 1 and result["epochs"] == 1
    run = tmp_path / "lightning_logs" / "convmixer" / "version_0"
    saved = yaml.safe_load((run / "config.yaml").read_text())["trainer"]
    assert saved["limit_train_batches"] == 1 and type(saved["limit_train_batches"]) is int
    assert saved["limit_val_batches"] == 1 and type(saved["limit_val_batches"]) is int
    # the CPU class is logged once and recorded
    assert (r.stdout + r.stderr).count("cpu: ") == 1 and " -> " in r.stdout + r.stderr
    assert result["hardware"]["cpu_isa"] and isinstance(result["hardware"]["cpu_bf16_native"], bool)


def test_one_point_zero_still_means_the_whole_epoch(fake_root, tmp_path):
    summary = main(tiny_fit_args(fake_root, tmp_path, "--trainer.limit_train_batches", "1.0"))
    assert summary["global_step"] == STEPS_PER_EPOCH


def test_an_integer_limit_in_a_config_file_means_batches(fake_root, tmp_path):
    config = tmp_path / "limits.yaml"
    config.write_text(yaml.safe_dump({"trainer": {"limit_train_batches": 1}}))
    summary = main(["--config", str(config), *tiny_fit_args(fake_root, tmp_path)])
    assert summary["global_step"] == 1


@pytest.mark.slow
def test_compare_passes_integer_limits_to_each_run(fake_root, tmp_path):
    """compare hands --trainer.* flags to `fit` unchanged: one batch per epoch there too."""
    preset = tmp_path / "preset"
    preset.mkdir()
    (preset / "convmixer.yaml").write_text(yaml.safe_dump({
        "model": {"class_path": "convmixer_lit.models.ConvMixer",
                  "init_args": {"dim": 16, "depth": 1, "kernel_size": 3, "patch_size": 8}},
        "data": {"image_size": 32, "batch_size": 8, "num_workers": 0},
        "trainer": {"max_epochs": 2, "enable_progress_bar": False, "enable_model_summary": False}}))
    out = tmp_path / "study"
    r = run_cli("convmixer_lit.compare", "--preset", str(preset), "--models", "convmixer", "--seeds", "0",
                "--output", str(out), "--data.root", str(fake_root), "--trainer.accelerator", "cpu",
                "--trainer.limit_train_batches", "1", cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    (result,) = [json.loads(p.read_text()) for p in (out / "results").glob("*.json")]
    assert result["global_step"] == 2 and result["epochs"] == 2  # one step in each of the two epochs
