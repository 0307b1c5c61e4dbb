"""The study statistics against closed forms and hand computations (no scipy): Student's t
quantiles where the inverse CDF has a closed form, the CDF against a numerical integral of the
density, the paired difference and its interval on constructed data, and every verdict."""
from __future__ import annotations

import math

import pytest

from launch import seed_statistics as st


def closed_form_quantile(p: float, df: int) -> float:
    """Inverse t CDF for 1, 2 and 4 degrees of freedom (Hill 1970; Shaw 2006)."""
    if df == 1:
        return math.tan(math.pi * (p - 0.5))
    if df == 2:
        return (2 * p - 1) / math.sqrt(2 * p * (1 - p))
    alpha = 4 * p * (1 - p)
    q = math.cos(math.acos(math.sqrt(alpha)) / 3) / math.sqrt(alpha)
    return math.copysign(2 * math.sqrt(q - 1), p - 0.5)


@pytest.mark.parametrize("df", [1, 2, 4])
@pytest.mark.parametrize("p", [0.6, 0.9, 0.975, 0.995, 0.025])
def test_t_quantile_matches_the_closed_forms(p, df):
    assert st.t_quantile(p, df) == pytest.approx(closed_form_quantile(p, df), rel=1e-9, abs=1e-9)


def test_t_quantile_table_values_and_the_normal_limit():
    assert st.t_quantile(0.975, 1) == pytest.approx(12.706204736, rel=1e-9)
    assert st.t_quantile(0.975, 4) == pytest.approx(2.776445105, rel=1e-9)
    # As df grows t tends to the normal: Phi^-1(0.975) = 1.959963985.
    assert st.t_quantile(0.975, 10**7) == pytest.approx(1.959963985, abs=1e-6)
    assert st.t_quantile(0.5, 3) == 0.0


def test_t_cdf_is_the_integral_of_the_density():
    df, t = 3, 1.7

    def density(x):
        return math.gamma((df + 1) / 2) / (math.sqrt(df * math.pi) * math.gamma(df / 2)) * (1 + x * x / df) ** (-(df + 1) / 2)

    n, h = 20_000, t / 20_000  # Simpson's rule from 0 to t, plus the half below 0
    integral = density(0) + density(t) + sum((4 if k % 2 else 2) * density(k * h) for k in range(1, n))
    assert st.t_cdf(t, df) == pytest.approx(0.5 + integral * h / 3, abs=1e-10)
    assert st.t_cdf(-t, df) == pytest.approx(1 - st.t_cdf(t, df), abs=1e-14)


def test_summary_interval_by_hand():
    values = [0.80, 0.84, 0.78, 0.86, 0.82]  # mean 0.82, deviations -2, 2, -4, 4, 0 (x 0.01)
    summary = st.summarize(values)
    sd = math.sqrt((4 + 4 + 16 + 16 + 0) * 1e-4 / 4)
    half = closed_form_quantile(0.975, 4) * sd / math.sqrt(5)
    assert (summary.n, summary.mean, summary.sd) == (5, pytest.approx(0.82), pytest.approx(sd))
    assert (summary.low, summary.high) == (pytest.approx(0.82 - half), pytest.approx(0.82 + half))
    single = st.summarize([0.5])
    assert single.sd is None and single.low is None


def test_paired_difference_cancels_the_shared_seed_effect():
    # Seeds differ a lot (the shared part), the method adds exactly 0.01 +- 0.001: a paired test
    # sees the 0.01 clearly, although the two arms' own intervals overlap.
    shared = {0: 0.50, 1: 0.70, 2: 0.60, 3: 0.80, 4: 0.65}
    extra = {0: 0.011, 1: 0.009, 2: 0.010, 3: 0.011, 4: 0.009}
    better = {s: v + extra[s] for s, v in shared.items()}
    comparison = st.paired(better, shared)
    diffs = [extra[s] for s in sorted(shared)]
    mean = sum(diffs) / 5
    sd = math.sqrt(sum((d - mean) ** 2 for d in diffs) / 4)
    half = closed_form_quantile(0.975, 4) * sd / math.sqrt(5)
    assert comparison.differences == pytest.approx(diffs)
    assert comparison.difference.mean == pytest.approx(0.010)
    assert (comparison.difference.low, comparison.difference.high) == (pytest.approx(mean - half), pytest.approx(mean + half))
    assert comparison.wins == 5 and comparison.verdict == st.SUPPORTED
    a, b = st.summarize(list(better.values())), st.summarize(list(shared.values()))
    assert a.low < b.high  # unpaired, the intervals overlap


def test_verdicts():
    seeds = range(5)
    worse = {s: 0.5 for s in seeds}
    assert st.paired({s: 0.6 + 0.01 * s for s in seeds}, worse).verdict == st.SUPPORTED
    assert st.paired({s: 0.4 - 0.01 * s for s in seeds}, worse).verdict == st.CONTRADICTED
    crossing = st.paired({0: 0.6, 1: 0.4, 2: 0.55, 3: 0.45, 4: 0.5}, worse)
    assert crossing.verdict == st.INCONCLUSIVE and "crosses 0" in crossing.reason and crossing.wins == 2
    few = st.paired({s: 0.9 for s in range(4)}, {s: 0.1 + 0.01 * s for s in range(4)})
    assert few.verdict == st.INCONCLUSIVE and "4 paired seed(s)" in few.reason
    # Lower is better: a smaller loss supports "better beats worse".
    assert st.paired({s: 0.1 + 0.01 * s for s in seeds}, {s: 0.3 for s in seeds}, "lower").verdict == st.SUPPORTED
    # Only shared seeds are paired.
    assert st.paired({0: 1.0, 1: 1.0, 7: 0.0}, {0: 0.0, 1: 0.5}).seeds == [0, 1]


def test_binomial_resolution():
    assert st.binomial_se(0.5, 400) == pytest.approx(0.025)
    assert st.resolution(0.5, 400, 0.09)["adequate"]          # 0.025 < 0.03
    assert not st.resolution(0.5, 400, 0.06)["adequate"]      # 0.025 > 0.02
    assert st.resolution(0.9, 900, -0.04)["se"] == pytest.approx(0.01)
