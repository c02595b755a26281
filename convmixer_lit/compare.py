"""`python -m convmixer_lit.compare`: train several models over several seeds, resumably, and report the study.

Each run is `python -m convmixer_lit.fit --config <its yaml> --seed_everything S --run_name seedS ...` in its own
process (a crash or a leak ends one run, not the study). A finished run leaves `DIR/results/<model>-seed<S>.json`,
a copy of its `result.json`: that small file, not the checkpoint, is what marks it done, so DIR can be committed
without checkpoints and a study continued in another session. The report (`summary.csv`, `summary.md`, PNGs) is
rebuilt from those files alone (`--report-only`).
"""

from __future__ import annotations

import argparse
import csv
import importlib.metadata
import json
import os
import platform
import shlex
import signal
import subprocess
import sys
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import yaml

from convmixer_lit.callbacks import RESULT_FILE, write_json_atomic  # what convmixer_lit.fit writes into each run folder
from convmixer_lit.cli import exit_with
from convmixer_lit.errors import ConfigError, UserError
from convmixer_lit.stats import describe, welch_t_test
from convmixer_lit.util import import_class

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"
PASS_THROUGH = ("--data.", "--model.", "--trainer.")
OWNED_FLAGS = ("--trainer.default_root_dir",)  # compare sets it: the study folder
CSV_COLUMNS = ["model", "seed", "parameters", "train_flops_per_image", "best_val_acc", "final_val_acc",
               "best_val_loss", "epochs", "wall_time_s", "train_images_per_s", "precision", "accelerator",
               "command"]
GITIGNORE = """\
# Written by convmixer_lit.compare: commit results/, summary.*, *.png and the TensorBoard curves; not checkpoints
# (large), the runs' console logs, or the folders of attempts that were restarted for want of a checkpoint.
lightning_logs/*/*/checkpoints/
logs/
lightning_logs/*/*.restarted-*/
"""
ALPHA = 0.05


# ---- the plan --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Run:
    """One (model, seed) of the study and where its files live."""

    entry: str  # the --models name = the config file's stem
    seed: int
    config: Path
    model_name: str  # the architecture's folder under lightning_logs/ (its `--model` name)
    out: Path

    @property
    def name(self) -> str:
        return f"{self.entry}-seed{self.seed}"

    @property
    def run_name(self) -> str:
        # two configs of one architecture (e.g. convmixer-p2.yaml, convmixer-p4.yaml) must not share a folder
        return f"seed{self.seed}" if self.entry == self.model_name else self.name

    @property
    def run_dir(self) -> Path:
        return self.out / "lightning_logs" / self.model_name / self.run_name

    @property
    def result_path(self) -> Path:
        return self.out / "results" / f"{self.name}.json"

    @property
    def log_path(self) -> Path:
        return self.out / "logs" / f"{self.name}.log"

    @property
    def record_path(self) -> Path:
        """What the run folder's training was started with (its result is not in results/ yet)."""
        return self.out / "logs" / f"{self.name}.study.json"


def split_pass_through(argv: list[str]) -> tuple[list[str], list[str]]:
    """Separate `--data.*`, `--model.*`, `--trainer.*` flags (and their values) from compare's own flags."""
    own, passed = [], []
    target = own
    for token in argv:
        if token.startswith("--"):
            target = passed if token.startswith(PASS_THROUGH) else own
            if token.split("=", 1)[0] in OWNED_FLAGS:
                raise ConfigError(f"{token.split('=', 1)[0]} is set by compare (the study folder, --output); "
                                  f"drop it")
        target.append(token)
    return own, passed


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
    return parser


def preset_dir(preset: str | None) -> Path:
    """`None` -> experiments/; a name -> experiments/<name>/; anything that is a folder path -> that folder."""
    if preset is None:
        return EXPERIMENTS
    as_path = Path(preset).expanduser()
    if as_path.is_dir() and (os.sep in preset or not (EXPERIMENTS / preset).is_dir()):
        return as_path
    folder = EXPERIMENTS / preset
    if not folder.is_dir():
        known = sorted(p.name for p in EXPERIMENTS.iterdir() if p.is_dir() and any(p.glob("*.yaml")))
        raise ConfigError(f"--preset {preset}: no folder {folder}; presets: {', '.join(known) or 'none'}, or "
                          f"pass the path of a folder holding <model>.yaml files")
    return folder


