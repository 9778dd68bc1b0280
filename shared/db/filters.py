"""The filters of `farm results`, `report` and `recommend`, and the one place that turns them into SQL.

`where_sql` writes a ResultFilter's conditions as SQL text for one dialect (SQLite or Postgres), calling `mark`
with each value, already in the form the database driver stores it (UUIDs as 32 hex digits and UTC times as
naive text on SQLite, as SQLAlchemy stores them), for its placeholder. Both roads to the result table use it:

- the ORM (`shared.db.queries._where`) wraps it in a clause that SQLAlchemy renders when it compiles the
  statement, for the dialect it compiles for, binding each value as a parameter;
- the database driver alone (`controller.export.quick_csv`, `shared.db.quick.one_by_prefix`), with psycopg's or
  sqlite3's placeholders, so that a cold `farm results --format csv` never imports SQLAlchemy, SQLModel or
  Pydantic (half a second of its time).

Why SQL text and not a SQLAlchemy expression compiled for the driver path: compiling needs SQLAlchemy, which is
the very import the driver path avoids, and two spellings of one filter (an expression for the ORM, a text for
the driver) drift apart. The text is what SQLAlchemy rendered for the expressions it replaces (ILIKE on Postgres,
lower() LIKE lower() on SQLite, `IS false` / `IS 0`); tests/test_export.py holds both roads to the same bytes.
This module imports nothing beyond the standard library and shared.errors.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from shared.errors import FarmError

Mark = Callable[[Any], str]  # a stored value -> its placeholder in the SQL text
DIALECTS = ("sqlite", "postgresql")


@dataclass(frozen=True)
class ResultFilter:
    """Filters for `farm results`; `hours` is a half-open local-hour range [start, end), wrapping at 24."""

    variant: str | None = None
    model_id: str | None = None
    dataset_id: str | None = None
    host: str | None = None
    hardware: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    hours: tuple[int, int] | None = None
    job_id: uuid.UUID | None = None
    sweep_id: uuid.UUID | None = None
    runtime: str | None = None
    job_ids: tuple[uuid.UUID, ...] = ()
    # What reports and answers leave out unless asked (issue 20): windows measured while other work ran, and the
    # rows of `farm compare` pairs (one pass each, measured beside another variant).
    exclude_contended: bool = False
    exclude_pairs: bool = False

    @property
    def variants(self) -> list[str]:
        """The variants `variant` names (one, or several as "a,b"); empty when it names none."""
        return [v.strip() for v in (self.variant or "").split(",") if v.strip()]


def stored_time(value: datetime, dialect: str) -> Any:
    """A UTC column's value as the driver takes it: aware on Postgres (timestamptz), naive UTC text on SQLite
    ("2026-11-02 09:30:00.000000", as SQLAlchemy stores it there). ValueError for a naive datetime."""
    if value.tzinfo is None:
        raise ValueError("naive datetime given to a UTC column; use datetime.now(UTC)")
    utc = value.astimezone(UTC)
    if dialect == "postgresql":
        return utc
    return utc.replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")


def stored_uuid(value: uuid.UUID | str, dialect: str) -> Any:
    """A UUID column's value as the driver takes it: a UUID on Postgres, 32 hex digits on SQLite."""
    key = value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))
    return key if dialect == "postgresql" else key.hex


def _in(column: str, values: Sequence[Any], mark: Mark) -> str:
    if not values:
        return "1 = 0"  # an empty list matches nothing
    return f"{column} IN ({', '.join(mark(v) for v in values)})"


def _ilike(expr: str, pattern: str, dialect: str, mark: Mark) -> str:
    """Case-insensitive LIKE with backslash as the escape character."""
    if dialect == "postgresql":
        return f"{expr} ILIKE {mark(pattern)} ESCAPE '\\'"
    return f"lower({expr}) LIKE lower({mark(pattern)}) ESCAPE '\\'"


