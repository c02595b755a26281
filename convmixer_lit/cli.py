"""LightningCLI wiring shared by the commands: model names, defaults, run folders, resume and one-line errors."""

from __future__ import annotations

import difflib
import importlib
import importlib.metadata
import inspect
import os
import re
from pathlib import Path

import yaml
from jsonargparse import ArgumentParser
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import LearningRateMonitor
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI, SaveConfigCallback
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_info

import convmixer_lit.models  # noqa: F401  (registers the built-in architectures)
from convmixer_lit import hardware
from convmixer_lit.base import MODELS, ImageClassifier, import_class
from convmixer_lit.callbacks import CudaSpeedups, FiniteLoss, RunSummary
from convmixer_lit.checkpoint import AtomicCheckpointIO, BestAndLastCheckpoint, check_checkpoint
from convmixer_lit.data import ImagenetteDataModule
from convmixer_lit.errors import ConfigError, UserError, exit_with, one_line

LOG_DIR = "lightning_logs"


def load_plugins() -> None:
    """Import architectures that installed packages advertise under the `convmixer_lit.models` entry point."""
    for ep in importlib.metadata.entry_points(group="convmixer_lit.models"):
        ep.load()


def model_class_path(value: str, flag: str = "--model") -> str:
    """`vit` -> `convmixer_lit.models.vit.ViT`; a dotted path is imported (so its subclasses register) and kept."""
    if value.startswith("{") or value.endswith((".yaml", ".yml", ".json")):
        return value  # jsonargparse's own forms: inline JSON or a config file for the model
    if "." in value:
        module = value.rsplit(".", 1)[0]
        try:
            imported = importlib.import_module(module)
        except ImportError as e:
            raise ConfigError(f"{flag} {value}: cannot import {module} ({e}); is it on PYTHONPATH?") from None
        if not isinstance(getattr(imported, value.rsplit(".", 1)[1], None), type):
            raise ConfigError(f"{flag} {value}: {module} has no class {value.rsplit('.', 1)[1]}")
        return value
    cls = MODELS.get(value.lower())
    if cls is None:
        raise ConfigError(f"unknown model {value!r}; available: {', '.join(sorted(MODELS))}, or a class path "
                          f"such as my_package.my_module.MyNet")
    return f"{cls.__module__}.{cls.__qualname__}"


def resolve_model_names(argv: list[str]) -> list[str]:
    """Rewrite `--model NAME` / `--model=NAME`, and `--model.help NAME` (a model's own flags), to full class paths
    (jsonargparse only knows exact class names)."""
    argv = list(argv)
    for i, arg in enumerate(argv):
        if arg in ("--model", "--model.help") and i + 1 < len(argv) and not argv[i + 1].startswith("-"):
            argv[i + 1] = model_class_path(argv[i + 1], arg)
        elif arg.startswith(("--model=", "--model.help=")):
            flag, value = arg.split("=", 1)
            argv[i] = f"{flag}={model_class_path(value, flag)}"
    return argv


def check_config_files(argv: list[str]) -> None:
    """A missing or unparsable `--config` file is named in one line (jsonargparse's message names neither)."""
    for i, arg in enumerate(argv):
        if arg in ("--config", "-c") and i + 1 < len(argv):
            value = argv[i + 1]
        elif arg.startswith("--config="):
            value = arg.split("=", 1)[1]
        else:
            continue
        path = Path(value)
        if not path.is_file():
            if value.lstrip().startswith("{") or "\n" in value or ": " in value:
                continue  # inline YAML/JSON, which jsonargparse also accepts
            raise ConfigError(f"--config {value}: no such file")
        try:
            yaml.safe_load(path.read_text())
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            raise ConfigError(f"--config {value} is not valid YAML{where} ({getattr(e, 'problem', None) or e}); "
                              f"fix the file or pass another one") from None
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError(f"--config {value}: cannot read it ({e})") from None


_TYPE_NAMES = {"int": "an integer", "float": "a number", "bool": "true or false", "str": "a string"}
_NOISE = ("Does not validate against any of the Union subtypes", "Subtypes:", "Errors:", "Given value",
          "Problem with given class_path", "Parser key", "Expected a <class 'NoneType'>")


def _init_arguments(class_path: str) -> list[str]:
    """Constructor argument names of a model class and its bases (the `--model.*` flags it takes)."""
    try:
        cls = import_class(class_path)
    except (ImportError, AttributeError, ValueError):
        return []
    names = []
    for klass in cls.__mro__:
        if "__init__" in vars(klass):
            names += [n for n, p in inspect.signature(klass.__init__).parameters.items()
                      if n != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)]
    return names


