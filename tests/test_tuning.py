"""A tuned study: the held-out split, the search space, paired trials, and `compare --search` end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import yaml

from convmixer_lit import compare, fit
from convmixer_lit.data import ImagenetteDataModule
from convmixer_lit.errors import ConfigError
from convmixer_lit.holdout import holdout_split
from convmixer_lit.images import load_rgb, val_transform
from convmixer_lit.stats import expected_max
from convmixer_lit.study.plan import Run
from convmixer_lit.study.runs import save_diverged
from convmixer_lit.study.search import Trials, apply_params, parse_dimension, parse_space

from conftest import make_imagenette, run_cli

SPACE = ["model.lr=loguniform(1e-3,3e-2)", "model.weight_decay=loguniform(0.005,0.3)"]


# ---- the held-out split ---------------------------------------------------------------------------------------
def test_holdout_split_is_stratified_disjoint_and_fixed_by_its_own_seed():
    labels = [0] * 50 + [1] * 30 + [2] * 7
    kept, held = holdout_split(labels, 0.2, seed=0)
    assert sorted(kept + held) == list(range(len(labels))) and not set(kept) & set(held)
    assert [sum(labels[i] == c for i in held) for c in range(3)] == [10, 6, 1]  # each class its share
    assert holdout_split(labels, 0.2, seed=0) == (kept, held)  # no global RNG involved
    assert holdout_split(labels, 0.2, seed=1)[1] != held
    # adding images to one class does not move another class's held-out images
    more = labels + [2] * 10
    assert [i for i in holdout_split(more, 0.2, 0)[1] if more[i] == 0] == [i for i in held if labels[i] == 0]
    assert holdout_split(labels, 0.0, 0) == (list(range(len(labels))), [])
    kept, held = holdout_split([0, 1, 1], 0.5, 0)  # a class's last image is never held out
    assert 0 in kept and len(held) == 1 and held[0] in (1, 2)
    with pytest.raises(ValueError):
        holdout_split(labels, 1.0, 0)


@pytest.fixture()
def root_without_val(tmp_path) -> Path:
    """Synthetic Imagenette with no val/ folder at all: a run that reads val cannot start."""
    root = make_imagenette(tmp_path / "data", per_class={"train": 12})
    assert not (root / "imagenette2-160" / "val").exists()
    return root


@pytest.mark.parametrize("pipeline", ["standard", "fast"])
def test_holdout_trains_and_validates_on_disjoint_parts_of_train_without_val(root_without_val, tmp_path, pipeline):
    dm = ImagenetteDataModule(root=str(root_without_val), image_size=32, batch_size=4, num_workers=0,
                              download=False, pipeline=pipeline, cache_dir=str(tmp_path / "cache"),
                              holdout_fraction=0.25, holdout_seed=3)
    assert dm.eval_split == "holdout" and dm.num_classes == 3
    dm.prepare_data()
    dm.setup("fit")
    samples = dm.dataset("train", transform=lambda x: x).samples
    kept, held = dm.holdout_indices()
    train_files = {samples[i][0] for i in kept}
    held_files = {samples[i][0] for i in held}
    assert len(held_files) == 9 and len(train_files) == 27  # 3 of 12 per class
    assert not train_files & held_files and train_files | held_files == {p for p, _ in samples}
    assert len(dm.train_set) == 27 and len(dm.val_set) == 9
    # validation reads exactly the held-out images (the validation transform's pixels, their labels), in order
    images = torch.cat([x for x, _ in dm.val_dataloader()])
    labels = torch.cat([y for _, y in dm.val_dataloader()])
    expected = torch.stack([val_transform(32)(load_rgb(samples[i][0])) for i in held])
    assert torch.equal(images, expected) and labels.tolist() == [samples[i][1] for i in held]
    # and training reads only the kept ones: every training batch's labels come from them, 27 images an epoch
    seen = sum(len(batch[1]) for batch in dm.train_dataloader())
    assert seen == 24  # 27 kept images in batches of 4, the last partial batch dropped
    record = dm.holdout_record()
    assert record["held_out_images"] == 9 and record["train_images"] == 27 and len(record["held_out_digest"]) == 16


def test_holdout_fraction_out_of_range_is_one_error_line(fake_root):
    with pytest.raises(ConfigError, match="holdout_fraction must be in"):
        ImagenetteDataModule(root=str(fake_root), holdout_fraction=1.0)


# ---- the search space and the trials ------------------------------------------------------------------------------
def test_search_space_parses_every_kind_and_refuses_malformed_specs():
    dims = parse_space(["trainer.max_epochs=intuniform(2,8)", "model.mixer=choice(conv, attention)", *SPACE,
                        "data.crop_scale_low=uniform(0.2,0.5)"])
    assert [d.key for d in dims] == sorted(d.key for d in dims)  # sorted: the draw order is fixed
    kinds = {d.key: (d.kind, d.args) for d in dims}
    assert kinds["model.mixer"] == ("choice", ("conv", "attention"))
    assert kinds["trainer.max_epochs"] == ("intuniform", (2, 8))
    assert kinds["model.lr"] == ("loguniform", (1e-3, 3e-2))
    for bad, why in [("model.lr", "write KEY=KIND"), ("model.lr=normal(0,1)", "write KEY=KIND"),
                     ("lr=uniform(0,1)", "model.*, data.* or trainer.*"), ("model.lr=uniform(1,0)", "below high"),
                     ("model.lr=loguniform(0,1)", "positive low"), ("model.lr=choice(1)", "at least two"),
                     ("model.depth=intuniform(1.5,3)", "two integers"), ("model.lr=uniform(a,b)", "two numbers")]:
        with pytest.raises(ConfigError, match=why):
            parse_dimension(bad)
    with pytest.raises(ConfigError, match="twice"):
        parse_space(["model.lr=uniform(0,1)", "model.lr=uniform(0,2)"])


def test_apply_params_reaches_init_args_data_and_trainer():
    config = {"model": {"class_path": "x.Y", "init_args": {"lr": 1.0, "dim": 8}}, "data": {"image_size": 32}}
    out = apply_params(config, {"model.lr": 0.1, "data.batch_size": 4, "trainer.max_epochs": 3})
    assert out == {"model": {"class_path": "x.Y", "init_args": {"lr": 0.1, "dim": 8}},
                   "data": {"image_size": 32, "batch_size": 4}, "trainer": {"max_epochs": 3}}
    assert config["model"]["init_args"]["lr"] == 1.0  # a copy


def test_every_model_gets_the_same_trials_and_a_rerun_draws_them_again(tmp_path):
    space = parse_space(SPACE)
    store = Trials(tmp_path / "optuna.db", space, seed=7)
    a = store.params("a", 3)
    b = store.params("b", 5)  # b asks more trials than a has
    assert b[:3] == a and len({json.dumps(p) for p in b}) == 5
    for p in b:
        assert 1e-3 <= p["model.lr"] <= 3e-2 and 0.005 <= p["model.weight_decay"] <= 0.3
    again = Trials(tmp_path / "optuna.db", space, seed=7)  # a later call: stored trials are read, not drawn anew
    assert again.params("a", 5) == b and again.params("b", 5) == b
    assert Trials(tmp_path / "other.db", space, seed=7).params("c", 5) == b  # the seed alone decides the draws
    assert Trials(tmp_path / "other.db", space, seed=8).params("d", 2) != b[:2]
    with pytest.raises(ConfigError, match="searches"):
        Trials(tmp_path / "optuna.db", parse_space(SPACE[:1]), seed=7).params("a", 5)


def test_a_diverged_trial_is_a_result_and_any_other_failure_is_not(tmp_path):
    run = Run("m-trial2", 0, tmp_path / "m.yaml", "convmixer", tmp_path)
    assert save_diverged(run, {"trial": 2}, "cannot read image x.JPEG") is None
    assert save_diverged(run, {}, "the training loss became nan at epoch 0") is None  # a run, not a trial
    result = save_diverged(run, {"trial": 2}, "the training loss became nan at epoch 1, step 9 (batch 3)")
    assert result["diverged"] and result["best_val_acc"] is None
    assert json.loads(run.result_path.read_text())["error"].startswith("the training loss became nan")


def test_expected_max_is_dodge_et_al_s_formula():
    values = [0.5, 0.7, 0.6, 0.9]
    assert expected_max(values, 1) == pytest.approx(sum(values) / 4)
    # n = 2 by hand: P(max = k-th smallest) = (k/4)^2 - ((k-1)/4)^2 = 1/16, 3/16, 5/16, 7/16
    assert expected_max(values, 2) == pytest.approx((0.5 * 1 + 0.6 * 3 + 0.7 * 5 + 0.9 * 7) / 16)
    # E[max of n] grows with n towards the best trial
    curve = [expected_max(values, n) for n in range(1, 5)]
    assert curve == sorted(curve) and curve[-1] < 0.9
    assert expected_max([0.3] * 5, 3) == pytest.approx(0.3)


# ---- compare --search, end to end ----------------------------------------------------------------------------------
TINY_BASE = {"model": {"class_path": "convmixer_lit.models.ConvMixer",
                       "init_args": {"dim": 16, "depth": 1, "kernel_size": 3, "patch_size": 8, "lr": 0.01}},
             "data": {"image_size": 32, "batch_size": 8, "num_workers": 0},
             "trainer": {"max_epochs": 1, "precision": "32-true", "enable_progress_bar": False,
                         "enable_model_summary": False, "log_every_n_steps": 1}}


def make_tuned_preset(folder: Path, trials: int = 2) -> Path:
    """A layered preset (a _base.yaml, two cells that differ in width) and its study.yaml."""
    folder.mkdir(parents=True)
    (folder / "_base.yaml").write_text(yaml.safe_dump(TINY_BASE, sort_keys=False))
    (folder / "narrow.yaml").write_text("model: {init_args: {dim: 16}}\n")
    (folder / "wide.yaml").write_text("model: {init_args: {dim: 24}}\n")
    (folder / "study.yaml").write_text(yaml.safe_dump({"models": ["narrow", "wide"], "search": {
        "model.lr": "loguniform(1e-3, 3e-2)", "model.weight_decay": "loguniform(0.005, 0.3)"}, "trials": trials,
        "holdout_fraction": 0.25, "seeds": [1]}))
    return folder


@pytest.fixture(scope="module")
def tuned(tmp_path_factory):
    """`compare --tune-only` on data without val/ (tuning must never read it), then the finals once val/ is back."""
    base = tmp_path_factory.mktemp("tuned")
    preset = make_tuned_preset(base / "preset")
    root = make_imagenette(base / "data", per_class={"train": 12, "val": 4})
    val = root / "imagenette2-160" / "val"
    val.rename(base / "val-away")
    out = base / "study"
    args = ["--preset", str(preset), "--output", str(out), "--data.root", str(root), "--trainer.accelerator", "cpu"]
    tuning = run_cli("convmixer_lit.compare", *args, "--tune-only", cwd=base)
    finals_after_tuning = sorted(p.name for p in out.glob("results/*.json"))
    (base / "val-away").rename(val)
    finals = run_cli("convmixer_lit.compare", *args, cwd=base)
    rerun = run_cli("convmixer_lit.compare", *args, cwd=base)
    # the chosen configurations at a longer budget (the mixer study's 16-epoch retrain): tuned/ is a preset folder
    longer = run_cli("convmixer_lit.compare", "--preset", str(out / "tuned"), "--models", "wide", "--seeds", "1",
                     "--trainer.max_epochs", "2", "--output", str(base / "longer"), "--data.root", str(root),
                     "--trainer.accelerator", "cpu", cwd=base)
    return SimpleNamespace(base=base, preset=preset, out=out, args=args, root=root, tuning=tuning, finals=finals,
                           rerun=rerun, finals_after_tuning=finals_after_tuning, longer=longer)


@pytest.mark.slow  # end to end: compare and its fit processes
def test_tuning_never_reads_val_and_gives_every_model_the_same_trials(tuned):
    assert tuned.tuning.returncode == 0, tuned.tuning.stdout + tuned.tuning.stderr
    assert "2 models x 2 trials" in tuned.tuning.stdout and "finals:" not in tuned.tuning.stdout
    trials = {p.stem: json.loads(p.read_text()) for p in (tuned.out / "tuning" / "results").glob("*.json")}
    assert set(trials) == {f"{m}-trial{n}-seed0" for m in ("narrow", "wide") for n in (0, 1)}
    for result in trials.values():
        assert result["completed"] and result["seed"] == 0 and result["precision"] == "32-true"
        assert result["holdout"]["fraction"] == 0.25 and result["holdout"]["held_out_images"] == 9
        assert result["study"]["params"] == {k: result["hparams"][k.split(".")[1]] for k in result["study"]["params"]}
    for n in (0, 1):  # paired: trial n is one configuration for both models
        assert trials[f"narrow-trial{n}-seed0"]["study"]["params"] == trials[f"wide-trial{n}-seed0"]["study"]["params"]
    assert trials["narrow-trial0-seed0"]["study"]["params"] != trials["narrow-trial1-seed0"]["study"]["params"]
    assert len({r["holdout"]["held_out_digest"] for r in trials.values()}) == 1  # one split for every trial
    for model in ("narrow", "wide"):
        assert (tuned.out / "tuned" / f"{model}.yaml").is_file()
    assert tuned.finals_after_tuning == []  # --tune-only: no finals


@pytest.mark.slow
def test_finals_retrain_the_best_trial_with_fresh_seeds_on_val(tuned, capsys, monkeypatch):
    assert tuned.finals.returncode == 0, tuned.finals.stdout + tuned.finals.stderr
    assert "4 already finished (reused), 0 to train" in tuned.finals.stdout  # the trials: reused, not rerun
    finals = {p.stem: json.loads(p.read_text()) for p in (tuned.out / "results").glob("*.json")}
    assert set(finals) == {"narrow-seed1", "wide-seed1"}  # seed 1: the trials used 0
    for name, result in finals.items():
        model = name.split("-")[0]
        trials = [json.loads(p.read_text()) for p in (tuned.out / "tuning" / "results").glob(f"{model}-trial*.json")]
        best = max(trials, key=lambda r: (r["best_val_acc"], -r["study"]["trial"]))  # ties: the earlier trial
        assert result["study"]["tuned"]["held_out_top1"] == best["best_val_acc"]
        assert result["hparams"]["lr"] == pytest.approx(best["hparams"]["lr"])
        assert result["hparams"]["weight_decay"] == pytest.approx(best["hparams"]["weight_decay"])
        assert result["holdout"] is None and result["seed"] == 1  # all of train, scored on val
        # the chosen configuration is a preset `fit --config` accepts
        monkeypatch.chdir(tuned.base)
        with pytest.raises(SystemExit) as e:
            fit.main(["--config", str(tuned.out / "tuned" / f"{model}.yaml"), "--print_config"])
        assert e.value.code == 0
        printed = yaml.safe_load(capsys.readouterr().out)
        assert printed["model"]["init_args"]["lr"] == pytest.approx(best["hparams"]["lr"])
        assert "holdout_fraction" not in printed["data"] or printed["data"]["holdout_fraction"] == 0
    # a rerun trains nothing and draws nothing new
    assert tuned.rerun.returncode == 0, tuned.rerun.stderr
    assert "4 already finished (reused), 0 to train" in tuned.rerun.stdout
    assert "2 already finished (reused), 0 to train" in tuned.rerun.stdout
    report = (tuned.out / "tuning.md").read_text()
    assert "Expected best held-out top-1" in report and (tuned.out / "tuning_evp.png").is_file()
    assert "- tuning: 4 runs, " in report and "- finals: 2 runs, " in report and "- total so far: " in report


@pytest.mark.slow
def test_the_chosen_configurations_retrain_at_a_longer_budget_as_a_study_of_their_own(tuned):
    assert tuned.longer.returncode == 0, tuned.longer.stdout + tuned.longer.stderr
    final = json.loads((tuned.out / "results" / "wide-seed1.json").read_text())
    longer = json.loads((tuned.base / "longer" / "results" / "wide-seed1.json").read_text())
    assert longer["completed"] and longer["max_epochs"] == 2 and final["max_epochs"] == 1
    for key in ("lr", "weight_decay", "dim"):  # the tuned configuration, only the budget changed
        assert longer["hparams"][key] == pytest.approx(final["hparams"][key])
    assert longer["holdout"] is None and longer["precision"] == "32-true"
    assert (tuned.base / "longer" / "summary.md").is_file()


def test_machine_time_counts_each_run_by_its_share_of_the_cores():
    from convmixer_lit.study.tuning_report import machine_hours

    two_at_once = [{"wall_time_s": 3600.0, "torch_threads": 1, "environment": {"cpu_cores": 2}}] * 2
    alone = {"wall_time_s": 1800.0, "torch_threads": 2, "environment": {"cpu_cores": 2}}
    unrecorded = {"wall_time_s": 900.0}  # made before threads were recorded: counted as the whole machine
    assert machine_hours(two_at_once) == pytest.approx(1.0)
    assert machine_hours([alone, unrecorded]) == pytest.approx(0.75)


def test_the_cost_is_given_per_final_seed_so_a_budget_reads_for_any_number_of_seeds(tmp_path):
    """Seeds added after the preset's (for narrower intervals) are counted apart, with the running total."""
    from convmixer_lit.study.tuning_report import TuningSummary, cost_by_seed, write_markdown

    run = {"wall_time_s": 3600.0, "torch_threads": 1, "environment": {"cpu_cores": 2}}  # half the machine
    finals = [dict(run, seed=s) for s in (1, 1, 2, 2, 3)]
    assert cost_by_seed(finals) == {1: (2, pytest.approx(1.0)), 2: (2, pytest.approx(1.0)), 3: (1, pytest.approx(0.5))}
    record = {"trials": 2, "search": ["model.lr=loguniform(0.0003, 0.01)"], "sampler": "random", "search_seed": 0,
              "holdout_fraction": 0.1, "holdout_seed": 0, "trial_seed": 0}
    summary = TuningSummary(record, [], 0.1, ["cpu"], ["32-true"],
                            cost={"tuning": (4, 4.0), "finals": (5, 2.5)}, finals_cost=cost_by_seed(finals))
    write_markdown(summary, tmp_path / "tuning.md")
    text = (tmp_path / "tuning.md").read_text()
    assert "- total so far: 6.50 h" in text
    assert "| 1 | 2 | 1.00 | 5.00 |" in text and "| 2 | 2 | 1.00 | 6.00 |" in text and "| 3 | 1 | 0.50 | 6.50 |" in text
    summary.finals_cost = cost_by_seed(finals[:2])  # one seed: no table
    write_markdown(summary, tmp_path / "tuning.md")
    assert "| finals seed |" not in (tmp_path / "tuning.md").read_text()


