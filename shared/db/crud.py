"""Store operations. Each takes the session as a keyword argument and never opens one itself."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import or_
from sqlmodel import Session, col, select

from shared.db.models import Job, Result, TrainingEpoch
from shared.db.types import utcnow
from shared.errors import FarmError


def create_job(
    *,
    session: Session,
    variant: str,
    spec: dict[str, Any],
    queue: str,
    stage: str = "benchmark",
    chain_id: uuid.UUID | None = None,
) -> Job:
    job = Job(variant=variant, spec=spec, queue=queue, state="queued", stage=stage, chain_id=chain_id)
    session.add(job)
    session.commit()
    session.refresh(job)
    return job


def get_job(*, session: Session, job_id: uuid.UUID | str) -> Job:
    try:
        key = job_id if isinstance(job_id, uuid.UUID) else uuid.UUID(str(job_id))
    except ValueError:
        raise FarmError(f"bad job id {job_id!r}") from None
    job = session.get(Job, key)
    if job is None:
        raise FarmError(f"no job {job_id}")
    return job


def delete_job(*, session: Session, job_id: uuid.UUID) -> None:
    job = session.get(Job, job_id)
    if job is not None:
        session.delete(job)
        session.commit()


def mark_running(*, session: Session, job_id: uuid.UUID | str, worker: str) -> Job:
    job = get_job(session=session, job_id=job_id)
    job.state, job.worker, job.started_at, job.error = "running", worker, utcnow(), None
    session.add(job)
    session.commit()
    return job


def mark_finished(*, session: Session, job_id: uuid.UUID | str, error: str | None = None) -> Job:
    job = get_job(session=session, job_id=job_id)
    job.state = "failed" if error else "done"
    job.error = error
    job.finished_at = utcnow()
    session.add(job)
    session.commit()
    return job


def add_results(*, session: Session, job_id: uuid.UUID | str, rows: Iterable[dict[str, Any]]) -> list[Result]:
    """Store result rows for a job, replacing any from an earlier delivery of the same job."""
    job = get_job(session=session, job_id=job_id)
    for old in session.exec(select(Result).where(Result.job_id == job.id)).all():
        session.delete(old)
    results = [Result(job_id=job.id, **row) for row in rows]
    session.add_all(results)
    session.commit()
    for r in results:
        session.refresh(r)
    return results


def set_progress(*, session: Session, job_id: uuid.UUID | str, progress: str) -> None:
    job = get_job(session=session, job_id=job_id)
    job.progress = progress
    session.add(job)
    session.commit()


def set_artifact(*, session: Session, job_id: uuid.UUID | str, artifact_key: str | None, trained: bool) -> None:
    job = get_job(session=session, job_id=job_id)
    job.artifact_key, job.trained = artifact_key, trained
    session.add(job)
    session.commit()


def fail_downstream(*, session: Session, chain_id: uuid.UUID, reason: str) -> int:
    """Mark a chain's still-queued stages failed (an upstream stage failed); returns how many."""
    jobs = session.exec(select(Job).where(Job.chain_id == chain_id, Job.state == "queued")).all()
    for job in jobs:
        job.state, job.error, job.finished_at = "failed", reason, utcnow()
        session.add(job)
    session.commit()
    return len(jobs)


def record_epoch(*, session: Session, job_id: uuid.UUID | str, artifact_key: str, kind: str, epoch: int,
                 train_loss: float, val_top1: float, duration_s: float) -> TrainingEpoch:
    row = TrainingEpoch(job_id=uuid.UUID(str(job_id)), artifact_key=artifact_key, kind=kind, epoch=epoch,
                        train_loss=train_loss, val_top1=val_top1, duration_s=duration_s)
    session.add(row)
    session.commit()
    session.refresh(row)
    return row


def list_epochs(*, session: Session, job_id: uuid.UUID | None = None, artifact_key: str | None = None
                ) -> list[TrainingEpoch]:
    stmt = select(TrainingEpoch).order_by(col(TrainingEpoch.id))
    if job_id:
        stmt = stmt.where(TrainingEpoch.job_id == job_id)
    if artifact_key:
        stmt = stmt.where(TrainingEpoch.artifact_key == artifact_key)
    return list(session.exec(stmt).all())


def list_jobs(*, session: Session, limit: int = 20, states: Sequence[str] | None = None) -> list[Job]:
    stmt = select(Job).order_by(col(Job.submitted_at).desc()).limit(limit)
    if states:
        stmt = stmt.where(col(Job.state).in_(states))
    return list(session.exec(stmt).all())


@dataclass(frozen=True)
class ResultFilter:
    """Filters for `farm results`; `hours` is a half-open local-hour range [start, end), wrapping at 24."""

    variant: str | None = None
    host: str | None = None
    hardware: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    hours: tuple[int, int] | None = None
    job_id: uuid.UUID | None = None


def query_results(
    *, session: Session, filters: ResultFilter = ResultFilter(), limit: int | None = None
) -> list[Result]:
    stmt = select(Result)
    f = filters
    if f.variant:
        stmt = stmt.where(Result.variant == f.variant)
    if f.host:
        stmt = stmt.where(Result.host == f.host)
    if f.hardware:
        pattern = f"%{f.hardware}%"
        stmt = stmt.where(
            or_(
                col(Result.cpu_model).ilike(pattern),
                col(Result.gpu_name).ilike(pattern),
                col(Result.device).ilike(pattern),
            )
        )
    if f.since:
        stmt = stmt.where(Result.started_at >= f.since)
    if f.until:
        stmt = stmt.where(Result.started_at < f.until)
    if f.hours:
        start, end = f.hours
        if start < end:
            stmt = stmt.where(Result.local_hour >= start, Result.local_hour < end)
        else:
            stmt = stmt.where(or_(Result.local_hour >= start, Result.local_hour < end))
    if f.job_id:
        stmt = stmt.where(Result.job_id == f.job_id)
    stmt = stmt.order_by(col(Result.started_at), col(Result.repeat_index))
    if limit:
        stmt = stmt.limit(limit)
    return list(session.exec(stmt).all())


