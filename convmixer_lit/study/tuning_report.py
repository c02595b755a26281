"""The report of a tuned study's tuning stage, from its files alone: `tuning.md`, `tuning_lr.png`, `tuning_evp.png`.

The statistics are computed once, by `summarize`, into plain data (`TuningSummary`) that the markdown and the figures
only read: every trial's draws and held-out score, each model's expected best score after n = 1..K trials (Dodge et
al. 2019, exact), the chosen configuration and its finals on val, and, where the study names the untuned study it
revisits (`baseline` in the preset's study.yaml), whether each comparison ranks the same way tuned and untuned.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from convmixer_lit.stats import describe, expected_max
from convmixer_lit.study.factorial import LOAD_SLACK, MIXERS, STEMS, had_machine_alone
from convmixer_lit.study.plan import split_trial
from convmixer_lit.study.report import TUNING_RECORD, load_results
from convmixer_lit.study.search import get_param, parse_space

REPORT, LR_FIGURE, EVP_FIGURE = "tuning.md", "tuning_lr.png", "tuning_evp.png"


@dataclass
class Trial:
    number: int
    params: dict[str, Any]
    score: float | None  # best-epoch held-out top-1; None: diverged
    wall_time_s: float | None
    images_per_s: float | None
    alone: bool  # trained with the machine to itself (one run at a time, low load): its speed is its own


@dataclass
class ModelTuning:
    entry: str
    trials: list[Trial]
    evp: list[float]  # expected best held-out top-1 after n = 1..K trials
    chosen: Trial | None
    finals: list[float] = field(default_factory=list)  # best-epoch val top-1 of the chosen config's fresh seeds
    final_seeds: list[int] = field(default_factory=list)
    finals_last: list[float] = field(default_factory=list)  # the same runs' last-epoch val top-1 (no epoch chosen)


@dataclass
class Comparison:
    """One comparison (an effect of the factorial, or two models), untuned and tuned: (mean, CI low, CI high)."""

    label: str
    untuned: tuple[float, float | None, float | None]
    tuned: tuple[float, float | None, float | None]
    paired: bool = True  # a factorial effect paired over each study's seeds; False: two models' means, Welch

    @property
    def sentence(self) -> str:
        def said(value: tuple[float, float | None, float | None]) -> str:
            mean, lo, hi = value
            ci = "" if lo is None else f", 95% CI [{100 * lo:+.1f}, {100 * hi:+.1f}]"
            return f"{100 * mean:+.1f} pp{ci}"

        def sign(value: tuple[float, float | None, float | None]) -> int:
            mean, lo, hi = value
            return 0 if lo is None or lo <= 0 <= hi else (1 if mean > 0 else -1)

        before, after = sign(self.untuned), sign(self.tuned)
        product = self.untuned[0] * self.tuned[0]
        means = ("the means rank the same way" if product > 0 else "the means rank the other way" if product < 0 else
                 "one of the means is 0")
        if self.untuned[1] is None or self.tuned[1] is None:  # a side without an interval: nothing is tested
            verdict = f"not testable yet (an interval needs 2+ seeds on each side); {means}"
        elif before == after:
            verdict = ("the ranking is the same tuned as at the shared settings" if before else
                       f"not resolved either way, tuned or not ({means})")
        elif before and after:
            verdict = "**tuning reverses the ranking** (resolved both ways)"
        elif before:  # a tuned interval that holds 0 says "not shown", not "equal": more seeds could still resolve it
            verdict = (f"resolved at the shared settings, not resolved tuned ({means}): tuning may have shrunk, "
                       "removed or reversed the difference; more seeds would tell")
        else:
            verdict = "tuning resolves a difference the shared settings left open"
        return f"- {self.label}: {said(self.untuned)} at the shared settings, {said(self.tuned)} tuned — {verdict}."


@dataclass
class TuningSummary:
    record: dict[str, Any]  # tuning.json: space, budget, sampler, split
    models: list[ModelTuning]
    diverged_score: float  # what a diverged trial counts as in the expected-best curves: chance
    machines: list[str]
    precisions: list[str]
    baseline: str | None = None
    comparisons: list[Comparison] = field(default_factory=list)
    baseline_differs: str = ""  # what the untuned study's recipe differs in besides the searched settings
    drawn: list[dict[str, Any]] = field(default_factory=list)  # every planned trial's draws, finished or not
    cost: dict[str, tuple[int, float]] = field(default_factory=dict)  # stage -> (runs, machine hours)
    finals_cost: dict[int, tuple[int, float]] = field(default_factory=dict)  # final seed -> (runs, machine hours)


def machine_hours(runs: list[dict]) -> float:
    """The machine time the runs took, in hours: each run's wall time times the share of the machine's cores it held
    (two one-thread runs at once on 2 cores count half each), so the sum is the machine's busy time whatever
    `--jobs` was, and compares with a budget such as "the whole study within 8 h of this machine"."""
    total = 0.0
    for r in runs:
        cores = (r.get("environment") or {}).get("cpu_cores") or (r.get("hardware") or {}).get("cpu_cores")
        threads = r.get("torch_threads")
        share = 1.0 if not cores or not threads else min(1.0, threads / cores)
        total += (r.get("wall_time_s") or 0.0) * share
    return total / 3600


def cost_by_seed(runs: list[dict]) -> dict[int, tuple[int, float]]:
    """Each seed's (runs, machine hours), by seed: a study's budget read for any number of its seeds."""
    by_seed: dict[int, list[dict]] = {}
    for r in runs:
        if r.get("seed") is not None:
            by_seed.setdefault(r["seed"], []).append(r)
    return {seed: (len(mine), machine_hours(mine)) for seed, mine in sorted(by_seed.items())}


def _trial(result: dict) -> Trial:
    study = result.get("study", {})
    return Trial(int(study.get("trial", -1)), study.get("params", {}), result.get("best_val_acc"),
                 result.get("wall_time_s"), result.get("train_images_per_s"), had_machine_alone(result))


def summarize(out: Path) -> TuningSummary | None:
    """Everything the tuning report shows, from DIR/tuning/ and DIR/results/; None before the first trial ends."""
    folder = out / "tuning"
    record = json.loads((folder / TUNING_RECORD).read_text())
    files = sorted((folder / "results").glob("*.json"))
    if not files:
        return None
    by_entry: dict[str, list[dict]] = {}
    for path in files:
        result = json.loads(path.read_text())
        entry = split_trial(result.get("study", {}).get("entry") or path.stem.rsplit("-seed", 1)[0])[0]
        by_entry.setdefault(entry, []).append(result)
    classes = {len(r.get("hparams", {}).get("class_names") or []) or r.get("hparams", {}).get("num_classes")
               for rs in by_entry.values() for r in rs} - {None, 0}
    chance = 1 / max(classes) if classes else 0.0
    finals = load_results(out) if any((out / "results").glob("*.json")) else {}
    models = []
    for entry, results in by_entry.items():
        budget = record.get("trials", len(results))  # trials past the budget (a lowered --trials) do not count
        trials = sorted((t for t in map(_trial, results) if t.number < budget), key=lambda t: t.number)
        scores = [chance if t.score is None else t.score for t in trials]
        evp = [expected_max(scores, n) for n in range(1, len(scores) + 1)]
        scored = [t for t in trials if t.score is not None]
        complete = len(trials) >= budget
        chosen = max(scored, key=lambda t: (t.score, -t.number)) if scored and complete else None
        runs = finals.get(entry, [])
        models.append(ModelTuning(entry, trials, evp, chosen,
                                  [r["best_val_acc"] for r in runs if r.get("best_val_acc") is not None],
                                  [r.get("seed") for r in runs],
                                  [r["final_val_acc"] for r in runs if r.get("final_val_acc") is not None]))
    models.sort(key=lambda m: display_order(by_entry[m.entry][0], m.entry))
    every = [r for group in (by_entry, finals) for rs in group.values() for r in rs]  # trials and finals
    envs = {f"{r.get('environment', {}).get('cpu')} ({r.get('environment', {}).get('cpu_isa')}, "
            f"{r.get('environment', {}).get('cpu_cores')} cores)" for r in every}
    precisions = sorted({r.get("precision") for r in every if r.get("precision")})
    summary = TuningSummary(record, models, chance, sorted(envs), precisions, record.get("baseline"),
                            drawn=planned_draws(folder, next(iter(by_entry)), record))
    trial_runs = [r for rs in by_entry.values() for r in rs]
    summary.cost = {"tuning": (len(trial_runs), machine_hours(trial_runs))}
    if finals:
        final_runs = [r for rs in finals.values() for r in rs]
        summary.cost["finals"] = (len(final_runs), machine_hours(final_runs))
        summary.finals_cost = cost_by_seed(final_runs)
    if summary.baseline and finals:
        summary.comparisons, summary.baseline_differs = compare_with_baseline(Path(summary.baseline), finals)
    return summary


def display_order(result: dict, entry: str) -> tuple:
    """The study's reading order: a stem x mixer cell by its stem then its mixer (patch before conv, attention
    first: as the factorial's tables), other models after them by name."""
    hp = result.get("hparams") or {}
    if hp.get("stem") in STEMS and hp.get("mixer") in MIXERS:
        return 0, STEMS.index(hp["stem"]), MIXERS.index(hp["mixer"]), entry
    return 1, 0, 0, entry


