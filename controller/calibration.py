"""`farm calibrate`'s arithmetic: an A/A campaign's rows to the machine's noise floor (pure, no store)."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import Any

from controller.comparison import pairs_of
from shared.stats import paired_log_ratio


def noise_floor_of(rows: Sequence[dict[str, Any]], first: str, second: str) -> dict[str, Any]:
    """From the rows of an A/A comparison whose sides are named `first` and `second`: the CV of time and of energy
    per sample over every run, and the smallest B/A difference its pairs resolve (the paired 95 % interval's
    half-width, as a fraction: a real difference smaller than this reads as "no difference" with this many
    pairs). ValueError with fewer than 2 pairs."""
    out: dict[str, Any] = {}
    for name, column in (("time", "time_per_sample_s"), ("energy", "total_energy_per_sample_j")):
        xs, ys = pairs_of(rows, first, second, column)
        ci = paired_log_ratio(xs, ys)
        if ci is None:
            raise ValueError("a noise floor needs at least 2 A/A pairs")
        values = xs + ys
        out[f"{name}_cv"] = statistics.stdev(values) / statistics.fmean(values)
        out[f"{name}_resolvable_fraction"] = math.exp((math.log(ci.high) - math.log(ci.low)) / 2) - 1
        out["pairs"] = len(xs)
    windows = [r["time_per_sample_s"] * r["samples"] for r in rows if r.get("samples")]
    out["window_s"] = statistics.median(windows) if windows else None
    foreign = [r["foreign_cpu_cores"] for r in rows if r.get("foreign_cpu_cores") is not None]
    out["foreign_cpu_cores_max"] = max(foreign) if foreign else None
    return out
