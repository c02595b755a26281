"""The factorial report of a stem x mixer study (experiments/mixer-study/): cells, main effects, interaction, which
factor matters more, at equal epochs and at equal wall time, and the arms (the same cells with a longer budget or
another learning rate).

Seeds are paired across cells (one seed = one data order, data.EpochShuffle), so every effect is computed per seed
and its interval is a paired t interval over seeds (stats.paired_contrast); the interaction is also tested by a
repeated-measures ANOVA. Only seeds that every cell has are used. Written from results/*.json alone: `analyse`
computes every statistic once into plain results (`Factorial`, one `View` per table); the markdown, the figure and
the tuning report's comparison with the untuned study only read them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from itertools import combinations
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from convmixer_lit.figures import MIN_SEEDS_FOR_BARS
from convmixer_lit.stats import Contrast, Description, describe, paired_contrast, rm_anova_two_way
from convmixer_lit.study.plan import config_settings, effective_config

REPORT, FIGURE = "factorial.md", "factorial.png"  # bars from MIN_SEEDS_FOR_BARS seeds: a 95% t interval from 2
# spans +-12.7 standard errors, and drawn it reads as noise
STEMS, MIXERS = ("patch", "conv"), ("attention", "conv", "pool", "identity")  # display order (models/isotropic.py)


def _cell(run: dict) -> tuple[str, str, dict] | None:
    """(stem, mixer, the rest of its config) of a run of the isotropic family, from its stored study record.

    In a tuned study's finals every cell has its own tuned settings (`study.tuned`): those are part of the cell, not
    of the recipe the cells share, so they are left out of it (and the recipe says it was tuned)."""
    study = run.get("study", {})
    config = effective_config(study.get("config") or {}, study.get("defaults"), study.get("pass_through"))
    args = (config.get("model") or {}).get("init_args") or {}
    if "stem" not in args or "mixer" not in args:
        return None
    rest = {**config, "model": {**config["model"], "init_args": {k: v for k, v in args.items()
                                                                 if k not in ("stem", "mixer")}}}
    tuned = sorted(set(study.get("tuned") or {}) - {"held_out_top1", "trial"})
    recipe = {k: v for k, v in _flatten(rest).items() if k not in tuned}
    if tuned:
        recipe["tuned"] = json.dumps(tuned)
    return args["stem"], args["mixer"], recipe


def _flatten(tree: dict) -> dict[str, str]:
    """{"trainer": {"max_epochs": 4}} -> {"trainer.max_epochs": "4"} (init_args dropped from the names)."""
    return {name: json.dumps(value) for name, value in config_settings(tree).items()}


@dataclass
class Design:
    """The complete stem x mixer grid under the recipe most cells share, and the arms: cells whose recipe differs
    (a longer budget, another learning rate), labelled by what differs."""

    stems: list[str]
    mixers: list[str]
    epochs: int
    cells: dict[tuple[str, str], list[dict]]
    seeds: list[int]  # the seeds every cell has: the pairing
    arms: dict[tuple[str, str, str], list[dict]]  # (stem, mixer, "what differs") -> runs
    recipe: dict[str, str] = field(default_factory=dict)  # the settings the grid's cells share (flattened)
    unpaired: dict[int, list[str]] = field(default_factory=dict)  # seed -> the cells it lacks (left out: unpaired)

    def table(self, metric) -> np.ndarray:
        """metric(run) as y[seed, stem, mixer] over the paired seeds (NaN where a run has no value)."""
        y = np.full((len(self.seeds), len(self.stems), len(self.mixers)), np.nan)
        for (stem, mixer), runs in self.cells.items():
            by_seed = {r.get("seed"): r for r in runs}
            for k, seed in enumerate(self.seeds):
                value = metric(by_seed[seed])
                y[k, self.stems.index(stem), self.mixers.index(mixer)] = np.nan if value is None else value
        return y


def find_design(by_model: dict[str, list[dict]]) -> Design | None:
    """The study's factorial design, or None when its results hold no complete grid of 2+ stems x 2+ mixers."""
    groups: dict[tuple[str, str, str], list[dict]] = {}
    recipes: dict[str, dict[str, str]] = {}
    for runs in by_model.values():
        for run in runs:
            cell = _cell(run)
            if cell is not None and run.get("best_val_acc") is not None:
                key = json.dumps(cell[2], sort_keys=True)
                recipes[key] = cell[2]
                groups.setdefault((cell[0], cell[1], key), []).append(run)
    if not groups:
        return None
    main_key = max(recipes, key=lambda r: sum(1 for k in groups if k[2] == r))  # the recipe of the most cells
    main = {(s, m): runs for (s, m, r), runs in groups.items() if r == main_key}
    stems = _order(STEMS, {s for s, _ in main})
    mixers = _order(MIXERS, {m for _, m in main})
    if len(stems) < 2 or len(mixers) < 2 or len(main) != len(stems) * len(mixers):
        return None
    have = {key: {r.get("seed") for r in runs} for key, runs in main.items()}
    seeds = sorted(set.intersection(*have.values()))
    unpaired = {seed: [f"{s} + {m}" for s in stems for m in mixers if seed not in have[(s, m)]]
                for seed in sorted(set.union(*have.values()) - set(seeds))}
    base = recipes[main_key]
    arms = {(s, m, _difference(base, recipes[r])): runs for (s, m, r), runs in groups.items() if r != main_key}
    epochs = int(json.loads(base.get("trainer.max_epochs", "0")) or 0)
    return Design(stems, mixers, epochs, main, seeds, arms, base, unpaired)


