"""`python -m convmixer_lit.compare`: train several models over several seeds, resumably, and report the study.

Each run is `python -m convmixer_lit.fit --config <its yaml> --seed_everything S --run_name seedS ...` in its own
process: on this machine (`--launcher local`, up to `--jobs N` at once) or as one SLURM job per run (`--launcher
slurm`). A finished run leaves `DIR/results/<model>-seed<S>.json`, and the report (`summary.csv`, `summary.md`,
PNGs) is rebuilt from those files alone (`--report-only`). The parts live in convmixer_lit/study/; this module is
the command: its flags, and one-line errors.
"""

from __future__ import annotations

import argparse
import re
import signal
import sys
from pathlib import Path

from convmixer_lit.cli import exit_with
from convmixer_lit.errors import ConfigError, UserError
from convmixer_lit.study.launchers.local import run_local
from convmixer_lit.study.plan import (
    STUDY_FILE,
    Run,
    display_path,
    plan,
    preset_dir,
    split_pass_through,
    study_record,
)
from convmixer_lit.study.process import Terminated, on_sigterm
from convmixer_lit.study.report import TUNING_RECORD, report, report_if_any
from convmixer_lit.study.runs import check_reusable, check_runs_arithmetic
from convmixer_lit.study.search import SAMPLERS
from convmixer_lit.study.tuning import (
    TUNING,
    Launch,
    Tuning,
    holdout_from_flags,
    read_study_file,
    run_tuned,
    tuning_from,
)

