"""Bounds on every number the CLI takes (issue 19, item 3): finite floats, documented maxima, a confirmation for a
large fan-out, and text filters that match literally. Each case was accepted before."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.conftest import run_farm


@pytest.fixture()
def env(tmp_path: Path, redis_url: str) -> dict[str, str]:
    e = {k: v for k, v in os.environ.items() if not k.startswith("FARM_")}
    e.update(FARM_DATABASE_URL=f"sqlite:///{tmp_path / 'f.db'}", FARM_BROKER_URL=redis_url, FARM_HOSTNAME="h",
             FARM_DATA_ROOTS=str(tmp_path), FARM_ARTIFACTS=str(tmp_path / "a"), FARM_BROKER_TIMEOUT_S="2")
    return e


REFUSED = [
    (["submit", "--variant", "baseline", "--repeats", "1000000000"], "--repeats must be at most"),
    (["submit", "--variant", "baseline", "--repeats", str(2**63)], "--repeats must be at most"),
    (["submit", "--variant", "baseline", "--limit", "1000000000000"], "--limit must be at most"),
    (["submit", "--variant", "pruned-retrained", "--epochs", "1000000000"], "--epochs must be at most"),
    (["submit", "--variant", "pruned-retrained", "--batch-size", "1000000000"], "--batch-size must be at most"),
    (["submit", "--variant", "pruned-retrained", "--lr", "inf"], "not a finite number"),
    (["submit", "--variant", "pruned-retrained", "--lr", "nan"], "--lr"),
    (["submit", "--variant", "pruned-distilled", "--temperature", "nan"], "--temperature"),
    (["submit", "--variant", "pruned-distilled", "--temperature", "inf"], "not a finite number"),
    (["submit", "--variant", "pruned-distilled", "--alpha", "nan"], "--alpha"),
    (["submit", "--variant", "baseline", "--until-cv", "nan"], "--until-cv"),
    (["submit", "--variant", "baseline", "--wait", "--timeout", "inf"], "not a finite number"),
    (["submit", "--variant", "baseline", "--wait", "--timeout", "nan"], "--timeout"),
    (["compare", "baseline", "quant-uint8", "--pairs", "1000000000"], "--pairs must be at most"),
    (["compare", "baseline", "quant-uint8", "--timeout", "inf"], "not a finite number"),
    (["wait", "abc", "--timeout", "inf"], "not a finite number"),
    (["status", "--watch", "inf"], "not a finite number"),
    (["run", "--variant", "baseline", "--repeats", "1000000000"], "--repeats must be at most"),
]


@pytest.mark.parametrize("args,message", REFUSED, ids=[" ".join(a) for a, _ in REFUSED])
def test_out_of_bounds_numbers_are_refused_before_anything_is_stored(env: dict[str, str], args: list[str],
                                                                    message: str) -> None:
    proc = run_farm(args, env, timeout=60)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert message in proc.stderr, proc.stderr
    assert not (Path(env["FARM_DATABASE_URL"].split(":///")[1])).exists()  # nothing stored, not even a store


def test_a_lab_raises_a_bound_with_its_setting(env: dict[str, str]) -> None:
    proc = run_farm(["submit", "--variant", "baseline", "--repeats", "2000", "--queue-anyway"],
                    {**env, "FARM_MAX_REPEATS": "5000"}, timeout=60)
    assert proc.returncode == 0, proc.stderr
    bad = run_farm(["status"], {**env, "FARM_MAX_REPEATS": "lots"}, timeout=60)
    assert bad.returncode == 2 and "FARM_MAX_REPEATS must be a whole number" in bad.stderr


def test_a_large_fan_out_prints_its_plan_and_asks_for_yes(env: dict[str, str]) -> None:
    names = ",".join(f"prune-r0.{i:03d}" for i in range(1, 120))  # 119 chains: 238 jobs, and a baseline
    args = ["submit", "--variants", names, "--queue-anyway"]
    proc = run_farm(args, env, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "would queue 239 jobs" in proc.stderr and "--yes" in proc.stderr
    assert proc.stdout.count("compress ") == 119 and proc.stdout.count("benchmark ") == 120
    status = run_farm(["status", "--format", "json"], env, timeout=60)
    assert '"state": "queued"' not in status.stdout  # nothing was queued
    small = run_farm(["submit", "--variants", "prune-r0.001,prune-r0.002", "--queue-anyway"],
                     {**env, "FARM_CONFIRM_JOBS": "3"}, timeout=60)
    assert small.returncode == 2 and "would queue 5 jobs" in small.stderr
    yes = run_farm(["submit", "--variants", "prune-r0.001,prune-r0.002", "--queue-anyway", "--yes"],
                   {**env, "FARM_CONFIRM_JOBS": "3"}, timeout=60)
    assert yes.returncode == 0, yes.stderr


def test_hardware_filter_matches_literally(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    from sqlmodel import Session

    from shared.db import queries, writes
    from shared.db.engine import make_engine, upgrade_schema
    from shared.outcome import Outcome
    from tests.test_store import _row

    engine = make_engine(f"sqlite:///{tmp_path / 'h.db'}")
    upgrade_schema(engine)
    t0 = datetime(2026, 11, 1, 12, tzinfo=UTC)
    rows = [_row("a", t0, 9, cpu_model="Xeon 100% turbo_x", hardware_label="lab_a"),
            _row("b", t0, 9, cpu_model="EPYC 7763", hardware_label="labxa")]
    with Session(engine) as session:
        job = writes.create_job(session=session, variant="baseline", spec={}, queue="cpu")
        writes.apply_outcome(session=session, outcome=Outcome(str(job.id), "done", rows=rows))
        hosts = {h: sorted(r.host for r in queries.query_results(session=session,
                                                                 filters=queries.ResultFilter(hardware=h)))
                 for h in ("%", "_", "100%", "lab_a", "EPYC", "aaaa")}
    assert hosts == {"%": ["a"], "_": ["a"], "100%": ["a"], "lab_a": ["a"], "EPYC": ["b"], "aaaa": ["a", "b"]}
    engine.dispose()