def _order(known: tuple[str, ...], found: set[str]) -> list[str]:
    return [x for x in known if x in found] + sorted(found - set(known))


def _difference(base: dict[str, str], other: dict[str, str], ignore: frozenset[str] = frozenset(),
                both: bool = False) -> str:
    """What an arm changes: "max_epochs 16", "lr 0.001" (the last part of each differing setting's name); with
    `both`, from what to what: "pooled_norm false → true"."""
    keys = sorted(k for k in set(base) | set(other) if base.get(k) != other.get(k) and k not in ignore)

    def value(side: dict[str, str], k: str) -> str:  # as a config spells it: 0.001, 16, true (not Python's True)
        return _spelled(side[k]) if k in side else "(unset)"

    return ", ".join(f"{k.rsplit('.', 1)[-1]} {f'{value(base, k)} → ' if both else ''}{value(other, k)}"
                     for k in keys)


def _spelled(value: str) -> str:
    loaded = json.loads(value)
    return value if isinstance(loaded, (bool, list, dict)) or loaded is None else str(loaded)


def recipe_difference(untuned: Design, tuned: Design) -> str:
    """What a tuned study's grid changes from the untuned one's besides the settings it tuned ("" when nothing):
    a ranking compared across the two is then the tuning's and this difference's together."""
    searched = frozenset(json.loads(tuned.recipe.get("tuned", "[]"))) | {"tuned", "trainer.precision"}
    said = _difference(untuned.recipe, tuned.recipe, searched, both=True)
    # precision as the runs recorded it, not as configs spelled it: an unpinned config and a pinned one may agree
    ran = [sorted({r.get("precision") for runs in d.cells.values() for r in runs} - {None}) for d in (untuned, tuned)]
    if all(ran) and ran[0] != ran[1]:
        said = ", ".join(filter(None, [said, f"precision {'/'.join(ran[0])} → {'/'.join(ran[1])}"]))
    return said


def acc_at_time(budget_s: float):
    """metric: the best validation accuracy a run had reached by `budget_s` seconds of its own wall time."""
    def metric(run: dict) -> float | None:
        reached = [h["val_acc"] for h in run.get("history", [])
                   if h.get("val_acc") is not None and h.get("wall_time") is not None and h["wall_time"] <= budget_s]
        return max(reached) if reached else None
    return metric


LOAD_SLACK = 0.75  # load average above a run's own threads that still counts as "alone" (the OS's own work)


def whole_machine(run: dict) -> bool:
    """Whether the run trained on all the machine's cores: not one of several runs at once (`compare --jobs N`),
    whose wall times are not comparable with a run that had the machine to itself. Runs that did not record their
    thread count ran with torch's default, every core."""
    threads = run.get("torch_threads")
    # the machine's cores as the study saw them: a run of several at once sees only its pinned share (`hardware`)
    cores = (run.get("environment") or run.get("hardware") or {}).get("cpu_cores")
    return threads is None or cores is None or threads >= cores


