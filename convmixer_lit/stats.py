"""Small-sample statistics for seed studies, on scipy.stats: Student-t intervals, Welch's test, paired contrasts
and the repeated-measures ANOVA of a factorial design.

A study has 1-5 seeds per model, so normal approximations are wrong and the t distribution is needed. Seeds are
paired across the cells of a factorial study (same seed, same data order), so its effects are estimated per seed
and tested on those differences: the seed-to-seed noise common to all cells cancels.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats


@dataclass(frozen=True)
class Description:
    """Mean, sample standard deviation and a two-sided Student-t confidence interval of the mean."""

    n: int
    mean: float
    std: float | None  # None with one value: no spread can be estimated
    ci_low: float | None
    ci_high: float | None


def describe(values: Sequence[float], confidence: float = 0.95) -> Description:
    """Summarise seeds of one model; the interval is mean +- t_{(1+c)/2, n-1} * std / sqrt(n)."""
    n = len(values)
    if n == 0:
        raise ValueError("no values to describe")
    mean = math.fsum(values) / n
    if n == 1:
        return Description(1, mean, None, None, None)
    if min(values) == max(values):  # exactly no spread: fsum([0.7] * 3) / 3 rounds to 0.6999..98, a 1e-16 "std"
        return Description(n, float(values[0]), 0.0, float(values[0]), float(values[0]))
    std = float(np.std(values, ddof=1))
    half = float(stats.t.ppf(0.5 + confidence / 2.0, n - 1)) * std / math.sqrt(n)
    return Description(n, mean, std, mean - half, mean + half)


@dataclass(frozen=True)
class WelchTest:
    """Welch's unequal-variance t-test of mean(a) - mean(b), with the matching confidence interval."""

    diff: float
    t: float
    df: float
    p_value: float
    ci_low: float
    ci_high: float


def welch_t_test(a: Sequence[float], b: Sequence[float], confidence: float = 0.95) -> WelchTest | None:
    """Two-sided Welch test; None when either side has fewer than 2 values or both have zero spread."""
    da, db = describe(a), describe(b)
    if da.std is None or db.std is None or da.std == db.std == 0.0:
        return None
    va, vb = da.std ** 2 / da.n, db.std ** 2 / db.n
    se = math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va ** 2 / (da.n - 1) + vb ** 2 / (db.n - 1))  # Welch-Satterthwaite
    result = stats.ttest_ind(a, b, equal_var=False)
    half = float(stats.t.ppf(0.5 + confidence / 2.0, df)) * se
    diff = da.mean - db.mean
    return WelchTest(diff, float(result.statistic), df, float(result.pvalue), diff - half, diff + half)


@dataclass(frozen=True)
class Contrast:
    """A paired effect: the mean over seeds of a per-seed difference, its t interval and two-sided p-value."""

    n: int
    mean: float
    ci_low: float | None  # None with one seed
    ci_high: float | None
    p_value: float | None  # None with one seed or no spread

    @property
    def resolved(self) -> bool:
        """The interval excludes 0: the effect's sign is supported beyond seed noise."""
        return self.ci_low is not None and (self.ci_low > 0 or self.ci_high < 0)


def paired_contrast(per_seed: Sequence[float], confidence: float = 0.95) -> Contrast:
    """The one-sample t analysis of per-seed differences (a paired t-test)."""
    d = describe(per_seed, confidence)
    p = None
    if d.std:
        p = float(stats.ttest_1samp(per_seed, 0.0).pvalue)
    return Contrast(d.n, d.mean, d.ci_low, d.ci_high, p)


@dataclass(frozen=True)
class AnovaRow:
    """One term of a repeated-measures ANOVA: F = MS(term) / MS(term x subject)."""

    term: str
    df: int
    df_error: int
    f: float | None  # None when the error term has no degrees of freedom or no variance
    p_value: float | None


def rm_anova_two_way(y: np.ndarray, names: tuple[str, str] = ("A", "B")) -> list[AnovaRow]:
    """Two-way within-subject ANOVA of y[subject, a, b] (here: seed x stem x mixer), each term tested against its
    own interaction with subjects, as the pairing of seeds requires. Rows: A, B, A x B."""
    n, na, nb = y.shape
    g = y.mean()
    m_s, m_a, m_b = y.mean(axis=(1, 2)), y.mean(axis=(0, 2)), y.mean(axis=(0, 1))
    m_sa, m_sb, m_ab = y.mean(axis=2), y.mean(axis=1), y.mean(axis=0)
    terms = {
        names[0]: (n * nb * ((m_a - g) ** 2).sum(), na - 1,
                   nb * ((m_sa - m_s[:, None] - m_a[None, :] + g) ** 2).sum(), (na - 1) * (n - 1)),
        names[1]: (n * na * ((m_b - g) ** 2).sum(), nb - 1,
                   na * ((m_sb - m_s[:, None] - m_b[None, :] + g) ** 2).sum(), (nb - 1) * (n - 1)),
        f"{names[0]} x {names[1]}": (
            n * ((m_ab - m_a[:, None] - m_b[None, :] + g) ** 2).sum(), (na - 1) * (nb - 1),
            ((y - m_ab[None] - m_sa[:, :, None] - m_sb[:, None, :] + m_a[None, :, None] + m_b[None, None, :]
              + m_s[:, None, None] - g) ** 2).sum(), (na - 1) * (nb - 1) * (n - 1)),
    }
    rows = []
    for term, (ss, df, ss_err, df_err) in terms.items():
        if df_err == 0 or ss_err <= 1e-15 * max(1.0, ss):
            rows.append(AnovaRow(term, df, df_err, None, None))
            continue
        f = (ss / df) / (ss_err / df_err)
        rows.append(AnovaRow(term, df, df_err, float(f), float(stats.f.sf(f, df, df_err))))
    return rows


def expected_max(values: list[float], n: int) -> float:
    """The expected best of `n` trials drawn (with replacement) from the K trials whose scores are `values`: Dodge et
    al. 2019 ("Show your work"), E[max of n] = sum_i v(i) ((i/K)^n - ((i-1)/K)^n) over the sorted scores. Exact,
    no resampling noise; it tells how much a model's score owes to its tuning budget."""
    ordered = sorted(values)
    k = len(ordered)
    if k == 0 or n < 1:
        raise ValueError("expected_max needs at least one value and n >= 1")
    return float(sum(v * ((i / k) ** n - ((i - 1) / k) ** n) for i, v in enumerate(ordered, start=1)))
