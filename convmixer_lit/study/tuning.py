"""A tuned study: every model gets the same K trials on a held-out part of train, then its best configuration is
retrained with fresh seeds and reported on val.

Layout of the study folder `DIR`:

    DIR/tuning/configs/<model>-trial<N>.yaml   each trial's full `fit` config (the preset's, the trial's draws, the
                                               held-out split): `fit --config` trains it again
    DIR/tuning/results/<model>-trial<N>-seed<S>.json, lightning_logs/, logs/   the trials, as a study's runs
    DIR/tuning/optuna.db                       the drawn trials and their scores (Optuna storage)
    DIR/tuning/tuning.json                     the search space, budget, sampler and the held-out split
    DIR/tuned/<model>.yaml                     the chosen configuration: `fit --config DIR/tuned/<model>.yaml`
    DIR/results/<model>-seed<S>.json           the finals, scored on val: the study's answer (report, factorial)

Trials are runs of their own (the same launchers, resumable, never rerun once finished); a trial whose loss
diverges is a result too (a configuration that does not train), not a failure of the study.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from convmixer_lit.callbacks import write_json_atomic
from convmixer_lit.errors import ConfigError
from convmixer_lit.study.plan import Run, display_path, flag_settings, plan, split_trial, study_record
from convmixer_lit.study.runs import check_reusable, check_runs_arithmetic, read_json
from convmixer_lit.study.search import SAMPLERS, Dimension, Trials, apply_params, parse_space

TUNING, TUNED = "tuning", "tuned"
HOLDOUT_FLAGS = ("--data.holdout_fraction", "--data.holdout_seed")  # trials only: compare moves them to the trials


@dataclass
class Tuning:
    """What a tuned study searches and how: the space, the budget, the sampler, the split and the trials' seed."""

    space: list[Dimension]
    trials: int
    sampler: str = "random"
    search_seed: int = 0
    holdout_fraction: float = 0.1
    holdout_seed: int = 0
    trial_seed: int = 0  # every trial trains with this seed (paired: the same data order for every trial and model)
    baseline: str | None = None  # the untuned study this one revisits (the report compares the rankings)

    def check(self, final_seeds: list[int], passed: list[str]) -> None:
        """Refuse, before anything is written, a budget, split, seeds or flags that cannot make a fair search."""
        if self.sampler not in SAMPLERS:
            raise ConfigError(f"sampler {self.sampler!r}: use one of {', '.join(SAMPLERS)}")
        given = {flag.removeprefix("--") for flag in flag_settings(passed)}
        for d in self.space:
            if d.key in given or d.key.replace("model.", "model.init_args.", 1) in given:
                raise ConfigError(f"--{d.key} is searched (--search {d.spec}): a flag that sets it would override "
                                  f"every trial's draw; drop the flag or the search")
        if self.trials < 1:
            raise ConfigError(f"--trials {self.trials}: give 1 or more trials per model")
        if not 0 < self.holdout_fraction < 1:
            raise ConfigError(f"--data.holdout_fraction {self.holdout_fraction}: a tuned study needs a held-out part "
                              f"of train, a fraction in (0, 1) such as 0.1")
        if self.trial_seed in final_seeds:
            raise ConfigError(f"--seeds {' '.join(map(str, final_seeds))} includes the trials' seed "
                              f"{self.trial_seed}: the finals must use fresh seeds (e.g. --seeds 1 2 3)")

    def record(self) -> dict:
        return {"search": [d.spec for d in self.space], "trials": self.trials, "sampler": self.sampler,
                "search_seed": self.search_seed, "holdout_fraction": self.holdout_fraction,
                "holdout_seed": self.holdout_seed, "trial_seed": self.trial_seed, "baseline": self.baseline}


def holdout_from_flags(passed: list[str]) -> tuple[list[str], dict[str, float]]:
    """Take `--data.holdout_fraction` / `--data.holdout_seed` out of the pass-through flags: in a tuned study they
    describe the trials' split and must not reach the finals, which train on all of train and score on val."""
    kept, found, skip = [], {}, False
    for i, token in enumerate(passed):
        if skip:
            skip = False
            continue
        flag, eq, value = token.partition("=")
        if flag in HOLDOUT_FLAGS:
            if not eq:
                value = passed[i + 1] if i + 1 < len(passed) else ""
                skip = True
            try:
                found[flag.removeprefix("--data.")] = float(value) if "fraction" in flag else int(value)
            except ValueError:
                raise ConfigError(f"{flag} {value!r}: expected a number") from None
            continue
        kept.append(token)
    return kept, found


