"""`farm results --format csv`, streamed: rows go from the database to stdout in chunks, never held whole.

On Postgres the database writes the CSV itself (`COPY (SELECT ...) TO STDOUT`) and farm relays the bytes: turning
rows into Python objects (JSON columns decoded, times made aware) was most of an export's time. Times there are
ISO 8601 in UTC with a space ("2026-11-01 09:30:00+00"); elsewhere (SQLite) rows go through Python in chunks
of CHUNK_ROWS, with times as Python's isoformat.

Two roads give the same bytes (tests/test_export.py): `quick_csv` on the database driver alone (psycopg or
sqlite3), which a cold export takes, since importing SQLAlchemy, SQLModel and Pydantic was half a second of it;
and `orm_csv`, taken when the driver path steps aside (shared/db/quick.py NotQuick: a store to create or
migrate, or a URL it does not read). Both select RESULT_COLUMNS (shared/db/columns.py) under the conditions of
shared/db/filters.py `where_sql`, ordered by RESULT_ORDER.
"""

from __future__ import annotations

import csv
import json
import sys
import uuid
from datetime import UTC, datetime
from typing import IO, Any

from shared.db.columns import RESULT_BOOLS, RESULT_COLUMNS, RESULT_JSON, RESULT_ORDER, RESULT_TIMES, RESULT_UUIDS

CHUNK_ROWS = 5000


def stream_csv(filters: Any, out: IO[str] | None = None) -> int:
    """Write the result rows matching `filters` (a ResultFilter) as CSV with every column of the result table
    (oldest first, as `farm results` lists them); returns how many rows were written."""
    from controller.services import load_settings
    from shared.db.quick import NotQuick

    try:
        return quick_csv(load_settings().database_url, filters, out)
    except NotQuick:
        return orm_csv(filters, out)


def quick_csv(database_url: str, filters: Any, out: IO[str] | None = None) -> int:
    """`stream_csv` on the database driver alone; NotQuick (before writing anything) when the store is not at the
    newest migration or its URL is not one the driver path reads."""
    from shared.db.filters import where_sql
    from shared.db.quick import NotQuick, connect, schema_revision
    from shared.db.revision import head_revision

    out = out or sys.stdout
    with connect(database_url) as (conn, mark):
        if schema_revision(conn) != [head_revision()]:
            raise NotQuick("schema not at the newest migration")
        dialect = "sqlite" if mark == "?" else "postgresql"
        params: list[Any] = []

        def placeholder(value: Any) -> str:
            params.append(value)
            return mark

        conditions = where_sql(filters, dialect, placeholder)
        sql = (f"SELECT {', '.join(f'result.{c}' for c in RESULT_COLUMNS)} FROM result"
               + (f" WHERE {' AND '.join(conditions)}" if conditions else "")
               + f" ORDER BY {', '.join(f'result.{c}' for c in RESULT_ORDER)}")
        if dialect == "postgresql":
            import psycopg

            conn.execute("SET TIME ZONE 'UTC'")
            return _relay_copy(conn, psycopg.ClientCursor(conn).mogrify(sql, params), out)
        cur = conn.cursor()
        try:
            cur.execute(sql, params)
            return _write_chunks(iter(lambda: cur.fetchmany(CHUNK_ROWS), []), _sqlite_row, out)
        finally:
            cur.close()


def orm_csv(filters: Any, out: IO[str] | None = None) -> int:
    """`stream_csv` through the ORM, which creates or migrates the store first."""
    from sqlalchemy import select
    from sqlmodel import Session

    from controller.services import load_settings, open_engine
    from shared.db.models import Result
    from shared.db.queries import _where

    out = out or sys.stdout
    engine = open_engine(load_settings())
    stmt = _where(select(*(getattr(Result, c) for c in RESULT_COLUMNS)), filters)
    stmt = stmt.order_by(*(getattr(Result, c) for c in RESULT_ORDER))
    if engine.dialect.name == "postgresql" and engine.dialect.driver == "psycopg":
        return _copy_csv(engine, stmt, out)
    stmt = stmt.execution_options(yield_per=CHUNK_ROWS)
    with Session(engine) as session:
        return _write_chunks(session.execute(stmt).partitions(), lambda row: [_cell(v) for v in row], out)


