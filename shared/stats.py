"""Intervals for ratios of time and energy: Student's t on log ratios, paired (farm compare) or Welch (reports).

Pure Python (the controller has no SciPy). A ratio B/A of positive quantities is estimated on the log scale,
where it is a difference, and turned back with exp: an interval of 0.69-0.73 means "B uses 27-31 % less".
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the regularised incomplete beta function (Lentz's method)."""
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 300):
        m2 = 2 * m
        even = m * (b - m) * x / ((a + m2 - 1) * (a + m2))
        odd = -(a + m) * (a + b + m) * x / ((a + m2) * (a + m2 + 1))
        for num in (even, odd):
            d = 1.0 + num * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + num / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < 1e-15:
            break
    return h


def _betai(a: float, b: float, x: float) -> float:
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t with `df` degrees of freedom."""
    tail = 0.5 * _betai(df / 2.0, 0.5, df / (df + t * t))
    return 1.0 - tail if t >= 0 else tail


def t_quantile(p: float, df: float) -> float:
    """The t with P(T <= t) = p (bisection on t_cdf; |error| < 1e-6)."""
    if not 0.0 < p < 1.0 or df <= 0:
        raise ValueError("need 0 < p < 1 and df > 0")
    lo, hi = -1e3, 1e3
    for _ in range(200):
        mid = (lo + hi) / 2
        if t_cdf(mid, df) < p:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-10:
            break
    return (lo + hi) / 2


@dataclass(frozen=True)
class RatioInterval:
    """B/A with a two-sided interval at `level`; `n` pairs or (n_a, n_b); `method` says how."""

    ratio: float
    low: float
    high: float
    level: float
    method: str

    @property
    def excludes_one(self) -> bool:
        """Whether a difference was detected at this level."""
        return self.high < 1.0 or self.low > 1.0


def paired_log_ratio(a: list[float], b: list[float], level: float = 0.95) -> RatioInterval | None:
    """B/A from pairs run back to back (a[i] beside b[i]): the mean of log(b/a) with a t interval on n-1 df.
    Drift that hits both members of a pair alike cancels. None with fewer than 2 pairs."""
    if len(a) != len(b):
        raise ValueError("paired samples need the same length")
    if len(a) < 2:
        return None
    logs = [math.log(y / x) for x, y in zip(a, b, strict=True)]
    mean, sd = statistics.fmean(logs), statistics.stdev(logs)
    half = t_quantile(0.5 + level / 2, len(logs) - 1) * sd / math.sqrt(len(logs))
    return RatioInterval(math.exp(mean), math.exp(mean - half), math.exp(mean + half), level,
                         f"paired t on log ratios, {len(logs)} pairs")


def welch_log_ratio(mean_a: float, sd_a: float, n_a: int, mean_b: float, sd_b: float, n_b: int,
                    level: float = 0.95) -> RatioInterval | None:
    """B/A from two independent groups' means and sample stds (repeats of two runs): the delta method puts each
    mean's relative standard error on the log scale, with Welch-Satterthwaite degrees of freedom. None when a
    group has fewer than 2 repeats or a mean is not positive."""
    if n_a < 2 or n_b < 2 or mean_a <= 0 or mean_b <= 0:
        return None
    va, vb = (sd_a / mean_a) ** 2 / n_a, (sd_b / mean_b) ** 2 / n_b
    ratio = mean_b / mean_a
    se = math.sqrt(va + vb)
    if se == 0:
        return RatioInterval(ratio, ratio, ratio, level, "Welch t on log ratios (no spread)")
    df = (va + vb) ** 2 / (va**2 / (n_a - 1) + vb**2 / (n_b - 1))
    half = t_quantile(0.5 + level / 2, df) * se
    return RatioInterval(ratio, ratio * math.exp(-half), ratio * math.exp(half), level,
                         f"Welch t on log ratios, {n_a} and {n_b} repeats")


def sequential_level(min_pairs: int, max_pairs: int | None, level: float = 0.95) -> tuple[float, int]:
    """The per-look confidence level that keeps `level` valid when a comparison looks after every pair from
    `min_pairs` to `max_pairs` and stops at the first precise enough interval: Bonferroni alpha spending, alpha
    split evenly over the looks (union bound: whatever look stops, all intervals hold together with probability
    >= `level`). Returns (per-look level, looks); one look without a maximum."""
    looks = 1 if max_pairs is None else max(1, max_pairs - min_pairs + 1)
    return 1 - (1 - level) / looks, looks


def log_half_width(ci: RatioInterval) -> float:
    """Half the interval's width on the log scale: log(1 + p) for an interval of about ±p around the ratio."""
    return (math.log(ci.high) - math.log(ci.low)) / 2


def pairs_for_precision(a: list[float], b: list[float], precision: float, level: float = 0.95) -> int | None:
    """About how many pairs in all would bring the paired interval to ±`precision` (a fraction), from the
    observed spread of the log ratios (t quantile at the current df); None with fewer than 2 pairs."""
    if len(a) < 2:
        return None
    logs = [math.log(y / x) for x, y in zip(a, b, strict=True)]
    sd = statistics.stdev(logs)
    if sd == 0:
        return len(a)
    t = t_quantile(0.5 + level / 2, len(logs) - 1)
    return max(len(a), math.ceil((t * sd / math.log1p(precision)) ** 2))
