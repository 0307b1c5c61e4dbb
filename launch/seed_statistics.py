"""The statistics every study reports, in one place and without scipy: mean with a 95% t interval,
the paired difference of two arms over the same seeds, wins k/n, a verdict per claim, and the
binomial standard error of an evaluation set. (Not `statistics.py`: launch/ scripts put their folder
first on sys.path, where that name would shadow the standard library module.)

A claim "A beats B" is judged on the per-seed differences A_s - B_s (the seeds are paired: both arms
saw the same data order and, where there is one, the same starting model), so the seed-to-seed
spread that both arms share cancels. The verdict is `supported` when the 95% interval of the mean
difference lies above zero, `contradicted` when it lies below, and `inconclusive` when it crosses
zero or fewer than MIN_SEEDS seeds were run.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Sequence

MIN_SEEDS = 5  # fewer paired seeds than this never support or contradict a claim
CONFIDENCE = 0.95
SUPPORTED, CONTRADICTED, INCONCLUSIVE = "supported", "contradicted", "inconclusive"
DIRECTIONS = ("higher", "lower")


# --- Student's t, from the regularized incomplete beta function ----------------------------

def _beta_continued_fraction(a: float, b: float, x: float) -> float:
    """The continued fraction of I_x(a, b) (modified Lentz), converging for x < (a + 1) / (a + b + 2)."""
    tiny, eps = 1e-300, 1e-15
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 10_000):
        for numerator in (m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
                          -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + numerator / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < eps:
            break
    return h


def incomplete_beta(a: float, b: float, x: float) -> float:
    """The regularized incomplete beta function I_x(a, b) for a, b > 0 and 0 <= x <= 1."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _beta_continued_fraction(a, b, x) / a
    return 1.0 - math.exp(log_front) * _beta_continued_fraction(b, a, 1.0 - x) / b


def t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t with `df` degrees of freedom."""
    if df <= 0:
        raise ValueError(f"degrees of freedom must be > 0, got {df}")
    tail = 0.5 * incomplete_beta(df / 2.0, 0.5, df / (df + t * t))
    return 1.0 - tail if t >= 0 else tail


def t_quantile(p: float, df: float) -> float:
    """The t with P(T <= t) = p: bisection on the CDF (monotone), to about 1e-12."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"p must be in (0, 1), got {p}")
    if p == 0.5:
        return 0.0
    if p < 0.5:
        return -t_quantile(1.0 - p, df)
    low, high = 0.0, 1.0
    while t_cdf(high, df) < p:
        low, high = high, 2.0 * high
    for _ in range(200):
        middle = 0.5 * (low + high)
        if t_cdf(middle, df) < p:
            low = middle
        else:
            high = middle
        if high - low <= 1e-12 * max(1.0, high):
            break
    return 0.5 * (low + high)


# --- summaries -----------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Summary:
    """n values: their mean, sample standard deviation and the 95% t interval of the mean
    (no interval for a single value: the spread is unknown)."""

    n: int
    mean: float
    sd: float | None
    low: float | None
    high: float | None

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def summarize(values: Sequence[float], confidence: float = CONFIDENCE) -> Summary:
    values = [float(v) for v in values]
    if not values:
        raise ValueError("summarize needs at least one value")
    n = len(values)
    mean = math.fsum(values) / n
    if n == 1:
        return Summary(1, mean, None, None, None)
    sd = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1))
    half = t_quantile(0.5 + confidence / 2.0, n - 1) * sd / math.sqrt(n)
    return Summary(n, mean, sd, mean - half, mean + half)


@dataclasses.dataclass(frozen=True)
class Comparison:
    """A claim 'better beats worse' judged on the paired per-seed differences (signed so that a
    positive difference favours `better` whatever the metric's direction)."""

    seeds: list[int]
    differences: list[float]
    difference: Summary
    wins: int
    verdict: str
    reason: str

    def as_dict(self) -> dict:
        out = dataclasses.asdict(self)
        out["difference"] = self.difference.as_dict()
        return out


def paired(better: dict[int, float], worse: dict[int, float], direction: str = "higher",
           min_seeds: int = MIN_SEEDS) -> Comparison:
    """Compare two arms over the seeds both ran (`{seed: value}` each)."""
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
    seeds = sorted(set(better) & set(worse))
    if not seeds:
        raise ValueError("the two arms share no seed: nothing to pair")
    sign = 1.0 if direction == "higher" else -1.0
    differences = [sign * (float(better[s]) - float(worse[s])) for s in seeds]
    summary = summarize(differences)
    wins = sum(d > 0 for d in differences)
    verdict, reason = judge(summary, min_seeds)
    return Comparison(seeds, differences, summary, wins, verdict, reason)


def judge(difference: Summary, min_seeds: int = MIN_SEEDS) -> tuple[str, str]:
    """(verdict, why) for a summary of paired differences in which positive favours the claim."""
    if difference.n < min_seeds:
        return INCONCLUSIVE, f"{difference.n} paired seed(s); a claim needs >= {min_seeds}"
    if difference.low > 0:
        return SUPPORTED, "the 95% CI of the paired difference lies above 0"
    if difference.high < 0:
        return CONTRADICTED, "the 95% CI of the paired difference lies below 0"
    return INCONCLUSIVE, "the 95% CI of the paired difference crosses 0"


def binomial_se(p: float, n: int) -> float:
    """The standard error of an accuracy p measured on n independent examples."""
    if n <= 0:
        raise ValueError(f"n must be > 0, got {n}")
    p = min(max(float(p), 0.0), 1.0)
    return math.sqrt(p * (1.0 - p) / n)


def resolution(accuracy: float, examples: int, effect: float) -> dict:
    """Whether an evaluation set of `examples` can resolve `effect` (same units as accuracy): its
    binomial SE at `accuracy` must be below a third of the effect."""
    se = binomial_se(accuracy, examples)
    third = abs(effect) / 3.0
    return {"examples": examples, "se": se, "effect_third": third, "adequate": se < third}
