"""convmixer_lit.stats on known numbers: t tables, closed forms, and hand-worked examples (no scipy)."""

import math

import pytest

from convmixer_lit.stats import describe, regularized_incomplete_beta, t_cdf, t_ppf, welch_t_test


def t_pdf(x: float, df: float) -> float:
    """Student's t density, straight from its formula."""
    return math.exp(math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)
                    - (df + 1) / 2 * math.log1p(x * x / df))


def integrate(f, a: float, b: float, n: int = 4000) -> float:
    """Composite Simpson's rule: an independent route to the CDF, for fractional degrees of freedom."""
    h = (b - a) / n
    return h / 3 * (f(a) + f(b) + 4 * sum(f(a + (2 * i - 1) * h) for i in range(1, n // 2 + 1))
                    + 2 * sum(f(a + 2 * i * h) for i in range(1, n // 2)))


# ---- the t distribution --------------------------------------------------------------------------------------
@pytest.mark.parametrize("q, df, expected", [
    # two-sided 95% critical values from any t table (t_{0.975, df})
    (0.975, 1, 12.706205), (0.975, 2, 4.302653), (0.975, 4, 2.776445), (0.975, 10, 2.228139),
    (0.975, 30, 2.042272),
    # one-sided 95% (t_{0.95, 5}) and 99.5% (t_{0.995, 3})
    (0.95, 5, 2.015048), (0.995, 3, 5.840909),
])
def test_t_ppf_matches_the_tables(q, df, expected):
    assert t_ppf(q, df) == pytest.approx(expected, abs=1e-6)
    assert t_ppf(1 - q, df) == pytest.approx(-expected, abs=1e-6)  # symmetric
    assert t_cdf(t_ppf(q, df), df) == pytest.approx(q, abs=1e-12)  # the inverse of t_cdf


def test_t_cdf_known_values():
    assert t_cdf(2.0, 5) == pytest.approx(0.9490302605850709, abs=1e-12)  # table: P(T_5 <= 2) = 0.94903
    assert t_cdf(0.0, 3) == 0.5
    assert t_cdf(math.inf, 2) == 1.0 and t_cdf(-math.inf, 2) == 0.0
    assert t_cdf(1e6, 4) == pytest.approx(1.0) and t_cdf(-1e6, 4) == pytest.approx(0.0, abs=1e-20)


@pytest.mark.parametrize("t", [-30.0, -3.2, -1.0, -0.1, 0.3, 1.0, 2.5, 7.0, 100.0])
def test_t_cdf_closed_forms_for_df_1_and_2(t):
    # df = 1 is the Cauchy distribution: F(t) = 1/2 + atan(t)/pi
    assert t_cdf(t, 1) == pytest.approx(0.5 + math.atan(t) / math.pi, abs=1e-12)
    # df = 2: F(t) = 1/2 + t / (2 sqrt(2 + t^2))
    assert t_cdf(t, 2) == pytest.approx(0.5 + t / (2 * math.sqrt(2 + t * t)), abs=1e-12)
    assert t_cdf(-t, 3.7) == pytest.approx(1 - t_cdf(t, 3.7), abs=1e-12)


@pytest.mark.parametrize("t, df", [(0.7, 2.5), (2.1, 2.9411764705882355), (8.52, 2.9411764705882355), (1.3, 17.2)])
def test_t_cdf_fractional_df_against_the_integrated_density(t, df):
    # Welch's df is fractional: check against 1/2 + the integral of the density from 0 to t
    assert t_cdf(t, df) == pytest.approx(0.5 + integrate(lambda x: t_pdf(x, df), 0.0, t), abs=1e-9)


def test_incomplete_beta_closed_forms():
    for x in (0.0, 0.01, 0.2, 0.5, 0.77, 0.999, 1.0):
        assert regularized_incomplete_beta(x, 3.0, 1.0) == pytest.approx(x ** 3, abs=1e-13)  # I_x(a, 1) = x^a
        assert regularized_incomplete_beta(x, 1.0, 4.0) == pytest.approx(1 - (1 - x) ** 4, abs=1e-13)
        assert regularized_incomplete_beta(x, 2.0, 2.0) == pytest.approx(3 * x ** 2 - 2 * x ** 3, abs=1e-13)


def test_invalid_arguments_raise():
    for call in (lambda: t_ppf(0.0, 3), lambda: t_ppf(1.0, 3), lambda: t_cdf(1.0, 0),
                 lambda: regularized_incomplete_beta(1.5, 1, 1), lambda: describe([])):
        with pytest.raises(ValueError):
            call()


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
    expected_p = 1 - 2 * integrate(lambda x: t_pdf(x, 50 / 17), 0.0, w.t)
    assert w.p_value == pytest.approx(expected_p, abs=1e-9) and w.p_value == pytest.approx(0.0036600, abs=1e-7)
    half = t_ppf(0.975, 50 / 17) * math.sqrt(5e-4 / 3)
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
