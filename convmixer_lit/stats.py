"""Small-sample statistics for seed studies: mean, std, Student-t intervals and Welch's t-test.

A study has 1-5 seeds per model, so normal approximations are wrong and the t distribution is needed; scipy is
not a dependency, so its CDF comes from the regularized incomplete beta function, evaluated by its continued
fraction (DLMF 8.17.22) with the modified Lentz method. Everything here is plain Python on lists of floats.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

_TINY = 1e-300


def _beta_continued_fraction(x: float, a: float, b: float) -> float:
    """The continued fraction 1/(1+ d1/(1+ d2/(1+ ...))) of DLMF 8.17.22, evaluated by modified Lentz."""
    f = c = 1.0
    d = 0.0
    for n in range(400):
        if n == 0:
            coef = 1.0
        elif n % 2:  # d_{2m+1}
            m = (n - 1) // 2
            coef = -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))
        else:  # d_{2m}
            m = n // 2
            coef = m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m))
        d = 1.0 + coef * d
        d = 1.0 / (d if abs(d) > _TINY else _TINY)
        c = 1.0 + coef / c
        c = c if abs(c) > _TINY else _TINY
        f *= c * d
        if abs(c * d - 1.0) < 1e-15:
            break
    return f - 1.0  # the recursion above starts from 1 + (1/(1 + ...)); DLMF's form is the fraction alone


def regularized_incomplete_beta(x: float, a: float, b: float) -> float:
    """I_x(a, b) for 0 <= x <= 1 and a, b > 0 (the CDF of a Beta(a, b) variable at x)."""
    if not 0.0 <= x <= 1.0:
        raise ValueError(f"x must be in [0, 1], got {x}")
    if x in (0.0, 1.0):
        return x
    if x > (a + 1.0) / (a + b + 2.0):  # the fraction converges fast only below its mean: use the symmetry
        return 1.0 - regularized_incomplete_beta(1.0 - x, b, a)
    log_front = a * math.log(x) + b * math.log1p(-x) - (math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b))
    return math.exp(log_front) / a * _beta_continued_fraction(x, a, b)


def t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t with `df` (possibly fractional) degrees of freedom."""
    if df <= 0:
        raise ValueError(f"degrees of freedom must be positive, got {df}")
    if math.isinf(t):
        return 1.0 if t > 0 else 0.0
    tail = 0.5 * regularized_incomplete_beta(df / (df + t * t), df / 2.0, 0.5)  # P(T > |t|)
    return 1.0 - tail if t > 0 else tail


def t_ppf(q: float, df: float) -> float:
    """The t value with P(T <= t) = q, by bisection on `t_cdf` (monotone, so this cannot fail to converge)."""
    if not 0.0 < q < 1.0:
        raise ValueError(f"q must be in (0, 1), got {q}")
    if q < 0.5:
        return -t_ppf(1.0 - q, df)
    lo, hi = 0.0, 1.0
    while t_cdf(hi, df) < q:
        lo, hi = hi, hi * 2.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if t_cdf(mid, df) < q:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-12 * max(1.0, hi):
            break
    return 0.5 * (lo + hi)


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
    std = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1))
    half = t_ppf(0.5 + confidence / 2.0, n - 1) * std / math.sqrt(n)
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
    if da.std is None or db.std is None:
        return None
    va, vb = da.std ** 2 / da.n, db.std ** 2 / db.n
    se = math.sqrt(va + vb)
    if se == 0.0:
        return None
    diff = da.mean - db.mean
    t = diff / se
    df = (va + vb) ** 2 / (va ** 2 / (da.n - 1) + vb ** 2 / (db.n - 1))  # Welch-Satterthwaite
    p = regularized_incomplete_beta(df / (df + t * t), df / 2.0, 0.5)  # = 2 * P(T > |t|)
    half = t_ppf(0.5 + confidence / 2.0, df) * se
    return WelchTest(diff, t, df, p, diff - half, diff + half)
