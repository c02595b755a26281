"""The plan of a study: its runs (one per model and seed), the configs and flags they train with, their `fit`
commands, and the record that lets a later call tell "the same study" from "other settings".

Pure bookkeeping: nothing here trains, and nothing here depends on how runs are launched.
"""

from __future__ import annotations

import functools
import inspect
import os
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from convmixer_lit.base import import_class
from convmixer_lit.configs import BASE_CONFIG, load_layered
from convmixer_lit.errors import ConfigError
from convmixer_lit.hardware import default_precision

EXPERIMENTS = Path(__file__).resolve().parents[2] / "experiments"
PASS_THROUGH = ("--data.", "--model.", "--trainer.", "--flush_denormal")
OWNED_FLAGS = ("--trainer.default_root_dir",)  # compare sets it: the study folder
STUDY_FILE = "study.yaml"  # a preset's study settings (a tuned study's search space and budget; tuning.py)
# Flags that say where or how to read the data, not what is trained: a study may continue with other values (the data
# moved, another machine; the pipelines draw the same augmentation and give identical validation images) without
# counting as other settings. Not `--data.root` for `--data.dataset folder`: there the root is the dataset itself
# (a checksummed Imagenette is the same data wherever it lies; two user folders need not be).
LOCATION_FLAGS = {"--data.root", "--data.cache_dir", "--data.num_workers", "--data.download", "--data.pipeline"}
# Checked on their own, from what the results record (runs.check_arithmetic), not as settings: a study made before
# the flag existed recorded no flag, yet its runs say what they did.
ARITHMETIC_FLAGS = {"--flush_denormal"}


def split_trial(entry: str) -> tuple[str, int | None]:
    """`patch-conv-trial3` -> (`patch-conv`, 3): a tuning trial's model entry and trial number; any other entry ->
    (entry, None). The one parser of the `-trialN` suffix that tuning names its runs with."""
    head, _, number = entry.rpartition("-trial")
    return (head, int(number)) if head and number.isascii() and number.isdigit() else (entry, None)


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
    def label(self) -> str:
        """How the console names the run."""
        return f"{self.entry} seed {self.seed}"

    @property
    def family(self) -> str:
        """The entry without a tuning trial's suffix (`patch-conv` for `patch-conv-trial3`): every run of a family
        trains the same network on the same data, so takes about as long (the launcher's time estimates)."""
        return split_trial(self.entry)[0]

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
        config = load_layered(path)  # over its folder's _base.yaml, where it has one
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


def plan(models: list[str], seeds: list[int], preset: str | None, out: Path) -> tuple[list[Run], dict[str, dict]]:
    """The runs, seed-major (every model gets seed 0 before any gets seed 1), and each model's parsed config."""
    folder = preset_dir(preset)
    configs, runs = {}, []
    for entry in dict.fromkeys(models):
        path = folder / f"{entry}.yaml"
        if not path.is_file():
            have = sorted(p.stem for p in folder.glob("*.yaml") if p.name not in (BASE_CONFIG, STUDY_FILE))
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


# ---- "the same study" --------------------------------------------------------------------------------------------
def study_record(run: Run, config: dict, passed: list[str], preset: str | None) -> dict:
    """What made this run: compared on every later call, so a study never mixes runs made with other settings (or,
    for a folder dataset, on other images: `data`, the folder's fingerprint)."""
    record = {"entry": run.entry, "preset": preset, "config_file": display_path(run.config), "config": config,
              "pass_through": passed, "reproduce": reproduce_command(run, passed)}
    defaults = current_defaults(config, passed)
    if defaults:  # what the config leaves unset of the settings whose default changed, as it trains now
        record["defaults"] = defaults
    root = folder_root(config, passed)
    if root is not None:
        record["data"] = _fingerprint(root)
    return record


def folder_root(config: dict, passed: list[str]) -> str | None:
    """The `--data.root` of a run that reads a folder dataset (`--data.dataset folder`), else None."""
    settings = _all_flags(passed)
    if _dataset(settings, config) != "folder":
        return None
    return (settings.get("--data.root") or [(config.get("data") or {}).get("root") or "data"])[-1]


def _dataset(settings: dict[str, list[str]], config: dict | None) -> str | None:
    """The run's `--data.dataset`: the flag's, else its config's."""
    return (settings.get("--data.dataset") or [((config or {}).get("data") or {}).get("dataset")])[-1]


@functools.cache
def _fingerprint(root: str) -> str | None:
    from convmixer_lit.sources.folder import folder_fingerprint  # a walk of the folder: only for folder studies

    return folder_fingerprint(root)


def _all_flags(passed: list[str]) -> dict[str, list[str]]:
    """Pass-through flags as {flag: values}; the last of a repeated flag wins, as in the CLI."""
    settings: dict[str, list[str]] = {}
    flag = None
    for token in passed:
        if token.startswith("--"):
            flag, _, value = token.partition("=")
            settings[flag] = [value] if value else []
        elif flag is not None:
            settings[flag].append(token)
    return settings


def flag_settings(passed: list[str], config: dict | None = None) -> dict[str, list[str]]:
    """Pass-through flags as {flag: values}, order-free: the last of a repeated flag wins (as in the CLI), and the
    LOCATION_FLAGS are left out (`--data.root` stays where the runs read a folder dataset: the flag's, else the
    run's `config`'s `data.dataset`)."""
    settings = _all_flags(passed)
    location = LOCATION_FLAGS - {"--data.root"} if _dataset(settings, config) == "folder" else LOCATION_FLAGS
    return {k: v for k, v in settings.items() if k not in location | ARITHMETIC_FLAGS}


