"""Per-batch (or per-query) latencies inside a measured window, kept in bounded memory.

Every batch is timed; what is kept is the count, the exact maximum and sum, and a reservoir sample of at most
`cap` times (Vitter's algorithm R, seeded), from which the percentiles come. Up to `cap` batches per window the
percentiles are exact; past it they are those of a uniform sample of the window's batches.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

RESERVOIR_CAP = 4096


@dataclass(frozen=True)
class LatencySummary:
    """Latency of one batch (or one query), in seconds, over a window's `count` batches."""

    count: int
    p50_s: float
    p90_s: float
    p99_s: float
    max_s: float
    mean_s: float
    exact: bool  # False when the percentiles come from a reservoir sample (count > cap)


def percentile(sorted_values: list[float], q: float) -> float:
    """The q-quantile (0-1) of already sorted values, by linear interpolation (numpy's default)."""
    if not sorted_values:
        raise ValueError("no values")
    pos = q * (len(sorted_values) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


@dataclass
class LatencyRecorder:
    """Collects latencies (s) in O(cap) memory; `summary()` gives the percentiles."""

    cap: int = RESERVOIR_CAP
    seed: int = 0
    count: int = 0
    total_s: float = 0.0
    max_s: float = 0.0
    sample: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    def add(self, seconds: float) -> None:
        self.count += 1
        self.total_s += seconds
        if seconds > self.max_s:
            self.max_s = seconds
        if len(self.sample) < self.cap:
            self.sample.append(seconds)
        else:
            j = self._rng.randrange(self.count)
            if j < self.cap:
                self.sample[j] = seconds

    def summary(self) -> LatencySummary | None:
        """None when nothing was recorded."""
        if not self.count:
            return None
        s = sorted(self.sample)
        # max is exact; a sampled p99 can never exceed it
        return LatencySummary(self.count, percentile(s, 0.50), percentile(s, 0.90), min(percentile(s, 0.99),
                              self.max_s), self.max_s, self.total_s / self.count, self.count <= self.cap)


def timed(fn: Callable[[], object], sync: Callable[[], None], recorder: LatencyRecorder) -> object:
    """Call `fn`, wait for the device (`sync`), record the seconds it took, return its result."""
    t0 = time.perf_counter()
    out = fn()
    sync()
    recorder.add(time.perf_counter() - t0)
    return out


def timer_overhead_s(sync: Callable[[], None], n: int = 20000) -> float:
    """Seconds that timing one batch adds (two clock reads, a device sync and a record), measured on an empty
    call: the median over `n` calls, so a stray preemption does not count."""
    rec = LatencyRecorder()
    costs = []
    for _ in range(n):
        t0 = time.perf_counter()
        timed(lambda: None, sync, rec)
        costs.append(time.perf_counter() - t0)
    costs.sort()
    return costs[len(costs) // 2]
