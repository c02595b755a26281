"""What a run's files say, whichever launcher ran it: finished (its `results/<run>.json`), finished but not yet
copied there, interrupted with a checkpoint to resume, or not started; and how a finished run is saved.

`results/<entry>-seed<S>.json`, a copy of the run folder's `result.json` with the study record and the machine, is
what marks a run done, not its checkpoint: so a study folder can be committed without checkpoints and continued in
another session, and its report rebuilt from those files alone.
"""

from __future__ import annotations

import json
from pathlib import Path

from convmixer_lit.callbacks import RESULT_FILE, write_json_atomic  # what convmixer_lit.fit writes into each run folder
from convmixer_lit.errors import ConfigError
from convmixer_lit.hardware import environment
from convmixer_lit.study.plan import Run, check_same_study, run_flushes, run_precision


def read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ConfigError(f"{path} is not a readable result file ({e}); move it away and rerun") from None


def has_checkpoint(run: Run) -> bool:
    return (run.run_dir / "checkpoints" / "last.ckpt").is_file()


def finished_in_folder(run: Run) -> bool:
    """A run whose fit completed but whose result was not copied yet (compare stopped in between)."""
    path = run.run_dir / RESULT_FILE
    if not path.is_file():
        return False
    try:
        return bool(json.loads(path.read_text()).get("completed"))
    except (OSError, json.JSONDecodeError):
        return False


def check_reusable(runs: list[Run], records: dict[Run, dict]) -> None:
    """Refuse, before anything is launched, a finished or interrupted run made with other settings than this call."""
    for r in runs:
        if r.result_path.is_file():
            check_same_study(r.result_path, read_json(r.result_path).get("study", {}), records[r])
        elif r.record_path.is_file() and (finished_in_folder(r) or has_checkpoint(r)):
            # an interrupted run: its checkpoint (or its finished result) is reused only under the same settings
            check_same_study(r.run_dir, read_json(r.record_path), records[r])


def prepare_run_dir(run: Run) -> bool:
    """True when the run folder holds a checkpoint to resume; a folder without one is moved aside, never deleted."""
    if has_checkpoint(run):
        return True
    if run.run_dir.exists():
        n = 1
        while (aside := run.run_dir.with_name(f"{run.run_dir.name}.restarted-{n}")).exists():
            n += 1
        run.run_dir.rename(aside)
        print(f"    {run.run_dir} had no checkpoint: moved to {aside.name}, starting that run again", flush=True)
    return False


def write_record(run: Run, record: dict) -> None:
    """Store what the run folder's training is started with, for check_reusable when it is interrupted."""
    run.record_path.parent.mkdir(parents=True, exist_ok=True)
    run.record_path.write_text(json.dumps(record, indent=2) + "\n")


def save_result(run: Run, record: dict) -> dict:
    """Copy the run folder's result.json to DIR/results/, with what made it and where (written atomically).

    A SLURM job saves its own run's result, so that `environment` is the node that trained it, not the login node."""
    result = json.loads((run.run_dir / RESULT_FILE).read_text())
    result["study"] = record
    result["environment"] = environment()
    write_json_atomic(run.result_path, result)
    return result


DIVERGED = "the training loss became"  # how fit's one-line error for a non-finite loss begins (callbacks.FiniteLoss)


def save_diverged(run: Run, record: dict, why: str) -> dict | None:
    """A tuning trial (its record has a `trial`) whose loss became non-finite is a result, not a failure: that
    configuration does not train, which is what the search is there to find out. Saved as a result without a score
    (never chosen; the report counts it as chance); None for any other failure, which stays one."""
    if "trial" not in record or not why.startswith(DIVERGED):
        return None
    result = {"model": run.model_name, "seed": run.seed, "completed": False, "diverged": True, "error": why,
              "best_val_acc": None, "final_val_acc": None, "history": [], "study": record,
              "precision": run_precision(record.get("config") or {}, record.get("pass_through") or [], infer=False),
              "flush_denormal": run_flushes(record.get("pass_through") or []), "environment": environment()}
    write_json_atomic(run.result_path, result)
    return result


def check_arithmetic(out: Path, precisions: set[str], flushes: set[bool]) -> None:
    """One arithmetic per study: refuse to add runs in another precision, or with subnormals flushed where the study's
    runs kept them (or the reverse), to a study folder (bf16 on one machine and fp32 on the next, or a 2x faster
    attention cell in half the runs, would confound the comparison). `precisions` and `flushes`: what the runs this
    call will start use (an empty set: not known here). Every result already in the folder counts, trials included;
    a result without `flush_denormal` was made before the flag existed, without flushing."""
    made_p: dict[str, Path] = {}
    made_f: dict[bool, Path] = {}
    for path in [*sorted((out / "results").glob("*.json")), *sorted((out / "tuning" / "results").glob("*.json"))]:
        result = read_json(path)
        if result.get("precision"):
            made_p.setdefault(result["precision"], path)
        made_f.setdefault(bool(result.get("flush_denormal", False)), path)
    if len(set(made_p) | precisions) > 1:
        have = ", ".join(f"{p} ({path.name})" for p, path in made_p.items())
        wanted = ", ".join(sorted(precisions))
        raise ConfigError(f"{out} holds runs trained in {have or wanted}; this call would train in {wanted} (the "
                          f"flags, or this machine's default): a study must not mix precisions. Pass "
                          f"--trainer.precision {next(iter(made_p), next(iter(precisions), ''))}, or pin it in the "
                          f"preset")
    if len(set(made_f) | flushes) > 1:
        old = next(iter(made_f))
        raise ConfigError(f"{out} holds runs made with --flush_denormal {str(old).lower()} ({made_f[old].name}); "
                          f"this call would train with {str(not old).lower()}: a study must not mix them (it changes "
                          f"attention's speed ~2x). Pass --flush_denormal {str(old).lower()} to continue it")


def check_runs_arithmetic(out: Path, runs: list[Run], configs: dict[str, dict], passed: list[str],
                          infer_precision: bool) -> None:
    """check_arithmetic for the `runs` of one call that have no result yet (each with `configs[run.entry]` and the
    pass-through flags): a finished study is never refused, and a precision not pinned is inferred only where the
    run trains here (`infer_precision`; a SLURM job picks its own on its node)."""
    todo = [r for r in runs if not r.result_path.is_file()]
    check_arithmetic(out, {run_precision(configs[r.entry], passed, infer_precision) for r in todo} - {None},
                     {run_flushes(passed)} if todo else set())
