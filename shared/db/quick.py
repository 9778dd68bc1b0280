"""The CLI's hottest paths on the database driver alone: one page of the job table (`farm status`), new queued
jobs (`farm submit`), and a job or sweep id prefix (`farm results --job/--sweep`; the CSV export itself is
controller/export.py `quick_csv`, on this module's connection).

A cold `farm status` spent about 0.3 s of its 0.6 s importing SQLModel, Pydantic and SQLAlchemy to read one page
of the job table, and `farm submit` as much to insert one row. This module does both with psycopg or sqlite3.
It never migrates: when the store is not at the newest migration, or its URL is not one it reads, it raises
NotQuick and callers take the ORM path (`shared.db.engine.get_engine`, `shared.db.writes`), which migrates it. Every
other read and write goes through the ORM. Tests hold both paths to the same rows: `JOB_COLUMNS` to the model,
a quick insert to what `writes.create_job` stores.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote, urlsplit

from shared.errors import FarmError
from shared.redact import redact

JOB_COLUMNS = ("id", "variant", "queue", "state", "submitted_at", "started_at", "finished_at", "worker", "error",
               "chain_id", "stage", "progress", "artifact_key", "trained", "lease_token", "deliveries", "sweep_id")
_UUIDS = ("id", "chain_id", "sweep_id")
_TIMES = ("submitted_at", "started_at", "finished_at")


class NotQuick(Exception):
    """This store cannot be read here without the ORM (another driver, or a schema not at the newest migration)."""


@contextmanager
def connect(database_url: str, write: bool = False) -> Iterator[tuple[Any, str]]:
    """(DB-API connection, paramstyle mark) for a SQLite or Postgres URL; NotQuick for anything else. A SQLite
    file that does not exist yet is NotQuick too (the ORM path creates it)."""
    try:
        parts = urlsplit(database_url)
    except ValueError:  # "Invalid IPv6 URL": the ORM path's make_engine says "bad database URL", redacted
        raise NotQuick("a URL urlsplit cannot parse") from None
    scheme = parts.scheme.split("+", 1)[0]
    if scheme == "sqlite" and parts.scheme in ("sqlite", "sqlite+pysqlite"):
        import sqlite3

        path = unquote(database_url.split(":///", 1)[1]) if ":///" in database_url else ""
        if not path or path == ":memory:" or parts.query:
            raise NotQuick("an in-memory or parameterised SQLite URL")
        try:
            conn = sqlite3.connect(f"file:{path}?mode={'rw' if write else 'ro'}", uri=True, timeout=30)
        except sqlite3.Error as exc:
            raise NotQuick(str(exc)) from None  # no file yet: the ORM path creates and migrates it
        try:
            yield conn, "?"
        finally:
            conn.close()
    elif parts.scheme in ("postgresql", "postgresql+psycopg", "postgres"):
        import psycopg

        try:
            conn = psycopg.connect(database_url.replace("+psycopg", "", 1), connect_timeout=5)
        except psycopg.Error as exc:
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise FarmError(f"cannot reach database {redact(database_url)}: {redact(reason)}") from None
        try:
            yield conn, "%s"
        finally:
            conn.close()
    else:
        raise NotQuick(f"driver {parts.scheme!r}")


def schema_revision(conn: Any) -> list[str]:
    cur = conn.cursor()
    try:
        cur.execute("SELECT version_num FROM alembic_version")
        return [row[0] for row in cur.fetchall()]
    except Exception:
        conn.rollback()
        return []
    finally:
        cur.close()


def recent_jobs(database_url: str, head: str, limit: int) -> list[dict[str, Any]]:
    """The `limit` most recently submitted jobs (every column but `spec`), newest first, typed as the ORM types
    them (UUIDs, timezone-aware UTC datetimes, booleans); NotQuick when the schema is not at `head`."""
    with connect(database_url) as (conn, mark):
        if schema_revision(conn) != [head]:
            raise NotQuick("schema not at the newest migration")
        cur = conn.cursor()
        cur.execute(f"SELECT {', '.join(JOB_COLUMNS)} FROM job ORDER BY submitted_at DESC LIMIT {mark}", (limit,))
        rows = [dict(zip(JOB_COLUMNS, row, strict=True)) for row in cur.fetchall()]
        cur.close()
    return [_typed(r) for r in rows]


def _typed(row: dict[str, Any]) -> dict[str, Any]:
    for key in _UUIDS:
        value = row[key]
        if value is not None and not isinstance(value, uuid.UUID):
            row[key] = uuid.UUID(str(value))
    for key in _TIMES:
        value = row[key]
        if isinstance(value, str):
            value = datetime.fromisoformat(value)
        if isinstance(value, datetime):
            value = value.astimezone(UTC) if value.tzinfo is not None else value.replace(tzinfo=UTC)
        row[key] = value
    if row["trained"] is not None:
        row["trained"] = bool(row["trained"])
    return row


def check(database_url: str, head: str) -> None:
    """Nothing when the store answers at the newest migration; NotQuick when the ORM must create or migrate it;
    FarmError when it cannot be reached."""
    with connect(database_url) as (conn, _mark):
        if schema_revision(conn) != [head]:
            raise NotQuick("schema not at the newest migration")


def insert_jobs(database_url: str, head: str, jobs: list[dict[str, Any]]) -> list[uuid.UUID]:
    """Store new queued jobs in one transaction, as `writes.create_job` would, and return their ids. Each of `jobs`
    has variant, spec (a dict), queue, and optionally stage ("benchmark"), chain_id and sweep_id."""
    with connect(database_url, write=True) as (conn, mark):
        sqlite = mark == "?"
        if schema_revision(conn) != [head]:
            raise NotQuick("schema not at the newest migration")
        columns = (*NEW_JOB_COLUMNS, "submitted_at")
        # submitted_at on the store's clock where it has one (Postgres), as writes.create_job stamps it
        marks = [mark] * len(columns)
        if not sqlite:
            marks[-1] = "now()"
        sql = f"INSERT INTO job ({', '.join(columns)}) VALUES ({', '.join(marks)})"
        ids = []
        cur = conn.cursor()
        try:
            for job in jobs:
                row = new_job_row(**job)
                values = _encode(row, sqlite)
                if sqlite:  # as SQLAlchemy stores it there: naive UTC text
                    values += (datetime.now(UTC).replace(tzinfo=None).strftime("%Y-%m-%d %H:%M:%S.%f"),)
                job_id = row["id"]
                cur.execute(sql, values)
                ids.append(job_id)
            conn.commit()
        except BaseException:
            conn.rollback()
            raise
        finally:
            cur.close()
    return ids


def _hex(value: uuid.UUID | None) -> str | None:
    return None if value is None else value.hex


NEW_JOB_COLUMNS = ("id", "variant", "spec", "queue", "state", "stage", "chain_id", "sweep_id", "deliveries")


def count_jobs(database_url: str, ids: list[uuid.UUID]) -> int:
    """How many of the jobs `ids` the store holds, read on a fresh connection (after a write whose reply was lost);
    NotQuick or FarmError where the store cannot be asked."""
    with connect(database_url) as (conn, mark):
        cur = conn.cursor()
        try:
            cur.execute(f"SELECT count(*) FROM job WHERE id IN ({', '.join([mark] * len(ids))})",
                        [_hex(i) if mark == "?" else i for i in ids])  # stored as insert_jobs stores them
            return int(cur.fetchone()[0])
        finally:
            cur.close()


def new_job_row(*, variant: str, spec: dict[str, Any], queue: str, stage: str = "benchmark",
                chain_id: uuid.UUID | None = None, sweep_id: uuid.UUID | None = None,
                id: uuid.UUID | None = None) -> dict[str, Any]:  # noqa: A002 (the column's name)
    """What a new queued job holds, column by column (submitted_at aside: the store stamps it). The one encoder of
    new jobs: `writes.create_job` builds its ORM row from it, `insert_jobs` its driver row. `id` is the caller's
    when it must name the job before knowing whether the store's commit landed."""
    return {"id": id or uuid.uuid4(), "variant": variant, "spec": spec, "queue": queue, "state": "queued",
            "stage": stage, "chain_id": chain_id, "sweep_id": sweep_id, "deliveries": 0}


