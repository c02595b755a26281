"""Paired comparisons across study folders: one model's runs against another's, matched by seed or by trial.

Why: a reference row (timm's ViT beside the patch + attention cell, a body variant beside the cell it changes) lives
in a folder of its own, so that the study it is compared with stays as it was made; the comparison must still be
paired, because runs with the same seed see the same data order and the same initial draw, and trials with the same
number train the same searched configuration. Used by the check scripts beside the committed reference studies
(docs/results/mixer-study-reference/body_check.py, docs/results/mixer-study-tuned-reference/reference_check.py).
"""

from __future__ import annotations

import json
from pathlib import Path

from convmixer_lit.stats import Contrast, paired_contrast
from convmixer_lit.study.plan import split_trial


def scores(results: Path, model: str, by: str = "seed") -> dict[int, float]:
    """Best top-1 (%) of each finished run of `model` in a results folder, keyed by its seed, or by its trial number
    (`by="trial"`, for a tuning folder's results: the held-out top-1 of each trial)."""
    out = {}
    for path in sorted(results.glob(f"{model}-*.json")):
        result = json.loads(path.read_text())
        study = result.get("study", {})
        if result.get("best_val_acc") is None or split_trial(study.get("entry", model))[0] != model:
            continue  # unfinished, or another model whose name starts with this one's
        key = study.get("trial") if by == "trial" else result.get("seed")
        if key is not None:
            out[int(key)] = 100 * result["best_val_acc"]
    return out


def contrast_line(c: Contrast, over: str = "") -> str:
    """`mean +3.78 pp over 3 paired seeds, 95% CI [-0.96, +8.52], p = 0.0754` (interval and p where defined)."""
    ci = "" if c.ci_low is None else f", 95% CI [{c.ci_low:+.2f}, {c.ci_high:+.2f}]"
    p = "" if c.p_value is None else f", p = {c.p_value:.3g}"
    return f"mean {c.mean:+.2f} pp{f' over {over}' if over else ''}{ci}{p}"


def paired(a: dict[int, float], b: dict[int, float], label: str = "seed") -> list[str]:
    """One line per key both have (`seed 0: 48.36 vs 42.57  +5.78 pp`), then the paired mean difference a - b with
    its t interval; nothing where they share no key."""
    keys = sorted(set(a) & set(b))
    if not keys:
        return []
    lines = [f"  {label} {k}: {a[k]:.2f} vs {b[k]:.2f}  {a[k] - b[k]:+.2f} pp" for k in keys]
    c = paired_contrast([a[k] - b[k] for k in keys])
    return lines + ["  " + contrast_line(c, f"{len(keys)} paired {label}s")]
