"""`farm compare`'s answer from its rows: paired ratios of time and energy per sample with 95 % intervals, the
top-1 difference, and a plain verdict."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from shared.stats import RatioInterval, log_half_width, paired_log_ratio, pairs_for_precision, sequential_level

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


def sides_of_same(rows: Sequence[dict[str, Any]], name: str) -> tuple[list[dict[str, Any]], str, str]:
    """An A/A comparison's rows with each side named apart ("NAME #1", "NAME #2"): in pair p the side that ran first
    is A when p is even (the worker orders pairs A B, B A, ...)."""
    first, second = f"{name} #1", f"{name} #2"
    by_pair: dict[int, list[dict[str, Any]]] = {}
    for r in rows:
        if r.get("pair_index") is not None:
            by_pair.setdefault(r["pair_index"], []).append(r)
    out = []
    for p, members in sorted(by_pair.items()):
        ordered = sorted(members, key=lambda r: r["started_at"])
        for k, r in enumerate(ordered[:2]):
            out.append({**r, "variant": first if (k == 0) == (p % 2 == 0) else second})
    return out, first, second


def summarise(rows: Sequence[dict[str, Any]], a: str, b: str, *, precision: float = 0.10,
              max_pairs: int | None = None, min_pairs: int | None = None, same: bool = False,
              floor: dict[str, Any] | None = None) -> dict[str, Any]:
    """Ratios B/A of time and of energy per sample (paired t on log ratios), top-1 of each, and verdicts.

    A difference is stated only when the 95 % interval excludes no change AND is within ±`precision`; otherwise
    the verdict is "inconclusive" with how many more pairs would reach the target. With `max_pairs` (the run
    added pairs until precise, from `min_pairs`), each interval is at the Bonferroni per-look level, valid under
    that stopping rule. `same` (an A/A run) says "no difference" by construction and quotes the interval as the
    machine's noise. `floor` (farm calibrate's row for this machine) is quoted when a change is below it."""
    level, looks = sequential_level(min_pairs or 2, max_pairs)
    out: dict[str, Any] = {"a": a, "b": b, "precision": precision, "level": 0.95, "per_look_level": level,
                           "looks": looks}
    for name, column in (("time", "time_per_sample_s"), ("energy", "total_energy_per_sample_j")):
        xs, ys = pairs_of(rows, a, b, column)
        out["pairs"] = len(xs)
        ci = paired_log_ratio(xs, ys, level)
        method = None if ci is None else ci.method + (
            f"; Bonferroni alpha spending over {looks} looks (each at {100 * level:.2f} %), valid under "
            "--until-conclusive's stopping rule" if looks > 1 else "")
        out[name] = None if ci is None else {"ratio": ci.ratio, "low": ci.low, "high": ci.high, "method": method}
        needed = pairs_for_precision(xs, ys, precision, level)
        out[f"{name}_more_pairs"] = None if needed is None else max(0, needed - len(xs))
        limit = None if floor is None else floor[f"{name}_resolvable_fraction"]
        out[f"{name}_verdict"] = verdict(a, b, ci, "energy per sample" if name == "energy" else "time per sample",
                                         "uses" if name == "energy" else "takes", precision=precision,
                                         more=out[f"{name}_more_pairs"], same=same, floor=limit)
    top1 = {v: [r["top1"] for r in rows if r["variant"] == v and r.get("top1") is not None] for v in (a, b)}
    out["top1_a"] = sum(top1[a]) / len(top1[a]) if top1[a] else None
    out["top1_b"] = sum(top1[b]) / len(top1[b]) if top1[b] else None
    out["top1_change_fraction"] = (None if out["top1_a"] is None or out["top1_b"] is None
                                   else out["top1_b"] - out["top1_a"])
    return out


def verdict(a: str, b: str, ci: RatioInterval | None, what: str, verb: str, *, precision: float = 0.10,
            more: int | None = None, same: bool = False, floor: float | None = None) -> str:
    """"B uses 31 % less energy per sample than A (95 % CI 27–35 %)" when the interval excludes no change and is
    within ±precision; "no difference ... detected" when it is within ±precision around no change; otherwise
    "inconclusive after N pairs (−x…+y %); about M more pairs would reach ±10 %"."""
    if ci is None:
        return f"{what}: fewer than 2 pairs, no interval"
    lo, hi = 100 * (ci.low - 1), 100 * (ci.high - 1)
    pairs = ci.method.split(", ")[-1].split(";")[0]
    target = f"±{100 * precision:g} %"
    precise = log_half_width(ci) <= math.log1p(precision)
    below = "" if floor is None or abs(ci.ratio - 1) >= floor else (
        f"; below this machine's noise floor of {100 * floor:.1f} %")
    if same:
        return (f"no difference: {b} and {a} are the same variant (an A/A run); the interval ({lo:+.1f}\u2026"
                f"{hi:+.1f} %, {pairs}) is this machine's noise in {what}")
    if not precise:
        tail = "" if more is None else f"; about {more} more pairs would reach {target}"
        return f"{what}: inconclusive after {pairs} ({lo:+.1f}\u2026{hi:+.1f} %){tail}{below}"
    if not ci.excludes_one or abs(ci.ratio - 1) < NEGLIGIBLE:
        return (f"no difference in {what} detected between {b} and {a} (95 % CI {lo:+.1f} to {hi:+.1f} %, within "
                f"{target}){below}")
    if ci.ratio < 1:
        return (f"{b} {verb} {100 * (1 - ci.ratio):.0f} % less {what} than {a} "
                f"(95 % CI {100 * (1 - ci.high):.0f}\u2013{100 * (1 - ci.low):.0f} %){below}")
    return (f"{b} {verb} {100 * (ci.ratio - 1):.0f} % more {what} than {a} "
            f"(95 % CI {100 * (ci.low - 1):.0f}\u2013{100 * (ci.high - 1):.0f} %){below}")