# ---- refusals, before anything trains ------------------------------------------------------------------------------
def run_compare(argv: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as e:
        compare.main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ")
    return err[0]


def test_finals_must_use_seeds_the_trials_did_not(tmp_path, fake_root, capsys):
    preset = make_tuned_preset(tmp_path / "preset")
    line = run_compare(["--preset", str(preset), "--output", str(tmp_path / "s"), "--seeds", "0", "1",
                        "--data.root", str(fake_root)], capsys)
    assert "fresh seeds" in line


def test_tuning_flags_without_a_search_are_refused(tmp_path, fake_root, capsys):
    line = run_compare(["--models", "convmixer", "--output", str(tmp_path / "s"), "--trials", "3",
                        "--data.root", str(fake_root)], capsys)
    assert "--trials is for a tuned study" in line


def test_a_study_refuses_to_mix_precisions(tmp_path, fake_root, capsys):
    preset = make_tuned_preset(tmp_path / "preset")
    (preset / "study.yaml").unlink()
    out = tmp_path / "s"
    (out / "results").mkdir(parents=True)
    (out / "results" / "narrow-seed0.json").write_text(json.dumps({"precision": "bf16-mixed", "best_val_acc": 0.5}))
    line = run_compare(["--preset", str(preset), "--models", "narrow", "--seeds", "1", "--output", str(out),
                        "--data.root", str(fake_root)], capsys)
    assert "must not mix precisions" in line and "bf16-mixed" in line and "32-true" in line
    # a tuned study too: its trials count
    (out / "results" / "narrow-seed0.json").unlink()
    tuned_out = tmp_path / "t"
    (tuned_out / "tuning" / "results").mkdir(parents=True)
    (tuned_out / "tuning" / "results" / "x.json").write_text(json.dumps({"precision": "bf16-mixed"}))
    make_tuned_preset(tmp_path / "preset2")
    line = run_compare(["--preset", str(tmp_path / "preset2"), "--output", str(tuned_out),
                        "--data.root", str(fake_root)], capsys)
    assert "must not mix precisions" in line


def test_another_search_in_the_same_folder_is_refused(tmp_path, fake_root, capsys):
    preset = make_tuned_preset(tmp_path / "preset")
    out = tmp_path / "s"
    (out / "tuning").mkdir(parents=True)
    (out / "tuning" / "tuning.json").write_text(json.dumps({
        "search": ["model.lr=loguniform(0.0001, 0.1)"], "trials": 2, "sampler": "random", "search_seed": 0,
        "holdout_fraction": 0.25, "holdout_seed": 0, "trial_seed": 0, "holdout": None}))
    (out / "tuning" / "results").mkdir()
    (out / "tuning" / "results" / "narrow-trial0-seed0.json").write_text(json.dumps({"precision": "32-true"}))
    line = run_compare(["--preset", str(preset), "--output", str(out), "--data.root", str(fake_root)], capsys)
    assert "was tuned with other settings" in line and "search" in line


# ---- --flush_denormal ------------------------------------------------------------------------------------------
FIT_THEN_PROBE = """
import sys, torch
from convmixer_lit.fit import main
summary = main(sys.argv[1:])
x = torch.full((1 << 20,), 1e-40)  # a subnormal float32, enough elements for every worker thread to take a share
print("RESULT", summary["flush_denormal"], summary["concurrent_runs"], float(((x * 1.0) == 0).double().mean()))
"""


@pytest.mark.slow  # a fresh interpreter each: worker threads keep the setting they started with
@pytest.mark.parametrize("flag", ["true", "false"])
def test_fit_flushes_subnormals_in_every_thread_and_records_it(tmp_path, fake_root, flag):
    from conftest import tiny_fit_args

    args = tiny_fit_args(fake_root, tmp_path, "--trainer.max_steps", "1", "--trainer.limit_val_batches", "1",
                         "--flush_denormal", flag)
    proc = subprocess.run([sys.executable, "-c", FIT_THEN_PROBE, *args], capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "2"}, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    _, recorded, runs, flushed = next(x for x in proc.stdout.splitlines() if x.startswith("RESULT")).split()
    assert recorded == ("True" if flag == "true" else "False") and runs == "1"
    # every element, in every thread: all flushed to zero, or none (the main thread alone would be about half)
    assert float(flushed) == (1.0 if flag == "true" else 0.0)


def test_a_report_that_cannot_be_drawn_does_not_end_a_running_study(tmp_path, monkeypatch, capsys):
    """A study redraws its report after every run; a drawing error (seen: a module changed under a running study)
    is printed and the study goes on."""
    from convmixer_lit.study import report

    def broken(out):
        raise ImportError("cannot import name 'x'")

    monkeypatch.setattr(report, "report_if_any", broken)
    report.refresh_report(tmp_path)
    assert "the report could not be redrawn: ImportError: cannot import name 'x'; the study goes on" in \
        capsys.readouterr().out


# ---- what the review found: refusals before anything is written -----------------------------------------------
def test_a_flag_that_would_override_a_searched_setting_is_refused(tmp_path, fake_root, capsys):
    preset = make_tuned_preset(tmp_path / "preset")
    out = tmp_path / "s"
    line = run_compare(["--preset", str(preset), "--output", str(out), "--data.root", str(fake_root),
                        "--model.lr", "0.001"], capsys)
    assert "--model.lr is searched" in line
    assert not out.exists()  # refused before any file was written


def test_a_tuned_folder_is_not_continued_as_an_untuned_study_nor_the_reverse(tmp_path, fake_root, capsys):
    preset = make_tuned_preset(tmp_path / "preset")
    out = tmp_path / "s"
    (out / "tuning").mkdir(parents=True)
    (out / "tuning" / "tuning.json").write_text("{}")
    line = run_compare(["--models", "convmixer", "--output", str(out), "--data.root", str(fake_root)], capsys)
    assert "is a tuned study: rerun it with its search" in line
    other = tmp_path / "plain-study"
    (other / "results").mkdir(parents=True)
    (other / "results" / "narrow-seed1.json").write_text(json.dumps({"precision": "32-true", "study": {}}))
    line = run_compare(["--preset", str(preset), "--output", str(other), "--data.root", str(fake_root)], capsys)
    assert "holds untuned runs" in line


def test_a_preset_that_holds_out_itself_is_refused(tmp_path, fake_root, capsys):
    preset = make_tuned_preset(tmp_path / "preset")
    (preset / "narrow.yaml").write_text("model: {init_args: {dim: 16}}\ndata: {holdout_fraction: 0.2}\n")
    line = run_compare(["--preset", str(preset), "--output", str(tmp_path / "s"), "--data.root", str(fake_root)],
                       capsys)
    assert "sets data.holdout_fraction" in line and "finals score on val" in line


@pytest.mark.parametrize("bad, says", [("trials: six", "trials: 'six' is not an integer"),
                                       ("seeds: 1", "seeds: 1 is not a list of integer seeds"),
                                       ("models: narrow", "is not a list of config names"),
                                       ("- a\n- b", "must be a mapping"),
                                       ("holdout_fraction: abc", "is not a number")])
def test_a_malformed_study_file_is_one_error_line(tmp_path, fake_root, capsys, bad, says):
    preset = make_tuned_preset(tmp_path / "preset")
    (preset / "study.yaml").write_text(bad + "\n")
    line = run_compare(["--preset", str(preset), "--models", "narrow", "--output", str(tmp_path / "s"),
                        "--data.root", str(fake_root)], capsys)
    assert says in line


def test_the_search_may_change_until_a_trial_has_finished(tmp_path):
    from convmixer_lit.study.tuning import Tuning, check_tuning_record, write_tuning_record

    first = Tuning(parse_space(SPACE), trials=2)
    write_tuning_record(tmp_path, first, None)
    fixed = Tuning(parse_space(SPACE[:1]), trials=2)
    check_tuning_record(tmp_path, fixed)  # nothing trained yet: a typo may still be fixed
    (tmp_path / "tuning" / "results").mkdir(parents=True)
    (tmp_path / "tuning" / "results" / "a-trial0-seed0.json").write_text("{}")
    with pytest.raises(ConfigError, match="was tuned with other settings"):
        check_tuning_record(tmp_path, fixed)
    check_tuning_record(tmp_path, Tuning(parse_space(SPACE), trials=4))  # a larger budget is the same search


def test_stored_trials_drawn_from_other_ranges_are_refused(tmp_path):
    Trials(tmp_path / "optuna.db", parse_space(SPACE)).params("a", 2)
    narrower = parse_space(["model.lr=loguniform(1e-3,1e-2)", SPACE[1]])
    with pytest.raises(ConfigError, match="were drawn from"):
        Trials(tmp_path / "optuna.db", narrower).params("a", 2)


def test_one_arithmetic_per_study(tmp_path):
    from convmixer_lit.study.runs import check_arithmetic

    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "a-seed0.json").write_text(json.dumps({"precision": "bf16-mixed"}))  # no flag: made
    check_arithmetic(tmp_path, set(), set())  # nothing left to train: a finished study is never refused
    with pytest.raises(ConfigError, match="must not mix precisions"):
        check_arithmetic(tmp_path, {"32-true"}, {False})
    with pytest.raises(ConfigError, match="made with --flush_denormal false.*Pass --flush_denormal false"):
        check_arithmetic(tmp_path, {"bf16-mixed"}, {True})  # made before the flag existed: without flushing
    check_arithmetic(tmp_path, {"bf16-mixed"}, {False})


