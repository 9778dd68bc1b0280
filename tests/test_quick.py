"""The CLI's read-only fast path (shared/db/quick.py) against the ORM, on SQLite and Postgres."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlmodel import Session

from shared.db import queries, writes
from shared.db.engine import make_engine, upgrade_schema
from shared.db.quick import JOB_COLUMNS, NotQuick, recent_jobs
from shared.db.revision import head_revision
from shared.outcome import Outcome


def test_the_fast_path_reads_every_job_column_but_the_spec() -> None:
    from shared.db.models import Job

    assert set(JOB_COLUMNS) == {c.name for c in Job.__table__.columns} - {"spec"}  # type: ignore[attr-defined]


@pytest.mark.parametrize("store", ["sqlite", "postgres"])
def test_the_fast_path_reads_what_the_orm_reads(store: str, tmp_path: Path, fresh_pg_url: str) -> None:
    url = f"sqlite:///{tmp_path / 'q.db'}" if store == "sqlite" else fresh_pg_url
    engine = make_engine(url)
    upgrade_schema(engine)
    with Session(engine) as s:
        a = writes.create_job(session=s, variant="baseline", spec={"x": 1}, queue="cpu").id
        b = writes.create_job(session=s, variant="pruned", spec={}, queue="gpu", stage="compress").id
        assert writes.claim_job(session=s, job_id=a, token="t", worker="w@h", deliveries=1)
        writes.apply_outcome(session=s, outcome=Outcome(str(a), "done", token="t", artifact_key="k", trained=True))
    with Session(engine) as s:
        orm = [j.model_dump(exclude={"spec"}) for j in queries.list_jobs(session=s, limit=10)]
    engine.dispose()
    quick = recent_jobs(url, head_revision(), 10)
    assert [j["id"] for j in quick] == [b, a]
    assert quick == orm  # the same values, typed the same (UUIDs, aware UTC datetimes, booleans)


def test_the_fast_path_steps_aside_for_a_store_the_orm_must_migrate(tmp_path: Path) -> None:
    with pytest.raises(NotQuick):
        recent_jobs(f"sqlite:///{tmp_path / 'absent.db'}", head_revision(), 5)  # not created yet
    engine = make_engine(f"sqlite:///{tmp_path / 'old.db'}")
    upgrade_schema(engine)
    with engine.begin() as conn:
        conn.exec_driver_sql("UPDATE alembic_version SET version_num = '0006'")
    engine.dispose()
    with pytest.raises(NotQuick):
        recent_jobs(f"sqlite:///{tmp_path / 'old.db'}", head_revision(), 5)
    with pytest.raises(NotQuick):
        recent_jobs("mysql://u@h/db", head_revision(), 5)


@pytest.mark.parametrize("store", ["sqlite", "postgres"])
def test_a_quick_insert_stores_what_the_orm_stores(store: str, tmp_path: Path, fresh_pg_url: str) -> None:
    import uuid

    from shared.db.quick import insert_jobs

    url = f"sqlite:///{tmp_path / 'w.db'}" if store == "sqlite" else fresh_pg_url
    engine = make_engine(url)
    upgrade_schema(engine)
    chain, sweep = uuid.uuid4(), uuid.uuid4()
    spec = {"variant": {"name": "pruned", "prune": {"method": "all", "ratio": 0.1}}, "bench": {"limit": None}}
    job = {"variant": "pruned", "spec": spec, "queue": "gpu", "stage": "compress", "chain_id": chain,
           "sweep_id": sweep}
    quick_id, plain_id = insert_jobs(url, head_revision(), [job, {"variant": "baseline", "spec": {}, "queue": "cpu"}])
    with Session(engine) as s:
        orm_id = writes.create_job(session=s, **job).id
        quick, orm = queries.get_job(session=s, job_id=quick_id), queries.get_job(session=s, job_id=orm_id)
        plain = queries.get_job(session=s, job_id=plain_id)
        found = queries.find_job(session=s, prefix=str(quick_id)[:8]).id  # prefixes work on quick rows too
    engine.dispose()
    skip = {"id", "submitted_at"}
    assert quick.model_dump(exclude=skip) == orm.model_dump(exclude=skip)
    assert quick.submitted_at.tzinfo is not None and abs((orm.submitted_at - quick.submitted_at).total_seconds()) < 5
    assert (plain.stage, plain.chain_id, plain.sweep_id, plain.state) == ("benchmark", None, None, "queued")
    assert found == quick_id


@pytest.mark.parametrize("store", ["sqlite", "postgres"])
def test_a_quick_prefix_finds_what_the_orm_finds(store: str, tmp_path: Path, fresh_pg_url: str) -> None:
    import uuid

    from shared.db.models import Job
    from shared.db.quick import one_by_prefix
    from shared.errors import FarmError

    url = f"sqlite:///{tmp_path / 'p.db'}" if store == "sqlite" else fresh_pg_url
    engine = make_engine(url)
    upgrade_schema(engine)
    ids = [uuid.UUID("abcd1234-0000-4000-8000-00000000000" + c) for c in "12"] + [uuid.UUID(int=7)]
    sweep = uuid.UUID("5eeb0000-1111-4000-8000-000000000000")
    head = head_revision()
    with Session(engine) as s:
        s.add_all(Job(id=i, variant="baseline", spec={}, queue="cpu", sweep_id=sweep if n < 2 else None)
                  for n, i in enumerate(ids))
        s.commit()
        for column, prefix, what in (("id", "abcd1234-0000-4000-8000-000000000002", "job"),
                                     ("id", "ABCD12340000400080000000000000011", "job"),
                                     ("id", "00000000-00", "job"), ("sweep_id", "5eeb", "sweep"),
                                     ("id", "abcd12", "job"), ("id", "ffff", "job"), ("sweep_id", "abcd", "sweep"),
                                     ("id", "xyz", "job")):
            orm = queries.find_sweep if column == "sweep_id" else queries.find_job
            try:
                found = orm(session=s, prefix=prefix)
                expected: object = getattr(found, "id", found)
            except FarmError as exc:
                expected = str(exc)
            try:
                got: object = one_by_prefix(url, head, column, prefix, what)
            except FarmError as exc:
                got = str(exc)
            assert got == expected, prefix
            assert isinstance(got, uuid.UUID) or "no " in str(got) or "ambiguous" in str(got) or "bad" in str(got)
    engine.dispose()
    assert one_by_prefix(url, head, "sweep_id", "5eeb-0000-1111", "sweep") == sweep
    with pytest.raises(FarmError, match="ambiguous"):
        one_by_prefix(url, head, "id", "abcd", "job")