def had_machine_alone(run: dict) -> bool:
    """Whether the run's speed is its own: it had the whole machine (`whole_machine`), was the only run of its study
    in flight, and the machine's 1-minute load stayed within its threads (+ LOAD_SLACK) at every epoch end. Runs
    made before the load was recorded cannot show it, so they do not count as alone."""
    load, threads = run.get("load_1min_max"), run.get("torch_threads")
    return (whole_machine(run) and run.get("concurrent_runs", 1) == 1 and load is not None and threads is not None
            and load <= threads + LOAD_SLACK)


def best_acc(run: dict) -> float | None:
    return run.get("best_val_acc")


@dataclass
class Effects:
    """Every paired contrast of one table y[seed, stem, mixer], in fractions (not %)."""

    stem: Contrast  # last stem - first stem, averaged over mixers
    mixer_pairs: dict[tuple[str, str], Contrast]  # a - b, averaged over stems
    stem_within: dict[str, Contrast]  # the stem effect at each mixer
    interaction_pairs: dict[tuple[str, str], Contrast]  # stem effect at a - stem effect at b
    more: dict[tuple[str, str], Contrast]  # |mixer a-b effect| - |stem effect|, signs fixed by the means
    anova: list


def effects(y: np.ndarray, mixers: list[str]) -> Effects:
    """All effects of a 2 x M table with seeds paired (the first axis)."""
    stem_s = y[:, -1, :].mean(axis=1) - y[:, 0, :].mean(axis=1)
    by_mixer = y.mean(axis=1)  # (seed, mixer), averaged over stems
    within = y[:, -1, :] - y[:, 0, :]  # (seed, mixer): the stem effect at each mixer
    pairs, inter, more = {}, {}, {}
    stem_sign = np.sign(stem_s.mean()) or 1.0
    for a, b in combinations(range(len(mixers)), 2):
        key = (mixers[a], mixers[b])
        diff = by_mixer[:, a] - by_mixer[:, b]
        pairs[key] = paired_contrast(diff.tolist())
        inter[key] = paired_contrast((within[:, a] - within[:, b]).tolist())
        more[key] = paired_contrast(((np.sign(diff.mean()) or 1.0) * diff - stem_sign * stem_s).tolist())
    return Effects(paired_contrast(stem_s.tolist()), pairs,
                   {m: paired_contrast(within[:, j].tolist()) for j, m in enumerate(mixers)}, inter, more,
                   rm_anova_two_way(y, ("stem", "mixer")))


@dataclass
class View:
    """One table of the design (equal epochs or equal wall time) with every statistic drawn from it, computed once:
    the markdown and the figure only read these."""

    seeds: list[int]
    y: np.ndarray  # y[seed, stem, mixer]
    cells: dict[tuple[int, int], Description | None]  # (stem, mixer) index -> its seeds' values (NaN left out)
    effects: Effects | None  # None with fewer than 2 seeds or with a run missing a value

    @property
    def complete(self) -> bool:
        return not np.isnan(self.y).any()


def view(seeds: list[int], y: np.ndarray, mixers: list[str]) -> View:
    cells = {}
    for i, j in np.ndindex(y.shape[1:]):
        values = [float(v) for v in y[:, i, j] if not np.isnan(v)]
        cells[(i, j)] = describe(values) if values else None
    ok = len(seeds) >= 2 and not np.isnan(y).any()
    return View(seeds, y, cells, effects(y, mixers) if ok else None)


@dataclass
class CellCost:
    parameters: int
    train_gflops: float
    speed: float | None  # mean train img/s over the runs that had the machine alone, None when none did
    quiet_runs: int
    runs: int
    wall_min: float  # mean wall time of the timed seeds' runs


@dataclass
class Factorial:
    """A factorial study's whole analysis, as plain results (`analyse`); `write_factorial` renders it."""

    design: Design
    epochs: View  # best-epoch val top-1 at equal epochs, over the paired seeds
    time: View | None  # best val top-1 reached by `budget_s` of each run's own wall time, over `time.seeds`; None
    # when no seed's runs had the whole machine (every wall time then measures the sharing as much as the cell)
    budget_s: float | None
    crowded: list[int]  # seeds left out of the wall-time view: some run shared the machine (--jobs N)
    costs: dict[tuple[str, str], CellCost]
    arms: list[tuple[str, str, str, list[int], float, float | None, float]]  # stem, mixer, change, seeds, acc,
    # the main design's acc on those seeds, wall min
    arm_gaps: dict  # (stem, mixer a, mixer b, change, seeds) -> (gap in the main design, gap in the arm)