def _cell(value: Any) -> Any:
    """A value as the ORM hands it back, as a CSV cell: JSON objects and lists as JSON, times as isoformat."""
    if isinstance(value, dict | list):
        return json.dumps(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    return value


_JSON = [i for i, c in enumerate(RESULT_COLUMNS) if c in RESULT_JSON]
_UUID = [i for i, c in enumerate(RESULT_COLUMNS) if c in RESULT_UUIDS]
_TIME = [i for i, c in enumerate(RESULT_COLUMNS) if c in RESULT_TIMES]
_BOOL = [i for i, c in enumerate(RESULT_COLUMNS) if c in RESULT_BOOLS]


def _sqlite_row(row: tuple[Any, ...]) -> list[Any]:
    """A row as sqlite3 returns it, as the CSV cells of the same row read through the ORM: JSON text decoded and
    written again as json.dumps does (as SQLAlchemy stored it, whatever spacing a hand-written row used), UUIDs
    from 32 hex digits, naive UTC text as aware isoformat, 0/1 as False/True."""
    cells = list(row)
    for i in _JSON:
        if cells[i] is not None:
            cells[i] = _cell(json.loads(cells[i]))
    for i in _UUID:
        if cells[i] is not None:
            cells[i] = str(uuid.UUID(str(cells[i])))
    for i in _TIME:
        if cells[i] is not None:
            cells[i] = datetime.fromisoformat(cells[i]).replace(tzinfo=UTC).isoformat()
    for i in _BOOL:
        if cells[i] is not None:
            cells[i] = bool(cells[i])
    return cells


def _write_chunks(chunks: Any, cells: Any, out: IO[str]) -> int:
    """The header, then each chunk's rows turned into cells; how many rows were written."""
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(RESULT_COLUMNS)
    n = 0
    for chunk in chunks:
        writer.writerows([cells(row) for row in chunk])
        n += len(chunk)
    out.flush()
    return n


def _copy_csv(engine: Any, stmt: Any, out: IO[str]) -> int:
    """Postgres through the ORM: the statement compiled, its parameters bound by psycopg's client-side quoting
    (COPY takes none of its own), and relayed as `quick_csv` relays it."""
    import psycopg

    compiled = stmt.compile(dialect=engine.dialect, compile_kwargs={"render_postcompile": True})
    params = compiled.construct_params()
    raw = engine.raw_connection()
    try:
        conn = raw.driver_connection
        conn.execute("SET TIME ZONE 'UTC'")
        return _relay_copy(conn, psycopg.ClientCursor(conn).mogrify(str(compiled), params), out)
    finally:
        raw.close()


def _relay_copy(conn: Any, sql: str, out: IO[str]) -> int:
    """Postgres: `sql`'s rows as CSV with a header, written by COPY and relayed in the chunks it sends; how many
    rows. libpq hands COPY's output over one row per chunk (PQgetCopyData), the header first, so the rows are the
    chunks but one, even where a quoted cell holds a newline."""
    import codecs

    sink = getattr(out, "buffer", None)
    if sink is not None:
        out.flush()  # anything written as text goes first
    text = codecs.getincrementaldecoder("utf-8")()  # a character never straddles rows, but be safe
    chunks = 0
    with conn.cursor() as cur, cur.copy(f"COPY ({sql}) TO STDOUT WITH (FORMAT csv, HEADER)") as copy:
        for chunk in copy:
            chunks += 1
            if sink is not None:
                sink.write(chunk)
            else:
                out.write(text.decode(chunk))
    conn.rollback()
    out.flush()
    return max(0, chunks - 1)