GITIGNORE = """\
# Written by convmixer_lit.compare: commit results/, summary.*, *.png and the TensorBoard curves; not checkpoints
# (large), the runs' console logs, the folders of attempts that were restarted for want of a checkpoint, or the
# SLURM launcher's job files (submitit's scripts, pickles and task logs; the job ids of this cluster).
lightning_logs/*/*/checkpoints/
logs/
lightning_logs/*/*.restarted-*/
slurm/
jobs.json
"""
SLURM_FLAGS = {  # --slurm.<name>: (type, help)
    "partition": (str, "partition (queue) to submit to"),
    "time": (str, "each job's time limit: minutes (240) or D-HH:MM:SS; required. A run that needs longer is "
                  "requeued and resumes from its last checkpoint"),
    "gpus_per_node": (int, "GPUs per node (one SLURM task per device: set --trainer.devices to match)"),
    "gpus_per_task": (int, "GPUs per task"),
    "cpus_per_task": (int, "CPU cores per task (data loading runs there)"),
    "mem": (str, "memory per node, in SLURM's syntax (32G)"),
    "account": (str, "account to charge"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m convmixer_lit.compare", allow_abbrev=False,
        description="Train each model with each seed (one `convmixer_lit.fit` process per run, resumable), then "
                    "write summary.csv, summary.md and figures into --output. Any --data.*, --model.* or "
                    "--trainer.* flag is passed to every run.")
    parser.add_argument("--models", nargs="+", metavar="MODEL",
                        help="config names: experiments/[<preset>/]<MODEL>.yaml (e.g. convmixer vit resnet9); "
                             "default: the preset's study.yaml `models`")
    parser.add_argument("--seeds", nargs="+", type=int, metavar="S",
                        help="seeds (default: the preset's study.yaml `seeds`, else 0; a tuned study's finals: 1 2 3, "
                             "seeds its trials did not use)")
    parser.add_argument("--output", required=True, metavar="DIR", help="study folder (created; reused to resume)")
    parser.add_argument("--preset", metavar="NAME|PATH",
                        help="a folder of <model>.yaml: experiments/<NAME>/ or a path (default: experiments/)")
    parser.add_argument("--report-only", action="store_true",
                        help="train nothing: rebuild summary.csv, summary.md and figures from DIR/results/*.json")
    parser.add_argument("--launcher", choices=("local", "slurm"), default="local",
                        help="local: train on this machine (default); slurm: submit each run as a SLURM job")
    parser.add_argument("--jobs", type=int, default=1, metavar="N",
                        help="local: train up to N runs at once, the cores (and GPUs) split between them "
                             "(default: 1, each run has the whole machine)")
    parser.add_argument("--stop-after", dest="stop_after", metavar="DURATION",
                        help="local: start no run that is not expected to end within DURATION of this call (e.g. "
                             "2h40m, 90m, 3600s; estimated from finished runs of the same model), then stop; rerun "
                             "the same command to continue. For a session, allocation or night of known length: "
                             "a run cut off by its end would be lost half-trained")
    parser.add_argument("--wait", action="store_true",
                        help="slurm: wait for the jobs and write the full report (default: return once submitted; "
                             "rerun the same command for their state)")
    tune = parser.add_argument_group(
        "tuning (a tuned study: the same K trials for every model on a held-out part of train, then each model's "
        "best configuration retrained with fresh --seeds and scored on val; defaults from the preset's study.yaml)")
    tune.add_argument("--search", nargs="+", metavar="KEY=KIND(ARGS)",
                      help="what to tune: any model.*, data.* or trainer.* setting drawn from loguniform(low,high), "
                           "uniform(low,high), intuniform(low,high) or choice(a,b,...), e.g. "
                           "\"model.lr=loguniform(3e-4,1e-2)\" \"model.weight_decay=loguniform(0.005,0.3)\"")
    tune.add_argument("--trials", type=int, metavar="K", help="trials per model (the same K for every model)")
    tune.add_argument("--search.sampler", dest="search_sampler", choices=SAMPLERS,
                      help="random (the default and only one: every model gets the same K configurations)")
    tune.add_argument("--search.seed", dest="search_seed", type=int, metavar="N",
                      help="the sampler's seed: the same seed draws the same trials (default: 0)")
    tune.add_argument("--search.trial_seed", dest="trial_seed", type=int, metavar="S",
                      help="the training seed of every trial (default: 0); the finals' --seeds must differ from it")
    tune.add_argument("--tune-only", action="store_true",
                      help="stop after the trials: write tuned/<model>.yaml and the tuning report, train no finals")
    slurm = parser.add_argument_group("SLURM resources (--launcher slurm), per job")
    slurm.add_argument("--slurm.config", dest="slurm_config", metavar="FILE",
                       help="YAML file with these settings (a `slurm:` section or the whole file; flags override "
                            "it): partition, time, gpus_per_node, ..., additional (a mapping)")
    for name, (kind, text) in SLURM_FLAGS.items():
        slurm.add_argument(f"--slurm.{name}", dest=f"slurm_{name}", type=kind,
                           metavar="N" if kind is int else name.upper(), help=text)
    slurm.add_argument("--slurm.additional", dest="slurm_additional", nargs="+", metavar="KEY=VALUE",
                       help="any other sbatch option, e.g. qos=high constraint=a100 (a bare KEY for a flag)")
    return parser


def check_launcher_flags(opts: argparse.Namespace) -> None:
    """Flags of one launcher given to the other are mistakes, said so rather than ignored."""
    slurm_given = [f"--slurm.{k}" for k in ("config", *SLURM_FLAGS, "additional")
                   if getattr(opts, f"slurm_{k}") is not None]
    if opts.jobs < 1:
        raise ConfigError(f"--jobs {opts.jobs}: give 1 or more runs at once")
    if opts.launcher == "local" and (slurm_given or opts.wait):
        raise ConfigError(f"{(slurm_given or ['--wait'])[0]} is for --launcher slurm (a local study trains here "
                          f"and always waits)")
    if opts.launcher == "slurm" and opts.jobs != 1:
        raise ConfigError("--jobs is for --launcher local: on SLURM every run is its own job, all submitted at once")
    if opts.stop_after is not None:
        if opts.launcher == "slurm":
            raise ConfigError("--stop-after is for --launcher local: on SLURM give each job its --slurm.time limit")
        parse_duration(opts.stop_after)


def parse_duration(text: str) -> float:
    """'2h40m' / '90m' / '45s' / '3600' (seconds) -> seconds."""
    match = re.fullmatch(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s?)?", text.strip())
    if not text.strip() or match is None:
        raise ConfigError(f"--stop-after {text!r}: give a duration such as 2h40m, 90m or 3600s")
    hours, minutes, seconds = (int(g or 0) for g in match.groups())
    return 3600.0 * hours + 60.0 * minutes + seconds


def prepare(opts: argparse.Namespace, passed: list[str]) -> tuple[list[Run], dict[Run, dict], dict[str, dict]]:
    """The runs, their study records and configs, in a study folder that exists; refused (one line) where a
    finished or interrupted run of it was made with other settings, or would train in another arithmetic."""
    out = Path(opts.output)
    runs, configs = plan(opts.models, opts.seeds, opts.preset, out)
    check_runs_arithmetic(out, runs, configs, passed, infer_precision=opts.launcher == "local")
    out.mkdir(parents=True, exist_ok=True)
    if not (out / ".gitignore").exists():
        (out / ".gitignore").write_text(GITIGNORE)
    records = {r: study_record(r, configs[r.entry], passed, opts.preset) for r in runs}
    check_reusable(runs, records)
    return runs, records, configs


def launcher(opts: argparse.Namespace) -> Launch:
    """The chosen launcher as one call: (runs, records, configs, passed) -> True when every run is finished."""
    if opts.launcher == "local":
        stop_after_s = None if opts.stop_after is None else parse_duration(opts.stop_after)
        return lambda runs, records, configs, passed: run_local(runs, records, configs, passed, opts.jobs,
                                                                stop_after_s)
    from convmixer_lit.study.launchers import slurm  # submitit: only needed for SLURM

    resources = slurm.read_resources({k: getattr(opts, f"slurm_{k}") for k in (*SLURM_FLAGS, "additional")},
                                     opts.slurm_config)
    return lambda runs, records, configs, passed: slurm.run_slurm(runs, records, configs, passed, resources,
                                                                  wait=opts.wait)


def study_settings(opts: argparse.Namespace, passed: list[str]) -> tuple[Tuning | None, list[str]]:
    """Fill --models and --seeds from the preset's study.yaml; the study's Tuning (None: untuned) and the flags
    every run is given (a tuned study's --data.holdout_* go to its trials only)."""
    study = read_study_file(preset_dir(opts.preset) / STUDY_FILE)
    passed, holdout = holdout_from_flags(passed)
    tuning = tuning_from(opts.search, {"trials": opts.trials, "sampler": opts.search_sampler,
                                       "search_seed": opts.search_seed, "trial_seed": opts.trial_seed},
                         study, holdout)
    record = Path(opts.output) / TUNING / TUNING_RECORD
    if tuning is None and record.is_file():
        raise ConfigError(f"{opts.output} is a tuned study: rerun it with its search (--search ... --trials K, or a "
                          f"preset whose study.yaml has them; recorded in {record})")
    if tuning is None:
        given = [f for f, v in (("--trials", opts.trials), ("--search.sampler", opts.search_sampler),
                                ("--search.seed", opts.search_seed), ("--search.trial_seed", opts.trial_seed),
                                ("--tune-only", opts.tune_only or None)) if v is not None]
        if given:
            raise ConfigError(f"{given[0]} is for a tuned study: add --search KEY=KIND(ARGS) (or a `search:` in "
                              f"the preset's study.yaml)")
        if holdout:
            passed += [f"--data.{k}={v}" for k, v in holdout.items()]  # a plain study may hold out too
    opts.models = opts.models or study.get("models")
    opts.seeds = opts.seeds or study.get("seeds") or ([1, 2, 3] if tuning else [0])
    if not opts.models:
        raise ConfigError("--models is required (unless --report-only, or the preset's study.yaml lists them)")
    return tuning, passed


def run_study(opts: argparse.Namespace, passed: list[str]) -> list[Path]:
    """Launch what is not finished and write the report; returns the report's files (those so far, where SLURM jobs
    are still queued or running)."""
    check_launcher_flags(opts)
    out = Path(opts.output)
    tuning, passed = study_settings(opts, passed)
    launch = launcher(opts)
    if tuning is not None:
        finished = run_tuned(opts.models, opts.seeds, opts.preset, out, passed, tuning, launch, GITIGNORE,
                             finals=not opts.tune_only, infer_precision=opts.launcher == "local")
    else:
        runs, records, configs = prepare(opts, passed)
        finished = launch(runs, records, configs, passed)
    return report(out) if finished else report_if_any(out)


def main(args: list[str] | None = None) -> None:
    """Parse, run the study (unless --report-only), write the report."""
    argv = sys.argv[1:] if args is None else list(args)
    parser = build_parser()
    on_slurm = False
    try:
        own, passed = split_pass_through(argv)
        opts = parser.parse_args(own)
        on_slurm = opts.launcher == "slurm"
        paths = report(Path(opts.output)) if opts.report_only else run_study(opts, passed)
    except UserError as e:
        exit_with(e)
    except KeyboardInterrupt as stop:
        terminated = isinstance(stop, Terminated)
        print(f"\n{'terminated' if terminated else 'interrupted'}: rerun the same command to continue ("
              + ("the submitted jobs go on; it shows their state)" if on_slurm else
                 "finished runs are kept, the interrupted one resumes from its last checkpoint)"), file=sys.stderr)
        raise SystemExit(143 if terminated else 130) from None
    print("report: " + (", ".join(display_path(p) for p in paths) if paths else
                        "none yet (written when the first run has finished)"), flush=True)


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, on_sigterm)  # only as a command: a test calling main() keeps its own handler
    main()