def trial_runs(entries: dict[str, tuple[Path, dict, str]], tuning: Tuning, out: Path
               ) -> tuple[list[Run], dict[str, dict], dict[Run, dict], dict[Run, str]]:
    """The trials, trial-major (every model gets trial N before any gets N+1, so a study cut short has given every
    model the same budget). Nothing is written but the drawn trials' storage: the caller checks them first.

    `entries`: model entry -> (its preset config file, its parsed config, its model name). Returns the runs, each
    trial entry's config, each run's drawn parameters and the header of its config file."""
    folder = out / TUNING
    store = Trials(folder / "optuna.db", tuning.space, tuning.sampler, tuning.search_seed)
    drawn = {entry: store.params(entry, tuning.trials) for entry in entries}
    runs, configs, params, headers = [], {}, {}, {}
    for n in range(tuning.trials):
        for entry, (source, config, model_name) in entries.items():
            name = f"{entry}-trial{n}"
            trial_config = apply_params(config, {**drawn[entry][n], "data.holdout_fraction": tuning.holdout_fraction,
                                                 "data.holdout_seed": tuning.holdout_seed})
            run = Run(name, tuning.trial_seed, folder / "configs" / f"{name}.yaml", model_name, folder)
            runs.append(run)
            configs[name] = trial_config
            params[run] = drawn[entry][n]
            headers[run] = (f"Tuning trial {n} of {entry} ({display_path(source)}): "
                            f"{describe_params(drawn[entry][n])}; trains on train minus a held-out "
                            f"{tuning.holdout_fraction:g} (split seed {tuning.holdout_seed}) and is scored on that "
                            f"part, never on val. Written by convmixer_lit.compare.")
    return runs, configs, params, headers


def describe_params(params: dict[str, Any]) -> str:
    return ", ".join(f"{k} = {v:.4g}" if isinstance(v, float) else f"{k} = {v}" for k, v in sorted(params.items()))


def write_config(path: Path, config: dict, header: list[str]) -> None:
    """A `fit --config` file with a comment header, rewritten only when its content changes."""
    text = "".join(f"# {line}\n" for line in header) + yaml.safe_dump(config, sort_keys=False)
    if path.is_file() and path.read_text() == text:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def tell_finished(runs: list[Run], out: Path, tuning: Tuning) -> None:
    """Tell Optuna the score of every finished trial (held-out top-1; None for one that diverged)."""
    store = Trials(out / TUNING / "optuna.db", tuning.space, tuning.sampler, tuning.search_seed)
    for run in runs:
        if run.result_path.is_file():
            store.tell(*split_trial(run.entry), read_json(run.result_path).get("best_val_acc"))


def choose(entry: str, runs: list[Run]) -> tuple[Run, float] | None:
    """The best finished trial of `entry` and its held-out top-1 (ties: the earlier trial), or None if any of its
    trials has not finished: a model's finals start only once its whole budget is spent."""
    mine = [r for r in runs if split_trial(r.entry)[0] == entry]
    if not all(r.result_path.is_file() for r in mine):
        return None
    scored = [(read_json(r.result_path).get("best_val_acc"), r) for r in mine]
    scored = [(acc, r) for acc, r in scored if acc is not None]
    if not scored:
        raise ConfigError(f"every trial of {entry} diverged: widen or lower the search space (e.g. a smaller "
                          f"model.lr range) and use another --output")
    best_acc = max(acc for acc, _ in scored)
    return next(r for acc, r in scored if acc == best_acc), best_acc


def write_tuned(entry: str, config: dict, source: Path, run: Run, score: float, params: dict, tuning: Tuning,
                out: Path) -> Path:
    """`DIR/tuned/<entry>.yaml`: the preset's config with the best trial's draws, for the finals and for users."""
    path = out / TUNED / f"{entry}.yaml"
    write_config(path, apply_params(config, params), [
        f"{entry} tuned: {describe_params(params)} -- the best of {tuning.trials} trials "
        f"({tuning.sampler} search over {'; '.join(d.spec for d in tuning.space)})",
        f"by held-out top-1 {100 * score:.2f}% ({run.entry}, a {tuning.holdout_fraction:g} split "
        f"of train, seed {tuning.holdout_seed}); the rest is {display_path(source)}.",
        f"Train it: python -m convmixer_lit.fit --config {display_path(path)}"])
    return path


