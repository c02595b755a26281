"""A study's search space and its trials: which configurations each model is tuned over.

`--search "model.lr=loguniform(3e-4,1e-2)" "model.weight_decay=loguniform(0.005,0.3)"` (or a preset's
`study.yaml`) names any `model.*`, `data.*` or `trainer.*` setting and how to draw it: `loguniform(low, high)`,
`uniform(low, high)`, `intuniform(low, high)` or `choice(a, b, ...)`. Trials are drawn with Optuna's ask-and-tell
interface into `DIR/tuning/optuna.db`, one Optuna study per model:

- **Equal budget, paired trials.** With the default random sampler, trial n of every model is drawn from a sampler
  seeded by (`--search.seed`, n) alone, so every model gets the same K configurations, and a rerun (or a later
  `--trials` that asks for more) draws the same ones: the comparison between models is not confounded by one of
  them getting luckier draws. Random search is also what makes the expected-best-score curves (Dodge et al.
  2019) honest.
- An adaptive sampler (Optuna's TPE) is not offered: it learns from finished trials, but a study plans all its
  trials before it trains them (so that they run through any launcher, SLURM included), so it would draw exactly
  what the random sampler draws while claiming otherwise.

A trial asked once is stored with its parameters and its distributions and is never drawn again; its score
(held-out top-1) is told to Optuna when its run finishes, so the storage is a complete record of the search.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from convmixer_lit.errors import ConfigError

KINDS = ("loguniform", "uniform", "intuniform", "choice")
SECTIONS = ("model", "data", "trainer")
SAMPLERS = ("random",)


@dataclass(frozen=True)
class Dimension:
    """One searched setting: its dotted key (`model.lr`), the distribution's kind and its arguments."""

    key: str
    kind: str
    args: tuple

    @property
    def spec(self) -> str:
        return f"{self.key}={self.kind}({', '.join(_fmt(a) for a in self.args)})"

    def distribution(self):
        import optuna

        if self.kind == "choice":
            return optuna.distributions.CategoricalDistribution(list(self.args))
        low, high = self.args
        if self.kind == "intuniform":
            return optuna.distributions.IntDistribution(int(low), int(high))
        return optuna.distributions.FloatDistribution(float(low), float(high), log=self.kind == "loguniform")


def _fmt(value: Any) -> str:
    return repr(value) if isinstance(value, str) else f"{value:g}" if isinstance(value, float) else str(value)


def _literal(text: str) -> Any:
    """A distribution argument: a number where it reads as one, true/false/null, else the bare string."""
    text = text.strip().strip("'\"")
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("null", "none"):
        return None
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def parse_dimension(spec: str) -> Dimension:
    """`model.lr=loguniform(3e-4, 1e-2)` -> Dimension; a malformed spec is a ConfigError naming the fix."""
    match = re.fullmatch(r"\s*(?:--)?([\w.]+)\s*[=:]\s*(\w+)\s*\((.*)\)\s*", spec)
    usage = (f"--search {spec!r}: write KEY=KIND(ARGS), e.g. \"model.lr=loguniform(3e-4,1e-2)\"; KIND is one of "
             f"{', '.join(KINDS)}")
    if not match:
        raise ConfigError(usage)
    key, kind, body = match.groups()
    if kind not in KINDS:
        raise ConfigError(usage)
    if key.split(".")[0] not in SECTIONS or key.count(".") < 1:
        raise ConfigError(f"--search {spec!r}: the key must be a model.*, data.* or trainer.* setting, as its flag "
                          f"is spelt without the dashes (model.lr for --model.lr)")
    args = tuple(_literal(a) for a in body.split(",")) if body.strip() else ()
    if kind == "choice":
        if len(args) < 2:
            raise ConfigError(f"--search {spec!r}: choice needs at least two values")
        return Dimension(key, kind, args)
    if len(args) != 2 or not all(isinstance(a, (int, float)) and not isinstance(a, bool) for a in args):
        raise ConfigError(f"--search {spec!r}: {kind} takes two numbers, low and high")
    low, high = args
    if not low < high or not (math.isfinite(low) and math.isfinite(high)):
        raise ConfigError(f"--search {spec!r}: low must be below high")
    if kind == "loguniform" and low <= 0:
        raise ConfigError(f"--search {spec!r}: loguniform needs a positive low end")
    if kind == "intuniform" and not all(isinstance(a, int) for a in args):
        raise ConfigError(f"--search {spec!r}: intuniform takes two integers")
    return Dimension(key, kind, args)


