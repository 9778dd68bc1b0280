"""The same store tests on SQLite and on Postgres, over real connections."""

from __future__ import annotations

import math
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import inspect, text
from sqlmodel import Session

from shared.db import queries, writes
from shared.db.engine import get_engine, make_engine, upgrade_schema
from shared.errors import FarmError
from shared.outcome import Outcome


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
        "software": {"torch": "x"}, "hardware_id": "aaaaaaaaaaaa", "hardware_label": "Intel Xeon · avx2 · 8 CPUs",
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
        job_id = writes.create_job(session=s, variant="baseline", spec={"a": 1}, queue="cpu").id
        assert writes.claim_job(session=s, job_id=job_id, token="t1", worker="w@h", deliveries=1)
        assert writes.apply_outcome(session=s, outcome=Outcome(str(job_id), "done", token="t1")) == "written"
    with Session(engine) as s:
        job = queries.get_job(session=s, job_id=job_id)
        assert job.state == "done" and job.worker == "w@h" and job.spec == {"a": 1}
        assert job.submitted_at.tzinfo is not None and job.submitted_at.utcoffset() == timedelta(0)
        assert job.submitted_at <= job.started_at <= job.finished_at  # type: ignore[operator]


def test_failed_job_records_its_error(engine) -> None:  # noqa: ANN001
    with Session(engine) as s:
        job = writes.create_job(session=s, variant="baseline", spec={}, queue="cpu")
        writes.apply_outcome(session=s, outcome=Outcome(str(job.id), "failed", error="ValueError: boom"))
        assert queries.get_job(session=s, job_id=job.id).state == "failed"
        assert queries.get_job(session=s, job_id=job.id).error == "ValueError: boom"


def test_big_mac_counts_fit(engine) -> None:  # noqa: ANN001
    now = datetime.now(UTC)
    with Session(engine) as s:
        job = writes.create_job(session=s, variant="baseline", spec={}, queue="cpu")
        big = Outcome(str(job.id), "done", rows=[_row("a", now, 3, macs=16_855_607_908)])
        writes.apply_outcome(session=s, outcome=big)
        assert queries.query_results(session=s)[0].macs == 16_855_607_908


def test_an_outcome_written_twice_replaces_its_rows_instead_of_duplicating(engine) -> None:  # noqa: ANN001
    now = datetime.now(UTC)
    with Session(engine) as s:
        job = writes.create_job(session=s, variant="baseline", spec={}, queue="cpu")
        writes.claim_job(session=s, job_id=job.id, token="t1", worker="w@h", deliveries=1)
        two = Outcome(str(job.id), "done", token="t1", rows=[_row("a", now, 3), _row("a", now, 3, repeat_index=1)])
        assert writes.apply_outcome(session=s, outcome=two) == "written"
        one = Outcome(str(job.id), "done", token="t1", rows=[_row("a", now, 3)])
        assert writes.apply_outcome(session=s, outcome=one) == "written"  # a spool flush retried after a commit
        assert len(queries.query_results(session=s, filters=queries.ResultFilter(job_id=job.id))) == 1


def test_a_stale_delivery_cannot_write_over_the_one_that_took_its_job(engine) -> None:  # noqa: ANN001
    now = datetime.now(UTC)
    with Session(engine) as s:
        job = writes.create_job(session=s, variant="baseline", spec={}, queue="cpu")
        writes.claim_job(session=s, job_id=job.id, token="old", worker="a@h", deliveries=1)
        assert writes.requeue_job(session=s, job_id=job.id, expected_token="old", reason="a died")
        assert not writes.requeue_job(session=s, job_id=job.id, expected_token="old", reason="twice")
        assert writes.claim_job(session=s, job_id=job.id, token="new", worker="b@h", deliveries=2)
        stale = Outcome(str(job.id), "done", token="old", rows=[_row("a", now, 3)] * 2)
        assert writes.apply_outcome(session=s, outcome=stale) == "taken"
        assert queries.query_results(session=s, filters=queries.ResultFilter(job_id=job.id)) == []
        fresh = Outcome(str(job.id), "done", token="new", rows=[_row("b", now, 3)])
        assert writes.apply_outcome(session=s, outcome=fresh) == "written"
        assert [r.host for r in queries.query_results(session=s, filters=queries.ResultFilter(job_id=job.id))] == ["b"]
        assert queries.get_job(session=s, job_id=job.id).deliveries == 2


def test_find_job_takes_a_unique_prefix_with_or_without_dashes(engine) -> None:  # noqa: ANN001
    from shared.db.models import Job

    ids = [uuid.UUID("abcd1234-0000-4000-8000-00000000000" + c) for c in "12"] + [uuid.UUID(int=7)]
    with Session(engine) as s:
        s.add_all(Job(id=i, variant="baseline", spec={}, queue="cpu") for i in ids)
        s.commit()
        assert queries.find_job(session=s, prefix="abcd1234-0000-4000-8000-000000000002").id == ids[1]
        with pytest.raises(FarmError, match="ambiguous"):
            queries.find_job(session=s, prefix="abcd12")
        assert queries.find_job(session=s, prefix="ABCD12340000400080000000000000011"[:32]).id == ids[0]
        assert queries.find_job(session=s, prefix="00000000-00").id == ids[2]
        with pytest.raises(FarmError, match="no job"):
            queries.find_job(session=s, prefix="ffff")
        with pytest.raises(FarmError, match="bad job id"):
            queries.find_job(session=s, prefix="xyz")