def planned_draws(folder: Path, entry: str, record: dict) -> list[dict[str, Any]]:
    """The draws of every trial the study planned (finished or not), read back from the trial configs compare wrote
    (`tuning/configs/<entry>-trial<N>.yaml`): the searched keys' values, `model.lr` from `model.init_args.lr`."""
    import yaml

    keys = [d.split("=", 1)[0] for d in record["search"]]
    draws = []
    for n in range(record.get("trials", 0)):
        path = folder / "configs" / f"{entry}-trial{n}.yaml"
        if not path.is_file():
            break
        config = yaml.safe_load(path.read_text()) or {}
        draws.append({key: get_param(config, key) for key in keys})
    return draws


def compare_with_baseline(baseline: Path, finals: dict[str, list[dict]]) -> tuple[list[Comparison], str]:
    """Each comparison of the tuned finals against the same comparison in the untuned study: the factorial's
    effects where both hold a stem x mixer grid, else every pair of models by mean val top-1 (Welch intervals);
    and what the two grids' shared recipes differ in besides the searched settings ("" if nothing or no grid)."""
    from convmixer_lit.study.factorial import analyse, recipe_difference

    if not (baseline / "results").is_dir():
        return [], ""
    untuned = load_results(baseline)
    tuned_f, untuned_f = analyse(finals), analyse(untuned)
    if tuned_f and untuned_f and tuned_f.epochs.effects and untuned_f.epochs.effects \
            and tuned_f.design.stems == untuned_f.design.stems and tuned_f.design.mixers == untuned_f.design.mixers:
        e_t, e_u = tuned_f.epochs.effects, untuned_f.epochs.effects
        s0, s1 = tuned_f.design.stems[0], tuned_f.design.stems[-1]
        pairs = [(f"stem {s1} − {s0} (mean over mixers)", e_u.stem, e_t.stem)]
        pairs += [(f"mixer {a} − {b} (mean over stems)", e_u.mixer_pairs[(a, b)], c)
                  for (a, b), c in e_t.mixer_pairs.items()]
        pairs += [(f"stem {s1} − {s0} with {m}", e_u.stem_within[m], c) for m, c in e_t.stem_within.items()]
        return ([Comparison(label, (u.mean, u.ci_low, u.ci_high), (t.mean, t.ci_low, t.ci_high))
                 for label, u, t in pairs], recipe_difference(untuned_f.design, tuned_f.design))
    common = [m for m in finals if m in untuned]
    return [Comparison(f"{a} − {b}", _welch(untuned, a, b), _welch(finals, a, b), paired=False)
            for i, a in enumerate(common) for b in common[i + 1:]], ""