def config_settings(tree: dict, prefix: str = "") -> dict[str, Any]:
    """{"model": {"init_args": {"lr": 1}}} -> {"model.lr": 1}: a config's settings as flags name them."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = prefix if key == "init_args" else f"{prefix}{key}."
        if isinstance(value, dict):
            flat.update(config_settings(value, name))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _unset_changed(config: dict, passed: list[str]) -> tuple[type | None, dict[str, Any]]:
    """The model class of `config` and its `former_defaults` for the settings that neither `config` nor a pass-through
    flag (`--model.<key>`) sets: those the run takes from the class's default of the day."""
    model = config.get("model")
    if not isinstance(model, dict):
        return None, {}
    try:
        cls = import_class(model["class_path"])
    except (KeyError, TypeError, ImportError, AttributeError, ValueError):
        return None, {}
    init_args, flags = model.get("init_args") or {}, _all_flags(passed)
    return cls, {k: v for k, v in (getattr(cls, "former_defaults", None) or {}).items()
                 if k not in init_args and f"--model.{k}" not in flags and f"--model.init_args.{k}" not in flags}


def current_defaults(config: dict, passed: list[str]) -> dict[str, Any]:
    """The defaults in force now of the model's hyper-parameters whose default changed (`former_defaults`), for those
    that `config` and the flags leave unset: stored with a study record, so that a later change of default is seen."""
    cls, unset = _unset_changed(config, passed)
    defaults = {}
    for key in unset:
        for klass in cls.__mro__:  # the first __init__ that names it (a user's subclass may take **kwargs only)
            param = inspect.signature(klass.__init__).parameters.get(key) if "__init__" in vars(klass) else None
            if param is not None and param.default is not inspect.Parameter.empty:
                defaults[key] = param.default
                break
    return defaults


def effective_config(config: dict, defaults: dict[str, Any] | None, passed: list[str] | None = None) -> dict:
    """`config` with each hyper-parameter whose default changed, and that it and the flags `passed` leave unset,
    filled in as it trained when its record was made: `defaults` as the record stored them, or (a record made before
    records stored them) the former default. Two configs that train the same network then compare equal, and a
    config that relied on a default that has since changed does not pass for the same one."""
    _, unset = _unset_changed(config, passed or [])
    if not unset:
        return config
    missing = {k: (defaults or {}).get(k, v) for k, v in unset.items()}
    init_args = config["model"].get("init_args") or {}
    return {**config, "model": {**config["model"], "init_args": {**init_args, **missing}}}


def check_same_study(path: Path, old: dict, record: dict) -> None:
    """Refuse to mix settings: `old` is the study record stored with `path` (a result, or a started run)."""
    configs = (effective_config(old.get("config") or {}, old.get("defaults"), old.get("pass_through")),
               effective_config(record["config"], record.get("defaults"), record["pass_through"]))
    if old and (configs[0] != configs[1] or flag_settings(old.get("pass_through") or [], old.get("config"))
                != flag_settings(record["pass_through"], record["config"])):
        was, now = config_settings(configs[0]), config_settings(configs[1])
        changed = [k for k in sorted(set(was) | set(now)) if was.get(k) != now.get(k)]
        which = f": {', '.join(f'{k} {was.get(k)} -> {now.get(k)}' for k in changed)}"
        raise ConfigError(f"{path} was made with other settings ({old.get('reproduce')}) than this call "
                          f"({record['reproduce']}){which if changed else ''}; use another --output, or the same "
                          f"config and flags")
    if old.get("data") and record.get("data") and old["data"] != record["data"]:
        root = folder_root(record["config"], record["pass_through"])
        raise ConfigError(f"{path} was made on other images: the folder {root} has changed since (files added, "
                          f"removed or resized); use another --output for the new data, or restore the images the "
                          f"study was made on")


def trainer_setting(config: dict, passed: list[str], key: str) -> Any:
    """A run's `trainer.<key>`: the pass-through flag where given (as the CLI would parse its value), else the
    config's; None when neither sets it. Launchers size a run's devices and nodes from it."""
    values = flag_settings(passed).get(f"--trainer.{key}")
    if values:
        return yaml.safe_load(values[-1])
    return (config.get("trainer") or {}).get(key)


PRECISION_ALIASES = {"32": "32-true", "64": "64-true", "16": "16-mixed", "bf16": "bf16-mixed"}  # Lightning's


def run_precision(config: dict, passed: list[str], infer: bool = True) -> str | None:
    """The precision a run will train in: `--trainer.precision` (flag or config), else (`infer`) what `fit` would pick
    on this machine for the run's accelerator (hardware.default_precision), in Lightning's spelling (`32-true`);
    None where it is not set and not inferred (a SLURM job picks it on its node, not here)."""
    value = trainer_setting(config, passed, "precision")
    if value is None:
        if not infer:
            return None
        value = default_precision(trainer_setting(config, passed, "accelerator") or "auto")
    return PRECISION_ALIASES.get(str(value), str(value))


def run_flushes(passed: list[str]) -> bool:
    """Whether a run will flush subnormal floats: the last `--flush_denormal` passed (fit's default: true)."""
    values = _all_flags(passed).get("--flush_denormal")
    return not values or values[-1].lower() in ("true", "1", "yes")
