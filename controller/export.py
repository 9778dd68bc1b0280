"""`farm results --format csv`, streamed: rows go from the database cursor to stdout in chunks, never held
whole (a 1,000,000-row store starts answering at once and stays within a few MB)."""

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
    """Write the result rows matching `filters` (a crud.ResultFilter) as CSV with every column of the result table
    (oldest first, as `farm results` lists them); returns how many rows were written."""
    from sqlalchemy import select
    from sqlmodel import Session, col

    from controller.services import load_settings, open_engine
    from shared.db.crud import _where
    from shared.db.models import RESULT_COLUMNS, Result

    out = out or sys.stdout
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(RESULT_COLUMNS)
    stmt = _where(select(*(getattr(Result, c) for c in RESULT_COLUMNS)), filters)
    stmt = stmt.order_by(col(Result.started_at), col(Result.repeat_index)).execution_options(yield_per=CHUNK_ROWS)
    n = 0
    with Session(open_engine(load_settings())) as session:
        for part in session.execute(stmt).partitions():
            writer.writerows([[_cell(v) for v in row] for row in part])
            n += len(part)
    out.flush()
    return n
