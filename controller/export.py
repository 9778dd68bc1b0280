"""`farm results --format csv`, streamed: rows go from the database to stdout in chunks, never held whole.

On Postgres the database writes the CSV itself (`COPY (SELECT ...) TO STDOUT`) and farm relays the bytes: turning
rows into Python objects (JSON columns decoded, times made aware) was most of an export's time. Times there are
ISO 8601 in UTC with a space ("2026-11-01 09:30:00+00"); elsewhere (SQLite) rows go through Python in chunks
of CHUNK_ROWS, with times as Python's isoformat."""

from __future__ import annotations

import csv
import json
import sys
import uuid
from datetime import datetime
from typing import IO, Any

CHUNK_ROWS = 5000


def _cell(value: Any) -> Any:
    if isinstance(value, dict | list):
        return json.dumps(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    return value


def stream_csv(filters: Any, out: IO[str] | None = None) -> int:
    """Write the result rows matching `filters` (a queries.ResultFilter) as CSV with every column of the result table
    (oldest first, as `farm results` lists them); returns how many rows were written."""
    from sqlalchemy import select
    from sqlmodel import Session, col

    from controller.services import load_settings, open_engine
    from shared.db.models import RESULT_COLUMNS, Result
    from shared.db.queries import _where

    out = out or sys.stdout
    engine = open_engine(load_settings())
    stmt = _where(select(*(getattr(Result, c) for c in RESULT_COLUMNS)), filters)
    stmt = stmt.order_by(col(Result.started_at), col(Result.repeat_index))
    if engine.dialect.name == "postgresql" and engine.dialect.driver == "psycopg":
        return _copy_csv(engine, stmt, out)
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(RESULT_COLUMNS)
    stmt = stmt.execution_options(yield_per=CHUNK_ROWS)
    n = 0
    with Session(engine) as session:
        for part in session.execute(stmt).partitions():
            writer.writerows([[_cell(v) for v in row] for row in part])
            n += len(part)
    out.flush()
    return n


def _copy_csv(engine: Any, stmt: Any, out: IO[str]) -> int:
    """Postgres: the statement's rows as CSV with a header, written by COPY and relayed in the chunks it sends;
    the parameters are bound by psycopg's client-side quoting (COPY takes none of its own)."""
    import psycopg

    compiled = stmt.compile(dialect=engine.dialect, compile_kwargs={"render_postcompile": True})
    params = compiled.construct_params()
    raw = engine.raw_connection()
    try:
        conn = raw.driver_connection
        conn.execute("SET TIME ZONE 'UTC'")
        sql = psycopg.ClientCursor(conn).mogrify(str(compiled), params)
        sink = getattr(out, "buffer", None)
        lines = 0
        with conn.cursor() as cur, cur.copy(f"COPY ({sql}) TO STDOUT WITH (FORMAT csv, HEADER)") as copy:
            for chunk in copy:
                data = bytes(chunk)
                lines += data.count(b"\n")
                if sink is not None:
                    sink.write(data)
                else:
                    out.write(data.decode())
        conn.rollback()
    finally:
        raw.close()
    out.flush()
    return max(0, lines - 1)  # a quoted newline inside a cell would count too: only a warning's text could carry one
