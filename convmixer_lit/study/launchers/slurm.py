"""A study's runs as SLURM jobs, one job per run, through submitit (DIR/slurm/ holds its scripts, pickles and task
logs; DIR/jobs.json each run's job id).

A call submits what is missing or failed and returns (or, with `--wait`, waits for the jobs); the next call prints
each run's state, submits only what is missing or failed (a queued or running job is never submitted twice), and
the report is rebuilt from the runs finished so far. A job trains its run in a `fit` child process and saves the
result itself (so results record the machine that trained them). When SLURM signals the end of a job's time or a
preemption, submitit calls `FitJob.checkpoint`: the fit is stopped and the job requeued to resume from the run's
last.ckpt, which (the data order being a function of seed and epoch) ends at the step an uninterrupted run ends at.

A run on several devices or nodes (DDP) is one job with one task per device (`--trainer.devices` tasks per node,
`--trainer.num_nodes` nodes): srun starts every task, each runs the same `fit`, and Lightning takes the ranks from
SLURM's variables.
"""

from __future__ import annotations

import fcntl
import math
import os
import shlex
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import submitit
import yaml

from convmixer_lit.callbacks import write_json_atomic
from convmixer_lit.errors import ConfigError, UserError
from convmixer_lit.study.plan import Run, fit_command, trainer_setting
from convmixer_lit.study.process import FitProcess, failure_reason
from convmixer_lit.study.report import refresh_report
from convmixer_lit.study.runs import (
    finished_in_folder,
    has_checkpoint,
    prepare_run_dir,
    read_json,
    save_diverged,
    save_result,
    write_record,
)

JOBS_FILE = "jobs.json"
POLL_S = 30.0  # --wait: how often SLURM is asked about the jobs
MAX_TIMEOUTS = 20  # requeues after the time limit (each resumes from the last epoch; a preemption does not count)
RESOURCES = ("partition", "time", "gpus_per_node", "gpus_per_task", "cpus_per_task", "mem", "account", "additional")
# sacct's states of a job that will still run (its first word: "CANCELLED by 42" is CANCELLED); UNKNOWN is a job
# sacct does not list yet, just after submission
QUEUED = {"PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "CONFIGURING", "RESIZING", "SUSPENDED", "UNKNOWN"}
RUNNING = {"RUNNING", "COMPLETING", "STAGE_OUT", "SIGNALING", "PREEMPTED"}


# ---- resources -------------------------------------------------------------------------------------------------
def minutes(value: Any) -> int:
    """A time limit in minutes, from minutes (240) or SLURM's forms (MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS)."""
    text = str(value).strip()
    try:
        days, _, clock = text.rpartition("-")
        parts = [int(p) for p in clock.split(":")]
        if days:
            h, m, s = (parts + [0, 0])[:3]
        else:
            h, m, s = {1: (0, parts[0], 0), 2: (0, *parts), 3: tuple(parts)}[len(parts)]
        total = (int(days or 0) * 24 + h) * 60 + m + s / 60
    except (ValueError, KeyError):
        raise ConfigError(f"--slurm.time {value}: give minutes (240) or SLURM's D-HH:MM:SS") from None
    if total <= 0:
        raise ConfigError(f"--slurm.time {value}: a job needs a positive time limit")
    return math.ceil(total)


def read_resources(flags: dict[str, Any], config_file: str | None) -> dict[str, Any]:
    """The jobs' resources: the `slurm:` section of `config_file` (or the whole file), overridden by the --slurm.*
    flags that were given. `additional` (extra sbatch options) is a mapping in the file, KEY=VALUE items as flags."""
    merged: dict[str, Any] = {}
    if config_file:
        try:
            data = yaml.safe_load(Path(config_file).read_text()) or {}
        except (OSError, yaml.YAMLError) as e:
            raise ConfigError(f"--slurm.config {config_file}: cannot read it ({e})") from None
        section = data.get("slurm", data) if isinstance(data, dict) else None
        if not isinstance(section, dict) or set(section) - set(RESOURCES):
            unknown = sorted(set(section) - set(RESOURCES)) if isinstance(section, dict) else []
            raise ConfigError(f"--slurm.config {config_file}: expected a mapping of {', '.join(RESOURCES)}"
                              + (f"; unknown: {', '.join(unknown)}" if unknown else ""))
        merged.update(section)
    extra = dict(merged.get("additional") or {})
    for item in flags.get("additional") or []:
        key, sep, value = item.partition("=")
        extra[key.lstrip("-")] = value if sep else True  # a bare KEY is an sbatch flag without a value
    merged.update({k: v for k, v in flags.items() if v is not None and k != "additional"}, additional=extra)
    if merged.get("time") is None:
        raise ConfigError("--launcher slurm needs --slurm.time (each job's time limit, e.g. 240 or 4:00:00); a run "
                          "longer than that is requeued and resumes from its last checkpoint")
    merged["time"] = minutes(merged["time"])
    return merged


def executor_parameters(resources: dict[str, Any], config: dict, passed: list[str]) -> dict[str, Any]:
    """submitit's SlurmExecutor parameters for one run: its resources, and one task per device on each node."""
    devices = trainer_setting(config, passed, "devices")
    nodes = trainer_setting(config, passed, "num_nodes") or 1
    if devices is None and (resources.get("gpus_per_node") or 0) > 1:
        raise ConfigError(f"--slurm.gpus_per_node {resources['gpus_per_node']}: add --trainer.devices "
                          f"{resources['gpus_per_node']} (one SLURM task per device), or ask for one GPU")
    if devices is not None and not (isinstance(devices, int) and devices > 0):
        raise ConfigError(f"--trainer.devices {devices}: with --launcher slurm give a number of devices per node "
                          f"(it is the job's number of tasks per node)")
    params = {k: v for k, v in resources.items() if v is not None and k not in ("mem", "additional")}
    extra = dict(resources.get("additional") or {})
    if resources.get("mem") is not None:
        extra["mem"] = str(resources["mem"])  # SLURM's own syntax (32G), not submitit's GB count
    return {**params, "nodes": nodes, "ntasks_per_node": devices or 1, "additional_parameters": extra}


# ---- what a job runs ---------------------------------------------------------------------------------------------
@contextmanager
def signal_blocked(signum: int) -> Iterator[None]:
    """Children started inside inherit the signal blocked: SLURM sends its time-limit signal to every process of
    the job, and only submitit's handler (in the job's own process) must act on it, not kill the fit."""
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signum})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