def analyse(by_model: dict[str, list[dict]]) -> Factorial | None:
    """The study's factorial analysis, or None when its results hold no stem x mixer grid with a paired seed."""
    design = find_design(by_model)
    if design is None or not design.seeds:
        return None
    # wall times only from seeds whose every run had the machine to itself (not --jobs N); none: no wall-time view
    alone = [s for s, ok in zip(design.seeds, design.table(whole_machine)) if ok.all()]
    timed = replace(design, seeds=alone or design.seeds)
    walls = {k: float(np.mean([r.get("wall_time_s") or 0 for r in runs if r.get("seed") in timed.seeds]))
             for k, runs in design.cells.items()}
    budget = min(walls.values()) if alone else None
    costs = {}
    for key, runs in design.cells.items():
        # speed only from runs that had the machine to themselves: a run sharing the cores reports the sharing
        speeds = [x["train_images_per_s"] for x in runs if x.get("train_images_per_s") and had_machine_alone(x)]
        costs[key] = CellCost(runs[0].get("parameters") or 0, (runs[0].get("train_flops_per_image") or 0) / 1e9,
                              float(np.mean(speeds)) if speeds else None, len(speeds), len(runs), walls[key] / 60)
    arms = []
    for (stem, mixer, change), runs in sorted(design.arms.items()):
        seeds = [r.get("seed") for r in runs]
        short = [r["best_val_acc"] for r in design.cells.get((stem, mixer), []) if r.get("seed") in seeds]
        arms.append((stem, mixer, change, seeds, describe([r["best_val_acc"] for r in runs]).mean,
                     describe(short).mean if short else None,
                     sum(r.get("wall_time_s") or 0 for r in runs) / len(runs) / 60))
    return Factorial(design, view(design.seeds, design.table(best_acc), design.mixers),
                     None if budget is None else view(alone, timed.table(acc_at_time(budget)), design.mixers),
                     budget, [s for s in design.seeds if s not in alone], costs, arms, _arm_gaps(design))


# ---- writing ---------------------------------------------------------------------------------------------------
def _pp(c: Contrast) -> tuple[str, str, str]:
    ci = "–" if c.ci_low is None else f"[{100 * c.ci_low:+.2f}, {100 * c.ci_high:+.2f}]"
    return f"{100 * c.mean:+.2f}", ci, "–" if c.p_value is None else f"{c.p_value:.3g}"


def _grid(design: Design, v: View) -> list[str]:
    """Cell means (95% CI half-width) with the margins: the one table a reader needs."""
    lines = ["| stem \\ mixer | " + " | ".join(design.mixers) + " | mean |", "|---" * (len(design.mixers) + 2) + "|"]
    for i, stem in enumerate(design.stems):
        cells = []
        for j in range(len(design.mixers)):
            d = v.cells[(i, j)]
            cells.append(f"{100 * d.mean:.1f}" + ("" if d.ci_low is None else f" ± {100 * (d.ci_high - d.mean):.1f}"))
        lines.append(f"| {stem} | " + " | ".join(cells) + f" | {100 * v.y[:, i, :].mean():.1f} |")
    lines.append("| mean | " + " | ".join(f"{100 * v.y[:, :, j].mean():.1f}" for j in range(len(design.mixers)))
                 + f" | {100 * v.y.mean():.1f} |")
    return lines


def _effect_lines(design: Design, e: Effects, anova: bool = True) -> list[str]:
    s0, s1 = design.stems[0], design.stems[-1]
    lines = ["| effect (paired over seeds) | estimate (pp) | 95% CI (pp) | p |", "|---|---|---|---|",
             f"| stem: {s1} − {s0} (mean over mixers) | " + " | ".join(_pp(e.stem)) + " |"]
    lines += [f"| mixer: {a} − {b} (mean over stems) | " + " | ".join(_pp(c)) + " |"
              for (a, b), c in e.mixer_pairs.items()]
    lines += ["", f"Interaction — the stem effect ({s1} − {s0}) under each mixer, and its differences:", "",
              "| | estimate (pp) | 95% CI (pp) | p |", "|---|---|---|---|"]
    lines += [f"| stem effect with {m} | " + " | ".join(_pp(c)) + " |" for m, c in e.stem_within.items()]
    lines += [f"| stem effect with {a} − with {b} | " + " | ".join(_pp(c)) + " |"
              for (a, b), c in e.interaction_pairs.items()]
    if not anova:
        return lines
    lines += ["", "Repeated-measures ANOVA (each term against its interaction with seeds):", "",
              "| term | df | error df | F | p |", "|---|---|---|---|---|"]
    lines += [f"| {r.term} | {r.df} | {r.df_error} | {'–' if r.f is None else f'{r.f:.2f}'} | "
              f"{'–' if r.p_value is None else f'{r.p_value:.3g}'} |" for r in e.anova]
    return lines


