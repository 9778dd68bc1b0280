"""Intervals and aggregates checked against statistics computed independently here (statistics module, a
hand-rolled GROUP BY, NumPy's random draws with a known truth)."""

from __future__ import annotations

import math
import re
import statistics
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
from sqlmodel import Session

from shared.db import queries, writes
from shared.outcome import Outcome
from shared.stats import paired_log_ratio, t_quantile, welch_log_ratio
from tests.test_store import _row

MEASURES = ("top1", "top5", "time_per_sample_s", "total_energy_per_sample_j", "active_energy_per_sample_j",
            "cpu_temp_start_c")


def groups_of(rows: Sequence[dict[str, Any]], by: Sequence[str]) -> list[dict[str, Any]]:
    """The aggregate that queries.aggregate_results asks the database for, computed here in Python."""
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault(tuple(r[k] for k in by), []).append(r)
    out = []
    for key, rs in sorted(groups.items(), key=lambda kv: tuple(str(k) for k in kv[0])):
        g: dict[str, Any] = {**dict(zip(by, key, strict=True)), "n": len(rs)}
        for m in MEASURES:
            values = [r.get(m) for r in rs if r.get(m) is not None]
            g[f"{m}_n"] = len(values)
            g[f"{m}_mean"] = statistics.fmean(values) if values else None
            g[f"{m}_std"] = statistics.stdev(values) if len(values) > 1 else None
        g.update(params_min=min(r["params"] for r in rs), params_max=max(r["params"] for r in rs),
                 macs_min=min(r["macs"] for r in rs), macs_max=max(r["macs"] for r in rs),
                 hardware_label=max(r.get("hardware_label") or "" for r in rs) or None,
                 energy_source=",".join(sorted({r["energy_source"] for r in rs})),
                 noisy=sum(1 for r in rs if r.get("noise")),
                 noise_example=max((r["noise"] for r in rs if r.get("noise")), default=None))
        out.append(g)
    return out


def test_t_quantiles_match_the_printed_table() -> None:
    for df, expected in ((1, 12.706), (4, 2.776), (9, 2.262), (30, 2.042), (1000, 1.962)):
        assert t_quantile(0.975, df) == pytest.approx(expected, abs=1e-3)
    assert t_quantile(0.5, 7) == pytest.approx(0.0, abs=1e-6)


def test_a_known_30_percent_saving_with_noise_is_found_and_covered() -> None:
    """500 simulated comparisons of B = 0.7 A with 5 % noise per run: the paired interval covers 0.7 in about
    95 % of them, and always says B uses less."""
    rng = np.random.default_rng(7)
    covered = found = 0
    for _ in range(500):
        a = 1.0 * np.exp(rng.normal(0, 0.05, 8))
        b = 0.7 * np.exp(rng.normal(0, 0.05, 8))
        ci = paired_log_ratio(list(a), list(b))
        assert ci is not None
        covered += ci.low <= 0.7 <= ci.high
        found += ci.high < 1.0
    assert 0.90 <= covered / 500 <= 0.99
    assert found == 500


def test_no_difference_is_detected_about_five_percent_of_the_time() -> None:
    rng = np.random.default_rng(11)
    false = sum(paired_log_ratio(list(1 + rng.normal(0, 0.03, 6)), list(1 + rng.normal(0, 0.03, 6))).excludes_one
                for _ in range(400))
    assert false / 400 <= 0.10


def test_pairing_cancels_drift_that_welch_cannot() -> None:
    """Energy drifts by 40 % over a run (the seed's time of day); A and B run back to back in each pair. The paired
    interval stays tight around 0.7; the unpaired one over the same numbers is much wider."""
    rng = np.random.default_rng(3)
    drift = np.linspace(1.0, 1.4, 10)
    a = drift * np.exp(rng.normal(0, 0.01, 10))
    b = 0.7 * drift * np.exp(rng.normal(0, 0.01, 10))
    paired = paired_log_ratio(list(a), list(b))
    unpaired = welch_log_ratio(float(a.mean()), float(a.std(ddof=1)), 10, float(b.mean()), float(b.std(ddof=1)), 10)
    assert paired is not None and unpaired is not None
    assert paired.low <= 0.7 <= paired.high and paired.high - paired.low < 0.03
    assert unpaired.high - unpaired.low > 3 * (paired.high - paired.low)