def read_config(path: Path) -> dict:
    try:
        config = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise ConfigError(f"cannot read {path}: {e}") from None
    if not isinstance(config, dict) or not isinstance(config.get("model"), dict) \
            or "class_path" not in config["model"]:
        raise ConfigError(f"{path} has no model.class_path; see experiments/convmixer.yaml for the format")
    return config


def model_name_of(class_path: str, config: Path) -> str:
    """The architecture's registered name (its lightning_logs/ folder), by importing its class."""
    try:
        cls = import_class(class_path)
    except (ImportError, AttributeError, ValueError) as e:
        raise ConfigError(f"{config}: model class {class_path} cannot be imported ({e})") from None
    try:
        return cls.model_name
    except AttributeError:
        raise ConfigError(f"{config}: {class_path} is not a model of this kit (no model_name); use a subclass of "
                          f"convmixer_lit.base.ImageClassifier") from None


def plan(models: list[str], seeds: list[int], preset: str | None, out: Path) -> tuple[list[Run], dict]:
    """The runs, seed-major (every model gets seed 0 before any gets seed 1), and each model's parsed config."""
    folder = preset_dir(preset)
    configs, runs = {}, []
    for entry in dict.fromkeys(models):
        path = folder / f"{entry}.yaml"
        if not path.is_file():
            have = sorted(p.stem for p in folder.glob("*.yaml"))
            raise ConfigError(f"unknown model {entry!r}: no {path}; configs in {folder}: "
                              f"{', '.join(have) or 'none'}")
        configs[entry] = (path, read_config(path))
    names = {entry: model_name_of(cfg["model"]["class_path"], path) for entry, (path, cfg) in configs.items()}
    for seed in dict.fromkeys(seeds):
        runs += [Run(entry, seed, configs[entry][0], names[entry], out) for entry in configs]
    return runs, {entry: cfg for entry, (_, cfg) in configs.items()}


