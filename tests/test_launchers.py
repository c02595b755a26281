"""The study launchers: how `--jobs N` splits this machine between runs, and `--launcher slurm` end to end against
stand-in SLURM commands that run each job here (tests/slurm_standin.py): submission, the state of each run on the
next call (nothing submitted twice), and a job preempted mid-run that is requeued and ends where an uninterrupted
run ends. `--jobs 2` through the real command is in test_compare.py (it reuses that module's study)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from pathlib import Path

import pytest
import slurm_standin
import torch
import yaml
from test_compare import TINY_MODELS, make_preset, read_csv, study_args

from convmixer_lit import compare
from convmixer_lit.errors import ConfigError
from convmixer_lit.study.launchers import local, slurm
from convmixer_lit.study.plan import Run

from conftest import run_cli


# ---- local: one machine split between runs ------------------------------------------------------------------
def test_runs_at_once_split_the_cores_and_take_their_own_gpus():
    cpus, gpus = list(range(8)), ["0", "1"]
    assert local.slot_resources(0, 1, cpus, gpus) == ({}, None)  # one at a time: the whole machine, untouched
    shares = [local.slot_resources(slot, 4, cpus, gpus) for slot in range(4)]
    assert [cores for _, cores in shares] == [[0, 1], [2, 3], [4, 5], [6, 7]]
    assert [env["OMP_NUM_THREADS"] for env, _ in shares] == ["2"] * 4
    assert [env["CUDA_VISIBLE_DEVICES"] for env, _ in shares] == ["0", "1", "0", "1"]  # round-robin
    # more runs than cores: one core each, in turn; two GPUs per run out of four
    assert [local.slot_resources(slot, 3, [0, 1], [])[1] for slot in range(3)] == [[0], [1], [0]]
    assert "CUDA_VISIBLE_DEVICES" not in local.slot_resources(0, 3, [0, 1], [])[0]  # CPU runs: no GPU to give
    assert [local.slot_resources(slot, 2, cpus, ["0", "1", "2", "3"], devices=2)[0]["CUDA_VISIBLE_DEVICES"]
            for slot in range(2)] == ["0,1", "2,3"]


def test_visible_gpus_follow_the_device_count_and_an_existing_mask(monkeypatch):
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 3)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert local.visible_gpus() == ["0", "1", "2"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,6,7")  # a scheduler gave us these: children get the same ids
    assert local.visible_gpus() == ["4", "6", "7"]
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    assert local.visible_gpus() == []


def test_eta_counts_the_runs_in_flight():
    run = Run("a", 0, Path("a.yaml"), "a", Path("out"))
    durations = {"a": [100.0]}
    assert local.eta([run, run], [], durations, jobs=1) == "ETA 3m20s"  # one after the other
    # two slots: one run 40 s into its 100 s, the other slot free; the two queued runs take a slot each
    assert local.eta([run, run], [(run, 40.0)], durations, jobs=2) == "ETA 2m40s"
    assert local.eta([run], [], {}, jobs=2) == "ETA after the first run"


# ---- slurm: resources --------------------------------------------------------------------------------------
def test_slurm_time_limits_in_minutes():
    assert [slurm.minutes(v) for v in (240, "240", "4:00:00", "30:30", "1-00:00:00", "2-12")] == \
        [240, 240, 240, 31, 1440, 3600]
    for bad in ("four hours", "0", "1:2:3:4"):
        with pytest.raises(ConfigError, match="--slurm.time"):
            slurm.minutes(bad)


def test_slurm_resources_from_a_yaml_section_and_flags(tmp_path):
    path = tmp_path / "cluster.yaml"
    path.write_text(yaml.safe_dump({"slurm": {"partition": "gpu", "time": "12:00:00", "mem": "32G",
                                              "additional": {"qos": "normal", "exclusive": True}}}))
    flags = {"partition": "debug", "time": None, "gpus_per_node": 4, "additional": ["qos=high", "--constraint=a100"]}
    resources = slurm.read_resources(flags, str(path))
    assert resources["partition"] == "debug" and resources["time"] == 720  # flags win over the file
    assert resources["additional"] == {"qos": "high", "exclusive": True, "constraint": "a100"}
    params = slurm.executor_parameters(resources, {"trainer": {}}, ["--trainer.devices", "4", "--trainer.num_nodes",
                                                                    "2"])
    assert params["ntasks_per_node"] == 4 and params["nodes"] == 2  # one task per device: DDP ranks from srun
    assert params["additional_parameters"]["mem"] == "32G" and "mem" not in params
    with pytest.raises(ConfigError, match="add --trainer.devices 4"):
        slurm.executor_parameters(resources, {"trainer": {}}, [])
    with pytest.raises(ConfigError, match="--launcher slurm needs --slurm.time"):
        slurm.read_resources({"partition": "gpu"}, None)
    path.write_text(yaml.safe_dump({"slurm": {"partitoin": "gpu"}}))
    with pytest.raises(ConfigError, match="unknown: partitoin"):
        slurm.read_resources({}, str(path))


@pytest.mark.parametrize("argv, message", [
    (["--jobs", "2", "--launcher", "slurm", "--slurm.time", "5"], "--jobs is for --launcher local"),
    (["--slurm.time", "5"], "--slurm.time is for --launcher slurm"),
    (["--wait"], "--wait is for --launcher slurm"),
    (["--jobs", "0"], "--jobs 0: give 1 or more"),
    (["--launcher", "slurm"], "--launcher slurm needs --slurm.time"),
])
def test_launcher_flag_mistakes_are_one_line(argv, message, tmp_path, capsys):
    preset = make_preset(tmp_path / "preset", models=("convmixer",))
    with pytest.raises(SystemExit) as e:
        compare.main(["--preset", str(preset), "--models", "convmixer", "--output", str(tmp_path / "out"), *argv])
    assert e.value.code == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("error: ") and message in line
    assert not (tmp_path / "out").exists()


# ---- slurm: end to end against stand-in commands -----------------------------------------------------------------
@pytest.fixture
def standin(tmp_path, monkeypatch):
    """SLURM's commands on PATH, running each job on this machine; its state folder."""
    state = tmp_path / "slurm-state"
    slurm_standin.install(tmp_path / "slurm-bin", state)
    monkeypatch.setenv("PATH", f"{tmp_path / 'slurm-bin'}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv(slurm_standin.STATE_ENV, str(state))
    monkeypatch.setattr(slurm, "POLL_S", 0.5)
    yield state
    slurm_standin.cleanup()


def wait_until(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"{what}: not after {timeout:.0f} s"
        time.sleep(0.02)


def test_wait_ends_when_the_job_has_ended_not_when_its_result_lands(tmp_path, monkeypatch, capsys):
    """A run writes its result just before its job ends: `--wait` returns once SLURM says the job ended (the
    allocation is free, a crash after the result shows), and a job sacct no longer lists counts by its result."""
    runs = [Run("a", 0, tmp_path / "a.yaml", "isotropic", tmp_path), Run("b", 0, tmp_path / "b.yaml", "isotropic",
                                                                           tmp_path)]
    for run in runs:
        run.result_path.parent.mkdir(parents=True, exist_ok=True)
        run.result_path.write_text(json.dumps({"best_val_acc": 0.5}))
    polls = iter([{"1": "RUNNING", "2": "COMPLETING"}, {"1": "COMPLETED", "2": "COMPLETING"},
                  {"2": "UNKNOWN"}])
    seen = []
    monkeypatch.setattr(slurm, "POLL_S", 0)
    monkeypatch.setattr(slurm, "job_states", lambda ids: seen.append(list(ids)) or next(polls))
    monkeypatch.setattr(slurm, "refresh_report", lambda out: None)
    slurm.wait_for({runs[0]: "1", runs[1]: "2"}, tmp_path, tmp_path)
    assert seen == [["1", "2"], ["1", "2"], ["2"]]  # nothing done on the first poll although both results exist
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("a seed 0: done") and "1/2" in out[0]
    assert out[1].startswith("b seed 0: done") and "2/2" in out[1]


LEARNED = ("epoch", "step", "val_acc", "val_loss", "train_loss", "train_acc")  # a history entry less its wall time


@pytest.mark.slow
def test_slurm_jobs_are_submitted_once_and_a_preempted_one_resumes_at_the_same_step(standin, fake_root, tmp_path,
                                                                                    capsys):
    """Two identical runs (configs `a` and `b`, one seed) as two jobs: a second call while they are queued or
    running submits nothing; job 1 gets SLURM's time-limit signal mid-run, submitit's handler stops its fit and
    requeues it, and the requeued job resumes from last.ckpt and ends at run b's step with run b's history."""
    preset = tmp_path / "preset"
    preset.mkdir()
    config = yaml.safe_load((make_preset(tmp_path / "tiny", max_epochs=4, models=("convmixer",))
                             / "convmixer.yaml").read_text())
    for name in ("a", "b"):
        (preset / f"{name}.yaml").write_text(yaml.safe_dump(config))
    out = tmp_path / "study"
    args = [*study_args(preset, out, fake_root, models=("a", "b")), "--launcher", "slurm", "--slurm.time", "10",
            "--slurm.partition", "standin", "--slurm.mem", "2G", "--slurm.additional", "qos=test"]
    submissions = standin / "sbatch.log"

    r = run_cli("convmixer_lit.compare", *args, cwd=tmp_path)  # the real command: submits and returns
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"[1/2] a seed 0: submitted as job 1 (training; log: {out / 'logs' / 'a-seed0.log'})" in r.stdout
    assert "[2/2] b seed 0: submitted as job 2 (training" in r.stdout
    assert "0 done, 2 queued or running" in r.stdout and "report: none yet" in r.stdout
    jobs = json.loads((out / "jobs.json").read_text())
    assert {name: job["job_id"] for name, job in jobs.items()} == {"a-seed0": "1", "b-seed0": "2"}
    script = (out / "slurm" / "1_submission.sh").read_text()
    for line in ("--partition=standin", "--time=10", "--mem=2G", "--qos=test", "--ntasks-per-node=1",
                 "--nodes=1", "--job-name=a-seed0"):
        assert f"#SBATCH {line}\n" in script

    # a second call while the jobs are queued or running: their state, and nothing submitted again
    compare.main(args)
    stdout = capsys.readouterr().out
    assert re.search(r"\[1/2\] a seed 0: (queued|running) \(job 1; log: ", stdout), stdout
    assert re.search(r"\[2/2\] b seed 0: (queued|running) \(job 2; log: ", stdout), stdout
    assert submissions.read_text().split() == ["1", "2"]

    # the time-limit signal to job 1's step once its run has a checkpoint (the fit ignores it; submitit acts)
    ckpt = out / "lightning_logs" / "convmixer" / "a-seed0" / "checkpoints" / "last.ckpt"
    wait_until(ckpt.is_file, 240, "job 1's first checkpoint")
    subprocess.run(["scancel", "--signal", "USR2", "1"], check=True)
    wait_until(lambda: slurm_standin.read_job("1")["restarts"] == 1, 120, "job 1 requeued after the signal")

    compare.main([*args, "--wait"])  # waits for both jobs, then writes the whole report
    stdout = capsys.readouterr().out
    assert submissions.read_text().split() == ["1", "2"]  # the requeued job kept its id: nothing resubmitted
    assert "a seed 0: done" in stdout and "b seed 0: done" in stdout and "summary.md" in stdout
    assert len(read_csv(out / "summary.csv")) == 2
    assert slurm_standin.read_job("1")["state"] == slurm_standin.read_job("2")["state"] == "COMPLETED"

    a, b = (json.loads((out / "results" / f"{name}-seed0.json").read_text()) for name in ("a", "b"))
    attempts = (out / "logs" / "a-seed0.log").read_text().split("\n=== ")[1:]
    commands = [attempt.splitlines()[0] for attempt in attempts]
    assert len(attempts) == 2 and "--ckpt_path last" not in commands[0] and commands[1].endswith("--ckpt_path last")
    assert "interrupted" in attempts[0] and "best val top-1" not in attempts[0]  # stopped before the end
    assert a["completed"] and a["epochs"] == 4 and a["global_step"] == b["global_step"] == 4 * 4
    assert [{k: h[k] for k in LEARNED} for h in a["history"]] == [{k: h[k] for k in LEARNED} for h in b["history"]]
    assert a["study"]["config"]["model"] == TINY_MODELS["convmixer"] and a["environment"]["python"]


@pytest.mark.slow
def test_a_failed_job_is_one_line_with_wait_and_resubmitted_by_the_next_call(standin, fake_root, tmp_path, capsys):
    preset = make_preset(tmp_path / "preset", models=("vit",))
    config = yaml.safe_load((preset / "vit.yaml").read_text())
    config["model"]["init_args"]["patch_size"] = 64  # larger than the 32 px images: fit refuses it at start-up
    (preset / "vit.yaml").write_text(yaml.safe_dump(config))
    out = tmp_path / "study"
    args = [*study_args(preset, out, fake_root, models=("vit",)), "--launcher", "slurm", "--slurm.time", "10"]
    with pytest.raises(SystemExit) as e:
        compare.main([*args, "--wait"])
    assert e.value.code == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("error: vit-seed0 failed (job 1 FAILED: --model.patch_size 64 does not fit a 32px image")
    assert f"see {out / 'logs' / 'vit-seed0.log'}" in line and "rerun the same command to resubmit" in line

    compare.main(args)  # the failed run is submitted again (a fixed config would now train)
    stdout = capsys.readouterr().out
    assert "[1/1] vit seed 0: failed (job 1 FAILED: --model.patch_size 64" in stdout
    assert "submitted as job 2 (training" in stdout and "report: none yet" in stdout
    assert json.loads((out / "jobs.json").read_text())["vit-seed0"]["earlier_job_ids"] == ["1"]
    wait_until(lambda: slurm_standin.read_job("2")["state"] == "FAILED", 120, "job 2 ended")


@pytest.mark.slow
def test_a_tuned_study_on_slurm_submits_its_trials_then_its_finals(standin, fake_root, tmp_path, capsys):
    """The tuning stage through the SLURM launcher: the first call submits the trials and returns; a call with
    --wait waits for them, submits each model's finals with the chosen configuration, and waits for those."""
    from test_tuning import make_tuned_preset

    preset = make_tuned_preset(tmp_path / "preset")
    out = tmp_path / "study"
    args = ["--preset", str(preset), "--models", "narrow", "--output", str(out), "--data.root", str(fake_root),
            "--trainer.accelerator", "cpu", "--launcher", "slurm", "--slurm.time", "10"]
    r = run_cli("convmixer_lit.compare", *args, cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "[1/2] narrow-trial0 seed 0: submitted as job 1" in r.stdout and "finals:" not in r.stdout
    compare.main([*args, "--wait"])
    stdout = capsys.readouterr().out
    assert "tuned narrow:" in stdout and "finals: 1 tuned models x seeds 1" in stdout
    assert "narrow seed 1: submitted as job 3" in stdout
    final = json.loads((out / "results" / "narrow-seed1.json").read_text())
    trials = [json.loads((out / "tuning" / "results" / f"narrow-trial{n}-seed0.json").read_text()) for n in (0, 1)]
    best = max(trials, key=lambda t: (t["best_val_acc"], -t["study"]["trial"]))
    assert final["hparams"]["lr"] == pytest.approx(best["hparams"]["lr"]) and final["holdout"] is None
    assert (out / "tuning.md").is_file()