def _did_you_mean(flag: str, options: list[str]) -> str:
    close = difflib.get_close_matches(flag, options, n=1, cutoff=0.6)
    return f"; did you mean {close[0]}?" if close else ""


def condense_parse_error(message: str, parser: ArgumentParser | None = None) -> str:
    """jsonargparse's parse error (a usage wall, nested Union reports) as one line: the flag, the value, the fix."""
    text = message.strip()
    prog = parser.prog if parser is not None else "python -m convmixer_lit.fit"
    if text.startswith("unrecognized arguments:"):
        rest = text.split(":", 1)[1].split()
        flag = next((a for a in rest if a.startswith("-")), rest[0] if rest else "").split("=", 1)[0]
        options = [o for o in (parser._option_string_actions if parser is not None else ()) if o.startswith("--")]
        return (f"unknown flag {flag}{_did_you_mean(flag, options)} (flags are spelt in full; "
                f"`{prog} --help` lists them)")
    group = re.fullmatch(r"Group '([^']+)' does not accept option '([^']+)'", text)
    if group:  # a config file's misspelt key
        key = f"{group.group(1)}.{group.group(2)}"
        options = [o[2:] for o in (parser._option_string_actions if parser is not None else ()) if o.startswith("--")]
        return f"unknown option {key} (in a config file){_did_you_mean(key, options)}"
    key = ".".join(re.findall(r'Parser key "([^"]+)"', text))
    rejected = re.search(r"Option '([^']+)' is not accepted", text)
    class_path = re.search(r"Problem with given class_path '([^']+)'", text)
    if rejected:
        flag = f"--{key + '.' if key else ''}{rejected.group(1)}"
        owner = f" of {class_path.group(1).rsplit('.', 1)[-1]}" if class_path else ""
        options = [f"--{key}.{n}" for n in _init_arguments(class_path.group(1))] if class_path else []
        return f"{flag} is not an option{owner}{_did_you_mean(flag, options)}"
    literals, types = [], []
    if key:
        for t in re.findall(r"Expected a (.+?)(?:\. Got value: .*)?$", text, flags=re.M):
            lit = re.fullmatch(r"typing\.Literal\[(.*)\]", t.strip())
            if lit:
                literals += [v.strip().strip("'\"") for v in lit.group(1).split(",")]
            elif "NoneType" not in t:
                name = re.sub(r"<class '(.+)'>", r"\1", t.strip())
                types.append(_TYPE_NAMES.get(name, name))
    if literals or types:
        wanted = ([f"one of {', '.join(dict.fromkeys(literals))}"] if literals else []) + types
        got = re.search(r"Got value: (.*)$", text, flags=re.M) or re.search(r"Given value: (.*)$", text, flags=re.M)
        value = f" {got.group(1).strip()!r}" if got else ""
        return f"--{key}{value}: expected {' or '.join(dict.fromkeys(wanted))}"
    if class_path:
        reason = text[class_path.end():].lstrip(":").strip().splitlines()[0].strip()
        return (f"--{key or 'model'} {class_path.group(1)}: cannot be used ({reason}); give a model name "
                f"({', '.join(sorted(MODELS))}) or an importable class path")
    lines = [line.strip() for line in text.splitlines()
             if line.strip() and not line.strip().lstrip("- ").startswith(_NOISE)]
    return f"--{key}: {' '.join(lines)}" if key else " ".join(lines)


class KitArgumentParser(LightningArgumentParser):
    """Parse errors are one line `error: ...` (exit 2), not a page of usage text and nested Union reports."""

    def error(self, message: str, ex: Exception | None = None):
        if not self.exit_on_error or os.environ.get("JSONARGPARSE_DEBUG"):
            return super().error(message, ex)
        exit_with(ConfigError(condense_parse_error(message, self)))


def find_user_error(error: BaseException | None) -> UserError | None:
    """The UserError a library wrapped (jsonargparse re-raises constructor errors as ValueError), if any."""
    seen: set[int] = set()
    stack = [error]
    while stack:
        e = stack.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, UserError):
            return e
        stack += [e.__context__, e.__cause__]
    return None


def check_writable(folder: Path) -> None:
    """Refuse, before anything runs, an output folder that cannot be created or written."""
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigError(f"--trainer.default_root_dir: cannot create {folder}, because {existing} is a file; "
                          f"pick another folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"--trainer.default_root_dir: cannot write to {existing} (permission denied); pick a "
                          f"folder you can write to")


def run_root(default_root_dir: str | None) -> Path:
    return Path(default_root_dir or os.getcwd()) / LOG_DIR