def _encode(row: dict[str, Any], sqlite: bool) -> tuple[Any, ...]:
    """`row`'s NEW_JOB_COLUMNS as the driver takes them, stored as SQLAlchemy stores them: on SQLite UUIDs as 32 hex
    digits and JSON as text; on Postgres native UUIDs and JSON."""
    import json

    if sqlite:
        return tuple(_hex(row[c]) if c in _UUIDS else json.dumps(row[c]) if c == "spec" else row[c]
                     for c in NEW_JOB_COLUMNS)
    from psycopg.types.json import Json

    return tuple(Json(row[c]) if c == "spec" else row[c] for c in NEW_JOB_COLUMNS)


def one_by_prefix(database_url: str, head: str, column: str, prefix: str, what: str) -> uuid.UUID:
    """The one value of the job table's `column` (id or sweep_id) that starts with `prefix`, as
    `queries.find_job` / `find_sweep` resolve it (the same SQL, shared/db/filters.py); FarmError when the prefix
    is malformed, matches nothing or several; NotQuick when the schema is not at `head`."""
    from shared.db.filters import id_prefix_pattern, one_id, prefix_sql

    pattern = id_prefix_pattern(prefix, what)
    with connect(database_url) as (conn, mark):
        if schema_revision(conn) != [head]:
            raise NotQuick("schema not at the newest migration")
        cur = conn.cursor()
        cur.execute(prefix_sql(column, mark), (pattern,))
        found = [row[0] for row in cur.fetchall()]
        cur.close()
    return one_id(found, prefix, what)
