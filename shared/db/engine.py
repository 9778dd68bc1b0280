"""The one place that builds the engine and brings the schema to the newest migration."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, OperationalError, SQLAlchemyError

from shared.db.revision import MIGRATIONS, head_revision
from shared.errors import FarmError
from shared.redact import redact


def make_engine(database_url: str) -> Engine:
    """Build an engine for a SQLite or Postgres URL; FarmError for a URL that cannot work."""
    shown = redact(database_url)
    try:
        url = make_url(database_url)
        url.port  # noqa: B018  (a non-numeric port raises here, not at connect time)
    except (ArgumentError, ValueError):
        raise FarmError(f"bad database URL {shown!r}") from None
    kwargs: dict[str, object] = {"pool_pre_ping": True}
    if url.get_backend_name() == "sqlite":
        if not url.database or url.database == ":memory:" or url.query.get("mode") == "memory":
            raise FarmError(f"{shown!r} is an in-memory SQLite store, which loses every result when the process "
                            "ends; give a file, e.g. sqlite:///farm.db")
        try:
            Path(url.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise FarmError(f"cannot create the folder of SQLite store {shown!r}: {exc.strerror}") from None
        # Workers and the CLI share the file: wait for a lock instead of failing at once.
        kwargs["connect_args"] = {"timeout": 30}
    elif url.get_backend_name() == "postgresql":
        # A server that accepts the connection and then says nothing (a blackhole) must not hang a worker: libpq's
        # connect_timeout bounds the handshake, TCP keepalives notice a dead peer, statement_timeout bounds queries.
        kwargs["connect_args"] = {"connect_timeout": 5, "keepalives_idle": 10, "keepalives_interval": 5,
                                  "keepalives_count": 3, "options": "-c statement_timeout=60000"}
        kwargs["pool_timeout"] = 10
    else:
        backend = url.get_backend_name()
        raise FarmError(f"unsupported database {backend!r} in {shown!r}; use sqlite or postgresql")
    try:
        engine = create_engine(url, **kwargs)
    except (ArgumentError, ImportError) as exc:
        raise FarmError(f"bad database URL {shown!r}: {redact(exc)}") from None
    if url.get_backend_name() == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def _sqlite_pragmas(dbapi_conn: object, _record: object) -> None:
    cur = dbapi_conn.cursor()  # type: ignore[attr-defined]
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def schema_is_current(engine: Engine) -> bool:
    """Whether the database's Alembic revision is the newest one (one small query; False when it has none)."""
    from sqlalchemy import text

    try:
        with engine.connect() as conn:
            return conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all() == [head_revision()]
    except SQLAlchemyError as exc:
        if isinstance(exc, OperationalError) and "no such table" not in str(exc):
            raise  # unreachable: the caller says so
        return False  # no alembic_version table yet: a new store


def upgrade_schema(engine: Engine) -> None:
    """Apply every Alembic migration that the database lacks. Processes that open a new store at once take turns:
    an advisory lock on Postgres, a lock file beside a SQLite store (a worker and `farm submit` creating one file
    at the same moment both ran the first migration, and one died on "table alembic_version already exists")."""
    with _sqlite_migration_lock(engine):
        if engine.dialect.name == "sqlite" and schema_is_current(engine):
            return  # another process migrated it while this one waited
        _upgrade(engine)


@contextmanager
def _sqlite_migration_lock(engine: Engine) -> Iterator[None]:
    if engine.dialect.name != "sqlite" or not engine.url.database:
        yield
        return
    import fcntl

    with open(f"{Path(engine.url.database).expanduser()}.migrate-lock", "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _upgrade(engine: Engine) -> None:
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            # Several workers may start at once: one migrates, the others wait.
            conn.exec_driver_sql("SELECT pg_advisory_xact_lock(7303311)")
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


_ENGINES: list[Engine] = []


def _forget_parent_connections() -> None:
    """In a forked child (Celery's pool), never reuse the parent's pooled connections."""
    for engine in _ENGINES:
        engine.dispose(close=False)


os.register_at_fork(after_in_child=_forget_parent_connections)


@cache
def get_engine(database_url: str) -> Engine:
    """An engine whose schema is up to date; FarmError when the database cannot be reached."""
    engine = make_engine(database_url)
    try:
        if not schema_is_current(engine):
            upgrade_schema(engine)
    except SQLAlchemyError as exc:
        engine.dispose()
        raise FarmError(_unreachable(database_url, exc)) from None
    _ENGINES.append(engine)
    return engine


def _unreachable(database_url: str, exc: SQLAlchemyError) -> str:
    """One line for a store that failed, with the password hidden."""
    if isinstance(exc, OperationalError):
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig and str(exc.orig).strip() else str(exc)
        return f"cannot reach database {redact(database_url)}: {redact(reason)}"
    return f"database {redact(database_url)} failed: {redact(exc)}"
