"""Alembic environment: migrations run on the connection that `upgrade_schema` hands over."""

from __future__ import annotations

from alembic import context
from sqlmodel import SQLModel

import shared.db.models  # noqa: F401  (registers the tables on the metadata)

target_metadata = SQLModel.metadata
connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through shared.db.engine.upgrade_schema")
context.configure(
    connection=connection,
    target_metadata=target_metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
