"""`farm compare`'s answer from its rows: paired ratios of time and energy per sample with 95 % intervals, the
top-1 difference, and a plain verdict."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from shared.stats import RatioInterval, paired_log_ratio

# A difference smaller than this is not called one even when the interval excludes zero (a 0.3 % saving is noise
# on any real machine, however many pairs measured it).
NEGLIGIBLE = 0.01


def pairs_of(rows: Sequence[dict[str, Any]], a: str, b: str, column: str) -> tuple[list[float], list[float]]:
    """`column` of A and of B, matched by pair_index (pairs missing either side are dropped)."""
    by_pair: dict[int, dict[str, float]] = {}
    for r in rows:
        if r.get("pair_index") is not None and r["variant"] in (a, b):
            by_pair.setdefault(r["pair_index"], {})[r["variant"]] = r[column]
    full = [p for _, p in sorted(by_pair.items()) if a in p and b in p]
    return [p[a] for p in full], [p[b] for p in full]


def summarise(rows: Sequence[dict[str, Any]], a: str, b: str) -> dict[str, Any]:
    """Ratios B/A of time and of energy per sample (paired t on log ratios), top-1 of each, and verdicts."""
    out: dict[str, Any] = {"a": a, "b": b}
    for name, column in (("time", "time_per_sample_s"), ("energy", "total_energy_per_sample_j")):
        xs, ys = pairs_of(rows, a, b, column)
        out["pairs"] = len(xs)
        ci = paired_log_ratio(xs, ys)
        out[name] = None if ci is None else {"ratio": ci.ratio, "low": ci.low, "high": ci.high,
                                             "method": ci.method}
        out[f"{name}_verdict"] = verdict(a, b, ci, "energy per sample" if name == "energy" else "time per sample",
                                         "uses" if name == "energy" else "takes")
    top1 = {v: [r["top1"] for r in rows if r["variant"] == v and r.get("top1") is not None] for v in (a, b)}
    out["top1_a"] = sum(top1[a]) / len(top1[a]) if top1[a] else None
    out["top1_b"] = sum(top1[b]) / len(top1[b]) if top1[b] else None
    out["top1_change_fraction"] = (None if out["top1_a"] is None or out["top1_b"] is None
                                   else out["top1_b"] - out["top1_a"])
    return out


def verdict(a: str, b: str, ci: RatioInterval | None, what: str, verb: str) -> str:
    """"B uses 31 % less energy per sample than A (95 % CI 27–35 %)", or "no difference detected"."""
    if ci is None:
        return f"{what}: fewer than 2 pairs, no interval"
    if not ci.excludes_one or abs(ci.ratio - 1) < NEGLIGIBLE:
        lo, hi = 100 * (ci.low - 1), 100 * (ci.high - 1)
        return f"no difference in {what} detected between {b} and {a} (95 % CI {lo:+.1f} to {hi:+.1f} %)"
    if ci.ratio < 1:
        return (f"{b} {verb} {100 * (1 - ci.ratio):.0f} % less {what} than {a} "
                f"(95 % CI {100 * (1 - ci.high):.0f}\u2013{100 * (1 - ci.low):.0f} %)")
    return (f"{b} {verb} {100 * (ci.ratio - 1):.0f} % more {what} than {a} "
            f"(95 % CI {100 * (ci.low - 1):.0f}\u2013{100 * (ci.high - 1):.0f} %)")
