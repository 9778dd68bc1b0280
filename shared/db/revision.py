"""The newest migration's revision, read from the migration files' names (no Alembic, no SQLAlchemy)."""

from __future__ import annotations

from pathlib import Path

MIGRATIONS = Path(__file__).parent / "migrations"


def head_revision() -> str:
    """The newest migration's revision id, from the file names (`NNNN_what.py`, revision NNNN), without
    importing Alembic: the CLI checks it on every call, and Alembic costs a third of a second to import."""
    return max(p.name.split("_", 1)[0] for p in (MIGRATIONS / "versions").glob("[0-9][0-9][0-9][0-9]_*.py"))