def _verdicts(design: Design, e: Effects) -> list[str]:
    """Sentences, each written only where its interval supports it."""
    s0, s1 = design.stems[0], design.stems[-1]
    out = []
    lo, hi = (None, None) if e.stem.ci_low is None else (100 * e.stem.ci_low, 100 * e.stem.ci_high)
    if e.stem.resolved:
        out.append(f"- The {s1 if e.stem.mean > 0 else s0} stem is better, averaged over mixers: "
                   f"{100 * abs(e.stem.mean):.2f} pp (95% CI [{lo:+.2f}, {hi:+.2f}] for {s1} − {s0}).")
    else:
        out.append(f"- The stem effect ({100 * e.stem.mean:+.2f} pp for {s1} − {s0}) is not resolved from seed noise"
                   + ("" if lo is None else f" (95% CI [{lo:+.2f}, {hi:+.2f}])") + ".")
    for (a, b), c in e.mixer_pairs.items():
        if c.resolved:
            win, lose = (a, b) if c.mean > 0 else (b, a)
            out.append(f"- Mixer {win} beats {lose} by {100 * abs(c.mean):.2f} pp "
                       f"(95% CI [{100 * c.ci_low:+.2f}, {100 * c.ci_high:+.2f}] for {a} − {b}).")
    for (a, b), c in e.more.items():
        if c.resolved:
            bigger = f"the mixer ({a} vs {b})" if c.mean > 0 else "the stem"
            out.append(f"- {bigger[0].upper() + bigger[1:]} matters more than "
                       f"{'the stem' if c.mean > 0 else f'the mixer ({a} vs {b})'}: the difference of their sizes "
                       f"is {100 * abs(c.mean):.2f} pp (95% CI [{100 * c.ci_low:+.2f}, {100 * c.ci_high:+.2f}] for "
                       f"|mixer {a} − {b}| − |stem|).")
    resolved_inter = [(k, c) for k, c in e.interaction_pairs.items() if c.resolved]
    for (a, b), c in resolved_inter:
        out.append(f"- Interaction: the {s1} stem helps {'more' if c.mean > 0 else 'less'} with {a} than with {b} "
                   f"({100 * c.mean:+.2f} pp, 95% CI [{100 * c.ci_low:+.2f}, {100 * c.ci_high:+.2f}]).")
    if not resolved_inter:
        out.append("- No stem x mixer interaction is resolved: the stem's effect does not measurably depend on the "
                   "mixer at this number of seeds.")
    return out


def _arm_lines(f: Factorial) -> list[str]:
    if not f.arms:
        return []
    lines = ["", "## Arms: the same cells under another recipe", "",
             "| cell | changed | seeds | best val top-1 (%) | in the main design (same seeds, %) | wall time (min) |",
             "|---|---|---|---|---|---|"]
    for stem, mixer, change, seeds, acc, at_main, wall in f.arms:
        lines.append(f"| {stem} + {mixer} | {change} | {', '.join(map(str, seeds))} | {100 * acc:.2f} | "
                     f"{'–' if at_main is None else f'{100 * at_main:.2f}'} | {wall:.1f} |")
    if f.arm_gaps:
        lines += ["", "The gap between two mixers on one stem, in the main design and in the arm (same seeds):", ""]
        lines += [f"- {stem} stem, {a} − {b}: {100 * main:+.2f} pp in the main design ({f.design.epochs} epochs), "
                  f"{100 * arm:+.2f} pp with {change} (seeds {', '.join(map(str, seeds))})"
                  for (stem, a, b, change, seeds), (main, arm) in f.arm_gaps.items()]
    return lines


