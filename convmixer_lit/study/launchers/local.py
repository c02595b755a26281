"""A study's runs on this machine: up to `jobs` `fit` processes at once, in the plan's order.

One at a time (the default) each run has the whole machine, exactly as a plain `fit` would. With `--jobs N` the
machine is split between the runs in flight: each gets its own share of the cores (pinned to them, with as many
threads) and, where the runs train on GPUs, its own GPU(s) through CUDA_VISIBLE_DEVICES, so that N small models
train side by side instead of one model spreading over hardware it cannot use.
"""

from __future__ import annotations

import heapq
import os
import time
from collections import deque

import torch

from convmixer_lit.callbacks import JOBS_VARIABLE, RESULT_FILE
from convmixer_lit.errors import UserError
from convmixer_lit.hardware import usable_cores
from convmixer_lit.study.plan import Run, fit_command, trainer_setting
from convmixer_lit.study.process import FitProcess, Terminated, failure_reason
from convmixer_lit.study.report import refresh_report
from convmixer_lit.study.runs import (
    finished_in_folder,
    prepare_run_dir,
    read_json,
    save_diverged,
    save_result,
    write_record,
)

POLL_S = 0.5  # how often the runs in flight are checked for an end
STATUS_EVERY_S = 60.0  # with several runs in flight: how often their progress is printed, one line each


def visible_gpus() -> list[str]:
    """The CUDA devices this process may use, as CUDA_VISIBLE_DEVICES entries for its children (the entries of that
    variable where it is already set, e.g. by a scheduler, so a child gets the device its parent meant)."""
    count = torch.cuda.device_count()
    listed = [g.strip() for g in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if g.strip()]
    return (listed or [str(i) for i in range(count)])[:count]