def latest_run(model_dir: Path) -> Path | None:
    """The highest-numbered `version_N` folder under a model's log folder that has a `last.ckpt`."""
    runs = [p for p in model_dir.glob("version_*") if (p / "checkpoints" / "last.ckpt").is_file()]
    runs = [p for p in runs if p.name.removeprefix("version_").isdigit()]
    return max(runs, key=lambda p: int(p.name.removeprefix("version_")), default=None)


class KeepEveryConfig(SaveConfigCallback):
    """Saves `config.yaml`; a resumed run adds `config.resumed-N.yaml` instead of overwriting the original."""

    def setup(self, trainer, pl_module, stage: str) -> None:
        if not self.already_saved and trainer.log_dir:
            n = 0
            while (Path(trainer.log_dir) / self.config_filename).exists():
                n += 1
                self.config_filename = f"config.resumed-{n}.yaml"
        super().setup(trainer, pl_module, stage)


class KitTrainer(Trainer):
    """Lightning's Trainer, where an integer `limit_*_batches` counts batches and a float is a fraction.

    Lightning annotates them `float | int`, so the CLI read `--trainer.limit_train_batches 1` (or `1` in a config) as
    1.0, the whole epoch, where a user means one batch; typed `int | float` here, `1` is one batch, `1.0` still 100%
    and `0.5` 50%. (`val_check_interval` is annotated int-first already.)

    Args:
        limit_train_batches: Training batches per epoch: an integer is a count of batches, a float a fraction.
        limit_val_batches: Validation batches: an integer is a count of batches, a float a fraction.
        limit_test_batches: Test batches: an integer is a count of batches, a float a fraction.
        limit_predict_batches: Prediction batches: an integer is a count of batches, a float a fraction.
    """

    def __init__(self, *, limit_train_batches: int | float | None = None, limit_val_batches: int | float | None = None,
                 limit_test_batches: int | float | None = None, limit_predict_batches: int | float | None = None,
                 **kwargs) -> None:
        super().__init__(limit_train_batches=limit_train_batches, limit_val_batches=limit_val_batches,
                         limit_test_batches=limit_test_batches, limit_predict_batches=limit_predict_batches, **kwargs)


