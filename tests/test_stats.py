"""convmixer_lit.stats on known numbers: hand-worked examples whose t quantiles come from printed tables."""

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from convmixer_lit.stats import describe, paired_contrast, rm_anova_two_way, welch_t_test
from convmixer_lit.study.pairs import contrast_line, paired, scores


def test_describe_of_nothing_raises():
    with pytest.raises(ValueError):
        describe([])


# ---- describe -------------------------------------------------------------------------------------------------
def test_describe_hand_computed():
    # values 0.80, 0.82, 0.84: mean 0.82; deviations -0.02, 0, 0.02, so s^2 = (4e-4 + 0 + 4e-4) / 2 = 4e-4, s = 0.02.
    # 95% CI: 0.82 +- t_{0.975,2} * 0.02 / sqrt(3) = 0.82 +- 4.302653 * 0.0115470 = 0.82 +- 0.0496828
    d = describe([0.80, 0.82, 0.84])
    assert d.n == 3 and d.mean == pytest.approx(0.82, abs=1e-15) and d.std == pytest.approx(0.02, abs=1e-12)
    assert d.ci_low == pytest.approx(0.82 - 0.0496828, abs=1e-7)
    assert d.ci_high == pytest.approx(0.82 + 0.0496828, abs=1e-7)
    # 90% CI with n = 5: values 1..5, mean 3, s = sqrt(10 / 4) = 1.5811388; t_{0.95,4} = 2.131847
    d = describe([1.0, 2.0, 3.0, 4.0, 5.0], confidence=0.90)
    assert d.std == pytest.approx(math.sqrt(2.5))
    assert d.ci_high - d.mean == pytest.approx(2.131847 * math.sqrt(2.5) / math.sqrt(5), abs=1e-6)


def test_describe_edge_cases():
    one = describe([0.7])
    assert (one.n, one.mean, one.std, one.ci_low, one.ci_high) == (1, 0.7, None, None, None)
    flat = describe([0.7, 0.7, 0.7])  # zero spread: a zero-width interval, not an error
    assert (flat.mean, flat.std, flat.ci_low, flat.ci_high) == (0.7, 0.0, 0.7, 0.7)  # not 0.6999..98 +- 1e-16


# ---- Welch's t-test -------------------------------------------------------------------------------------------
def test_welch_df_2_closed_form():
    # a = 3, 5 (mean 4, s^2 = 2); b = 0, 2 (mean 1, s^2 = 2). s^2/n = 1 each: se = sqrt(2), t = 3 / sqrt(2).
    # df = (1 + 1)^2 / (1^2/1 + 1^2/1) = 2. With df 2, P(|T| > t) = 1 - t / sqrt(2 + t^2) = 1 - 3/sqrt(13).
    # CI: 3 +- t_{0.975,2} * sqrt(2) = 3 +- 4.302653 * 1.4142136 = 3 +- 6.0848698
    w = welch_t_test([3.0, 5.0], [0.0, 2.0])
    assert w.diff == pytest.approx(3.0) and w.t == pytest.approx(3 / math.sqrt(2)) and w.df == pytest.approx(2.0)
    assert w.p_value == pytest.approx(1 - 3 / math.sqrt(13), abs=1e-12)  # 0.1679497
    assert (w.ci_low, w.ci_high) == (pytest.approx(3 - 6.0848698, abs=1e-6), pytest.approx(3 + 6.0848698, abs=1e-6))


def test_welch_df_1_one_side_without_spread():
    # a = 0, 2 (mean 1, s^2/n = 1); b = -1, -1 (mean -1, no spread). t = 2 / 1 = 2; df = 1^2 / (1^2 / 1) = 1, the
    # Cauchy case: p = 2 * P(T > 2) = 1 - 2 atan(2) / pi = 0.2951672
    w = welch_t_test([0.0, 2.0], [-1.0, -1.0])
    assert w.t == pytest.approx(2.0) and w.df == pytest.approx(1.0)
    assert w.p_value == pytest.approx(1 - 2 * math.atan(2) / math.pi, abs=1e-12)
    assert w.ci_high - w.diff == pytest.approx(12.706205, abs=1e-6)  # t_{0.975,1} * se, se = 1