class FitJob:
    """What a job runs (pickled by submitit): the run's `fit` in a child process, then, on the first task, its
    result saved to results/. `checkpoint` is submitit's hook when the job reaches its time limit or is preempted:
    it stops the fit and hands back the same run to requeue. Whether to resume is decided when the job starts, from
    the run folder, so a job SLURM itself requeues (from the first submission's pickle) resumes as well."""

    def __init__(self, run: Run, passed: list[str], record: dict, cwd: str) -> None:
        self.run, self.passed, self.record, self.cwd = run, passed, record, cwd
        self._fit: FitProcess | None = None

    def __call__(self) -> float | None:
        rank = submitit.JobEnvironment().global_rank
        # the first task moves aside a folder without a checkpoint; before training starts, every task sees the same
        resume = prepare_run_dir(self.run) if rank == 0 else has_checkpoint(self.run)
        log = self.run.log_path if rank == 0 else self.run.log_path.with_suffix(f".rank{rank}.log")
        with signal_blocked(getattr(signal, f"SIG{submitit.JobEnvironment.USR_SIG}")):
            self._fit = FitProcess(fit_command(self.run, self.passed, resume), log, self.run.label, echo=False,
                                   cwd=self.cwd).start()
        code, tail = self._fit.wait()
        if code != 0 and rank == 0 and save_diverged(self.run, self.record, failure_reason(tail)) is not None:
            return None  # a tuning trial whose loss diverged: saved as a result of the search
        if code != 0 or (rank == 0 and not finished_in_folder(self.run)):
            raise RuntimeError(f"{self.run.name}: fit exited with {code}: {failure_reason(tail)} (log: {log})")
        return save_result(self.run, self.record).get("best_val_acc") if rank == 0 else None

    def checkpoint(self) -> submitit.helpers.DelayedSubmission:
        if self._fit is not None:
            self._fit.stop(terminated=True)  # Lightning ends at the next batch; the epoch's last.ckpt is kept
        return submitit.helpers.DelayedSubmission(FitJob(self.run, self.passed, self.record, self.cwd))


# ---- the study's jobs --------------------------------------------------------------------------------------------
@contextmanager
def study_lock(folder: Path) -> Iterator[None]:
    """One compare at a time submits for a study folder: two at once could each submit the same missing run."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def job_states(job_ids: list[str]) -> dict[str, str]:
    """SLURM's state of each job, from one `sacct` call: its first word ("CANCELLED by 42" is CANCELLED), UNKNOWN
    for a job sacct does not list (yet)."""
    command = ["sacct", "-X", "--parsable2", "--noheader", "-o", "JobID,State", "-j", ",".join(job_ids)]
    try:
        text = subprocess.run(command, capture_output=True, text=True, check=True, timeout=120).stdout
    except (OSError, subprocess.SubprocessError) as e:
        raise UserError(f"cannot ask SLURM for the jobs' states ({shlex.join(command)}: {e}); rerun when sacct "
                        f"works") from None
    states = dict.fromkeys(job_ids, "UNKNOWN")
    for line in text.splitlines():
        job_id, _, state = line.partition("|")
        if job_id in states and state.strip():
            states[job_id] = state.split()[0]
    return states


def describe_failure(run: Run, job_id: str, state: str, folder: Path) -> str:
    """Why a job ended without a result: the fit's error line from the run's log, else submitit's task log."""
    log = run.log_path if run.log_path.is_file() else folder / f"{job_id}_0_log.err"
    tail = log.read_text(errors="replace").splitlines()[-30:] if log.is_file() else []
    return f"job {job_id} {state}: {failure_reason([line.strip() for line in tail if line.strip()])} -- see {log}"