class KitCLI(LightningCLI):
    """`python -m convmixer_lit.fit`: LightningCLI with the kit's data module, base model and defaults."""

    def __init__(self, args: list[str] | None = None, **kwargs) -> None:
        self.summary_callback = RunSummary()
        super().__init__(
            ImageClassifier, ImagenetteDataModule, trainer_class=KitTrainer, subclass_mode_model=True, run=False,
            args=args,
            save_config_callback=KeepEveryConfig, auto_configure_optimizers=False, parser_class=KitArgumentParser,
            parser_kwargs={"prog": "python -m convmixer_lit.fit", "allow_abbrev": False,  # no silent --max_epoch
                           "description": "Train one architecture on Imagenette, Imagewoof or your own folder of "
                                          "images (--data.dataset folder) with the kit's recipe."},
            trainer_defaults={
                "max_epochs": 30, "log_every_n_steps": 10,
                "callbacks": [
                    BestAndLastCheckpoint(monitor="val/acc", mode="max", save_last=True,
                                          filename="best-epoch{epoch:02d}", auto_insert_metric_name=False),
                    LearningRateMonitor(logging_interval="step"), FiniteLoss(), CudaSpeedups(), self.summary_callback,
                ],
            },
            **kwargs)

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_argument("--ckpt_path", type=str | None, default=None,
                            help="Resume: 'last' continues the newest run of this model (or the run named by "
                                 "--run_name) in its own folder; a path resumes from that checkpoint.")
        parser.add_argument("--run_name", type=str | None, default=None,
                            help="Name of the run folder under lightning_logs/<model>/ (default: version_N, the "
                                 "next free N). An existing run is never overwritten: resume it with --ckpt_path "
                                 "last.")
        parser.add_argument("--flush_denormal", type=bool, default=True,
                            help="Treat subnormal floats as zero on the CPU (FTZ/DAZ): attention on real images "
                                 "produces them and x86 handles each in microcode; flushing trained the mixer "
                                 "study's attention cell faster with the same accuracy (docs/benchmarks.md). "
                                 "false: IEEE subnormals, PyTorch's default. Recorded in result.json.")
        parser.link_arguments("data.image_size", "model.init_args.image_size")
        parser.link_arguments("data", "model.init_args.num_classes", compute_fn=lambda dm: dm.num_classes,
                              apply_on="instantiate")
        parser.link_arguments("data", "model.init_args.class_names", compute_fn=lambda dm: dm.class_names,
                              apply_on="instantiate")

    def parse_arguments(self, parser: LightningArgumentParser, args) -> None:
        """As Lightning's, minus its warning that sys.argv is set too (fit.main passes argv, model names resolved)."""
        if not isinstance(args, list):
            return super().parse_arguments(parser, args)
        check_config_files(args)
        self.config = parser.parse_args(args)

    def instantiate_classes(self) -> None:
        """Constructor errors (a ConfigError/DataError wrapped by jsonargparse in a ValueError) as the error itself."""
        try:
            super().instantiate_classes()
        except UserError:
            raise
        except Exception as e:  # re-raised unless it wraps a UserError
            user_error = find_user_error(e)
            if user_error is None:
                raise
            raise user_error from None

    def before_instantiate_classes(self) -> None:
        trainer = self.config.trainer
        check_writable(run_root(trainer.default_root_dir))
        chosen = trainer.precision is None
        if chosen:
            trainer.precision = hardware.default_precision(trainer.accelerator)
        rank_zero_info(f"{hardware.describe(trainer.accelerator)} -> {trainer.precision}"
                       f"{'' if chosen else ' (--trainer.precision)'}")
        if trainer.benchmark is None and not trainer.deterministic:
            trainer.benchmark = True  # cuDNN autotuning: a run's shapes are fixed (without cuDNN it changes nothing)
        self.model_cls = import_class(self.config.model.class_path)
        self.run_dir = self._resolve_run_dir()
        # before the model and data are built: threads the CPU starts from here on inherit the setting
        self.summary_callback.flush_denormal = hardware.flush_denormals(self.config.flush_denormal)

    def _resolve_run_dir(self) -> Path | None:
        """Pick the run folder: a fresh `version_N`, or the resumed run's own folder (curves continue there)."""
        ckpt, name = self.config.ckpt_path, self.config.run_name
        model_dir = run_root(self.config.trainer.default_root_dir) / self.model_cls.model_name
        if name is not None and (not name or "/" in name or name.startswith(".")):
            raise ConfigError(f"--run_name {name!r}: use a plain folder name such as seed0")
        if ckpt == "last":
            run = latest_run(model_dir) if name is None else model_dir / name
            if run is None or not (run / "checkpoints" / "last.ckpt").is_file():
                where = model_dir if name is None else model_dir / name
                raise ConfigError(f"--ckpt_path last: no run of {self.model_cls.model_name} with a last.ckpt under "
                                  f"{where}; start one without --ckpt_path")
            self.config.ckpt_path = str(run / "checkpoints" / "last.ckpt")
            return run
        if name is not None:
            run = model_dir / name
            if run.exists() and ckpt is None:
                raise ConfigError(f"run folder {run} already exists; resume it with --ckpt_path last, or pick "
                                  f"another --run_name")
            return run
        if ckpt is not None:
            path = Path(ckpt)
            if not path.is_file():
                raise ConfigError(f"--ckpt_path {ckpt}: no such file")
            if path.parent.name == "checkpoints" and path.parent.parent.parent.resolve() == model_dir.resolve():
                return path.parent.parent
        return None

    def instantiate_trainer(self, **kwargs):
        if self.config.trainer.plugins is None:
            kwargs["plugins"] = [AtomicCheckpointIO()]
        if self.config.trainer.logger in (None, True):
            version = self.run_dir.name if self.run_dir is not None else None
            logger = TensorBoardLogger(run_root(self.config.trainer.default_root_dir),
                                       name=self.model_cls.model_name, version=version, default_hp_metric=False)
            # pick version_N now, before any DDP rank can create a run folder, so that all ranks pick the same N
            _ = logger.version
            kwargs["logger"] = logger
        try:
            return super().instantiate_trainer(**kwargs)
        except (MisconfigurationException, ValueError) as e:  # Trainer(...) rejects a --trainer.* value
            if isinstance(e, UserError):
                raise
            raise ConfigError(f"invalid --trainer.* setting: {one_line(e)}") from None

    def fit(self) -> dict:
        if self.config.ckpt_path:
            check_checkpoint(self.config.ckpt_path, self.model, self.datamodule)
        try:
            self.trainer.fit(self.model, datamodule=self.datamodule, ckpt_path=self.config.ckpt_path)
        except SystemExit:
            # Lightning ends a Ctrl-C with exit(1) and a SIGTERM with exit(0): both are interruptions to resume
            if self.trainer.interrupted:
                raise KeyboardInterrupt from None
            raise
        return self.summary_callback.summary or {}

