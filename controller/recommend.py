"""`farm recommend`: per machine, model and data, the variant with the least energy per sample that keeps
accuracy, from the report's variant table (stored rows only). It says what is missing instead of guessing."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from controller.report import PLACE
from shared.energy import is_estimate


@dataclass(frozen=True)
class Criterion:
    """Keep top-1 within `max_drop` (a fraction: 0.01 is one point) of the baseline, or at least `min_top1`."""

    max_drop: float | None = None
    min_top1: float | None = None
    max_p99_s: float | None = None  # and latency p99 (per batch; server: per query) at most this
    max_memory_bytes: float | None = None  # and the worker's peak resident memory at most this

    def describe(self) -> str:
        if self.min_top1 is not None:
            text = f"top-1 at least {100 * self.min_top1:.2f} %"
        else:
            text = f"top-1 at most {100 * (self.max_drop or 0):.2g} pts below the baseline"
        if self.max_p99_s is not None:
            text += f", p99 at most {self.max_p99_s * 1e3:g} ms"
        if self.max_memory_bytes is not None:
            text += f", peak memory at most {self.max_memory_bytes / 2**20:g} MB"
        return text


def recommend(table: Sequence[dict[str, Any]], criterion: Criterion) -> list[dict[str, Any]]:
    """One answer per place (model, dataset, hardware_id, device): `choice` and `runner_up` (rows of the table)
    and `notes` (what is missing or doubtful). `choice` is None when nothing meets the criterion or it cannot
    be judged (no baseline for a --max-drop criterion)."""
    places: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for t in table:
        places.setdefault(tuple(t[k] for k in PLACE), []).append(t)
    answers = []
    for place, rows in places.items():
        base = next((t for t in rows if t["is_baseline"]), None)
        notes: list[str] = []
        if base is None:
            notes.append("no baseline here: savings cannot be stated" +
                         ("; --max-drop needs one" if criterion.min_top1 is None else ""))
        unmeasured = [t["variant"] for t in rows if _unmeasured(t, criterion)]
        if unmeasured:
            notes.append(f"no latency or memory recorded for {', '.join(unmeasured)}: left out (rows from before "
                         "farm measured them)")
        ok = [t for t in rows if t["top1"] is not None and _meets(t, base, criterion)]
        ok.sort(key=lambda t: t["total_energy_per_sample_j"])
        if base is None and criterion.min_top1 is None:
            ok = []
        choice = ok[0] if ok else None
        runner_up = next((t for t in ok[1:] if t is not base), None)  # the baseline is the reference, not a rival
        if choice is None and (base is not None or criterion.min_top1 is not None):
            notes.append(f"no variant here meets {criterion.describe()}")
        for t in (choice, runner_up, base):
            if t is None:
                continue
            if t["repeats"] < 2:
                notes.append(f"{t['variant']} has one repeat only: no interval")
            if t["noisy_repeats"]:
                notes.append(f"{t['variant']} is noisy ({t['noise']})")
        if any(t is not None and is_estimate(t["energy_source"]) for t in (choice, base)):
            notes.append("energy is ESTIMATED from CPU time here (no RAPL)")
        answers.append({**dict(zip(PLACE, place, strict=True)), "hardware_label": rows[0]["hardware_label"],
                        "choice": choice, "runner_up": runner_up, "baseline": base,
                        "notes": list(dict.fromkeys(notes))})
    return answers


def _unmeasured(t: dict[str, Any], c: Criterion) -> bool:
    return ((c.max_p99_s is not None and t.get("latency_p99_s") is None)
            or (c.max_memory_bytes is not None and t.get("peak_rss_bytes") is None))


def _meets(t: dict[str, Any], base: dict[str, Any] | None, c: Criterion) -> bool:
    if _unmeasured(t, c):
        return False
    if c.max_p99_s is not None and t["latency_p99_s"] > c.max_p99_s:
        return False
    if c.max_memory_bytes is not None and t["peak_rss_bytes"] > c.max_memory_bytes:
        return False
    if c.min_top1 is not None:
        return t["top1"] >= c.min_top1 - 1e-12
    if base is None or base["top1"] is None:
        return False
    return t["top1"] >= base["top1"] - (c.max_drop or 0.0) - 1e-12


def verdict(answer: dict[str, Any]) -> str:
    """One sentence per answer, in the report's units."""
    from controller import render

    choice, base = answer["choice"], answer["baseline"]
    if choice is None:
        return "no recommendation"
    name = choice["variant"] + ("" if choice["runtime"] == "torch" else f" on {choice['runtime']}")
    if base is None:
        return f"{name}: {render.scaled(choice['total_energy_per_sample_j'], 1e3, 2)} mJ/sample (no baseline)"
    if choice is base:
        return "keep the baseline: no variant that keeps accuracy uses less energy"
    saving = render.signed_pct(choice["energy_change_fraction"])
    ci = render.change_interval(
        None if choice["energy_change_low"] is None else 1 + choice["energy_change_low"],
        None if choice["energy_change_high"] is None else 1 + choice["energy_change_high"])
    return (f"{name}: {saving} energy per sample (95 % CI {ci}), top-1 "
            f"{render.signed_pts(choice['top1_change_fraction'])}")
