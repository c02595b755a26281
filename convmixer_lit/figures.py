"""The study's figures, drawn from per-run result dicts (`results/*.json`) alone, so a committed study redraws them.

Uses `matplotlib.figure.Figure` directly (no pyplot): no global backend or open-figure state, PNGs via Agg.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from matplotlib.figure import Figure

from convmixer_lit.stats import describe

FIGURES = ("val_acc.png", "val_loss.png", "acc_vs_params.png", "acc_vs_time.png")


def _colors(models: list[str]) -> dict[str, str]:
    return {m: f"C{i % 10}" for i, m in enumerate(models)}


def _save(fig: Figure, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def curves(runs_by_model: dict[str, list[dict]], key: str, ylabel: str, path: Path, percent: bool) -> None:
    """One line per model: the mean over seeds at each epoch, with a min-max band where there are 2+ seeds."""
    fig = Figure(figsize=(7, 4.5))
    ax = fig.add_subplot()
    colors = _colors(list(runs_by_model))
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
    ax.set_ylabel(ylabel)
    ax.set_title(f"{ylabel} over training (band: min-max over seeds)")
    ax.grid(alpha=0.3)
    ax.legend()
    _save(fig, path)


def scatter(runs_by_model: dict[str, list[dict]], x_of, xlabel: str, path: Path, log_x: bool) -> None:
    """Best val top-1 of every run (small dots) and each model's mean +- std (big marker with error bars)."""
    fig = Figure(figsize=(6, 4.5))
    ax = fig.add_subplot()
    colors = _colors(list(runs_by_model))
    for model, runs in runs_by_model.items():
        points = [(x_of(r), 100.0 * r["best_val_acc"]) for r in runs
                  if x_of(r) is not None and r.get("best_val_acc") is not None]
        if not points:
            continue
        xs, ys = zip(*points)
        ax.scatter(xs, ys, color=colors[model], alpha=0.35, s=18)
        mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
        sy = describe(ys).std or 0.0  # None with one seed: no error bar
        ax.errorbar([mx], [my], yerr=[sy], color=colors[model], marker="o", markersize=8, capsize=4,
                    label=f"{model} (n={len(ys)})")
        ax.annotate(model, (mx, my), textcoords="offset points", xytext=(6, 6), fontsize=9)
    if log_x:
        ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("best val top-1 (%)")
    ax.grid(alpha=0.3, which="both")
    ax.legend()
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