def parse_space(specs: list[str] | dict[str, str]) -> list[Dimension]:
    """A search space from `--search` strings or a preset's `search:` mapping (key -> `kind(args)`), sorted by key
    (so the draw order, and thus the trials, does not depend on the order they were written in)."""
    items = [f"{k}={v}" for k, v in specs.items()] if isinstance(specs, dict) else list(specs)
    dims = [parse_dimension(s) for s in items]
    keys = [d.key for d in dims]
    if len(set(keys)) != len(keys):
        raise ConfigError(f"--search names {sorted(k for k in keys if keys.count(k) > 1)[0]} twice")
    return sorted(dims, key=lambda d: d.key)


def apply_params(config: dict, params: dict[str, Any]) -> dict:
    """A copy of a `fit` config with dotted settings replaced: `model.lr` goes to `model.init_args.lr`."""
    import copy

    out = copy.deepcopy(config)
    for key, value in params.items():
        section, *path = key.split(".")
        node = out.setdefault(section, {}) or {}
        out[section] = node
        if section == "model" and "class_path" in node:
            node = node.setdefault("init_args", {})
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = value
    return out


def get_param(config: dict, key: str) -> Any:
    """A `fit` config's dotted setting, the inverse of `apply_params`: `model.lr` is `model.init_args.lr`; None where
    the config does not set it."""
    section, *path = key.split(".")
    node = config.get(section) or {}
    if section == "model" and "init_args" in node:
        node = node["init_args"]
    for part in path:
        node = node.get(part) if isinstance(node, dict) else None
    return node


def trial_seed(search_seed: int, number: int) -> int:
    """The sampler's seed for trial `number`: a function of the two alone, so every model's trial n is the same."""
    return (search_seed * 1_000_003 + number) % (1 << 31)


class Trials:
    """The trials of one tuned study, kept in Optuna storage (`DIR/tuning/optuna.db`): one Optuna study per model,
    asked from this (orchestrating) process only; runs never touch the database."""

    def __init__(self, path: Path, space: list[Dimension], sampler: str = "random", seed: int = 0) -> None:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        if sampler not in SAMPLERS:
            raise ConfigError(f"--search.sampler {sampler}: use one of {', '.join(SAMPLERS)}")
        path.parent.mkdir(parents=True, exist_ok=True)
        self.storage = optuna.storages.RDBStorage(f"sqlite:///{path.resolve()}")
        self.space, self.sampler, self.seed = space, sampler, seed

    def _study(self, entry: str, number: int):
        import optuna

        seed = trial_seed(self.seed, number)
        sampler = optuna.samplers.RandomSampler(seed=seed)
        return optuna.create_study(study_name=entry, storage=self.storage, sampler=sampler, direction="maximize",
                                   load_if_exists=True)

    def params(self, entry: str, k: int) -> list[dict[str, Any]]:
        """The first `k` trials' parameters of `entry`: those stored, then new ones asked until there are `k`."""
        study = self._study(entry, 0)
        trials = sorted(study.get_trials(deepcopy=False), key=lambda t: t.number)
        distributions = {d.key: d.distribution() for d in self.space}
        for trial in trials:
            if trial.distributions != distributions:
                raise ConfigError(f"{entry}'s stored trials were drawn from {trial.distributions}, this call "
                                  f"searches {distributions}; use another --output for another search space")
        stored = [t.params for t in trials]
        while len(stored) < k:
            study = self._study(entry, len(stored))
            stored.append(study.ask(distributions).params)
        return stored[:k]

    def tell(self, entry: str, number: int, value: float | None) -> None:
        """Record trial `number`'s score (None: it failed, e.g. the loss diverged). A trial told before is left."""
        import optuna

        study = self._study(entry, number)
        trial = next(t for t in study.get_trials(deepcopy=False) if t.number == number)
        if trial.state != optuna.trial.TrialState.RUNNING:
            return
        state = optuna.trial.TrialState.COMPLETE if value is not None else optuna.trial.TrialState.FAIL
        study.tell(number, value, state=state)