def test_each_base_config_is_read_once_before_its_folders_first_config(tmp_path):
    from convmixer_lit.configs import with_base_configs

    (tmp_path / "_base.yaml").write_text("trainer: {max_epochs: 4}\n")
    for name in ("long", "lr"):
        (tmp_path / f"{name}.yaml").write_text("model: {}\n")
    long, lr, base = (str(tmp_path / n) for n in ("long.yaml", "lr.yaml", "_base.yaml"))
    assert with_base_configs(["--config", long, "--config", lr, "--x", "1"]) == \
        ["--config", base, "--config", long, "--config", lr, "--x", "1"]
    assert with_base_configs([f"--config={long}", "-c", lr]) == ["--config", base, f"--config={long}", "-c", lr]
    assert with_base_configs(["--config", base]) == ["--config", base]  # the base itself: read once


# ---- the tuning report ------------------------------------------------------------------------------------------
def test_each_comparison_says_whether_tuning_changed_the_ranking():
    from convmixer_lit.study.tuning_report import Comparison

    same = Comparison("mixer conv − attention", (0.18, 0.16, 0.21), (0.06, 0.02, 0.10))
    reversed_ = Comparison("mixer pool − attention", (0.05, 0.02, 0.08), (-0.04, -0.07, -0.01))
    gone = Comparison("stem conv − patch", (0.05, 0.03, 0.08), (0.01, -0.02, 0.04))
    new = Comparison("mixer identity − pool", (0.01, -0.02, 0.04), (0.05, 0.02, 0.08))
    unresolved = Comparison("a − b", (0.01, -0.02, 0.04), (0.02, -0.01, 0.05))
    # one seed per tuned model (finals still landing): no interval, so no verdict, least of all "removed"
    untestable = Comparison("conv-conv − patch-conv", (0.043, 0.02, 0.06), (0.054, None, None), paired=False)
    assert "+18.0 pp, 95% CI [+16.0, +21.0] at the shared settings, +6.0 pp" in same.sentence
    assert "the ranking is the same tuned as at the shared settings" in same.sentence
    assert "**tuning reverses the ranking**" in reversed_.sentence
    # an interval holding 0 does not show the difference is gone: said so, not in bold as a finding
    assert "resolved at the shared settings, not resolved tuned (the means rank the same way)" in gone.sentence
    assert "**" not in gone.sentence and "more seeds would tell" in gone.sentence
    assert "tuning resolves a difference the shared settings left open" in new.sentence
    assert "not resolved either way, tuned or not (the means rank the same way)" in unresolved.sentence
    assert "not testable yet" in untestable.sentence and "removes" not in untestable.sentence


