"""`convmixer_lit.compare` end to end on synthetic data, its report on known numbers, and the shipped presets.

Training runs are a few seconds each (process start-up dominates), so the study is trained once per module and
copied by the tests that change it; everything that needs no training runs in-process.
"""

import csv
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import yaml

from convmixer_lit import compare, fit
from convmixer_lit.configs import load_layered
from convmixer_lit.figures import FIGURES
from convmixer_lit.stats import welch_t_test
from convmixer_lit.study.plan import EXPERIMENTS, STUDY_FILE, Run, flag_settings
from convmixer_lit.study.report import CSV_COLUMNS
from convmixer_lit.study.runs import prepare_run_dir

from conftest import run_cli

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
TINY_MODELS = {
    "convmixer": {"class_path": "convmixer_lit.models.ConvMixer",
                  "init_args": {"dim": 16, "depth": 1, "kernel_size": 3, "patch_size": 8, "lr": 0.01}},
    "vit": {"class_path": "convmixer_lit.models.ViT",
            "init_args": {"dim": 16, "depth": 1, "num_heads": 2, "mlp_dim": 32, "patch_size": 8, "lr": 0.001}},
}


def make_preset(folder: Path, max_epochs: int = 2, models=tuple(TINY_MODELS)) -> Path:
    """A preset folder of seconds-long configs: 32 px, batch 8 (4 steps an epoch on the synthetic data)."""
    folder.mkdir(parents=True)
    for name in models:
        config = {"model": TINY_MODELS[name], "data": {"image_size": 32, "batch_size": 8, "num_workers": 0},
                  "trainer": {"max_epochs": max_epochs, "enable_progress_bar": False,
                              "enable_model_summary": False, "log_every_n_steps": 1}}
        (folder / f"{name}.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return folder


def study_args(preset: Path, out: Path, root: Path, *extra: str, models=tuple(TINY_MODELS),
               seeds=("0",)) -> list[str]:
    return ["--preset", str(preset), "--models", *models, "--seeds", *seeds, "--output", str(out),
            "--data.root", str(root), "--trainer.accelerator", "cpu", *extra]


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def snapshot(folder: Path) -> dict[str, tuple[int, bytes]]:
    """Every file under `folder` (the report's files aside) with its mtime and content."""
    report = {"summary.csv", "summary.md", *FIGURES}
    return {str(p.relative_to(folder)): (p.stat().st_mtime_ns, p.read_bytes())
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name not in report}


@pytest.fixture(scope="module")
def study(tmp_path_factory, fake_root):
    """ConvMixer and ViT, seed 0, 2 epochs each, through the real command; a stale run folder is in the way."""
    base = tmp_path_factory.mktemp("compare")
    preset = make_preset(base / "preset")
    out = base / "study"
    stale = out / "lightning_logs" / "vit" / "seed0"
    stale.mkdir(parents=True)
    (stale / "notes.txt").write_text("a run folder without a checkpoint")
    args = study_args(preset, out, fake_root)
    r = run_cli("convmixer_lit.compare", *args, cwd=base)
    assert r.returncode == 0, r.stdout + r.stderr
    return SimpleNamespace(base=base, preset=preset, out=out, args=args, root=fake_root, proc=r)


def copy_study(study, tmp_path: Path) -> tuple[Path, list[str]]:
    out = tmp_path / "study"
    shutil.copytree(study.out, out)
    return out, study_args(study.preset, out, study.root)


# ---- a study end to end -----------------------------------------------------------------------------------------
@pytest.mark.slow  # end to end: compare and its fit processes
def test_study_writes_results_csv_markdown_and_figures(study, capsys, monkeypatch):
    out, stdout = study.out, study.proc.stdout
    assert "study: 2 runs" in stdout and "0 already finished (reused), 2 to train" in stdout
    assert "[1/2] convmixer seed 0: training" in stdout and "[2/2] vit seed 0: training" in stdout
    assert "report: " in stdout and "summary.md" in stdout
    # the stale run folder was moved aside, with its content, not deleted
    assert "had no checkpoint: moved to seed0.restarted-1" in stdout
    aside = out / "lightning_logs" / "vit" / "seed0.restarted-1"
    assert (aside / "notes.txt").read_text() == "a run folder without a checkpoint"

    results = {p.stem: json.loads(p.read_text()) for p in (out / "results").glob("*.json")}
    assert set(results) == {"convmixer-seed0", "vit-seed0"}
    for name, result in results.items():
        model = name.split("-")[0]
        assert result["completed"] and result["epochs"] == 2 and result["seed"] == 0 and len(result["history"]) == 2
        assert result["study"]["entry"] == model and result["study"]["config"]["model"] == TINY_MODELS[model]
        assert result["study"]["pass_through"] == ["--data.root", str(study.root), "--trainer.accelerator", "cpu"]
        assert result["environment"]["torch"] and result["environment"]["python"]
        run_dir = out / "lightning_logs" / model / "seed0"
        assert (run_dir / "checkpoints" / "last.ckpt").is_file() and (run_dir / "result.json").is_file()
        assert "--run_name seed0" in (out / "logs" / f"{name}.log").read_text()

    rows = read_csv(out / "summary.csv")
    assert list(rows[0]) == CSV_COLUMNS and len(rows) == 2
    for row in rows:
        result = results[f"{row['model']}-seed0"]
        assert all(row[c] != "" for c in CSV_COLUMNS), row  # every column filled
        assert float(row["best_val_acc"]) == pytest.approx(result["best_val_acc"])
        assert row["seed"] == "0" and row["epochs"] == "2" and row["accelerator"] == "cpu"
        assert int(row["parameters"]) == result["parameters"] > 0
        # the reproduce command: the same config, seed and flags, and it parses back to the same model
        argv = shlex.split(row["command"])
        assert argv[:3] == ["python", "-m", "convmixer_lit.fit"]
        assert argv[3:] == ["--config", f"preset/{row['model']}.yaml", "--seed_everything", "0",
                            "--data.root", str(study.root), "--trainer.accelerator", "cpu"]
        monkeypatch.chdir(study.base)
        with pytest.raises(SystemExit) as e:
            fit.main([*argv[3:], "--print_config"])
        assert e.value.code == 0
        printed = yaml.safe_load(capsys.readouterr().out)
        assert printed["seed_everything"] == 0 and printed["trainer"]["max_epochs"] == 2
        assert printed["model"]["init_args"]["patch_size"] == 8

    md = (out / "summary.md").read_text()
    assert "| model | seeds | best val top-1 (%) mean ± std | 95% CI (%) |" in md
    for model in TINY_MODELS:
        acc = results[f"{model}-seed0"]["best_val_acc"]
        assert f"| {model} | 0 | {100 * acc:.2f} | – (1 seed) |" in md
    assert "## Pairwise differences" in md and "1 seed for" in md and "no test is possible" in md
    assert "Device, precision: cpu, " in md and "Machine: " in md
    for name in FIGURES:
        assert (out / name).read_bytes()[:8] == PNG_MAGIC
    ignored = (out / ".gitignore").read_text().splitlines()
    assert "lightning_logs/*/*/checkpoints/" in ignored and "lightning_logs/*/*.restarted-*/" in ignored


@pytest.mark.slow  # end to end: compare and its fit processes
def test_identical_rerun_reuses_finished_runs(study, capsys):
    before = snapshot(study.out)
    compare.main(study.args)
    stdout = capsys.readouterr().out
    assert "2 already finished (reused), 0 to train" in stdout and "[1/2]" not in stdout
    assert snapshot(study.out) == before  # no run trained, no file touched: results, logs, run folders
    assert (study.out / "summary.md").is_file()


LEARNED = ("epoch", "step", "val_acc", "val_loss", "train_loss", "train_acc")  # a history entry less its wall time


@pytest.mark.slow
def test_two_runs_at_once_give_the_results_of_one_at_a_time(study, tmp_path):
    """`--jobs 2` through the real command trains both runs side by side (each on its own share of the cores, its
    output in its own log) and gives the result files of the study trained one run at a time: the data order and
    crops are a function of (seed, epoch), not of what else runs."""
    out = tmp_path / "study"
    r = run_cli("convmixer_lit.compare", *study_args(study.preset, out, study.root, "--jobs", "2"), cwd=study.base)
    assert r.returncode == 0, r.stdout + r.stderr
    lines = r.stdout.splitlines()
    assert "study: 2 runs" in lines[0] and "2 to train, up to 2 at a time" in lines[0]
    logs = tuple(f"training (log: {out / 'logs' / name}.log)" for name in ("convmixer-seed0", "vit-seed0"))
    started = [i for i, line in enumerate(lines) if line.endswith(logs)]
    finished = [i for i, line in enumerate(lines) if "best val top-1" in line]
    assert len(started) == len(finished) == 2 and max(started) < min(finished)  # both in flight together
    assert "1/2 done, 1 in flight" in r.stdout and "2/2 done," in r.stdout
    for name in ("convmixer-seed0", "vit-seed0"):
        alone = json.loads((study.out / "results" / f"{name}.json").read_text())
        paired = json.loads((out / "results" / f"{name}.json").read_text())
        assert paired["best_val_acc"] == alone["best_val_acc"] and paired["global_step"] == alone["global_step"]
        assert len(paired["history"]) == len(alone["history"]) == 2
        for got, want in zip(paired["history"], alone["history"]):  # the threads per run differ: sums may round
            assert {k: got[k] for k in LEARNED} == pytest.approx({k: want[k] for k in LEARNED}, rel=1e-4)
        log = (out / "logs" / f"{name}.log").read_text()
        assert log.count("\n=== ") == 1 and "--run_name seed0" in log  # one fit, its own log
        assert f", {max(1, len(os.sched_getaffinity(0)) // 2)} cores" in log  # fit's machine line: half the cores
        assert paired["torch_threads"] == max(1, len(os.sched_getaffinity(0)) // 2)  # what the report reads
    assert len(read_csv(out / "summary.csv")) == 2


@pytest.mark.slow  # end to end: compare and its fit processes
def test_reordered_flags_and_a_moved_data_folder_are_the_same_study(study, tmp_path, capsys):
    """Flag order is not a setting, and neither is where the data lives (the study continues on another machine) or
    which input pipeline reads it (the same augmentation, identical validation images)."""
    out, _ = copy_study(study, tmp_path)
    moved = tmp_path / "moved-data"
    shutil.copytree(study.root, moved)
    before = snapshot(out)
    compare.main(["--preset", str(study.preset), "--models", *TINY_MODELS, "--output", str(out),
                  "--trainer.accelerator=cpu", "--data.root", str(moved), "--data.pipeline", "standard"])
    assert "2 already finished (reused), 0 to train" in capsys.readouterr().out
    assert snapshot(out) == before
    assert flag_settings(["--a", "1", "--b=2", "--c", "x", "y", "--a", "3", "--data.root", "/d",
                          "--data.pipeline=fast"]) == {"--a": ["3"], "--b": ["2"], "--c": ["x", "y"]}


@pytest.mark.slow  # end to end: compare and its fit processes
def test_rerun_with_other_settings_is_refused_in_one_line(study, tmp_path, capsys):
    out, args = copy_study(study, tmp_path)
    before = snapshot(out)
    with pytest.raises(SystemExit) as e:
        compare.main([*args, "--trainer.max_epochs", "3"])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {out / 'results' / 'convmixer-seed0.json'} was made with "
                                               f"other settings")
    assert "--trainer.max_epochs 3" in err[0] and "use another --output" in err[0]
    # an edited config file is other settings too
    preset = tmp_path / "preset"
    shutil.copytree(study.preset, preset)
    config = yaml.safe_load((preset / "vit.yaml").read_text())
    config["model"]["init_args"]["lr"] = 0.002
    (preset / "vit.yaml").write_text(yaml.safe_dump(config))
    with pytest.raises(SystemExit) as e:
        compare.main(study_args(preset, out, study.root, models=("vit",)))
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "vit-seed0.json was made with other settings" in err[0]
    assert snapshot(out) == before


@pytest.mark.slow  # end to end: compare and its fit processes
def test_lost_result_is_copied_from_the_finished_run_not_retrained(study, tmp_path, capsys):
    out, args = copy_study(study, tmp_path)
    lost = out / "results" / "vit-seed0.json"
    expected = json.loads(lost.read_text())
    lost.unlink()
    log = (out / "logs" / "vit-seed0.log").read_text()
    compare.main(args)
    stdout = capsys.readouterr().out
    assert "1 already finished (reused), 1 to train" in stdout
    assert "[2/2] vit seed 0: finished earlier, result copied from" in stdout
    got = json.loads(lost.read_text())
    assert got["best_val_acc"] == expected["best_val_acc"] and got["history"] == expected["history"]
    assert got["study"]["config"] == expected["study"]["config"]
    assert (out / "logs" / "vit-seed0.log").read_text() == log  # no fit ran
    assert len(read_csv(out / "summary.csv")) == 2


@pytest.mark.slow  # end to end: compare and its fit processes
def test_interrupted_run_is_not_resumed_with_other_settings(study, tmp_path, capsys):
    out, args = copy_study(study, tmp_path)
    # as if killed after its last checkpoint: no result anywhere, a last.ckpt in the run folder
    (out / "results" / "convmixer-seed0.json").unlink()
    run_dir = out / "lightning_logs" / "convmixer" / "seed0"
    (run_dir / "result.json").unlink()
    before = snapshot(out)
    with pytest.raises(SystemExit) as e:
        compare.main(study_args(study.preset, out, study.root, "--model.lr", "0.05", models=("convmixer",)))
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {run_dir} was made with other settings")
    assert snapshot(out) == before


@pytest.mark.slow  # end to end: compare and its fit processes
def test_killed_study_resumes_from_the_last_checkpoint(fake_root, tmp_path, capsys):
    """SIGKILL the study (and its fit) mid-training; the same command continues the run from its last.ckpt."""
    preset = make_preset(tmp_path / "preset", max_epochs=4, models=("convmixer",))
    out = tmp_path / "study"
    args = study_args(preset, out, fake_root, models=("convmixer",))
    ckpt = out / "lightning_logs" / "convmixer" / "seed0" / "checkpoints" / "last.ckpt"
    proc = subprocess.Popen([sys.executable, "-m", "convmixer_lit.compare", *args], cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while not ckpt.is_file():  # the end of the first epoch
            assert proc.poll() is None, "the study ended before its first checkpoint"
            assert time.monotonic() < deadline, "no checkpoint after 120 s"
            time.sleep(0.02)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # compare and its fit child: their own process group
        proc.wait()
    assert not (ckpt.parent.parent / "result.json").exists(), "the run finished before it could be killed"
    assert not list(out.glob("results/*.json"))
    killed_at = torch.load(ckpt, weights_only=False, map_location="cpu")["epoch"]
    assert killed_at < 3

    compare.main(args)
    stdout = capsys.readouterr().out
    assert "[1/1] convmixer seed 0: resuming from its last checkpoint" in stdout
    result = json.loads((out / "results" / "convmixer-seed0.json").read_text())
    assert result["completed"] and result["epochs"] == 4 and result["global_step"] == 4 * 4
    assert [h["epoch"] for h in result["history"]] == [0, 1, 2, 3]  # the first epochs from the checkpoint
    assert all(h["train_loss"] is not None and h["train_acc"] is not None for h in result["history"])
    log = (out / "logs" / "convmixer-seed0.log").read_text()
    assert log.count("\n=== ") == 2 and log.rstrip().count("--ckpt_path last") == 1
    assert not list(ckpt.parent.parent.parent.glob("seed0.restarted-*"))  # resumed in place, nothing moved


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.slow  # end to end: compare and its fit processes
def test_sigterm_to_the_study_stops_its_fit_too_and_the_study_resumes(fake_root, tmp_path, capsys):
    """`kill PID` (or a scheduler's SIGTERM) reaches only compare: it must pass it on, not leave its fit running."""
    preset = make_preset(tmp_path / "preset", max_epochs=4, models=("convmixer",))
    out = tmp_path / "study"
    args = study_args(preset, out, fake_root, models=("convmixer",))
    ckpt = out / "lightning_logs" / "convmixer" / "seed0" / "checkpoints" / "last.ckpt"
    proc = subprocess.Popen([sys.executable, "-m", "convmixer_lit.compare", *args], cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while not ckpt.is_file():
            assert proc.poll() is None, "the study ended before its first checkpoint"
            assert time.monotonic() < deadline, "no checkpoint after 120 s"
            time.sleep(0.02)
        proc.send_signal(signal.SIGTERM)  # to compare alone, not its process group
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 143
        assert err.strip().splitlines()[-1].startswith("terminated: rerun the same command to continue")
        deadline = time.monotonic() + 10  # nothing of the study is left running, the fit child included
        while group_alive(proc.pid):
            assert time.monotonic() < deadline, "the fit child was left running after compare exited"
            time.sleep(0.05)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    assert not (ckpt.parent.parent / "result.json").exists(), "the run finished before it could be stopped"
    compare.main(args)
    assert "resuming from its last checkpoint" in capsys.readouterr().out
    assert json.loads((out / "results" / "convmixer-seed0.json").read_text())["epochs"] == 4


def test_run_folder_without_checkpoint_is_moved_aside_never_deleted(tmp_path, capsys):
    run = Run("convmixer", 0, tmp_path / "convmixer.yaml", "convmixer", tmp_path)
    for n in (1, 2):
        run.run_dir.mkdir(parents=True)
        (run.run_dir / "events.out").write_text(f"attempt {n}")
        assert prepare_run_dir(run) is False
        assert not run.run_dir.exists()
        assert (run.run_dir.with_name(f"seed0.restarted-{n}") / "events.out").read_text() == f"attempt {n}"
    assert "moved to seed0.restarted-2" in capsys.readouterr().out
    (run.run_dir / "checkpoints").mkdir(parents=True)
    (run.run_dir / "checkpoints" / "last.ckpt").write_bytes(b"")
    assert prepare_run_dir(run) is True and run.run_dir.is_dir()  # resumed, not moved


# ---- the report on known numbers ----------------------------------------------------------------------------
def fake_result(entry: str, seed: int, acc: float | None) -> dict:
    return {"model": entry, "seed": seed, "parameters": 1_000_000, "train_flops_per_image": 3e9,
            "best_val_acc": acc, "final_val_acc": None if acc is None else acc - 0.01, "best_val_loss": 1.0,
            "epochs": 3, "wall_time_s": 120.0 + seed, "train_images_per_s": 100.0, "precision": "32-true",
            "accelerator": "cpu", "history": [{"epoch": e, "val_acc": None if acc is None else acc - 0.1 * (2 - e),
                                               "val_loss": 2.0 - 0.5 * e} for e in range(3)],
            "study": {"entry": entry, "reproduce": f"python -m convmixer_lit.fit --config experiments/{entry}.yaml "
                                                   f"--seed_everything {seed}"}}


def test_report_only_statistics_on_known_numbers(tmp_path, capsys):
    accs = {"alpha": [0.80, 0.82, 0.84], "beta": [0.70, 0.71, 0.72], "gamma": [0.69, 0.72, 0.705], "delta": [0.60],
            "epsilon": [None, None]}
    (tmp_path / "results").mkdir()
    for entry, values in accs.items():
        for seed, acc in enumerate(values):
            (tmp_path / "results" / f"{entry}-seed{seed}.json").write_text(json.dumps(fake_result(entry, seed, acc)))
    compare.main(["--report-only", "--output", str(tmp_path)])
    assert "report: " in capsys.readouterr().out
    md = (tmp_path / "summary.md").read_text()
    # alpha: mean 82, s = 2 (deviations -2, 0, 2); CI 82 +- t_{.975,2} 2 / sqrt(3) = 82 +- 4.302653 * 1.154701 = +-4.97
    # these runs recorded no load: their speed is not shown as the model's own (in parentheses, with the reason)
    assert "| alpha | 0, 1, 2 | 82.00 ± 2.00 | [77.03, 86.97] | 81.00 | 1,000,000 | 3.000 | 2.0 | (100) |" in md
    assert "Train img/s in parentheses: every run of that model shared the machine" in md
    # beta: 71 +- 1, CI half-width 4.302653 / sqrt(3) = 2.48; gamma: 70.5 +- 1.5, half-width 3.73
    assert "| beta | 0, 1, 2 | 71.00 ± 1.00 | [68.52, 73.48] |" in md
    assert "| gamma | 0, 1, 2 | 70.50 ± 1.50 | [66.77, 74.23] |" in md
    assert "| delta | 0 | 60.00 | – (1 seed) |" in md
    assert "| epsilon | 0, 1 | – | – (1 seed) | – |" in md  # no validation: listed, not a crash
    for seed, acc in enumerate(accs["alpha"]):  # alpha's runs had the machine alone: their speed is its own
        alone = {**fake_result("alpha", seed, acc), "torch_threads": 2, "environment": {"cpu_cores": 2},
                 "concurrent_runs": 1, "load_1min_max": 2.1}
        (tmp_path / "results" / f"alpha-seed{seed}.json").write_text(json.dumps(alone))
    compare.main(["--report-only", "--output", str(tmp_path)])
    assert "| 3.000 | 2.0 | 100 |" in (tmp_path / "summary.md").read_text()
    table = [line.split(" | ")[0][2:] for line in md.splitlines() if line.split(" | ")[0][2:] in accs]
    assert table == ["alpha", "beta", "gamma", "delta", "epsilon"]  # best first, no accuracy last
    # alpha vs beta (test_stats: t = 8.5206, df = 50/17, p = 0.00366, CI of the difference [6.84, 15.16] pp)
    assert "| alpha vs beta | +11.00 | [+6.84, +15.16] | 0.00366 |" in md
    assert ("- **alpha beats beta beyond seed noise**: +11.00 pp, 95% CI [+6.84, +15.16] pp, Welch p = 0.00366."
            in md)
    # beta vs gamma: 0.5 pp apart with 1-1.5 pp spread
    w = welch_t_test(accs["beta"], accs["gamma"])
    assert w.p_value > 0.5 and w.ci_low < 0 < w.ci_high
    assert (f"- beta vs gamma: the difference (+0.50 pp, 95% CI [{100 * w.ci_low:+.2f}, {100 * w.ci_high:+.2f}] pp, "
            f"Welch p = {w.p_value:.3g}) is within seed noise." in md)
    assert "- alpha vs delta: 1 seed for delta, so no test is possible" in md
    assert "- gamma vs epsilon: no validation accuracy for epsilon, nothing to compare." in md
    rows = read_csv(tmp_path / "summary.csv")
    assert [r["model"] for r in rows] == ["alpha"] * 3 + ["beta"] * 3 + ["gamma"] * 3 + ["delta"] + ["epsilon"] * 2
    assert rows[0]["command"] == "python -m convmixer_lit.fit --config experiments/alpha.yaml --seed_everything 0"
    assert [float(r["best_val_acc"]) for r in rows[:3]] == accs["alpha"]
    for name in FIGURES:
        assert (tmp_path / name).read_bytes()[:8] == PNG_MAGIC


def test_equal_seeds_are_no_spread_not_a_significant_difference(tmp_path, capsys):
    (tmp_path / "results").mkdir()
    for entry, acc in (("same7", 0.7), ("same6", 0.6)):
        for seed in range(3):
            (tmp_path / "results" / f"{entry}-seed{seed}.json").write_text(json.dumps(fake_result(entry, seed, acc)))
    compare.main(["--report-only", "--output", str(tmp_path)])
    md = (tmp_path / "summary.md").read_text()
    assert "| same7 | 0, 1, 2 | 70.00 ± 0.00 | [70.00, 70.00] |" in md
    assert "- same7 vs same6: no spread across seeds, the test is undefined." in md and "beats" not in md


# ---- errors ---------------------------------------------------------------------------------------------------
@pytest.mark.slow  # end to end: compare and its fit processes
def test_unknown_model_or_preset_is_one_line_exit_2(tmp_path, capsys):
    preset = make_preset(tmp_path / "preset")
    r = run_cli("convmixer_lit.compare", "--preset", str(preset), "--models", "convmixer", "vitt",
                "--output", str(tmp_path / "out"), cwd=tmp_path)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [f"error: unknown model 'vitt': no {preset / 'vitt.yaml'}; configs in "
                                             f"{preset}: convmixer, vit"]
    with pytest.raises(SystemExit) as e:  # in-process: the same print, without another start-up
        compare.main(["--preset", "no-such-preset", "--models", "convmixer", "--output", str(tmp_path / "out")])
    assert e.value.code == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"error: --preset no-such-preset: no folder {EXPERIMENTS / 'no-such-preset'}; presets: ")
    assert "cpu-study" in line and "full-study" in line and "seed-study" in line
    assert not (tmp_path / "out").exists()  # nothing created


@pytest.mark.slow  # end to end: compare and its fit processes
def test_failed_run_stops_the_study_with_the_fit_error_in_one_line(fake_root, tmp_path, capsys):
    preset = make_preset(tmp_path / "preset", models=("vit",))
    config = yaml.safe_load((preset / "vit.yaml").read_text())
    config["model"]["init_args"]["patch_size"] = 64  # larger than the 32 px images: fit refuses it at start-up
    (preset / "vit.yaml").write_text(yaml.safe_dump(config))
    out = tmp_path / "study"
    with pytest.raises(SystemExit) as e:
        compare.main(study_args(preset, out, fake_root, models=("vit",)))
    assert e.value.code == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("error: vit-seed0 failed (exit 2): --model.patch_size 64 does not fit a 32px image")
    assert f"see {out / 'logs' / 'vit-seed0.log'}" in line and "rerun the same command to continue" in line
    assert "error: --model.patch_size 64" in (out / "logs" / "vit-seed0.log").read_text()
    assert not list(out.glob("results/*.json"))


@pytest.mark.parametrize("argv, message", [
    (["--models", "convmixer", "--trainer.default_root_dir", "x"], "--trainer.default_root_dir is set by compare"),
    (["--report-only"], "no results in"),
])
def test_other_user_errors_are_one_line(argv, message, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        compare.main([*argv, "--output", str(tmp_path / "out")])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0]


def test_a_config_whose_class_is_not_a_model_is_one_line(tmp_path, capsys):
    preset = tmp_path / "preset"
    preset.mkdir()
    (preset / "dict.yaml").write_text(yaml.safe_dump({"model": {"class_path": "collections.OrderedDict"}}))
    with pytest.raises(SystemExit) as e:
        compare.main(["--preset", str(preset), "--models", "dict", "--output", str(tmp_path / "out")])
    assert e.value.code == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"error: {preset / 'dict.yaml'}: collections.OrderedDict is not a model of this kit")
    assert not (tmp_path / "out").exists()


# ---- the shipped presets --------------------------------------------------------------------------------------
PRESET_FOLDERS = sorted(p for p in EXPERIMENTS.iterdir() if p.is_dir() and any(p.glob("*.yaml")))
BUDGET_PRESETS = ("seed-study", "cpu-study")  # sized to the original notebook's models
GRID_EXEMPT = {"seed-study"}  # the original's own patch sizes: ConvMixer 2 (16x16 grid), ViT 4 (8x8)


def load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def test_presets_exist():
    assert {"seed-study", "full-study", "cpu-study"} <= {p.name for p in PRESET_FOLDERS}
    assert {p.stem for p in (EXPERIMENTS / "seed-study").glob("*.yaml")} == {"convmixer", "vit", "resnet9"}
    assert {p.stem for p in (EXPERIMENTS / "full-study").glob("*.yaml")} == {"convmixer", "vit", "resnet18", "resnet9"}


@pytest.mark.parametrize("config", sorted(p for p in EXPERIMENTS.glob("*/*.yaml") if p.name != STUDY_FILE),
                         ids=lambda p: f"{p.parent.name}/{p.stem}")  # experiments/*.yaml: test_fit.py
def test_preset_configs_parse(config, capsys):
    """Every preset config trains as `fit --config` reads it: a cell over its folder's _base.yaml."""
    with pytest.raises(SystemExit) as e:
        fit.main(["--config", str(config), "--print_config"])
    assert e.value.code == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    expected = load_layered(config)
    assert printed["model"]["class_path"] == expected["model"]["class_path"]
    assert printed["trainer"]["max_epochs"] == expected["trainer"]["max_epochs"]
    for key, value in expected["model"].get("init_args", {}).items():
        assert printed["model"]["init_args"][key] == value, key


PAIRED_FOLDERS = [f for f in (EXPERIMENTS, *PRESET_FOLDERS)  # the mixer study has neither: its family is one body
                  if (f / "convmixer.yaml").is_file() and (f / "vit.yaml").is_file()]


def test_the_reference_models_are_in_the_presets_that_compare_them():
    assert {f.name for f in PAIRED_FOLDERS} >= {"experiments", "cpu-study", "seed-study", "full-study"}


@pytest.mark.parametrize("folder", PAIRED_FOLDERS, ids=lambda p: p.name)
def test_convmixer_and_vit_share_a_token_grid(folder):
    cm, vit = load(folder / "convmixer.yaml"), load(folder / "vit.yaml")
    assert cm["data"]["image_size"] == vit["data"]["image_size"]
    patches = cm["model"]["init_args"]["patch_size"], vit["model"]["init_args"]["patch_size"]
    if folder.name in GRID_EXEMPT:  # reproduces the original notebook, which did not match them: documented
        assert patches == (2, 4) and "NOT token-grid matched" in (folder / "vit.yaml").read_text()
    else:
        assert patches[0] == patches[1]


BUDGET_CONFIGS = [p for preset in BUDGET_PRESETS for p in sorted((EXPERIMENTS / preset).glob("*.yaml"))]


@pytest.mark.parametrize("config", BUDGET_CONFIGS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_parameter_budget_of_the_original(config):
    """Every model within the original's 0.8-1.6 M parameters (to the one decimal those are quoted at)."""
    cfg = load(config)
    module, _, name = cfg["model"]["class_path"].rpartition(".")
    cls = getattr(__import__(module, fromlist=[name]), name)
    model = cls(**cfg["model"]["init_args"], num_classes=10, image_size=cfg["data"]["image_size"])
    n = sum(p.numel() for p in model.net.parameters())
    assert 0.75e6 <= n < 1.65e6, f"{config}: {n:,} parameters"  # ResNet9 width 32: 1,646,122 = "1.6 M"


def test_commit_results_commits_each_finished_run_and_nothing_else(tmp_path):
    """experiments/commit-results.sh, beside a running study: a new result file is committed with its study folder,
    and a file staged elsewhere stays out of that commit."""
    repo = tmp_path / "repo"
    (repo / "experiments").mkdir(parents=True)
    shutil.copy(Path(__file__).parents[1] / "experiments" / "commit-results.sh", repo / "experiments")
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "start"], check=True)
    study = repo / "docs" / "results" / "s"
    (study / "tuning" / "results").mkdir(parents=True)
    (study / "tuning" / "results" / "a-trial0-seed0.json").write_text("{}")
    (repo / "unrelated.txt").write_text("mine")
    subprocess.run([*git, "add", "unrelated.txt"], check=True)
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t", "COMMIT_RESULTS_ONCE": "1"}
    subprocess.run(["bash", "experiments/commit-results.sh", "docs/results/s"], cwd=repo, env=env, timeout=60,
                   check=True)
    log = subprocess.run([*git, "log", "-1", "--name-only", "--format=%s"], capture_output=True, text=True).stdout
    assert log.startswith("s: a-trial0-seed0 finished")
    assert "docs/results/s/tuning/results/a-trial0-seed0.json" in log and "unrelated.txt" not in log
    status = subprocess.run([*git, "status", "--short"], capture_output=True, text=True).stdout
    assert "A  unrelated.txt" in status  # still staged, not committed