def run_slurm(runs: list[Run], records: dict[Run, dict], configs: dict[str, dict], passed: list[str],
              resources: dict[str, Any], wait: bool = False) -> bool:
    """Print each run's state and submit the runs that have no queued or running job; with `wait`, wait until every
    job has ended. True when every run is finished (the report is then complete)."""
    out = runs[0].out
    folder = out / "slurm"
    print(f"study: {len(runs)} runs in {out}, one SLURM job each (submitit's files: {folder})", flush=True)
    pending: dict[Run, str] = {}
    with study_lock(folder):
        jobs = read_json(out / JOBS_FILE) if (out / JOBS_FILE).is_file() else {}
        known = [jobs[r.name]["job_id"] for r in runs if r.name in jobs and not r.result_path.is_file()]
        states = job_states(known) if known else {}
        executor = None
        for i, run in enumerate(runs, start=1):
            position = f"[{i}/{len(runs)}] {run.label}"
            job_id = jobs.get(run.name, {}).get("job_id")
            state = states.get(job_id, "")
            if not run.result_path.is_file() and finished_in_folder(run):
                save_result(run, records[run])  # the job ended between its fit and its save
            if run.result_path.is_file():
                print(f"{position}: {done_line(run)}", flush=True)
                continue
            if state == "UNKNOWN" and not (folder / f"{job_id}_submitted.pkl").is_file():
                state = "LOST"  # not in sacct, nor submitted from this folder (e.g. a study continued elsewhere)
            if state in QUEUED | RUNNING:
                pending[run] = job_id
                print(f"{position}: {'running' if state in RUNNING else 'queued'} (job {job_id}; log: "
                      f"{run.log_path})", flush=True)
                continue
            if job_id:
                print(f"{position}: failed ({describe_failure(run, job_id, state, folder)})", flush=True)
            executor = executor or make_executor(folder)
            resume = prepare_run_dir(run)
            write_record(run, records[run])
            executor.update_parameters(job_name=run.name, **executor_parameters(resources, configs[run.entry],
                                                                               passed))
            job = executor.submit(FitJob(run, passed, records[run], os.getcwd()))
            jobs[run.name] = {"job_id": job.job_id, "submitted": time.strftime("%Y-%m-%d %H:%M:%S"),
                              "earlier_job_ids": [*jobs.get(run.name, {}).get("earlier_job_ids", []),
                                                  *([job_id] if job_id else [])]}
            write_json_atomic(out / JOBS_FILE, jobs)  # after each submission: an interrupted call loses no job id
            pending[run] = job.job_id
            how = "resuming from its last checkpoint" if resume else "training"
            print(f"{position}: submitted as job {job.job_id} ({how}; log: {run.log_path})", flush=True)
    if not pending:
        return True
    if not wait:
        print(f"{len(runs) - len(pending)} done, {len(pending)} queued or running: rerun the same command to see "
              f"their state and rebuild the report, or add --wait to wait for them", flush=True)
        return False
    wait_for(pending, out, folder)
    return True


def done_line(run: Run) -> str:
    acc = read_json(run.result_path).get("best_val_acc")
    return "done" + (f", best val top-1 {100 * acc:.2f}%" if acc is not None else "")


def make_executor(folder: Path) -> submitit.SlurmExecutor:
    try:
        return submitit.SlurmExecutor(folder=folder, max_num_timeout=MAX_TIMEOUTS)
    except RuntimeError:  # submitit finds no `srun`
        raise ConfigError("--launcher slurm: no `srun` on PATH; run compare where SLURM's commands are (a login "
                          "node)") from None


def wait_for(pending: dict[Run, str], out: Path, folder: Path) -> None:
    """Wait until every pending job has ended, printing each run as it finishes; one error if any failed."""
    failures = []
    total, done = len(pending), 0
    while pending:
        time.sleep(POLL_S)
        states = job_states(list(pending.values()))
        for run, job_id in list(pending.items()):
            live = states[job_id] in QUEUED | RUNNING
            # the result lands before the job ends: wait for its end (UNKNOWN: sacct no longer lists it)
            if run.result_path.is_file() and (not live or states[job_id] == "UNKNOWN"):
                done += 1
                print(f"{run.label}: {done_line(run)} | {done}/{total} of the jobs waited for", flush=True)
                refresh_report(out)
            elif not live:
                failures.append(f"{run.name} failed ({describe_failure(run, job_id, states[job_id], folder)})")
                print(failures[-1], flush=True)
            else:
                continue
            del pending[run]
    if failures:
        raise UserError(f"{failures[0]}. Finished runs are kept: fix the cause and rerun the same command to "
                        f"resubmit" + (f" ({len(failures)} runs failed)" if len(failures) > 1 else ""))