def test_the_report_compares_the_tuned_factorial_with_the_untuned_one(tmp_path):
    """Two stem x mixer studies on disk (the untuned one at one lr, the tuned finals each at their own): the
    report's comparisons are the factorial's effects in both, and the ranking sentences follow them."""
    from test_factorial import MIXERS, result

    from convmixer_lit.study.report import load_results
    from convmixer_lit.study.tuning_report import compare_with_baseline

    def write(folder: Path, acc: dict, seeds, tuned: bool, **body) -> None:
        (folder / "results").mkdir(parents=True)
        for stem in ("patch", "conv"):
            for mixer in MIXERS:
                for seed in seeds:
                    r = result(stem, mixer, seed, acc[mixer] + (0.05 if stem == "conv" else 0) + 0.003 * seed)
                    r["study"]["config"]["model"]["init_args"].update(body)
                    r["precision"] = "32-true"  # both ran in fp32; only the tuned preset pins it in its config
                    if tuned:
                        r["study"]["config"]["trainer"]["precision"] = "32-true"
                    if tuned:
                        r["study"]["tuned"] = {"model.lr": 0.001, "held_out_top1": 0.5, "trial": "x"}
                    (folder / "results" / f"{stem}-{mixer}-seed{seed}.json").write_text(json.dumps(r))

    write(tmp_path / "untuned", {"attention": 0.45, "conv": 0.64, "pool": 0.50, "identity": 0.53}, (0, 1, 2), False)
    write(tmp_path / "tuned", {"attention": 0.62, "conv": 0.66, "pool": 0.55, "identity": 0.54}, (1, 2, 3), True)
    found, differs = compare_with_baseline(tmp_path / "untuned", load_results(tmp_path / "tuned"))
    comparisons = {c.label: c for c in found}
    assert differs == ""  # only the tuned lr differs, and it is the tuning
    assert comparisons["stem conv − patch (mean over mixers)"].tuned[0] == pytest.approx(0.05)
    attention_conv = comparisons["mixer attention − conv (mean over stems)"]
    assert attention_conv.untuned[0] == pytest.approx(-0.19) and attention_conv.tuned[0] == pytest.approx(-0.04)
    pool_attention = comparisons["mixer attention − pool (mean over stems)"]
    assert "reverses the ranking" in pool_attention.sentence  # attention below pool untuned, above it tuned
    # a tuned study on another body: the report says the comparison is not the tuning's alone
    write(tmp_path / "tuned-body", {"attention": 0.62, "conv": 0.66, "pool": 0.55, "identity": 0.54}, (1, 2, 3),
          True, pooled_norm=True)
    assert compare_with_baseline(tmp_path / "untuned", load_results(tmp_path / "tuned-body"))[1] == \
        "pooled_norm false → true"
    assert comparisons["stem conv − patch with attention"].tuned[0] == pytest.approx(0.05)  # the simple effects too


