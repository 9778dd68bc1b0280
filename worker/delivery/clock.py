"""Time that spans machines comes from one clock: the broker's (Redis `TIME`) or the store's (Postgres `now()`),
never a worker's wall clock. A worker's own clock still stamps its result rows (the local hour is what drifts with
the time of day), so its skew against the store's clock is measured and recorded beside them."""

from __future__ import annotations

import time
from typing import Any

SKEW_BOUND_S = 2.0  # a skew beyond this is shown by `farm status` and noted in the rows' warnings


def broker_now_s(client: Any) -> float:
    """Seconds since the epoch on the broker's clock (Redis TIME). Raises the broker's errors."""
    seconds, micros = client.time()
    return float(seconds) + float(micros) / 1e6


def store_now_s(engine: Any) -> float | None:
    """Seconds since the epoch on the store's clock, for a store with a clock of its own (Postgres); None for SQLite,
    whose clock is the machine's own. Raises the store's errors."""
    if engine.dialect.name != "postgresql":
        return None
    from sqlalchemy import text

    with engine.connect() as conn:
        return float(conn.execute(text("SELECT extract(epoch FROM clock_timestamp())")).scalar_one())


def measure_skew_s(reference_now_s: Any) -> float | None:
    """This machine's wall clock minus a reference clock, in seconds, corrected for half the round trip; None when
    the reference has none. `reference_now_s()` reads the reference (raises its errors)."""
    before = time.time()
    theirs = reference_now_s()
    after = time.time()
    if theirs is None:
        return None
    return round((before + after) / 2 - theirs, 3)


def worker_skew_s(engine: Any, client: Any) -> float | None:
    """This worker's clock against the store's (Postgres), else the broker's; None when neither can be read."""
    for reference in (lambda: store_now_s(engine), lambda: None if client is None else broker_now_s(client)):
        try:
            skew = measure_skew_s(reference)
        except Exception:  # an outage: no measurement now, never a guess
            continue
        if skew is not None:
            return skew
    return None
