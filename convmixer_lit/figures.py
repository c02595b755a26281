"""The study's figures, drawn from per-run result dicts (`results/*.json`) alone, so a committed study redraws them.

Uses `matplotlib.figure.Figure` directly (no pyplot): no global backend or open-figure state, PNGs via Agg.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from convmixer_lit.stats import describe

FIGURES = ("val_acc.png", "val_loss.png", "acc_vs_params.png", "acc_vs_time.png")
MIN_SEEDS_FOR_BARS = 3  # a spread from 2 seeds reads as more than it is: their points alone are drawn


def model_colors(models: list[str]) -> dict[str, tuple]:
    """A colour per model, by its name's place among the names, so a study's figures agree (the summary's, ordered
    by accuracy, and the tuning report's, ordered by design, given the same models): matplotlib's 10 default
    colours up to 10 models, tab20's 20 beyond (and they repeat past 20)."""
    from matplotlib import colormaps

    names = sorted(models)
    palette = colormaps["tab10" if len(names) <= 10 else "tab20"]
    return {m: palette(i % palette.N) for i, m in enumerate(names)}


def _legend(ax) -> None:
    """The legend beside the axes, where it hides no point (a constrained layout makes room for it)."""
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0)


def _save(fig: Figure, path: Path) -> None:
    fig.savefig(path, dpi=120)


def curves(runs_by_model: dict[str, list[dict]], key: str, ylabel: str, path: Path, percent: bool) -> None:
    """One line per model: the mean over seeds at each epoch, with a min-max band where there are 2+ seeds."""
    fig = Figure(figsize=(9, 4.5), layout="constrained")
    ax = fig.add_subplot()
    colors = model_colors(list(runs_by_model))
    scale = 100.0 if percent else 1.0
    for model, runs in runs_by_model.items():
        per_epoch: dict[int, list[float]] = defaultdict(list)
        for run in runs:
            for h in run.get("history", []):
                if h.get(key) is not None:
                    per_epoch[int(h["epoch"]) + 1].append(scale * h[key])
        if not per_epoch:
            continue
        epochs = sorted(per_epoch)
        mean = [sum(per_epoch[e]) / len(per_epoch[e]) for e in epochs]
        ax.plot(epochs, mean, color=colors[model], marker="." if len(epochs) < 15 else None,
                label=f"{model} (mean of {len(runs)} seed{'s' if len(runs) > 1 else ''})")
        if len(runs) > 1:
            ax.fill_between(epochs, [min(per_epoch[e]) for e in epochs], [max(per_epoch[e]) for e in epochs],
                            color=colors[model], alpha=0.2, linewidth=0)
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole: no 1.5
    ax.set_ylabel(ylabel)
    ax.set_title(f"{ylabel} over training (band: min-max over seeds)")
    ax.grid(alpha=0.3)
    _legend(ax)
    _save(fig, path)


def scatter(runs_by_model: dict[str, list[dict]], x_of, xlabel: str, path: Path, log_x: bool) -> None:
    """Best val top-1 of every run (small dots) and each model's mean, with +- its standard deviation over seeds
    where it has `MIN_SEEDS_FOR_BARS` or more (big marker)."""
    fig = Figure(figsize=(8, 4.5), layout="constrained")
    ax = fig.add_subplot()
    colors = model_colors(list(runs_by_model))
    for model, runs in runs_by_model.items():
        points = [(x_of(r), 100.0 * r["best_val_acc"]) for r in runs
                  if x_of(r) is not None and r.get("best_val_acc") is not None]
        if not points:
            continue
        xs, ys = zip(*points)
        ax.scatter(xs, ys, color=colors[model], alpha=0.35, s=18)
        mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
        sy = (describe(ys).std or 0.0) if len(ys) >= MIN_SEEDS_FOR_BARS else 0.0
        ax.errorbar([mx], [my], yerr=[sy], color=colors[model], marker="o", markersize=8, capsize=4,
                    label=f"{model} (n={len(ys)})")
        ax.annotate(model, (mx, my), textcoords="offset points", xytext=(6, 6), fontsize=9)
    ax.margins(x=0.12)  # room for the last point's label
    if log_x:
        ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("best val top-1 (%)")
    ax.set_title(f"each run, and each model's mean ± std over seeds ({MIN_SEEDS_FOR_BARS}+)", fontsize=10)
    ax.grid(alpha=0.3, which="both")
    _legend(ax)
    _save(fig, path)


def draw_all(runs_by_model: dict[str, list[dict]], out: Path) -> list[Path]:
    """Write the study's four PNGs into `out`; returns their paths."""
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / name for name in FIGURES]
    curves(runs_by_model, "val_acc", "val top-1 (%)", paths[0], percent=True)
    curves(runs_by_model, "val_loss", "val loss", paths[1], percent=False)
    scatter(runs_by_model, lambda r: r.get("parameters"), "parameters", paths[2], log_x=True)
    scatter(runs_by_model, lambda r: r["wall_time_s"] / 60 if r.get("wall_time_s") else None,
            "training wall time (minutes, fit incl. validation)", paths[3], log_x=False)
    return paths
