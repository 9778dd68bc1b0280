"""Fenced writes to the job table: the only code that changes a job's state. Each takes the session as a keyword
argument and never opens one itself. Every write that a delivery makes is conditional on the row as it is now (its
state, its lease token), so a delivery that lost its job cannot overwrite the one that took it over; the read side is
shared/db/queries.py."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any, Literal

from sqlalchemy import delete, func, update
from sqlmodel import Session, col, select

from shared import chains
from shared.db.models import FINISHED_STATES, Job, Result, TrainingEpoch
from shared.db.queries import chain_of
from shared.db.quick import new_job_row
from shared.db.types import utcnow
from shared.outcome import Outcome


def store_now(session: Session) -> Any:
    """Now on the store's clock where it has one (Postgres `now()`, in SQL), else this machine's (SQLite's file is
    local): job timestamps never mix a submitter's clock with a worker's."""
    return func.now() if session.get_bind().dialect.name == "postgresql" else utcnow()


def create_job(
    *,
    session: Session,
    variant: str,
    spec: dict[str, Any],
    queue: str,
    stage: str = "benchmark",
    chain_id: uuid.UUID | None = None,
    sweep_id: uuid.UUID | None = None,
) -> Job:
    (job,) = create_jobs(session=session, jobs=[{"variant": variant, "spec": spec, "queue": queue, "stage": stage,
                                                  "chain_id": chain_id, "sweep_id": sweep_id}])
    session.refresh(job)
    return job


def create_jobs(*, session: Session, jobs: Sequence[dict[str, Any]]) -> list[Job]:
    """Store new queued jobs (keyword dicts of `create_job`) in one transaction: all of them, or none when the store
    fails (a chain's benchmark stages stored without their compress stage would wait for it for ever)."""
    rows = [Job(**new_job_row(**job), submitted_at=store_now(session)) for job in jobs]
    session.add_all(rows)
    session.commit()
    return rows


def delete_job(*, session: Session, job_id: uuid.UUID) -> None:
    job = session.get(Job, job_id)
    if job is not None:
        session.delete(job)
        session.commit()


def delete_jobs(*, session: Session, job_ids: Sequence[uuid.UUID]) -> None:
    """Delete new jobs (no results yet) in one transaction: all of them or, when the store fails, none."""
    session.execute(delete(Job).where(col(Job.id).in_(list(job_ids))))
    session.commit()


def claim_job(*, session: Session, job_id: uuid.UUID, token: str, worker: str, deliveries: int) -> bool:
    """Mark a queued (or orphaned running) job running under `token`; False when it has finished meanwhile."""
    stmt = (
        update(Job)
        .where(col(Job.id) == job_id, col(Job.state).in_(("queued", "running")))
        .values(state="running", worker=worker, started_at=store_now(session), lease_token=token,
                deliveries=deliveries, error=None, progress=None)
    )
    claimed = session.execute(stmt).rowcount == 1  # type: ignore[attr-defined]
    session.commit()
    return claimed


def requeue_job(*, session: Session, job_id: uuid.UUID, expected_token: str | None, reason: str) -> bool:
    """Put a running job whose delivery died back to `queued`, if its token is still `expected_token`."""
    stmt = (
        update(Job)
        .where(col(Job.id) == job_id, col(Job.state) == "running", col(Job.lease_token) == expected_token)
        .values(state="queued", lease_token=None, progress=reason)
    )
    done = session.execute(stmt).rowcount == 1  # type: ignore[attr-defined]
    session.commit()
    return done


def reset_for_retry(*, session: Session, jobs: Sequence[Job]) -> None:
    """Failed or cancelled jobs back to `queued` in one transaction (a chain's stages all, or none), each one's
    error kept in `progress` for the record."""
    for job in jobs:
        job.progress = f"retried after: {job.error}" if job.error else "retried"
        job.state, job.error, job.finished_at, job.lease_token, job.deliveries = "queued", None, None, None, 0
        session.add(job)
    session.commit()


def cancel_job(*, session: Session, job: Job, reason: str = "cancelled") -> list[tuple[Job, str]]:
    """Cancel `job` and every unfinished stage of its chain, in one transaction; returns (job, state before).
    One host's benchmark stage of an `--on all` chain is cancelled alone while another host's is unfinished.

    A cancelled job loses its lease token, so an outcome its worker still writes is fenced out.
    """
    jobs = chains.cancelled_with(job, chain_of(session=session, job=job))
    changed = []
    now = store_now(session)
    for j in jobs:
        # The state as it is now, the row locked (Postgres) until the commit: a job claimed since it was read is
        # said to be running, so that its worker is told to stop; a claim that comes later finds it cancelled.
        session.refresh(j, with_for_update=True)
        before = j.state
        # Conditional on the row as it is now, not as it was read: an outcome that landed since stays.
        stmt = (update(Job).where(col(Job.id) == j.id, col(Job.state).not_in(FINISHED_STATES))
                .values(state="cancelled", error=reason, finished_at=now, lease_token=None))
        if session.execute(stmt).rowcount == 1:  # type: ignore[attr-defined]
            changed.append((j, before))
    session.commit()
    for j, _ in changed:
        session.refresh(j)
    return changed


def set_progress(*, session: Session, job_id: uuid.UUID | str, progress: str, token: str | None = None) -> None:
    """Show a running job's progress (only while `token`, if given, still owns it)."""
    stmt = update(Job).where(col(Job.id) == uuid.UUID(str(job_id))).values(progress=progress)
    if token is not None:
        stmt = stmt.where(col(Job.lease_token) == token)
    session.execute(stmt)
    session.commit()


def apply_outcome(*, session: Session, outcome: Outcome) -> Literal["written", "taken", "gone"]:
    """Store a job's outcome in one transaction, replacing rows from any earlier delivery.

    Fenced: with a token, only while the job still carries it (another delivery has not taken it over);
    without one (tests, tools), only while the job is queued: a token-less outcome never ends a running job.
    Returns what happened.
    """
    job_id = uuid.UUID(outcome.job_id)
    job = session.exec(select(Job).where(col(Job.id) == job_id).with_for_update()).one_or_none()
    if job is None:
        return "gone"
    if (outcome.token is not None and job.lease_token != outcome.token) or (
        outcome.token is None and job.state != "queued"
    ):
        session.rollback()
        return "taken"
    session.execute(delete(Result).where(col(Result.job_id) == job_id))
    session.execute(delete(TrainingEpoch).where(col(TrainingEpoch.job_id) == job_id))
    session.add_all(Result(job_id=job_id, **row) for row in outcome.rows)
    session.add_all(TrainingEpoch(job_id=job_id, **e) for e in outcome.epochs)
    # finished_at on the store's clock, as started_at: a worker's skewed clock never puts an end before a start
    job.state, job.error, job.finished_at = outcome.state, outcome.error, store_now(session)
    if outcome.progress is not None:
        job.progress = outcome.progress
    if outcome.artifact_key is not None or outcome.trained is not None:
        job.artifact_key, job.trained = outcome.artifact_key, outcome.trained
    session.add(job)
    if outcome.state == "failed":
        for later in chains.failed_with(job, chain_of(session=session, job=job)):
            later.state, later.finished_at = "failed", store_now(session)
            later.error = f"{job.stage} stage {job.id} failed: {outcome.error}"
            session.add(later)
    session.commit()
    return "written"
