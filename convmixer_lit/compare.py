"""`python -m convmixer_lit.compare`: train several models over several seeds, resumably, and report the study.

Each run is `python -m convmixer_lit.fit --config <its yaml> --seed_everything S --run_name seedS ...` in its own
process: on this machine (`--launcher local`, up to `--jobs N` at once) or as one SLURM job per run (`--launcher
slurm`). A finished run leaves `DIR/results/<model>-seed<S>.json`, and the report (`summary.csv`, `summary.md`,
PNGs) is rebuilt from those files alone (`--report-only`). The parts live in convmixer_lit/study/; this module is
the command: its flags, and one-line errors.
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

from convmixer_lit.cli import exit_with
from convmixer_lit.errors import ConfigError, UserError
from convmixer_lit.study.launchers.local import run_local
from convmixer_lit.study.plan import Run, display_path, plan, split_pass_through, study_record
from convmixer_lit.study.process import Terminated, on_sigterm
from convmixer_lit.study.report import report, report_if_any
from convmixer_lit.study.runs import check_reusable

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
                        help="config names: experiments/[<preset>/]<MODEL>.yaml (e.g. convmixer vit resnet9)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0], metavar="S", help="seeds (default: 0)")
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
    parser.add_argument("--wait", action="store_true",
                        help="slurm: wait for the jobs and write the full report (default: return once submitted; "
                             "rerun the same command for their state)")
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


def prepare(opts: argparse.Namespace, passed: list[str]) -> tuple[list[Run], dict[Run, dict], dict[str, dict]]:
    """The runs, their study records and configs, in a study folder that exists; refused (one line) where a
    finished or interrupted run of it was made with other settings."""
    out = Path(opts.output)
    runs, configs = plan(opts.models, opts.seeds, opts.preset, out)
    out.mkdir(parents=True, exist_ok=True)
    if not (out / ".gitignore").exists():
        (out / ".gitignore").write_text(GITIGNORE)
    records = {r: study_record(r, configs[r.entry], passed, opts.preset) for r in runs}
    check_reusable(runs, records)
    return runs, records, configs


def run_study(opts: argparse.Namespace, passed: list[str]) -> list[Path]:
    """Launch what is not finished and write the report; returns the report's files (those so far, where SLURM jobs
    are still queued or running)."""
    check_launcher_flags(opts)
    out = Path(opts.output)
    if opts.launcher == "local":
        run_local(*prepare(opts, passed), passed, opts.jobs)
        return report(out)
    from convmixer_lit.study.launchers import slurm  # submitit: only needed for SLURM

    resources = slurm.read_resources({k: getattr(opts, f"slurm_{k}") for k in (*SLURM_FLAGS, "additional")},
                                     opts.slurm_config)
    finished = slurm.run_slurm(*prepare(opts, passed), passed, resources, wait=opts.wait)
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
        if opts.report_only:
            paths = report(Path(opts.output))
        else:
            if not opts.models:
                parser.error("--models is required (unless --report-only)")
            paths = run_study(opts, passed)
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