def test_the_comparison_section_puts_a_recipe_difference_first_and_names_its_statistics(tmp_path):
    from convmixer_lit.study.tuning_report import Comparison, TuningSummary, write_markdown

    record = {"trials": 2, "search": ["model.lr=loguniform(0.0003, 0.01)"], "sampler": "random", "search_seed": 0,
              "holdout_fraction": 0.1, "holdout_seed": 0, "trial_seed": 0}
    grid = [Comparison("mixer pool − attention (mean over stems)", (0.05, 0.02, 0.08), (-0.04, -0.07, -0.01))]
    summary = TuningSummary(record, [], 0.1, ["cpu"], ["32-true"], "docs/results/mixer-study", grid,
                            "pooled_norm false → true")
    write_markdown(summary, tmp_path / "tuning.md")
    text = (tmp_path / "tuning.md").read_text()
    caveat = text.index("**Read every comparison below as the tuning and this together:** the untuned study also "
                        "differs in pooled_norm false → true (untuned → tuned).")
    assert caveat < text.index("**tuning reverses the ranking**")
    assert "paired effects of the stem × mixer factorial" in text
    summary.comparisons = [Comparison("a − b", (0.05, 0.02, 0.08), (0.04, 0.01, 0.07), paired=False)]
    summary.baseline_differs = ""
    write_markdown(summary, tmp_path / "tuning.md")
    text = (tmp_path / "tuning.md").read_text()
    assert "with a Welch 95% interval" in text and "Read every comparison" not in text