def _arm_gaps(design: Design) -> dict:
    """For every two arm cells of one stem and one change: their gap in the arm and in the main design."""
    gaps = {}
    for (s1, m1, c1), (s2, m2, c2) in combinations(sorted(design.arms), 2):
        if s1 != s2 or c1 != c2:
            continue
        runs1 = {r["seed"]: r for r in design.arms[(s1, m1, c1)]}
        runs2 = {r["seed"]: r for r in design.arms[(s2, m2, c2)]}
        main1 = {r["seed"]: r for r in design.cells.get((s1, m1), [])}
        main2 = {r["seed"]: r for r in design.cells.get((s2, m2), [])}
        seeds = sorted(set(runs1) & set(runs2) & set(main1) & set(main2))
        if seeds:
            gaps[(s1, m1, m2, c1, tuple(seeds))] = (_mean_acc(main1, seeds) - _mean_acc(main2, seeds),
                                                    _mean_acc(runs1, seeds) - _mean_acc(runs2, seeds))
    return gaps


def _mean_acc(runs_by_seed: dict[int, dict], seeds: list[int]) -> float:
    return float(np.mean([runs_by_seed[s]["best_val_acc"] for s in seeds]))


def write_factorial(by_model: dict[str, list[dict]], out: Path) -> list[Path]:
    """Write factorial.md and factorial.png into `out` when the results hold a stem x mixer grid; returns paths."""
    f = analyse(by_model)
    if f is None:
        return []
    (out / REPORT).write_text("\n".join(_markdown(f)))
    _figure(f, out / FIGURE)
    return [out / REPORT, out / FIGURE]


def _markdown(f: Factorial) -> list[str]:
    design, n = f.design, len(f.design.seeds)
    n_timed = 0 if f.time is None else len(f.time.seeds)
    shared = ("" if not f.crowded or f.time is None else
              f" Seed{'s' * (len(f.crowded) > 1)} {', '.join(map(str, f.crowded))} ran several runs at once "
              f"(`--jobs N`), so wall times here come from seed{'s' * (n_timed > 1)} "
              f"{', '.join(map(str, f.time.seeds))} alone.")
    tuned = json.loads(design.recipe.get("tuned", "[]"))
    lines = ["# Stem × mixer: the factorial analysis", "",
             f"Made by `python -m convmixer_lit.compare` from `results/*.json`. {len(design.stems)} stems × "
             f"{len(design.mixers)} mixers at {design.epochs} epochs, {n} paired seed{'s' * (n > 1)} "
             f"({', '.join(map(str, design.seeds))}: each seed is one data order shared by every cell). "
             "Accuracy: best-epoch validation top-1 in %; ± is the 95% t half-width over seeds. Effects are "
             "computed per seed and their intervals are paired t intervals."
             + (f" **Each cell is tuned:** it trains with its own {', '.join(f'`{k}`' for k in tuned)}, its best "
                "of the same trials on a held-out part of train (`tuning.md`), so each effect compares the cells "
                "at their best, not at one shared setting." if tuned else ""), ""]
    if design.unpaired:
        lines += ["Left out until every cell has them (a factorial pairs each seed across all cells): "
                  + "; ".join(f"seed {seed}, which {', '.join(cells)} lack{'s' * (len(cells) == 1)}"
                              for seed, cells in design.unpaired.items()) + ".", ""]
    lines += ["## Equal epochs", "", *_grid(design, f.epochs), ""]
    lines += ["| cell | parameters | train GFLOPs/image | train img/s | wall time (min) |", "|---|---|---|---|---|"]
    for stem, mixer in ((s, m) for s in design.stems for m in design.mixers):  # the grid's order, as the tables
        c = f.costs[(stem, mixer)]
        speed = "–" if c.speed is None else f"{c.speed:.0f}" + (
            f" ({c.quiet_runs} run{'s' * (c.quiet_runs > 1)})" if c.quiet_runs < c.runs else "")
        lines.append(f"| {stem} + {mixer} | {c.parameters:,} | {c.train_gflops:.3f} | {speed} | {c.wall_min:.1f} |")
    quiet = any(c.quiet_runs for c in f.costs.values())
    lines += ["", "Train img/s is quoted only from runs that had the machine to themselves (one run at a time, the "
                  "1-minute load within their threads at every epoch end; recorded since the tuned study)"
              + ("; no run here qualifies, so see `python -m convmixer_lit.bench` for speed" if not quiet else "")
              + (". Wall times are every run's, whatever else the machine ran." if f.time is None else
                 f". Wall times come from seed{'s' * (n_timed > 1)} {', '.join(map(str, f.time.seeds))}, whose "
                 "runs had the whole machine.")]
    if f.epochs.effects is None:
        lines += ["", "One seed: effects and intervals need 2 or more paired seeds.", ""]
    else:
        e = f.epochs.effects
        lines += ["", *_effect_lines(design, e), "", "What the intervals support:", "", *_verdicts(design, e)]
    if f.epochs.effects is not None and f.time is None:
        lines += ["", "## Equal wall time", "", "Left out: no seed's runs had the machine to themselves (they ran "
                  "several at once, `--jobs N`), so their wall times measure the sharing as much as the cells. "
                  "Rerun a seed one run at a time for this view, or see `python -m convmixer_lit.bench`."]
    elif f.epochs.effects is not None:
        lines += ["", "## Equal wall time", "",
                  f"Each run's best validation accuracy by {f.budget_s / 60:.1f} min of its own wall time (the "
                  "fastest cell's mean full run). Slower cells are cut mid-schedule (their learning rate had not "
                  "annealed), so this view favours cheap cells by construction; wall times depend on the machine and "
                  f"on what else it ran.{shared}", ""]
        if f.time.effects is not None:
            et = f.time.effects
            lines += [*_grid(design, f.time), "", *_effect_lines(design, et, anova=False), "",
                      *_verdicts(design, et)]
        else:
            lines.append("One seed had the machine to itself: wall-time effects need 2 or more." if n_timed < 2 else
                         "Some runs had not finished one epoch by then; the wall-time effects are left out.")
            lines += [f"- {stem} + {mixer}: " + ", ".join("–" if np.isnan(v) else f"{100 * v:.1f}"
                                                          for v in f.time.y[:, i, j])
                      for i, stem in enumerate(design.stems) for j, mixer in enumerate(design.mixers)]
    lines += _arm_lines(f)
    lines += ["", f"Figure: `{FIGURE}` (mixer on the x-axis, one line per stem, 95% CI bars where a cell has "
              f"{MIN_SEEDS_FOR_BARS}+ seeds, points alone otherwise; "
              + ("left: equal epochs, right: equal wall time)." if f.time is not None else "equal epochs)."), ""]
    return lines