def _welch(by_model: dict[str, list[dict]], a: str, b: str) -> tuple[float, float | None, float | None]:
    """(mean difference a - b, its 95% Welch interval) of val top-1; no interval with fewer than 2 seeds each."""
    from convmixer_lit.stats import welch_t_test

    acc = {m: [r["best_val_acc"] for r in by_model[m] if r.get("best_val_acc") is not None] for m in (a, b)}
    test = welch_t_test(acc[a], acc[b]) if min(len(acc[a]), len(acc[b])) > 1 else None
    if test is None:
        return describe(acc[a]).mean - describe(acc[b]).mean, None, None
    return test.diff, test.ci_low, test.ci_high


# ---- writing ---------------------------------------------------------------------------------------------------
def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.1f}"


def _value(v: Any) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)


def write_markdown(s: TuningSummary, path: Path) -> None:
    r = s.record
    holdout = r.get("holdout") or {}
    k = r["trials"]
    keys = [d.split("=", 1)[0] for d in r["search"]]
    lines = ["# Tuning: every model, the same budget", "",
             "Made by `python -m convmixer_lit.compare` from `tuning/results/*.json` (the trials) and `results/*.json`"
             " (the finals).", "",
             f"- **Budget:** {k} trials per model, {r['sampler']} search (seed {r['search_seed']}"
             + "; trial n is the same configuration for every model"
             + f") over {'; '.join(f'`{d}`' for d in r['search'])}.",
             f"- **Never tuned on val:** each trial trains on train minus a stratified held-out "
             f"{r['holdout_fraction']:g} (split seed {r['holdout_seed']}"
             + (f", {holdout.get('held_out_images')} images held out, {holdout.get('train_images')} trained on, "
                f"digest {holdout.get('held_out_digest')}" if holdout else "")
             + f") and is scored on that part: its best-epoch held-out top-1. Every trial trains with seed "
               f"{r['trial_seed']}; the finals use other seeds and are scored on val.",
             f"- Machine: {'; '.join(s.machines)}. Precision: {', '.join(s.precisions)}.", ""]
    lines += ["## The trials (held-out top-1, %)", "",
              "| model | " + " | ".join(f"trial {n}" for n in range(k)) + " | chosen |", "|---" * (k + 2) + "|"]
    for m in s.models:
        cells = []
        for n in range(k):
            t = next((t for t in m.trials if t.number == n), None)
            cells.append("…" if t is None else "diverged" if t.score is None else
                         f"**{_pct(t.score)}**" if m.chosen is t else _pct(t.score))
        lines.append(f"| {m.entry} | " + " | ".join(cells) + f" | {'–' if m.chosen is None else m.chosen.number} |")
    lines += ["", "What each trial draws (the same for every model; drawn before any trial trains):", "",
              "| trial | " + " | ".join(f"`{key}`" for key in keys) + " |", "|---" * (len(keys) + 1) + "|"]
    for number, params in enumerate(s.drawn):
        lines.append(f"| {number} | " + " | ".join(_value(params.get(key)) for key in keys) + " |")
    lines += ["", "## Expected best held-out top-1 after n trials (%)", "",
              "Dodge et al. 2019's expected maximum over n trials drawn at random, with replacement, from the K that "
              f"ran (exact, no resampling; a diverged trial counts as chance, {_pct(s.diverged_score)}%): how much "
              "each model's score owes to the tuning budget, and whether the ranking depends on it. Drawn with "
              "replacement, n = K lies a little below the best of the K.", "",
              "| model | " + " | ".join(f"n={n}" for n in range(1, k + 1)) + " |", "|---" * (k + 1) + "|"]
    for m in s.models:
        lines.append(f"| {m.entry} | " + " | ".join(_pct(v) for v in m.evp) + " |")
    full = [m for m in s.models if len(m.evp) == k]
    if len(full) > 1:
        rank1 = sorted(full, key=lambda m: -m.evp[0])
        rankk = sorted(full, key=lambda m: -m.evp[-1])
        same = [m.entry for m in rank1] == [m.entry for m in rankk]
        lines += ["", f"Ranking after 1 trial: {' > '.join(m.entry for m in rank1)}; after {k}: "
                      f"{' > '.join(m.entry for m in rankk)}" + (" (the same)." if same else
                                                                 " — **the budget changes the ranking** (of "
                                                                 "one-seed held-out scores: a gap of a point or "
                                                                 "two is within seed noise).")]
    lines += ["", "## The chosen configurations and their finals on val", "",
              "| model | chosen trial | " + " | ".join(f"`{key}`" for key in keys)
              + " | held-out top-1 (%) | finals: seeds | val top-1 (%), mean ± 95% CI | last epoch's val top-1 (%) |",
              "|---" * (len(keys) + 6) + "|"]
    for m in s.models:
        if m.chosen is None:
            lines.append(f"| {m.entry} | (tuning not finished) |" + " |" * (len(keys) + 4))
            continue
        d = describe(m.finals) if m.finals else None
        final = "–" if d is None else _pct(d.mean) + ("" if d.ci_low is None else
                                                       f" ± {100 * (d.ci_high - d.mean):.1f}")
        lines.append(f"| {m.entry} | {m.chosen.number} | " + " | ".join(_value(m.chosen.params.get(key))
                                                                     for key in keys)
                     + f" | {_pct(m.chosen.score)} | {', '.join(map(str, m.final_seeds)) or '–'} | {final} | "
                     + (_pct(describe(m.finals_last).mean) if m.finals_last else "–") + " |")
    if s.baseline and not s.comparisons:
        lines += ["", f"(The untuned study to compare rankings with, `{s.baseline}`, was not found from the working "
                      "folder, or has no finals to compare yet; run the report from the folder it is relative to.)"]
    if s.comparisons:
        how = ("paired effects of the stem × mixer factorial over each study's own seeds"
               if all(c.paired for c in s.comparisons) else
               "the difference of two models' mean val top-1, with a Welch 95% interval: the two studies do not "
               "both hold the same stem × mixer grid with 2+ paired seeds")
        lines += ["", f"## Tuned against the shared settings (`{s.baseline}`)", ""]
        if s.baseline_differs:
            lines += [f"**Read every comparison below as the tuning and this together:** the untuned study also "
                      f"differs in {s.baseline_differs} (untuned → tuned).", ""]
        lines += [f"Each comparison in the untuned study and in the tuned finals ({how}; the two studies share no "
                  "seeds, so they are compared by ranking, not subtracted). An interval that holds 0 means the "
                  "difference is not shown at this number of seeds, not that it is zero.", "",
                  *[c.sentence for c in s.comparisons]]
    lines += ["", "## Cost", "",
              "Machine time: each run's wall time times its share of the machine's cores (two runs at once on "
              "2 cores count half each), summed; measured on the machines above, whatever else they ran.", ""]
    lines += [f"- {stage}: {runs} run{'s' * (runs != 1)}, {hours:.2f} h" for stage, (runs, hours) in s.cost.items()]
    diverged = sum(1 for m in s.models for t in m.trials if t.wall_time_s is None)
    if diverged:
        lines.append(f"- not counted: {diverged} diverged trial{'s' * (diverged > 1)}, whose time is not recorded")
    if len(s.cost) > 1:
        lines.append(f"- total so far: {sum(h for _, h in s.cost.values()):.2f} h")
    if len(s.finals_cost) > 1:  # so a budget can be read for any number of seeds: tuning + the first k seeds
        running = s.cost["tuning"][1]
        lines += ["", "| finals seed | runs | machine h | tuning + finals up to this seed (h) |", "|---|---|---|---|"]
        for seed, (runs, hours) in s.finals_cost.items():
            running += hours
            lines.append(f"| {seed} | {runs} | {hours:.2f} | {running:.2f} |")
    alone = [(m.entry, t) for m in s.models for t in m.trials if t.alone and t.images_per_s]
    lines += ["", "## Speed", ""]
    if alone:
        lines += ["Train images/s of the trials that had the machine to themselves (one run at a time on all its "
                  f"cores, 1-minute load at most their threads + {LOAD_SLACK} at every epoch end):", ""]
        for entry in dict.fromkeys(e for e, _ in alone):
            v = [t.images_per_s for e, t in alone if e == entry]
            lines.append(f"- {entry}: {min(v):.0f}–{max(v):.0f} img/s over {len(v)} trial{'s' * (len(v) > 1)}")
    else:
        lines.append("No trial had the machine to itself (several ran at once, or other work shared the cores), so "
                     "no speed is quoted from them: `python -m convmixer_lit.bench` measures speed.")
    lines += ["", f"Figures: `{LR_FIGURE}` (held-out top-1 against each trial's "
                  f"{'learning rate' if 'model.lr' in keys else keys[0]}, colour: "
                  f"{'weight decay' if 'model.weight_decay' in keys else 'the second searched setting'}), "
                  f"`{EVP_FIGURE}` (expected best held-out top-1 against the number of trials).", ""]
    path.write_text("\n".join(lines))