def check_tuning_record(out: Path, tuning: Tuning) -> None:
    """Refuse another search (space, sampler, seeds, split) in a folder whose trials already ran with one; before any
    trial has finished, the folder may still be retuned (a typo fixed)."""
    path = out / TUNING / "tuning.json"
    if not path.is_file() or not any((out / TUNING / "results").glob("*.json")):
        return
    old = json.loads(path.read_text())
    mine = {k: v for k, v in tuning.record().items() if k not in ("trials", "holdout", "baseline")}
    theirs = {k: v for k, v in old.items() if k not in ("trials", "holdout", "baseline")}
    if mine != theirs:
        changed = sorted(k for k in mine if mine[k] != theirs.get(k))
        was = ", ".join(f"{k}: {theirs.get(k)}" for k in changed)
        raise ConfigError(f"{out} was tuned with other settings ({was}); use another --output, or the same "
                          f"search flags")


def write_tuning_record(out: Path, tuning: Tuning, holdout: dict | None) -> None:
    """`DIR/tuning/tuning.json`: the space, budget, sampler and split, compared on every later call (the caller has
    checked them against it: check_tuning_record)."""
    path = out / TUNING / "tuning.json"
    if holdout is None and path.is_file():
        holdout = json.loads(path.read_text()).get("holdout")
    write_json_atomic(path, {**tuning.record(), "holdout": holdout})


def held_out_split(trials: list[Run]) -> dict | None:
    """The split the finished trials were scored on (their results record it); refused when they disagree, which
    means the train folder changed between them: their scores would not be comparable."""
    splits = {json.dumps(h, sort_keys=True): h for r in trials if r.result_path.is_file()
              if (h := read_json(r.result_path).get("holdout"))}
    if len(splits) > 1:
        raise ConfigError(f"the trials in {trials[0].out} held out different images ({len(splits)} splits: the train "
                          f"folder changed between them); their scores are not comparable: use another --output")
    return next(iter(splits.values()), None)


def trial_record(run: Run, config: dict, passed: list[str], preset: str | None, params: dict) -> dict:
    """A trial's study record: a run's, plus what was drawn (the report plots score against it)."""
    return {**study_record(run, config, passed, preset), "trial": split_trial(run.entry)[1], "params": params}


def read_study_file(path: Path) -> dict:
    """A preset's `study.yaml`: search (key -> kind(args)), trials, sampler, search_seed, holdout_fraction,
    holdout_seed, trial_seed, seeds, models, baseline (an untuned study folder the report compares rankings
    with) -- the defaults of compare's flags for that preset."""
    if not path.is_file():
        return {}
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as e:
        raise ConfigError(f"cannot read {path}: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must be a mapping of settings (search:, trials:, seeds:, ...)")
    unknown = sorted(set(data) - set(STUDY_KEYS))
    if unknown:
        raise ConfigError(f"{path}: unknown key {unknown[0]}; known: {', '.join(sorted(STUDY_KEYS))}")
    for key, value in data.items():
        kind, wanted = STUDY_KEYS[key]
        if key in ("seeds", "models"):
            ok = isinstance(value, list) and all(isinstance(v, kind) and not isinstance(v, bool) for v in value)
        else:
            ok = isinstance(value, kind) and not isinstance(value, bool)
        if not ok:
            raise ConfigError(f"{path}: {key}: {value!r} is not {wanted}")
    return data


STUDY_KEYS: dict[str, tuple[Any, str]] = {  # study.yaml: key -> (type, what the error says it must be)
    "search": ((dict, list), "a mapping of KEY: KIND(ARGS), e.g. model.lr: loguniform(3e-4, 1e-2)"),
    "trials": (int, "an integer (trials per model)"), "sampler": (str, "a sampler name (random)"),
    "search_seed": (int, "an integer"), "holdout_seed": (int, "an integer"), "trial_seed": (int, "an integer"),
    "holdout_fraction": ((int, float), "a number in (0, 1)"),
    "seeds": (int, "a list of integer seeds, e.g. [1, 2, 3]"), "models": (str, "a list of config names"),
    "baseline": (str, "the path of an untuned study folder"),
}


def tuning_from(opts_search: list[str] | None, opts: dict[str, Any], study: dict, holdout: dict) -> Tuning | None:
    """The study's Tuning from compare's flags over the preset's study.yaml; None for an untuned study."""
    specs = opts_search if opts_search else study.get("search")
    if not specs:
        return None
    trials = opts.get("trials") or study.get("trials")
    if not trials:
        raise ConfigError("a tuned study needs a budget: --trials K (the same K trials for every model)")

    def pick(key: str, default: Any) -> Any:
        return opts[key] if opts.get(key) is not None else study.get(key, default)

    return Tuning(parse_space(specs), int(trials), pick("sampler", "random"), int(pick("search_seed", 0)),
                  float(holdout.get("holdout_fraction", study.get("holdout_fraction", 0.1))),
                  int(holdout.get("holdout_seed", study.get("holdout_seed", 0))), int(pick("trial_seed", 0)),
                  study.get("baseline"))


