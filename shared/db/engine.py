"""The one place that builds the engine and brings the schema to the newest migration."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, OperationalError, SQLAlchemyError

from shared.errors import FarmError

MIGRATIONS = Path(__file__).parent / "migrations"


def make_engine(database_url: str) -> Engine:
    """Build an engine for a SQLite or Postgres URL; FarmError for a URL that cannot work."""
    try:
        url = make_url(database_url)
    except ArgumentError:
        raise FarmError(f"bad database URL {database_url!r}") from None
    kwargs: dict[str, object] = {"pool_pre_ping": True}
    if url.get_backend_name() == "sqlite":
        if url.database and url.database != ":memory:":
            Path(url.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        # Workers and the CLI share the file: wait for a lock instead of failing at once.
        kwargs["connect_args"] = {"timeout": 30}
    elif url.get_backend_name() == "postgresql":
        kwargs["connect_args"] = {"connect_timeout": 5}
    else:
        backend = url.get_backend_name()
        raise FarmError(f"unsupported database {backend!r} in {database_url!r}; use sqlite or postgresql")
    try:
        engine = create_engine(url, **kwargs)
    except (ArgumentError, ImportError) as exc:
        raise FarmError(f"bad database URL {database_url!r}: {exc}") from None
    if url.get_backend_name() == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def _sqlite_pragmas(dbapi_conn: object, _record: object) -> None:
    cur = dbapi_conn.cursor()  # type: ignore[attr-defined]
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def upgrade_schema(engine: Engine) -> None:
    """Apply every Alembic migration that the database lacks."""
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


@cache
def get_engine(database_url: str) -> Engine:
    """An engine whose schema is up to date; FarmError when the database cannot be reached."""
    engine = make_engine(database_url)
    try:
        upgrade_schema(engine)
    except OperationalError as exc:
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
        raise FarmError(f"cannot reach database {engine.url.render_as_string()}: {reason}") from None
    except SQLAlchemyError as exc:
        raise FarmError(f"database {engine.url.render_as_string()} failed: {exc}") from None
    return engine
