"""The report of a study, from its `results/*.json` alone (so a committed study folder redraws it): `summary.csv`
(one row per run, with the command that reproduces it), `summary.md` (mean ± std, 95% intervals, pairwise Welch
tests: "A beats B beyond seed noise" is written only where that holds) and the figures (convmixer_lit/figures.py).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from convmixer_lit.errors import ConfigError
from convmixer_lit.stats import describe, welch_t_test

CSV_COLUMNS = ["model", "seed", "parameters", "train_flops_per_image", "best_val_acc", "final_val_acc",
               "best_val_loss", "epochs", "wall_time_s", "train_images_per_s", "precision", "accelerator",
               "command"]
ALPHA = 0.05
TUNING_RECORD = "tuning.json"  # in a tuned study's tuning/ folder (study/tuning.py)


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
    from convmixer_lit.study.factorial import had_machine_alone

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
    shared_speeds = False
    for entry, runs in by_model.items():
        accs = _accs(runs)
        d = describe(accs) if accs else None
        finals = [r["final_val_acc"] for r in runs if r.get("final_val_acc") is not None]
        params = sorted({r.get("parameters") for r in runs if r.get("parameters")})
        flops = [r["train_flops_per_image"] for r in runs if r.get("train_flops_per_image")]
        walls = [r["wall_time_s"] for r in runs if r.get("wall_time_s")]
        # a speed is the model's own only from runs that had the machine to themselves; the others' in parentheses
        alone = [r["train_images_per_s"] for r in runs if r.get("train_images_per_s") and had_machine_alone(r)]
        speeds = alone or [r["train_images_per_s"] for r in runs if r.get("train_images_per_s")]
        shared_speeds |= bool(speeds) and not alone
        mean_std = "–" if d is None else _pct(d.mean) + ("" if d.std is None else f" ± {_pct(d.std)}")
        ci = "– (1 seed)" if d is None or d.ci_low is None else f"[{_pct(d.ci_low)}, {_pct(d.ci_high)}]"
        cells = [entry, ", ".join(str(r.get("seed")) for r in runs), mean_std, ci,
                 _pct(_mean(finals)), " / ".join(f"{p:,}" for p in params) or "–",
                 "–" if not flops else f"{_mean(flops) / 1e9:.3f}",
                 "–" if not walls else f"{_mean(walls) / 60:.1f}",
                 "–" if not speeds else f"{_mean(speeds):.0f}" if alone else f"({_mean(speeds):.0f})"]
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
    if shared_speeds:
        lines += ["", "Train img/s in parentheses: every run of that model shared the machine (several at once, "
                      "`--jobs N`, or other work) or predates the record of it, so it is not the model's own speed; "
                      "wall times too are as the runs ran. `python -m convmixer_lit.bench` measures speed."]
    lines += ["", "Figures: `val_acc.png`, `val_loss.png` (mean over seeds, band: min–max), `acc_vs_params.png`, "
              "`acc_vs_time.png`. Every run's command is in `summary.csv`; its curves are in TensorBoard "
              "(`tensorboard --logdir lightning_logs`) where the run folders were kept.", ""]
    path.write_text("\n".join(lines))


def report(out: Path) -> list[Path]:
    """Write summary.csv, summary.md and the figures from DIR/results/*.json alone; returns the paths."""
    from convmixer_lit.figures import draw_all  # matplotlib: only when a report is drawn
    from convmixer_lit.study.factorial import write_factorial

    tuning: list[Path] = []
    if (out / "tuning" / TUNING_RECORD).is_file():  # a tuned study: its tuning stage first (trials, chosen configs)
        from convmixer_lit.study.tuning_report import write_tuning_report

        tuning = write_tuning_report(out)
        if not any((out / "results").glob("*.json")):
            return tuning  # no finals yet
    by_model = load_results(out)
    write_csv(by_model, out / "summary.csv")
    write_markdown(by_model, out / "summary.md")
    factorial = write_factorial(by_model, out)  # a stem x mixer study (mixer-study) gets its factorial analysis
    if factorial:
        with open(out / "summary.md", "a") as f:
            f.write(f"The stem × mixer factorial analysis (paired effects, interaction, arms): `{factorial[0].name}`, "
                    f"figure `{factorial[1].name}`.\n")
    return [*tuning, out / "summary.csv", out / "summary.md", *draw_all(by_model, out), *factorial]


def report_if_any(out: Path) -> list[Path]:
    """The report, where at least one run has finished (a study in progress shows what it has so far). A tuned
    study's `tuning/` folder (it holds `tuning.json`) is reported as part of its study."""
    if (out / TUNING_RECORD).is_file():
        return report_if_any(out.parent)
    tuned = (out / "tuning" / TUNING_RECORD).is_file() and any((out / "tuning" / "results").glob("*.json"))
    return report(out) if tuned or any((out / "results").glob("*.json")) else []


def refresh_report(out: Path) -> None:
    """Redraw the report while a study runs (after each finished run): a failure to draw it is printed and the study
    goes on, because hours of training must not end on a figure. `--report-only` redraws it afterwards."""
    try:
        report_if_any(out)
    except Exception as e:  # noqa: BLE001 -- any drawing error: reported, the runs continue
        print(f"    (the report could not be redrawn: {type(e).__name__}: {e}; the study goes on; "
              f"`compare --output {out} --report-only` redraws it)", flush=True)