def test_welch_fractional_df_hand_computed():
    # a = .80 .82 .84 (mean .82, s^2 = 4e-4), b = .70 .71 .72 (mean .71, s^2 = 1e-4), n = 3 each.
    # s^2/n: 4e-4/3 and 1e-4/3; se = sqrt(5e-4 / 3) = 0.0129099; t = 0.11 / se = 8.520563.
    # Welch-Satterthwaite: df = (5e-4)^2 / ((4e-4)^2 / 2 + (1e-4)^2 / 2) = 2.5e-7 / 8.5e-8 = 50/17 = 2.941176.
    w = welch_t_test([0.80, 0.82, 0.84], [0.70, 0.71, 0.72])
    assert w.diff == pytest.approx(0.11) and w.t == pytest.approx(8.520563, abs=1e-6)
    assert w.df == pytest.approx(50 / 17, rel=1e-12)
    # p = 1 - 2 * (integral of the t density with 50/17 df from 0 to t) = 0.0036600
    assert w.p_value == pytest.approx(0.0036600, abs=1e-7)
    half = 3.2187586 * math.sqrt(5e-4 / 3)  # t_{0.975, 50/17}, between the tables' 3.182 (df 3) and 4.303 (df 2)
    assert (w.ci_low, w.ci_high) == (pytest.approx(0.11 - half), pytest.approx(0.11 + half))
    assert 0 < w.ci_low < w.ci_high  # beyond seed noise
    # swapping the sides flips the sign, nothing else
    r = welch_t_test([0.70, 0.71, 0.72], [0.80, 0.82, 0.84])
    assert r.t == pytest.approx(-w.t) and r.p_value == pytest.approx(w.p_value) and r.df == pytest.approx(w.df)
    assert (r.ci_low, r.ci_high) == (pytest.approx(-w.ci_high), pytest.approx(-w.ci_low))


def test_welch_identical_means_give_p_1():
    w = welch_t_test([0.5, 0.7], [0.4, 0.8])
    assert w.t == pytest.approx(0.0, abs=1e-12) and w.p_value == pytest.approx(1.0)


def test_welch_undefined_cases_are_none():
    assert welch_t_test([0.8], [0.7, 0.71]) is None  # one value: no spread to estimate
    assert welch_t_test([0.8, 0.81], [0.7]) is None
    # zero spread on both sides: no standard error (rounding in the mean must not fake a 1e-16 one and p ~ 0)
    assert welch_t_test([0.7, 0.7, 0.7], [0.6, 0.6, 0.6]) is None
    assert welch_t_test([0.8, 0.8, 0.8], [0.7, 0.7]) is None


# ---- paired contrasts and the repeated-measures ANOVA ---------------------------------------------------------
def test_paired_contrast_hand_computed():
    # differences 1, 2, 3: mean 2, s = 1, se = 1/sqrt(3); t = 2 sqrt(3) = 3.4641 on 2 df; t_{0.975,2} = 4.302653
    c = paired_contrast([1.0, 2.0, 3.0])
    assert c.n == 3 and c.mean == pytest.approx(2.0)
    assert (c.ci_low, c.ci_high) == (pytest.approx(2 - 4.302653 / math.sqrt(3), abs=1e-6),
                                     pytest.approx(2 + 4.302653 / math.sqrt(3), abs=1e-6))
    # two-sided p of t = 2 sqrt(3) on 2 df, closed form 1 - t / sqrt(2 + t^2) = 1 - sqrt(12/14)
    assert c.p_value == pytest.approx(1 - math.sqrt(12 / 14), abs=1e-12)
    assert not c.resolved  # the interval [-0.48, 4.48] spans 0
    assert paired_contrast([1.0, 1.2, 0.9, 1.1]).resolved
    one = paired_contrast([0.5])
    assert (one.ci_low, one.p_value, one.resolved) == (None, None, False)