def _figure(f: Factorial, path: Path) -> None:
    """The interaction plot: one line per stem over the mixers, mean and 95% CI bars."""
    design = f.design
    panels = [(f.epochs, f"equal epochs ({design.epochs})")]
    if f.time is not None:
        panels.append((f.time, f"equal wall time ({f.budget_s / 60:.1f} min)"))
    fig = Figure(figsize=(5 * len(panels), 4.6), layout="constrained")
    x = np.arange(len(design.mixers))
    for k, (v, title) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), k + 1)
        for i, stem in enumerate(design.stems):
            means, lows, highs = [], [], []
            for j in range(len(design.mixers)):
                d = v.cells[(i, j)]
                mean = np.nan if d is None else 100 * d.mean
                # an accuracy lies in [0, 100]: a few seeds' t interval can reach past it, the bar stops there; with
                # fewer than 3 seeds (t with 1 degree of freedom: 12.7 standard errors) no bar is drawn, only points
                bar = d is not None and d.ci_low is not None and d.n >= MIN_SEEDS_FOR_BARS
                low = max(0.0, 100 * d.ci_low) if bar else mean
                high = min(100.0, 100 * d.ci_high) if bar else mean
                means.append(mean), lows.append(mean - low), highs.append(high - mean)
            ax.errorbar(x + (i - 0.5) * 0.08, means, yerr=[lows, highs], marker="o", capsize=4,
                        label=f"{stem} stem")
        ax.set_xticks(x, design.mixers)
        ax.set_xlabel("token mixer")
        ax.set_ylabel("best val top-1 (%)")
        ax.set_title(title)
        ax.grid(alpha=0.3)
    fig.legend(*ax.get_legend_handles_labels(), loc="outside lower center", ncol=len(design.stems))  # hides no bar
    fig.savefig(path, dpi=120)
