"""Where a job's outcome goes: the store, in one fenced transaction, or the local spool while the store is away;
and the flush that writes spooled outcomes once it returns.

The flush never blocks on one outcome: an outcome the store refuses for a reason other than being away (a value a
column cannot hold, a row the schema rejects) is moved aside to `<spool>/dead/`, dead-lettered where `farm dead`
lists it, and its job failed with the reason; the other outcomes flush.
"""

from __future__ import annotations

import logging
from enum import StrEnum
from typing import Any

from sqlalchemy.exc import DBAPIError, DisconnectionError, OperationalError, SQLAlchemyError, TimeoutError
from sqlmodel import Session

from shared.db import writes
from shared.db.engine import get_engine
from shared.dispatch import dead_letter
from shared.errors import FarmError
from shared.outcome import Outcome
from shared.redact import redact
from shared.settings import Settings
from worker.delivery.spool import Spool

log = logging.getLogger(__name__)
STORE_ERRORS = (SQLAlchemyError, FarmError, OSError)


class Stored(StrEnum):
    """Where an outcome ended up."""

    WRITTEN = "written"
    TAKEN = "taken"  # another delivery owns the job now: not written (the store's fence)
    GONE = "gone"  # the job was deleted
    SPOOLED = "spooled"  # the store was away: kept on local disk
    REFUSED = "refused"  # the store refused it (not for being away): moved aside, job failed


def store_is_away(exc: BaseException) -> bool:
    """Whether an error means the store could not be reached (try again later), rather than that it refused this
    outcome (it never will take it)."""
    if isinstance(exc, FarmError | OSError | OperationalError | DisconnectionError | TimeoutError):
        return True
    return isinstance(exc, DBAPIError) and bool(exc.connection_invalidated)


def write(settings: Settings, outcome: Outcome) -> Stored:
    """Write `outcome` in one fenced transaction; raises the store's errors."""
    with Session(get_engine(settings.database_url)) as session:
        return Stored(writes.apply_outcome(session=session, outcome=outcome))


def store_outcome(settings: Settings, outcome: Outcome, client: Any = None) -> Stored:
    """Write `outcome` to the store, or to the spool when the store is away; an outcome the store refuses is
    failed in its place (see `refuse`). Raises OSError when neither the store nor the disk can hold it: Celery then
    rejects the message without requeueing it, and the reaper requeues the job once its lease lapses."""
    try:
        return write(settings, outcome)
    except STORE_ERRORS as exc:
        if not store_is_away(exc):
            return refuse(settings, outcome, exc, client)
        try:
            path = Spool(settings.spool_dir).put(outcome)
        except OSError as disk:
            log.error("job %s: the store is away (%s) and the spool %s cannot hold the outcome (%s); the job is "
                      "requeued once its lease lapses", outcome.job_id, redact(exc), settings.spool_dir, disk)
            raise
        log.warning("job %s: store unreachable (%s); outcome kept in %s until it returns", outcome.job_id,
                    redact(exc), path)
        return Stored.SPOOLED


def refuse(settings: Settings, outcome: Outcome, exc: BaseException, client: Any) -> Stored:
    """The store will never take `outcome`: keep it aside, dead-letter it, and fail its job with the reason (under
    the same token, so the fence still decides)."""
    reason = f"the store refused the job's outcome ({type(exc).__name__}: {_first_line(exc)})"
    path = Spool(settings.spool_dir).put_dead(outcome)
    log.error("job %s: %s; outcome kept in %s", outcome.job_id, redact(reason), path)
    dead_letter(client, reason=reason, job_id=outcome.job_id, payload={"spooled_outcome": str(path)})
    failed = Outcome(outcome.job_id, "failed", outcome.token, error=redact(reason), lease_value=outcome.lease_value)
    try:
        write(settings, failed)
    except STORE_ERRORS as again:
        if store_is_away(again):
            Spool(settings.spool_dir).put(failed)
            return Stored.SPOOLED
        log.error("job %s: the store refused even its failure (%s)", outcome.job_id, redact(again))
    return Stored.REFUSED


def flush(settings: Settings, client: Any, on_stored: Any) -> int:
    """Write spooled outcomes to the store, oldest first; returns how many remain. Stops at the first outcome that
    finds the store away (the rest wait for the next beat); one the store refuses is moved aside and the flush
    goes on. `on_stored(outcome, stored)` runs after each one leaves the spool."""
    spool = Spool(settings.spool_dir)
    with spool.flushing() as mine:
        if not mine:  # another worker of this machine flushes this spool now
            return spool.count()
        return _flush(settings, client, on_stored, spool)


def _flush(settings: Settings, client: Any, on_stored: Any, spool: Spool) -> int:
    for path, outcome in spool.pending():
        try:
            where = write(settings, outcome)
        except STORE_ERRORS as exc:
            if store_is_away(exc):
                break  # still away; try again on the next beat
            where = refuse(settings, outcome, exc, client)
            if where is Stored.SPOOLED:  # its failure waits now, in its place
                continue
        if where is Stored.WRITTEN:
            log.info("job %s: spooled outcome written to the store", outcome.job_id)
        elif where is not Stored.REFUSED:
            log.warning("job %s: spooled outcome discarded (%s: another delivery owns the job)", outcome.job_id,
                        where.value)
        spool.remove(path)
        on_stored(outcome, where)
    return spool.count()


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip()
    return (text.splitlines() or [type(exc).__name__])[0][:300]