def test_rm_anova_2x2_interaction_is_the_paired_t_squared():
    # per-seed interaction contrasts y11 - y12 - y21 + y22 = 1, 2, 3 (mean 2, s 1): F(1, 2) = t^2 = 12 exactly
    base = np.array([[0.5, 0.2], [0.3, 0.0]])  # no interaction of its own
    y = np.stack([base + np.array([[0, 0], [0, c]]) + s for c, s in ((1, 0.0), (2, 0.3), (3, -0.1))])
    rows = {r.term: r for r in rm_anova_two_way(y, ("stem", "mixer"))}
    ab = rows["stem x mixer"]
    assert (ab.df, ab.df_error) == (1, 2)
    assert ab.f == pytest.approx(12.0) and ab.p_value == pytest.approx(1 - math.sqrt(12 / 14), abs=1e-12)
    # main effect of stem (rows): per seed mean(row 2) - mean(row 1) = (0.15 + c/2) - 0.35 = -0.2 + c/2
    stem = paired_contrast([(y[s, 1].mean() - y[s, 0].mean()) for s in range(3)])
    assert rows["stem"].f == pytest.approx((stem.mean / (0.5 / math.sqrt(3))) ** 2)


def test_rm_anova_without_noise_has_no_test():
    y = np.zeros((3, 2, 4)) + np.arange(4)[None, None, :] * 0.01 + np.array([0.0, 0.1, 0.2])[:, None, None]
    rows = rm_anova_two_way(y)
    assert all(r.f is None and r.p_value is None for r in rows)  # every error term is exactly 0
    assert [(r.df, r.df_error) for r in rows] == [(1, 2), (3, 6), (3, 6)]


# --- paired comparisons across study folders (convmixer_lit/study/pairs.py) -----------------------------------------

def _result(folder, name, acc, seed, **study):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.json").write_text(json.dumps({"best_val_acc": acc, "seed": seed, "study": study}))


def test_scores_by_seed_and_by_trial_skip_unfinished_and_prefix_namesakes(tmp_path):
    finals, trials = tmp_path / "results", tmp_path / "tuning" / "results"
    _result(finals, "timm-seed1", 0.5, 1, entry="timm")
    _result(finals, "timm-seed2", None, 2, entry="timm")  # unfinished: no score
    _result(finals, "timm-big-seed1", 0.9, 1, entry="timm-big")  # another model whose name starts with "timm-"
    _result(trials, "timm-trial3-seed0", 0.25, 0, entry="timm-trial3", trial=3)
    _result(trials, "timm-big-trial3-seed0", 0.75, 0, entry="timm-big-trial3", trial=3)
    assert scores(finals, "timm") == {1: 50.0}
    assert scores(trials, "timm", by="trial") == {3: 25.0}
    assert scores(trials, "timm-big", by="trial") == {3: 75.0}


def test_paired_lines_hand_computed():
    # differences +2 and +4: mean 3, sd sqrt(2), half-width t(0.975, 1) * sqrt(2) / sqrt(2) = 12.706
    lines = paired({0: 52.0, 1: 54.0, 7: 1.0}, {0: 50.0, 1: 50.0, 2: 1.0}, "trial")
    assert lines[:2] == ["  trial 0: 52.00 vs 50.00  +2.00 pp", "  trial 1: 54.00 vs 50.00  +4.00 pp"]
    assert lines[2].startswith("  mean +3.00 pp over 2 paired trials, 95% CI [-9.71, +15.71], p = 0.")
    assert paired({0: 1.0}, {1: 1.0}) == []
    assert contrast_line(paired_contrast([1.0])) == "mean +1.00 pp"  # one pair: no interval, no p


@pytest.mark.parametrize("script", ["mixer-study-reference/body_check.py",
                                    "mixer-study-tuned-reference/reference_check.py"])
def test_committed_check_is_what_its_script_prints(script):
    """The reference checks quoted in docs/results.md are reproducible from the committed result files."""
    path = Path(__file__).parents[1] / "docs" / "results" / script
    run = subprocess.run([sys.executable, str(path)], capture_output=True, text=True, check=True)
    assert run.stdout == path.with_suffix(".txt").read_text()
