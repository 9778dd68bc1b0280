"""The store: engine, tables, CRUD functions and Alembic migrations."""
