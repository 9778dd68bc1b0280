"""The same store tests on SQLite and on Postgres, over real connections."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import inspect, text
from sqlmodel import Session

from shared.db import crud
from shared.db.engine import get_engine, make_engine, upgrade_schema
from shared.errors import FarmError


@pytest.fixture(params=["sqlite", "postgres"])
def engine(request: pytest.FixtureRequest, tmp_path: Path):  # noqa: ANN201
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'store.db'}"
    else:
        url = request.getfixturevalue("fresh_pg_url")
    eng = make_engine(url)
    upgrade_schema(eng)
    yield eng
    eng.dispose()


def _row(host: str, started: datetime, hour: int, **extra: object) -> dict[str, object]:
    row: dict[str, object] = {
        "repeat_index": 0, "variant": "baseline", "model_id": "m", "dataset_id": "digits", "host": host,
        "cpu_model": "Intel Xeon", "gpu_name": None, "device": "cpu", "started_at": started, "local_hour": hour,
        "timezone": "UTC", "samples": 10, "top1": 0.9, "top5": 1.0, "time_per_sample_s": 0.001,
        "cpu_energy_per_sample_j": 0.01, "gpu_energy_per_sample_j": None, "total_energy_per_sample_j": 0.01,
        "energy_source": "estimated:cpu-time", "params": 86_000_000, "macs": 16_860_000_000,
        "software": {"torch": "x"},
    }
    row.update(extra)
    return row


def test_migrations_create_both_tables_with_indexes(engine) -> None:  # noqa: ANN001
    insp = inspect(engine)
    assert {"job", "result", "alembic_version"} <= set(insp.get_table_names())
    indexed = {tuple(ix["column_names"]) for ix in insp.get_indexes("result")}
    assert {("host",), ("started_at",), ("local_hour",), ("cpu_model", "gpu_name", "device")} <= indexed


def test_upgrade_is_idempotent(engine) -> None:  # noqa: ANN001
    upgrade_schema(engine)
    with engine.connect() as conn:
        assert conn.execute(text("select count(*) from alembic_version")).scalar_one() == 1


def test_job_lifecycle_keeps_tz_aware_utc_times(engine) -> None:  # noqa: ANN001
    with Session(engine) as s:
        job_id = crud.create_job(session=s, variant="baseline", spec={"a": 1}, queue="cpu").id
        crud.mark_running(session=s, job_id=job_id, worker="w@h")
        crud.mark_finished(session=s, job_id=job_id)
    with Session(engine) as s:
        job = crud.get_job(session=s, job_id=job_id)
        assert job.state == "done" and job.worker == "w@h" and job.spec == {"a": 1}
        assert job.submitted_at.tzinfo is not None and job.submitted_at.utcoffset() == timedelta(0)
        assert job.submitted_at <= job.started_at <= job.finished_at  # type: ignore[operator]


def test_failed_job_records_its_error(engine) -> None:  # noqa: ANN001
    with Session(engine) as s:
        job = crud.create_job(session=s, variant="baseline", spec={}, queue="cpu")
        crud.mark_finished(session=s, job_id=job.id, error="ValueError: boom")
        assert crud.get_job(session=s, job_id=job.id).state == "failed"
        assert crud.get_job(session=s, job_id=job.id).error == "ValueError: boom"


def test_big_mac_counts_fit(engine) -> None:  # noqa: ANN001
    now = datetime.now(UTC)
    with Session(engine) as s:
        job = crud.create_job(session=s, variant="baseline", spec={}, queue="cpu")
        crud.add_results(session=s, job_id=job.id, rows=[_row("a", now, 3, macs=16_855_607_908)])
        assert crud.query_results(session=s)[0].macs == 16_855_607_908


def test_redelivered_job_replaces_its_rows_instead_of_duplicating(engine) -> None:  # noqa: ANN001
    now = datetime.now(UTC)
    with Session(engine) as s:
        job = crud.create_job(session=s, variant="baseline", spec={}, queue="cpu")
        crud.add_results(session=s, job_id=job.id, rows=[_row("a", now, 3), _row("a", now, 3, repeat_index=1)])
        crud.add_results(session=s, job_id=job.id, rows=[_row("a", now, 3)])
        assert len(crud.query_results(session=s, filters=crud.ResultFilter(job_id=job.id))) == 1


def test_filters_by_host_hardware_time_and_local_hours(engine) -> None:  # noqa: ANN001
    t0 = datetime(2026, 11, 1, 12, tzinfo=UTC)
    rows = [
        _row("alpha", t0, 9),
        _row("alpha", t0 + timedelta(days=1), 16, variant="pruned"),
        _row("beta", t0 + timedelta(days=2), 23, cpu_model="AMD EPYC", device="cuda:0", gpu_name="NVIDIA H100"),
        _row("beta", t0 + timedelta(days=3), 2, cpu_model="AMD EPYC"),
    ]
    with Session(engine) as s:
        job = crud.create_job(session=s, variant="baseline", spec={}, queue="cpu")
        crud.add_results(session=s, job_id=job.id, rows=rows)

        def hosts(**kw: object) -> list[tuple[str, int]]:
            found = crud.query_results(session=s, filters=crud.ResultFilter(**kw))  # type: ignore[arg-type]
            return [(r.host, r.local_hour) for r in found]

        assert hosts(host="alpha") == [("alpha", 9), ("alpha", 16)]
        assert hosts(hardware="epyc") == [("beta", 23), ("beta", 2)]
        assert hosts(hardware="h100") == [("beta", 23)]
        assert hosts(variant="pruned") == [("alpha", 16)]
        assert hosts(since=t0 + timedelta(days=1), until=t0 + timedelta(days=3)) == [("alpha", 16), ("beta", 23)]
        assert hosts(hours=(9, 17)) == [("alpha", 9), ("alpha", 16)]
        assert hosts(hours=(22, 6)) == [("beta", 23), ("beta", 2)]
        assert hosts(job_id=uuid.uuid4()) == []


def test_unreachable_postgres_is_a_farm_error() -> None:
    with pytest.raises(FarmError, match="cannot reach database"):
        get_engine("postgresql+psycopg://postgres@127.0.0.1:1/nothing")


def test_unknown_backend_is_a_farm_error() -> None:
    with pytest.raises(FarmError, match="unsupported database"):
        make_engine("mysql://x@localhost/db")