# ---- commands --------------------------------------------------------------------------------------------------
def display_path(path: Path) -> str:
    """Relative to the working directory when below it (commands stay portable), else absolute."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path.resolve())


def fit_command(run: Run, passed: list[str], resume: bool) -> list[str]:
    """The exact `fit` invocation for a run: same config, seed, flags; its own named folder in the study."""
    return ["-m", "convmixer_lit.fit", "--config", display_path(run.config), "--seed_everything", str(run.seed),
            "--trainer.default_root_dir", str(run.out), "--run_name", run.run_name, *passed,
            *(["--ckpt_path", "last"] if resume else [])]


def reproduce_command(run: Run, passed: list[str]) -> str:
    """What a reader types to train this run again: it goes to ./lightning_logs/<model>/version_N, a new folder."""
    return shlex.join(["python", "-m", "convmixer_lit.fit", "--config", display_path(run.config),
                       "--seed_everything", str(run.seed), *passed])


def environment() -> dict:
    """The machine and library versions a run was made on (stored with each result: CPU figures say so)."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    env = {"cpu": cpu, "cpu_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
           else os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()}
    for package in ("torch", "torchvision", "lightning"):
        try:
            env[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            pass
    if "torch" in sys.modules and sys.modules["torch"].cuda.is_available():
        env["gpu"] = sys.modules["torch"].cuda.get_device_name(0)
    return env


# ---- running ---------------------------------------------------------------------------------------------------
class OutputRelay:
    """Copies a child's output to its log, keeping progress-bar redraws (`\\r`) to one line every few seconds.

    Also echoes the latest progress line to the console now and then, so a study in the background shows life.
    """

    def __init__(self, log: IO[str], label: str, log_every_s: float = 10.0, echo_every_s: float = 60.0) -> None:
        self.log, self.label = log, label
        self.log_every_s, self.echo_every_s = log_every_s, echo_every_s
        self.pending = ""
        self.progress = ""
        self.last_log = self.last_echo = time.monotonic()
        self.tail: deque[str] = deque(maxlen=30)

    def feed(self, text: str) -> None:
        self.pending += text
        while True:
            cut = min((i for i in (self.pending.find("\n"), self.pending.find("\r")) if i >= 0), default=-1)
            if cut < 0:
                return
            piece, sep, self.pending = self.pending[:cut], self.pending[cut], self.pending[cut + 1:]
            if sep == "\n":
                self._line(piece)
            elif piece.strip():
                self._progress(piece.strip())

    def _line(self, line: str) -> None:
        if self.progress and line.strip().startswith(self.progress[:20]):
            self.progress = ""  # the bar's final state, printed once with a newline
        self.log.write(line + "\n")
        self.log.flush()
        if line.strip():
            self.tail.append(line.strip())

    def _progress(self, line: str) -> None:
        self.progress = line
        now = time.monotonic()
        if now - self.last_log >= self.log_every_s:
            self.log.write(line + "\n")
            self.log.flush()
            self.last_log = now
        if now - self.last_echo >= self.echo_every_s:
            print(f"    {self.label} | {line}", flush=True)
            self.last_echo = now

    def close(self) -> None:
        if self.pending.strip():
            self._line(self.pending)
        self.pending = ""


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the study is: it stops like a Ctrl+C, and the running fit gets the SIGTERM."""


def _on_sigterm(signum, frame) -> None:
    raise Terminated()


def run_fit(run: Run, argv: list[str]) -> tuple[int, list[str]]:
    """Run one `fit` process, its output into the run's log; returns its exit code and last lines of output."""
    run.log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(run.log_path, "a", encoding="utf-8") as log:
        log.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')}  {shlex.join(['python', *argv])}\n")
        log.flush()
        proc = subprocess.Popen([sys.executable, *argv], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"})
        relay = OutputRelay(log, f"{run.entry} seed {run.seed}")
        try:
            while chunk := proc.stdout.read1(1 << 16):
                relay.feed(chunk.decode("utf-8", errors="replace"))
        except KeyboardInterrupt as stop:
            if isinstance(stop, Terminated):  # a SIGTERM (kill, a batch scheduler) reached only us: pass it on
                proc.send_signal(signal.SIGTERM)
                proc.wait()
            else:  # Ctrl+C in a terminal reaches the child too; make sure it does, then let it save and exit
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    proc.send_signal(signal.SIGINT)
                    proc.wait()
            relay.feed(proc.stdout.read().decode("utf-8", errors="replace"))
            relay.close()
            raise
        relay.close()
        return proc.wait(), list(relay.tail)


def has_checkpoint(run: Run) -> bool:
    return (run.run_dir / "checkpoints" / "last.ckpt").is_file()


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


def study_record(run: Run, config: dict, passed: list[str], preset: str | None) -> dict:
    """What made this run: compared on every later call, so a study never mixes runs made with other settings."""
    return {"entry": run.entry, "preset": preset, "config_file": display_path(run.config), "config": config,
            "pass_through": passed, "reproduce": reproduce_command(run, passed)}


def read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ConfigError(f"{path} is not a readable result file ({e}); move it away and rerun") from None


# Flags that say where or how to read the data, not what is trained: a study may continue with other values (the data
# moved, another machine; the pipelines draw the same augmentation and give identical validation images) without
# counting as other settings.
LOCATION_FLAGS = {"--data.root", "--data.cache_dir", "--data.num_workers", "--data.download", "--data.pipeline"}


def flag_settings(passed: list[str]) -> dict[str, list[str]]:
    """Pass-through flags as {flag: values}, order-free: the last of a repeated flag wins (as in the CLI), and the
    LOCATION_FLAGS are left out."""
    settings: dict[str, list[str]] = {}
    flag = None
    for token in passed:
        if token.startswith("--"):
            flag, _, value = token.partition("=")
            settings[flag] = [value] if value else []
        elif flag is not None:
            settings[flag].append(token)
    return {k: v for k, v in settings.items() if k not in LOCATION_FLAGS}


def check_same_study(path: Path, old: dict, record: dict) -> None:
    """Refuse to mix settings: `old` is the study record stored with `path` (a result, or a started run)."""
    if old and (old.get("config") != record["config"]
                or flag_settings(old.get("pass_through") or []) != flag_settings(record["pass_through"])):
        raise ConfigError(f"{path} was made with other settings ({old.get('reproduce')}) than this call "
                          f"({record['reproduce']}); use another --output, or the same config and flags")


def save_result(run: Run, record: dict) -> dict:
    """Copy the run folder's result.json to DIR/results/, with what made it and where (written atomically)."""
    result = json.loads((run.run_dir / RESULT_FILE).read_text())
    result["study"] = record
    result["environment"] = environment()
    write_json_atomic(run.result_path, result)
    return result


def finished_in_folder(run: Run) -> bool:
    """A run whose fit completed but whose result was not copied yet (compare stopped in between)."""
    path = run.run_dir / RESULT_FILE
    if not path.is_file():
        return False
    try:
        return bool(json.loads(path.read_text()).get("completed"))
    except (OSError, json.JSONDecodeError):
        return False


def fmt_duration(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


def eta(remaining: list[Run], durations: dict[str, list[float]]) -> str:
    """Sum over remaining runs of the mean duration of that model's finished runs (else of all finished runs)."""
    everything = [d for ds in durations.values() for d in ds]
    if not everything:
        return "ETA after the first run"
    overall = sum(everything) / len(everything)
    total = sum(sum(durations[r.entry]) / len(durations[r.entry]) if durations.get(r.entry) else overall
                for r in remaining)
    return f"ETA {fmt_duration(total)}"


def execute(runs: list[Run], configs: dict, passed: list[str], preset: str | None) -> None:
    """Run what is not finished, in order; print progress and ETA between runs; rewrite the report after each."""
    records = {r: study_record(r, configs[r.entry], passed, preset) for r in runs}
    for r in runs:
        if r.result_path.is_file():
            check_same_study(r.result_path, read_json(r.result_path).get("study", {}), records[r])
        elif r.record_path.is_file() and (finished_in_folder(r) or has_checkpoint(r)):
            # an interrupted run: its checkpoint (or its finished result) is reused only under the same settings
            check_same_study(r.run_dir, read_json(r.record_path), records[r])
    todo = [r for r in runs if not r.result_path.is_file()]
    durations: dict[str, list[float]] = {}
    for r in runs:
        if r not in todo:
            durations.setdefault(r.entry, []).append(read_json(r.result_path).get("wall_time_s") or 0)
    out = runs[0].out
    print(f"study: {len(runs)} runs in {out}; {len(runs) - len(todo)} already finished (reused), "
          f"{len(todo)} to train", flush=True)
    started = time.monotonic()
    for i, run in enumerate(todo, start=1):
        position = f"[{len(runs) - len(todo) + i}/{len(runs)}] {run.entry} seed {run.seed}"
        if finished_in_folder(run):
            result = save_result(run, records[run])
            print(f"{position}: finished earlier, result copied from {run.run_dir / RESULT_FILE}", flush=True)
        else:
            resume = prepare_run_dir(run)
            print(f"{position}: {'resuming from its last checkpoint' if resume else 'training'} "
                  f"(log: {run.log_path})", flush=True)
            run.record_path.parent.mkdir(parents=True, exist_ok=True)
            run.record_path.write_text(json.dumps(records[run], indent=2) + "\n")
            t0 = time.monotonic()
            code, tail = run_fit(run, fit_command(run, passed, resume))
            if code != 0 or not finished_in_folder(run):
                errors = [line for line in tail if line.startswith("error:")]
                why = (errors[-1] if errors else tail[-1] if tail else "no output").removeprefix("error: ")
                report_if_any(out)
                raise UserError(f"{run.name} failed (exit {code}): {why} -- see {run.log_path}. Finished runs are "
                                f"kept: fix the cause and rerun the same command to continue")
            result = save_result(run, records[run])
            durations.setdefault(run.entry, []).append(time.monotonic() - t0)
        report_if_any(out)
        acc = result.get("best_val_acc")
        print(f"{position}: best val top-1 {100 * acc:.2f}% | {len(runs) - len(todo) + i}/{len(runs)} done, "
              f"elapsed {fmt_duration(time.monotonic() - started)}, {eta(todo[i:], durations)}"
              if acc is not None else f"{position}: done (no validation result)", flush=True)


# ---- the report ------------------------------------------------------------------------------------------------
def load_results(out: Path) -> dict[str, list[dict]]:
    """DIR/results/*.json grouped by model (config name), each model's runs sorted by seed."""
    files = sorted((out / "results").glob("*.json"))
    if not files:
        raise ConfigError(f"no results in {out / 'results'}: run the study first (without --report-only)")
    by_model: dict[str, list[dict]] = {}
    for path in files:
        try:
            result = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise ConfigError(f"{path} is not a readable result file ({e}); move it away and rerun") from None
        entry = result.get("study", {}).get("entry") or result.get("model") or path.stem.rsplit("-seed", 1)[0]
        by_model.setdefault(entry, []).append(result)
    for runs in by_model.values():
        runs.sort(key=lambda r: r.get("seed", 0))
    # best model first: tables and pairs read as a ranking
    return dict(sorted(by_model.items(), key=lambda kv: -describe(_accs(kv[1])).mean if _accs(kv[1]) else 0))


def _accs(runs: list[dict]) -> list[float]:
    return [r["best_val_acc"] for r in runs if r.get("best_val_acc") is not None]


def write_csv(by_model: dict[str, list[dict]], path: Path) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, CSV_COLUMNS)
        writer.writeheader()
        for entry, runs in by_model.items():
            for r in runs:
                row = {k: r.get(k) for k in CSV_COLUMNS}
                row["model"] = entry
                row["command"] = r.get("study", {}).get("reproduce") or r.get("command")
                writer.writerow(row)


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _pct(x: float | None, digits: int = 2) -> str:
    return "–" if x is None else f"{100 * x:.{digits}f}"


def verdict(a: str, b: str, runs_a: list[float], runs_b: list[float]) -> tuple[str, str, str, str]:
    """(difference, CI of the difference, p, sentence) for `a` (the higher mean) against `b`."""
    if not runs_a or not runs_b:
        return "–", "–", "–", f"{a} vs {b}: no validation accuracy for {b if runs_a else a}, nothing to compare"
    diff = describe(runs_a).mean - describe(runs_b).mean
    if min(len(runs_a), len(runs_b)) < 2:
        return (f"{100 * diff:+.2f}", "–", "–",
                f"{a} vs {b}: 1 seed for {a if len(runs_a) < 2 else b}, so no test is possible; the difference "
                f"cannot be told apart from seed noise (run 2+ seeds per model)")
    test = welch_t_test(runs_a, runs_b)
    if test is None:
        return f"{100 * diff:+.2f}", "–", "–", f"{a} vs {b}: no spread across seeds, the test is undefined"
    ci = f"[{100 * test.ci_low:+.2f}, {100 * test.ci_high:+.2f}]"
    p = f"{test.p_value:.3g}"
    if test.p_value < ALPHA and (test.ci_low > 0 or test.ci_high < 0):
        sentence = (f"**{a} beats {b} beyond seed noise**: {100 * test.diff:+.2f} pp, 95% CI {ci} pp, "
                    f"Welch p = {p}")
    else:
        sentence = (f"{a} vs {b}: the difference ({100 * test.diff:+.2f} pp, 95% CI {ci} pp, Welch p = {p}) is "
                    f"within seed noise")
    return f"{100 * test.diff:+.2f}", ci, p, sentence


def write_markdown(by_model: dict[str, list[dict]], path: Path) -> None:
    runs_all = [r for runs in by_model.values() for r in runs]
    lines = ["# Study summary", "",
             f"Made by `python -m convmixer_lit.compare` from `results/*.json` ({len(runs_all)} runs). "
             "Accuracy: best-epoch validation top-1 of each run, in %. ± is the sample standard deviation over "
             "seeds; the CI is the 95% Student-t interval of the mean. Wall time is the whole fit (validation "
             "included) on the hardware below.", ""]
    envs = {json.dumps(r.get("environment"), sort_keys=True) for r in runs_all if r.get("environment")}
    devices = sorted({f"{r.get('accelerator')}, {r.get('precision')}" for r in runs_all})
    lines.append(f"Device, precision: {'; '.join(devices)}.")
    for env in sorted(envs):
        e = json.loads(env)
        lines.append(f"Machine: {e.get('gpu') or e.get('cpu')} ({e.get('cpu_cores')} cores), torch "
                     f"{e.get('torch')}, torchvision {e.get('torchvision')}, lightning {e.get('lightning')}, "
                     f"Python {e.get('python')}.")
    lines += ["", "| model | seeds | best val top-1 (%) mean ± std | 95% CI (%) | final val top-1 (%) | parameters |"
              " train GFLOPs/image | wall time (min) | train img/s |",
              "|---|---|---|---|---|---|---|---|---|"]
    for entry, runs in by_model.items():
        accs = _accs(runs)
        d = describe(accs) if accs else None
        finals = [r["final_val_acc"] for r in runs if r.get("final_val_acc") is not None]
        params = sorted({r.get("parameters") for r in runs if r.get("parameters")})
        flops = [r["train_flops_per_image"] for r in runs if r.get("train_flops_per_image")]
        walls = [r["wall_time_s"] for r in runs if r.get("wall_time_s")]
        speeds = [r["train_images_per_s"] for r in runs if r.get("train_images_per_s")]
        mean_std = "–" if d is None else _pct(d.mean) + ("" if d.std is None else f" ± {_pct(d.std)}")
        ci = "– (1 seed)" if d is None or d.ci_low is None else f"[{_pct(d.ci_low)}, {_pct(d.ci_high)}]"
        cells = [entry, ", ".join(str(r.get("seed")) for r in runs), mean_std, ci,
                 _pct(_mean(finals)), " / ".join(f"{p:,}" for p in params) or "–",
                 "–" if not flops else f"{_mean(flops) / 1e9:.3f}",
                 "–" if not walls else f"{_mean(walls) / 60:.1f}",
                 "–" if not speeds else f"{_mean(speeds):.0f}"]
        lines.append("| " + " | ".join(cells) + " |")
    entries = list(by_model)
    if len(entries) > 1:
        lines += ["", "## Pairwise differences (Welch's t-test on best val top-1)", "",
                  "| A vs B | A − B (pp) | 95% CI of A − B (pp) | p |", "|---|---|---|---|"]
        sentences = []
        for i, a in enumerate(entries):
            for b in entries[i + 1:]:
                diff, ci, p, sentence = verdict(a, b, _accs(by_model[a]), _accs(by_model[b]))
                lines.append(f"| {a} vs {b} | {diff} | {ci} | {p} |")
                sentences.append(f"- {sentence}.")
        lines += ["", *sentences, "",
                  f"\"Beyond seed noise\" means p < {ALPHA} and a 95% interval of the difference that excludes 0. "
                  "The p-values are not corrected for multiple comparisons; with few seeds the test has little "
                  "power, so \"within seed noise\" is not evidence that two models are equal."]
    lines += ["", "Figures: `val_acc.png`, `val_loss.png` (mean over seeds, band: min–max), `acc_vs_params.png`, "
              "`acc_vs_time.png`. Every run's command is in `summary.csv`; its curves are in TensorBoard "
              "(`tensorboard --logdir lightning_logs`) where the run folders were kept.", ""]
    path.write_text("\n".join(lines))


def report(out: Path) -> list[Path]:
    """Write summary.csv, summary.md and the figures from DIR/results/*.json alone; returns the paths."""
    from convmixer_lit.figures import draw_all  # matplotlib: only when a report is drawn

    by_model = load_results(out)
    write_csv(by_model, out / "summary.csv")
    write_markdown(by_model, out / "summary.md")
    return [out / "summary.csv", out / "summary.md", *draw_all(by_model, out)]


def report_if_any(out: Path) -> None:
    if any((out / "results").glob("*.json")):
        report(out)


# ---- entry point -----------------------------------------------------------------------------------------------
def main(args: list[str] | None = None) -> None:
    """Parse, run the study (unless --report-only), write the report."""
    argv = sys.argv[1:] if args is None else list(args)
    parser = build_parser()
    try:
        own, passed = split_pass_through(argv)
        opts = parser.parse_args(own)
        out = Path(opts.output)
        if opts.report_only:
            paths = report(out)
        else:
            if not opts.models:
                parser.error("--models is required (unless --report-only)")
            runs, configs = plan(opts.models, opts.seeds, opts.preset, out)
            out.mkdir(parents=True, exist_ok=True)
            if not (out / ".gitignore").exists():
                (out / ".gitignore").write_text(GITIGNORE)
            execute(runs, configs, passed, opts.preset)
            paths = report(out)
    except UserError as e:
        exit_with(e)
    except KeyboardInterrupt as stop:
        print(f"\n{'terminated' if isinstance(stop, Terminated) else 'interrupted'}: rerun the same command to "
              "continue (finished runs are kept, the interrupted one resumes from its last checkpoint)",
              file=sys.stderr)
        raise SystemExit(143 if isinstance(stop, Terminated) else 130) from None
    print("report: " + ", ".join(display_path(p) for p in paths), flush=True)


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _on_sigterm)  # only as a command: a test calling main() keeps its own handler
    main()