def where_sql(f: ResultFilter, dialect: str, mark: Mark, *, with_baselines: bool = False) -> list[str]:
    """The conditions on the `result` table (joined by AND) that `f` asks for, in `dialect`; `mark` gives each
    value's placeholder and is called in the order the placeholders appear. With `with_baselines`, a variant
    filter also lets the baselines through, so that every variant shown keeps something to compare with."""
    if dialect not in DIALECTS:
        raise ValueError(f"no SQL for dialect {dialect!r}")
    out: list[str] = []
    if f.variant:
        out.append(_in("result.variant", [*f.variants, *(["baseline"] if with_baselines else [])], mark))
    for column, value in (("model_id", f.model_id), ("dataset_id", f.dataset_id), ("host", f.host)):
        if value:
            out.append(f"result.{column} = {mark(value)}")
    if f.hardware:
        literal = f.hardware.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")  # text, not a pattern
        anywhere = f"%{literal}%"
        parts = [_ilike(f"result.{c}", anywhere, dialect, mark)
                 for c in ("cpu_model", "gpu_name", "device", "hardware_label")]
        parts.append(_ilike("result.hardware_id", f"{literal}%", dialect, mark))  # a prefix of the hash
        # any part of the fingerprint: "avx512_vnni"
        parts.append(_ilike("CAST(result.hardware AS VARCHAR)", anywhere, dialect, mark))
        out.append(f"({' OR '.join(parts)})")
    if f.runtime:
        out.append(f"result.runtime = {mark(f.runtime)}")
    if f.since:
        out.append(f"result.started_at >= {mark(stored_time(f.since, dialect))}")
    if f.until:
        out.append(f"result.started_at < {mark(stored_time(f.until, dialect))}")
    if f.hours:
        start, end = f.hours
        if start < end:
            out.append(f"result.local_hour >= {mark(start)} AND result.local_hour < {mark(end)}")
        else:  # wraps past midnight: 22-6
            out.append(f"(result.local_hour >= {mark(start)} OR result.local_hour < {mark(end)})")
    if f.job_id:
        out.append(f"result.job_id = {mark(stored_uuid(f.job_id, dialect))}")
    if f.job_ids:
        out.append(_in("result.job_id", [stored_uuid(j, dialect) for j in f.job_ids], mark))
    if f.sweep_id:
        out.append(f"result.job_id IN (SELECT job.id FROM job WHERE job.sweep_id = "
                   f"{mark(stored_uuid(f.sweep_id, dialect))})")
    if f.exclude_contended:
        out.append(f"result.contended IS {'false' if dialect == 'postgresql' else '0'}")
    if f.exclude_pairs:
        out.append("result.pair_index IS NULL")
    return out


def narrows(f: ResultFilter, *, with_baselines: bool = False) -> bool:
    """Whether `f` asks for any condition at all (where_sql would return some)."""
    return bool(where_sql(f, "sqlite", lambda _value: "?", with_baselines=with_baselines))


# Job ids and sweep ids by prefix (`--job`, `--sweep`, `farm cancel`...), on either road.
PREFIX_COLUMNS = ("id", "sweep_id")


def id_prefix_pattern(prefix: str, what: str) -> str:
    """The LIKE pattern for the ids that start with `prefix` (dashes optional, as git takes a commit prefix);
    FarmError when it is not hex digits."""
    hexed = prefix.strip().lower().replace("-", "")
    if not hexed or any(c not in "0123456789abcdef" for c in hexed) or len(hexed) > 32:
        raise FarmError(f"bad {what} id {prefix!r}: give a {what} id or a unique prefix of one")
    return f"{hexed}%"


def prefix_sql(column: str, mark: str) -> str:
    """At most two distinct values of the job table's UUID `column` (id or sweep_id) whose dashless text is LIKE
    the pattern at `mark`."""
    if column not in PREFIX_COLUMNS:
        raise ValueError(f"no prefix lookup on job.{column}")
    return (f"SELECT DISTINCT job.{column} FROM job WHERE replace(CAST(job.{column} AS VARCHAR), '-', '') "
            f"LIKE {mark} LIMIT 2")


def one_id(found: Sequence[Any], prefix: str, what: str) -> uuid.UUID:
    """The one id that `prefix_sql` found (a UUID, or 32 hex digits from SQLite); FarmError when it found none or
    several."""
    found = [v for v in found if v is not None]
    if not found:
        raise FarmError(f"no {what} {prefix}")
    if len(found) > 1:
        raise FarmError(f"{what} id prefix {prefix!r} is ambiguous; give more characters")
    value = found[0]
    return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))