def draw(s: TuningSummary, out: Path) -> list[Path]:
    from matplotlib import colors
    from matplotlib.figure import Figure

    from convmixer_lit.figures import model_colors

    keys = [d.split("=", 1)[0] for d in s.record["search"]]
    x_key = "model.lr" if "model.lr" in keys else keys[0]
    c_key = "model.weight_decay" if "model.weight_decay" in keys else next((k for k in keys if k != x_key), None)
    n = len(s.models)
    cols = min(4, n)
    rows = math.ceil(n / cols)
    fig = Figure(figsize=(3.4 * cols + 0.8, 2.9 * rows), layout="constrained")  # titles clear of the labels above
    dims = {d.key: d for d in parse_space(s.record["search"])}
    # the axes and the colour scale span the searched ranges, so panels read alike whatever was drawn so far
    c_dim = dims.get(c_key)
    norm = None
    if c_dim is not None and c_dim.kind in ("loguniform", "uniform", "intuniform"):
        norm = (colors.LogNorm if c_dim.kind == "loguniform" else colors.Normalize)(*c_dim.args)
    x_dim = dims[x_key]
    # the y-axis spans the scored trials: a diverged one, marked at its foot, would squash every panel down to chance
    scores = [100 * t.score for m in s.models for t in m.trials if t.score is not None] or [100 * s.diverged_score]
    y_low = min(scores) - 2
    scatter = None
    shared = None
    for i, m in enumerate(s.models):
        ax = fig.add_subplot(rows, cols, i + 1, sharey=shared)
        shared = shared or ax
        ok = [t for t in m.trials if t.score is not None]
        bad = [t for t in m.trials if t.score is None]
        if ok:
            colour = {"c": [t.params.get(c_key) for t in ok], "norm": norm, "cmap": "viridis"} if norm else {}
            scatter = ax.scatter([t.params.get(x_key) for t in ok], [100 * t.score for t in ok], edgecolor="k", s=45,
                                 **colour)
        if bad:
            ax.scatter([t.params.get(x_key) for t in bad], [y_low + 0.6] * len(bad), marker="x", color="red",
                       label=f"diverged (scored {100 * s.diverged_score:.0f}%)", clip_on=False)
            ax.legend(fontsize=7)
        if m.chosen is not None:
            ax.scatter([m.chosen.params.get(x_key)], [100 * m.chosen.score], s=160, facecolors="none",
                       edgecolors="red", linewidths=1.5)
        if x_dim.kind == "loguniform":
            ax.set_xscale("log")
        if x_dim.kind != "choice":
            low, high = x_dim.args
            pad = (high / low) ** 0.05 if x_dim.kind == "loguniform" else (high - low) * 0.05
            ax.set_xlim(*((low / pad, high * pad) if x_dim.kind == "loguniform" else (low - pad, high + pad)))
        ax.set_ylim(y_low, max(scores) + 2)
        ax.set_title(m.entry, fontsize=9)
        ax.set_xlabel(x_key, fontsize=8)
        if i % cols == 0:
            ax.set_ylabel("held-out top-1 (%)", fontsize=8)
        ax.grid(alpha=0.3)
    if scatter is not None and norm is not None:
        fig.colorbar(scatter, ax=fig.axes, label=c_key, shrink=0.8)
    lr_path = out / LR_FIGURE
    fig.savefig(lr_path, dpi=110)

    fig = Figure(figsize=(6.4, 4.2))
    ax = fig.add_subplot(1, 1, 1)
    colour = model_colors([m.entry for m in s.models])  # as in the study's other figures
    for m in s.models:
        ax.plot(range(1, len(m.evp) + 1), [100 * v for v in m.evp], marker="o", label=m.entry, color=colour[m.entry])
    ax.set_xlabel("trials (n)")
    ax.set_ylabel("expected best held-out top-1 (%)")
    ax.set_title(f"Expected best of n trials (Dodge et al. 2019), {s.record['sampler']} search")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    evp_path = out / EVP_FIGURE
    fig.savefig(evp_path, dpi=110)
    return [lr_path, evp_path]


def write_tuning_report(out: Path) -> list[Path]:
    """tuning.md and its two figures in the study folder `out`; [] before the first trial has finished."""
    summary = summarize(out)
    if summary is None:
        return []
    write_markdown(summary, out / REPORT)
    return [out / REPORT, *draw(summary, out)]