def slot_resources(slot: int, jobs: int, cpus: list[int], gpus: list[str],
                   devices: int = 1) -> tuple[dict[str, str], list[int] | None]:
    """(environment, cores) for the run in `slot` (0 to jobs-1) when `jobs` run at once: an equal share of `cpus`
    (one core each when there are more runs than cores) and as many threads, and `devices` of `gpus` taken
    round-robin (runs share a GPU when there are more runs than GPUs). One run at a time changes nothing."""
    if jobs == 1:
        return {}, None
    share = max(1, len(cpus) // jobs)
    first = slot * share % len(cpus)
    cores = cpus[first:first + share]
    env = {"OMP_NUM_THREADS": str(len(cores))}  # torch's intra-op threads, and the depthwise kernel's
    if gpus:
        env["CUDA_VISIBLE_DEVICES"] = ",".join(gpus[(slot * devices + k) % len(gpus)] for k in range(devices))
    return env, cores


def devices_per_run(config: dict, passed: list[str]) -> int:
    """GPUs one run trains on: `--trainer.devices` where it is a count, else 1."""
    devices = trainer_setting(config, passed, "devices")
    return devices if isinstance(devices, int) and devices > 0 else 1


def fmt_duration(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


def expected_s(run: Run, durations: dict[str, list[float]]) -> float | None:
    """How long `run` should take: the mean duration of its family's finished runs (a model's seeds, a cell's
    trials), else of all finished runs; None before any run has finished."""
    mine = durations.get(run.family) or [d for ds in durations.values() for d in ds]
    return sum(mine) / len(mine) if mine else None


def eta(queued: list[Run], in_flight: list[tuple[Run, float]], durations: dict[str, list[float]], jobs: int) -> str:
    """When the study should end: each run is expected to take `expected_s`; the runs in flight finish that long
    after they started, and the queued ones follow in order, each on the first of the `jobs` slots to free up."""
    if not any(durations.values()):
        return "ETA after the first run"
    free = [max(0.0, expected_s(r, durations) - elapsed) for r, elapsed in in_flight] + [0.0] * (jobs - len(in_flight))
    heapq.heapify(free)
    for r in queued:
        heapq.heappush(free, heapq.heappop(free) + expected_s(r, durations))
    return f"ETA {fmt_duration(max(free))}"


def next_fitting(waiting: deque[Run], left_s: float | None, durations: dict[str, list[float]]) -> Run | None:
    """The first waiting run expected to finish within `left_s` seconds (any run when there is no limit, or no
    finished run to estimate from yet), taken out of the queue; None when none is expected to fit. A run that
    cannot finish before the study's time is up would be lost half-trained, its core better given to a shorter
    one, or left for the next call."""
    for run in waiting:
        expected = expected_s(run, durations)
        if left_s is None or expected is None or expected <= left_s:
            waiting.remove(run)
            return run
    return None


def run_local(runs: list[Run], records: dict[Run, dict], configs: dict[str, dict], passed: list[str],
              jobs: int = 1, stop_after_s: float | None = None) -> bool:
    """Train every run that is not finished, up to `jobs` at once; print progress and ETA as runs end, and rewrite
    the report after each. A failed run stops the study (after the runs in flight end) with one error. With
    `stop_after_s`, no run starts that is not expected to end within that many seconds of the call (`next_fitting`),
    and the call returns once nothing more fits: True only when every run is finished."""
    out = runs[0].out
    todo = [r for r in runs if not r.result_path.is_file()]
    durations: dict[str, list[float]] = {}
    for r in runs:
        if r not in todo:
            durations.setdefault(r.family, []).append(read_json(r.result_path).get("wall_time_s") or 0)
    print(f"study: {len(runs)} runs in {out}; {len(runs) - len(todo)} already finished (reused), {len(todo)} to "
          f"train" + (f", up to {jobs} at a time" if jobs > 1 else ""), flush=True)
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(usable_cores()))
    gpus = visible_gpus()
    waiting = deque(todo)
    done = len(runs) - len(todo)
    active: dict[int, tuple[Run, FitProcess, str]] = {}  # slot -> (run, its fit, its position label)
    failures: list[UserError] = []
    t0 = last_status = time.monotonic()

    def finished(position: str, result: dict) -> None:
        nonlocal done
        done += 1
        refresh_report(out)
        acc = result.get("best_val_acc")
        flight = [(r, fit.elapsed) for r, fit, _ in active.values()]
        print(f"{position}: best val top-1 {100 * acc:.2f}% | {done}/{len(runs)} done"
              f"{f', {len(flight)} in flight' if flight else ''}, elapsed {fmt_duration(time.monotonic() - t0)}, "
              f"{eta(list(waiting), flight, durations, jobs)}"
              if acc is not None else f"{position}: done (no validation result)", flush=True)

    try:
        while True:
            while waiting and len(active) < jobs and not failures:
                left = None if stop_after_s is None else stop_after_s - (time.monotonic() - t0)
                run = next_fitting(waiting, left, durations)
                if run is None:
                    break
                position = f"[{len(runs) - len(waiting)}/{len(runs)}] {run.label}"
                if finished_in_folder(run):
                    result = save_result(run, records[run])
                    print(f"{position}: finished earlier, result copied from {run.run_dir / RESULT_FILE}", flush=True)
                    finished(position, result)
                    continue
                slot = min(set(range(jobs)) - set(active))
                resume = prepare_run_dir(run)
                print(f"{position}: {'resuming from its last checkpoint' if resume else 'training'} "
                      f"(log: {run.log_path})", flush=True)
                write_record(run, records[run])
                uses_gpu = trainer_setting(configs[run.entry], passed, "accelerator") != "cpu"
                env, cores = slot_resources(slot, jobs, cpus, gpus if uses_gpu else [],
                                            devices_per_run(configs[run.entry], passed))
                env[JOBS_VARIABLE] = str(jobs)  # recorded in its result: how many trained at once
                fit = FitProcess(fit_command(run, passed, resume), run.log_path, run.label, env=env,
                                 cpus=cores if hasattr(os, "sched_setaffinity") else None, echo=jobs == 1)
                active[slot] = (run, fit.start(), position)
            if not active:
                break
            time.sleep(POLL_S)
            if jobs > 1 and time.monotonic() - last_status >= STATUS_EVERY_S:
                last_status = time.monotonic()
                for run, fit, _ in active.values():
                    print(f"    {run.label} | {fit.relay.progress or f'running for {fmt_duration(fit.elapsed)}'}",
                          flush=True)
            for slot in [s for s, (_, fit, _) in active.items() if fit.poll() is not None]:
                run, fit, position = active.pop(slot)
                code, tail = fit.wait()
                if code != 0 or not finished_in_folder(run):
                    why = failure_reason(tail)
                    diverged = save_diverged(run, records[run], why)
                    if diverged is not None:
                        print(f"{position}: diverged ({why}); a result of the search, not a failure", flush=True)
                        finished(position, diverged)
                        continue
                    failures.append(UserError(f"{run.name} failed (exit {code}): {why} -- see {run.log_path}. "
                                              f"Finished runs are kept: fix the cause and rerun the same command "
                                              f"to continue"))
                    if active:
                        print(f"{position}: failed (exit {code}): {why}; the {len(active)} runs in flight go on, "
                              f"then the study stops", flush=True)
                    continue
                durations.setdefault(run.family, []).append(fit.elapsed)
                finished(position, save_result(run, records[run]))
    except KeyboardInterrupt as stop:
        for _, fit, _ in active.values():
            fit.stop(terminated=isinstance(stop, Terminated))
        raise
    if failures:
        refresh_report(out)
        raise failures[0]
    if waiting:
        print(f"study: stopped within --stop-after {fmt_duration(stop_after_s)}: {len(waiting)} run"
              f"{'s' * (len(waiting) > 1)} left, none expected to finish in the time left; run the same command "
              f"again to continue", flush=True)
        return False
    return True