def test_the_lr_figure_spans_the_scores_not_chance_nor_the_searched_range(tmp_path, monkeypatch):
    """A diverged trial is marked at the foot of its panel: the y-axis spans the scored trials, so a 10% point does
    not squash every panel, and no other bound (the lr range's) leaks into it."""
    from matplotlib.figure import Figure

    from convmixer_lit.study.tuning_report import ModelTuning, Trial, TuningSummary, draw

    record = {"trials": 3, "search": ["model.lr=loguniform(0.0003, 0.01)", "model.weight_decay=loguniform(0.005, 0.3)"],
              "sampler": "random", "search_seed": 0, "holdout_fraction": 0.1, "holdout_seed": 0, "trial_seed": 0}
    draws = [{"model.lr": 0.001, "model.weight_decay": 0.05}, {"model.lr": 0.003, "model.weight_decay": 0.01},
             {"model.lr": 0.009, "model.weight_decay": 0.2}]
    scores = {"a": [0.55, 0.62, None], "b": [0.48, 0.5, 0.6]}
    models = [ModelTuning(name, [Trial(n, draws[n], score, 60.0, None, False) for n, score in enumerate(values)],
                          [0.5, 0.6, 0.6], None) for name, values in scores.items()]
    limits = []
    monkeypatch.setattr(Figure, "savefig", lambda fig, path, **kw: limits.append([ax.get_ylim() for ax in fig.axes
                                                                                   if ax.get_title()]))
    draw(TuningSummary(record, models, 0.1, ["cpu"], ["32-true"]), tmp_path)
    assert limits[0] == [pytest.approx((46.0, 64.0))] * 2  # lowest score 48 - 2, highest 62 + 2, in every panel