def test_filters_by_host_hardware_time_and_local_hours(engine) -> None:  # noqa: ANN001
    t0 = datetime(2026, 11, 1, 12, tzinfo=UTC)
    rows = [
        _row("alpha", t0, 9),
        _row("alpha", t0 + timedelta(days=1), 16, variant="pruned"),
        _row("beta", t0 + timedelta(days=2), 23, cpu_model="AMD EPYC", device="cuda:0", gpu_name="NVIDIA H100"),
        _row("beta", t0 + timedelta(days=3), 2, cpu_model="AMD EPYC"),
    ]
    with Session(engine) as s:
        job = writes.create_job(session=s, variant="baseline", spec={}, queue="cpu")
        writes.apply_outcome(session=s, outcome=Outcome(str(job.id), "done", rows=rows))

        def hosts(**kw: object) -> list[tuple[str, int]]:
            found = queries.query_results(session=s, filters=queries.ResultFilter(**kw))  # type: ignore[arg-type]
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


def test_the_migrated_schema_matches_the_models(engine) -> None:  # noqa: ANN001
    """The tables are declared twice (models.py and the migrations): autogenerate must find nothing to do."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext
    from sqlmodel import SQLModel

    import shared.db.models  # noqa: F401  (registers the tables)

    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": False}), SQLModel.metadata)
    assert diff == [], diff


def test_a_misspelled_or_missing_result_column_fails_validation() -> None:
    from pydantic import ValidationError

    from shared.db.models import RESULT_COLUMNS, Result, ResultCreate

    now = datetime.now(UTC)
    good = ResultCreate(**_row("h", now, 3))
    assert set(good.model_dump()) == set(RESULT_COLUMNS) - {"id", "job_id"}
    assert set(RESULT_COLUMNS) == {c.name for c in Result.__table__.columns}  # type: ignore[attr-defined]
    with pytest.raises(ValidationError, match="cpu_energy_per_smaple_j"):
        ResultCreate(**_row("h", now, 3, cpu_energy_per_smaple_j=0.01))
    missing = _row("h", now, 3)
    del missing["total_energy_per_sample_j"]
    with pytest.raises(ValidationError, match="total_energy_per_sample_j"):
        ResultCreate(**missing)
    with pytest.raises(ValidationError, match="local_hour"):
        ResultCreate(**_row("h", now, 24))


@pytest.mark.parametrize(("column", "value"), [("time_per_sample_s", math.inf), ("time_per_sample_s", math.nan),
                                               ("total_energy_per_sample_j", math.nan),
                                               ("total_energy_per_sample_j", -0.5), ("cpu_energy_per_sample_j", -1e-3),
                                               ("latency_p99_s", math.inf)])
def test_a_result_with_a_nan_infinite_or_negative_measurement_is_refused(column: str, value: float) -> None:
    """Found by review: one cell stored with an infinite time made every prediction of its machine NaN."""
    from pydantic import ValidationError

    from shared.db.models import ResultCreate

    with pytest.raises(ValidationError, match=column):
        ResultCreate(**_row("h", datetime.now(UTC), 3, **{column: value}))


@pytest.mark.parametrize("store", ["sqlite", "postgres"])
def test_rows_stored_before_migration_0007_keep_their_data_and_get_a_hardware_id(store: str, tmp_path: Path,
                                                                                 fresh_pg_url: str) -> None:
    """A store at 0006 with two machines' rows: upgrading keeps every row and value, gives each machine its own
    hardware_id and label, and on Postgres turns the naive UTC times into the same instants as timestamptz."""
    from alembic import command
    from alembic.config import Config

    from shared.db.revision import MIGRATIONS

    url = f"sqlite:///{tmp_path / 'old.db'}" if store == "sqlite" else fresh_pg_url
    engine = make_engine(url)
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0006")
    job = uuid.uuid4()
    started = datetime(2026, 11, 2, 9, 30)  # naive UTC, as 0006 stored it
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO job (id, variant, spec, queue, state, submitted_at, stage, deliveries) "
                          "VALUES (:id, 'baseline', '{}', 'cpu', 'done', :t, 'benchmark', 1)"),
                     {"id": job if store == "postgres" else job.hex, "t": started})
        for i, (cpu, gpu, limit) in enumerate([("AMD EPYC", None, None), ("Intel Xeon", "NVIDIA H100", 350.0),
                                               ("Intel Xeon", "NVIDIA H100", 350.0)]):
            conn.execute(text(
                "INSERT INTO result (job_id, repeat_index, variant, model_id, dataset_id, host, cpu_model, gpu_name, "
                "device, started_at, local_hour, timezone, samples, top1, time_per_sample_s, "
                "total_energy_per_sample_j, energy_source, params, macs, software, gpu_power_limit_w, threads) "
                "VALUES (:job, :i, 'baseline', 'm', 'digits', 'h', :cpu, :gpu, 'cpu', :t, 9, 'UTC', 10, 0.9, 0.001, "
                "0.01, 'measured:rapl', 1, 1, '{}', :limit, 2)"),
                {"job": job if store == "postgres" else job.hex, "i": i, "cpu": cpu, "gpu": gpu, "t": started,
                 "limit": limit})
    upgrade_schema(engine)
    with Session(engine) as s:
        rows = queries.query_results(session=s, filters=queries.ResultFilter(job_id=job))
    engine.dispose()
    assert len(rows) == 3 and all(r.total_energy_per_sample_j == 0.01 and r.top1 == 0.9 for r in rows)
    assert all(r.started_at == started.replace(tzinfo=UTC) for r in rows)
    assert all(r.runtime == "torch" and r.hardware_id and len(r.hardware_id) == 12 for r in rows)
    assert rows[1].hardware_id == rows[2].hardware_id != rows[0].hardware_id
    assert rows[1].hardware_label == "NVIDIA H100 · Intel Xeon (no ISA recorded)"
    assert rows[0].hardware == {"cpu_model": "AMD EPYC", "gpu_name": None, "gpu_driver": None,
                                "gpu_power_limit_w": None, "threads": 2, "legacy": True}