def entries_for(models: list[str], configs: dict[str, dict], runs: list[Run]) -> dict[str, tuple[Path, dict, str]]:
    """model entry -> (config file, parsed config, model name), from a plan's runs."""
    first = {r.entry: r for r in reversed(runs)}
    return {m: (first[m].config, configs[m], first[m].model_name) for m in models if m in first}



Launch = Callable[[list[Run], dict[Run, dict], dict[str, dict], list[str]], bool]  # a launcher: True when all done


def run_tuned(models: list[str], seeds: list[int], preset: str | None, out: Path, passed: list[str], tuning: Tuning,
              launch: Launch, gitignore: str, finals: bool = True, infer_precision: bool = True) -> bool:
    """Tune every model (its trials, through `launch`), then train each model's best configuration with `seeds` and
    score it on val (unless not `finals`). True when all of it is finished; False while runs are still queued
    (SLURM). Everything is checked before anything is written or trained: a refused call changes no file."""
    tuning.check(seeds, passed)
    base_runs, configs = plan(models, [tuning.trial_seed], preset, out)
    entries = entries_for(models, configs, base_runs)
    for entry, config in configs.items():
        if "holdout_fraction" in (config.get("data") or {}):
            raise ConfigError(f"{entry}'s config sets data.holdout_fraction: a tuned study holds out for its trials "
                              f"only (--data.holdout_fraction, or study.yaml), so its finals score on val; drop it")
    untuned = [p.name for p in sorted((out / "results").glob("*.json")) if "tuned" not in read_json(p).get("study", {})]
    if untuned:
        raise ConfigError(f"{out} holds untuned runs ({untuned[0]}, ...): a tuned study's results are its finals "
                          f"only; use another --output")
    check_tuning_record(out, tuning)
    trials, trial_configs, params, headers = trial_runs(entries, tuning, out)
    records = {r: trial_record(r, trial_configs[r.entry], passed, preset, params[r]) for r in trials}
    check_reusable(trials, records)
    check_runs_arithmetic(out, trials, trial_configs, passed, infer_precision)
    for folder in (out, out / TUNING):  # checked: now the study's files
        folder.mkdir(parents=True, exist_ok=True)
        if not (folder / ".gitignore").exists():
            (folder / ".gitignore").write_text(gitignore)
    write_tuning_record(out, tuning, None)
    for run in trials:
        write_config(run.config, trial_configs[run.entry], [headers[run]])
    print(f"tuning: {len(entries)} models x {tuning.trials} trials ({tuning.sampler} search, seed "
          f"{tuning.search_seed}: {'; '.join(d.spec for d in tuning.space)}), each scored on a held-out "
          f"{tuning.holdout_fraction:g} of train", flush=True)
    try:
        trials_done = launch(trials, records, trial_configs, passed)
    finally:
        tell_finished(trials, out, tuning)
        write_tuning_record(out, tuning, held_out_split(trials))
    if not trials_done:
        return False
    final_runs, final_configs, final_records, picked = [], {}, {}, {}
    for entry, (_, config, model_name) in entries.items():
        best = choose(entry, trials)
        assert best is not None  # every trial finished
        picked[entry] = best
        final_configs[entry] = apply_params(config, params[best[0]])
        final_runs += [Run(entry, seed, out / TUNED / f"{entry}.yaml", model_name, out) for seed in seeds]
    final_runs.sort(key=lambda r: seeds.index(r.seed))  # seed-major, as an untuned study
    for run in final_runs:
        best, score = picked[run.entry]  # the record the factorial and the report read: score, trial, draws
        final_records[run] = {**study_record(run, final_configs[run.entry], passed, preset),
                              "tuned": {"held_out_top1": score, "trial": best.entry, **params[best]}}
    # before tuned/*.yaml is (re)written: finals made from another choice (e.g. more --trials found a better one)
    # are refused with their files as they were
    check_reusable(final_runs, final_records)
    check_runs_arithmetic(out, final_runs, final_configs, passed, infer_precision)
    for entry, (source, config, _) in entries.items():
        best, score = picked[entry]
        path = write_tuned(entry, config, source, best, score, params[best], tuning, out)
        print(f"tuned {entry}: {describe_params(params[best])} (held-out top-1 {100 * score:.2f}%, {best.entry}) -> "
              f"{display_path(path)}", flush=True)
    if not finals:
        return True
    print(f"finals: {len(entries)} tuned models x seeds {' '.join(map(str, seeds))}, trained on all of train and "
          f"scored on val", flush=True)
    return launch(final_runs, final_records, final_configs, passed)