def test_welch_interval_against_a_direct_computation() -> None:
    ci = welch_log_ratio(1.0, 0.1, 5, 0.7, 0.07, 5)
    va = vb = (0.1 / 1.0) ** 2 / 5
    df = (va + vb) ** 2 / (va**2 / 4 + vb**2 / 4)
    half = t_quantile(0.975, df) * math.sqrt(va + vb)
    assert ci is not None and ci.ratio == pytest.approx(0.7)
    assert ci.low == pytest.approx(0.7 * math.exp(-half)) and ci.high == pytest.approx(0.7 * math.exp(half))
    assert welch_log_ratio(1.0, 0.1, 1, 0.7, 0.07, 5) is None  # one repeat: no interval


@pytest.mark.parametrize("store", ["sqlite", "postgres"])
def test_the_database_aggregates_like_python(store: str, tmp_path: Any, pg_url: str) -> None:
    """GROUP BY in SQLite and Postgres gives the same means, stds and counts as statistics over the same rows."""
    from shared.db.engine import make_engine, upgrade_schema

    url = f"sqlite:///{tmp_path / 'agg.db'}" if store == "sqlite" else pg_url
    engine = make_engine(url)
    upgrade_schema(engine)
    rng = np.random.default_rng(5)
    t0 = datetime(2026, 11, 2, 9, tzinfo=UTC)
    rows = [_row(host, t0 + timedelta(minutes=i), (9 + i) % 24, variant=variant, repeat_index=i,
                 model_id="agg-test", total_energy_per_sample_j=float(rng.uniform(0.1, 2)),
                 time_per_sample_s=float(rng.uniform(1e-4, 1e-2)), top1=float(rng.uniform(0.8, 1)),
                 noise="outlier" if i % 7 == 0 else None)
            for i, (host, variant) in enumerate([(h, v) for h in ("a", "b") for v in ("baseline", "x", "y")] * 4)]
    with Session(engine) as s:
        job = writes.create_job(session=s, variant="baseline", spec={}, queue="cpu")
        writes.apply_outcome(session=s, outcome=Outcome(str(job.id), "done", rows=rows))
        by = ("host", "variant")
        got = queries.aggregate_results(session=s, filters=queries.ResultFilter(model_id="agg-test"), by=by)
    engine.dispose()
    want = groups_of(rows, by)
    assert [(g["host"], g["variant"], g["n"], g["noisy"]) for g in got] == [
        (g["host"], g["variant"], g["n"], g["noisy"]) for g in want]
    for g, w in zip(got, want, strict=True):
        for m in ("top1", "time_per_sample_s", "total_energy_per_sample_j"):
            assert g[f"{m}_mean"] == pytest.approx(w[f"{m}_mean"], rel=1e-9)
            assert g[f"{m}_std"] == pytest.approx(w[f"{m}_std"], rel=1e-6)


def _pair_rows(a: list[float], b: list[float]) -> list[dict[str, Any]]:
    return [{"variant": v, "pair_index": i, "time_per_sample_s": x, "total_energy_per_sample_j": x, "top1": 0.9}
            for i, (x, y) in enumerate(zip(a, b, strict=True)) for v, x in (("A", x), ("B", y))]


def test_the_comparison_verdict_finds_a_known_saving_and_says_no_difference_for_none() -> None:
    from controller.comparison import summarise

    rng = np.random.default_rng(4)
    a = list(np.exp(rng.normal(0, 0.03, 8)))
    saving = summarise(_pair_rows(a, [0.7 * x * float(np.exp(rng.normal(0, 0.03))) for x in a]), "A", "B")
    assert saving["energy"]["low"] <= 0.7 <= saving["energy"]["high"]
    assert re.fullmatch(r"B uses (2[6-9]|3[0-4]) % less energy per sample than A \(95 % CI \d+–\d+ %\)",
                        saving["energy_verdict"]), saving["energy_verdict"]
    same = summarise(_pair_rows(a, [x * float(np.exp(rng.normal(0, 0.03))) for x in a]), "A", "B")
    assert same["energy_verdict"].startswith("no difference in energy per sample detected")
    assert same["top1_change_fraction"] == pytest.approx(0.0)