@pytest.mark.slow  # uses the study fixture (compare and its fit processes)
def test_stop_after_starts_no_run_that_would_not_finish_in_time(study, tmp_path, capsys):
    """`--stop-after`: the finished runs tell how long a run takes; a run expected to outlast the time left is not
    started (it would be lost half-trained), the call says what is left and ends normally, and a rerun continues."""
    out, args = copy_study(study, tmp_path)
    compare.main([*args[:args.index("--seeds") + 1], "0", "1", *args[args.index("--seeds") + 2:],
                  "--stop-after", "0s"])
    printed = capsys.readouterr().out
    assert "2 already finished (reused), 2 to train" in printed
    assert "study: stopped within --stop-after 0m00s: 2 runs left" in printed and "training" not in printed
    assert sorted(p.name for p in (out / "results").glob("*.json")) == ["convmixer-seed0.json", "vit-seed0.json"]


def test_the_next_run_is_the_first_expected_to_finish_in_the_time_left():
    from collections import deque

    from convmixer_lit.study.launchers.local import expected_s, next_fitting
    from convmixer_lit.study.plan import Run

    def run(entry: str) -> Run:
        return Run(entry, 0, Path(f"{entry}.yaml"), "isotropic", Path("out"))

    assert run("patch-conv-trial3").family == "patch-conv" and run("convmixer").family == "convmixer"
    assert run("a-trialx").family == "a-trialx"
    from convmixer_lit.study.plan import split_trial

    assert split_trial("patch-conv-trial12") == ("patch-conv", 12) and split_trial("convmixer") == ("convmixer", None)
    assert split_trial("-trial3") == ("-trial3", None)  # no model before the suffix: not a trial
    assert split_trial("a-trial²") == ("a-trial²", None)  # a digit to str.isdigit, not to int()
    durations = {"patch-attention": [1800.0, 2000.0], "patch-pool": [600.0]}
    assert expected_s(run("patch-attention-trial2"), durations) == 1900.0
    assert expected_s(run("conv-conv-trial0"), durations) == pytest.approx(4400 / 3)  # unseen: every run's mean
    assert expected_s(run("x"), {}) is None
    waiting = deque([run("patch-attention-trial1"), run("patch-pool-trial1"), run("patch-attention-trial2")])
    assert next_fitting(waiting, 1000.0, durations).entry == "patch-pool-trial1"  # the long one waits
    assert [r.entry for r in waiting] == ["patch-attention-trial1", "patch-attention-trial2"]
    assert next_fitting(waiting, 100.0, durations) is None and len(waiting) == 2  # nothing fits: nothing taken
    assert next_fitting(waiting, None, durations).entry == "patch-attention-trial1"  # no limit: the plan's order
    assert next_fitting(deque([run("new")]), 0.0, {}).entry == "new"  # nothing to estimate from: it starts


@pytest.mark.parametrize("flags,says", [
    (["--stop-after", "2x"], "--stop-after '2x': give a duration such as 2h40m"),
    (["--stop-after", "1h", "--launcher", "slurm"], "--stop-after is for --launcher local"),
])
def test_a_bad_stop_after_is_one_error_line(flags, says, tmp_path, fake_root, capsys):
    preset = make_preset(tmp_path / "preset", models=("convmixer",))
    with pytest.raises(SystemExit) as e:
        compare.main([*study_args(preset, tmp_path / "out", fake_root, models=("convmixer",)), *flags])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and says in err[0]
