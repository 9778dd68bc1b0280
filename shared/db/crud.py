"""Store operations. Each takes the session as a keyword argument and never opens one itself."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import String, case, cast, delete, func, or_, update
from sqlmodel import Session, col, select

from shared.db.models import FINISHED_STATES, Job, Result, TrainingEpoch
from shared.db.quick import new_job_row
from shared.db.types import utcnow
from shared.errors import FarmError
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
    job = Job(**new_job_row(variant=variant, spec=spec, queue=queue, stage=stage, chain_id=chain_id,
                            sweep_id=sweep_id), submitted_at=store_now(session))
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


def _one_by_prefix(session: Session, column: Any, prefix: str, what: str) -> Any:
    """The one distinct value of a UUID column that starts with `prefix` (dashes optional, as git takes a commit
    prefix); FarmError when the prefix is malformed, matches nothing, or matches several."""
    hexed = prefix.strip().lower().replace("-", "")
    if not hexed or any(c not in "0123456789abcdef" for c in hexed) or len(hexed) > 32:
        raise FarmError(f"bad {what} id {prefix!r}: give a {what} id or a unique prefix of one")
    found = session.exec(select(column).where(func.replace(cast(column, String), "-", "").like(f"{hexed}%"))
                         .distinct().limit(2)).all()
    if not found:
        raise FarmError(f"no {what} {prefix}")
    if len(found) > 1:
        raise FarmError(f"{what} id prefix {prefix!r} is ambiguous; give more characters")
    return found[0]


def find_sweep(*, session: Session, prefix: str) -> uuid.UUID:
    """The one sweep id that starts with `prefix`."""
    return _one_by_prefix(session, Job.sweep_id, prefix, "sweep")  # type: ignore[no-any-return]


def has_baseline(*, session: Session, host: str, model_id: str, dataset_id: str) -> bool:
    """Whether `host` already has baseline results for this model and dataset (a sweep then adds none)."""
    stmt = select(Result.id).where(Result.variant == "baseline", Result.host == host, Result.model_id == model_id,
                                   Result.dataset_id == dataset_id).limit(1)
    return session.exec(stmt).first() is not None


def find_job(*, session: Session, prefix: str) -> Job:
    """The one job whose id starts with `prefix` (dashes optional, as git takes a commit prefix)."""
    return get_job(session=session, job_id=_one_by_prefix(session, Job.id, prefix, "job"))


def delete_job(*, session: Session, job_id: uuid.UUID) -> None:
    job = session.get(Job, job_id)
    if job is not None:
        session.delete(job)
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


def reset_for_retry(*, session: Session, job: Job) -> None:
    """A failed or cancelled job back to `queued`, its error kept in `progress` for the record."""
    job.progress = f"retried after: {job.error}" if job.error else "retried"
    job.state, job.error, job.finished_at, job.lease_token, job.deliveries = "queued", None, None, None, 0
    session.add(job)
    session.commit()


def cancel_job(*, session: Session, job: Job, reason: str = "cancelled") -> list[tuple[Job, str]]:
    """Cancel `job` and every unfinished stage of its chain, in one transaction; returns (job, state before).
    One host's benchmark stage of an `--on all` chain is cancelled alone while another host's is unfinished.

    A cancelled job loses its lease token, so an outcome its worker still writes is fenced out.
    """
    jobs = [job]
    if job.chain_id is not None:
        chain = list(session.exec(select(Job).where(Job.chain_id == job.chain_id).order_by(col(Job.submitted_at))))
        others = [j for j in chain if j.stage == "benchmark" and j.id != job.id and j.state not in FINISHED_STATES]
        jobs = [job] if job.stage == "benchmark" and others else chain
    changed = []
    now = store_now(session)
    for j in jobs:
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
    if outcome.state == "failed" and job.chain_id is not None:
        for later in session.exec(select(Job).where(Job.chain_id == job.chain_id, Job.state == "queued")).all():
            later.state, later.finished_at = "failed", store_now(session)
            later.error = f"{job.stage} stage {job.id} failed: {outcome.error}"
            session.add(later)
    session.commit()
    return "written"


def running_jobs(*, session: Session) -> list[Job]:
    """Every running job (the reaper's first read, on the state index: at most one per live worker, never capped)."""
    return list(session.exec(select(Job).where(Job.state == "running")).all())


def queued_page(*, session: Session, after: tuple[datetime, uuid.UUID] | None, limit: int
                ) -> tuple[list[Job], tuple[datetime, uuid.UUID] | None]:
    """One page of queued jobs in (submitted_at, id) order after `after`, by the (state, submitted_at, id) index,
    and where the next page starts (None: the walk starts over)."""
    stmt = select(Job).where(Job.state == "queued")
    if after is not None:
        stmt = stmt.where(or_(col(Job.submitted_at) > after[0],
                              (col(Job.submitted_at) == after[0]) & (col(Job.id) > after[1])))
    page = list(session.exec(stmt.order_by(col(Job.submitted_at), col(Job.id)).limit(limit)).all())
    return page, ((page[-1].submitted_at, page[-1].id) if len(page) == limit else None)


def chains_waiting(*, session: Session, jobs: Sequence[Job]) -> set[uuid.UUID]:
    """The ids of those `jobs` that are a chain's benchmark stage whose compress stage is not done (they are sent
    when it is), in one query."""
    later = [(j.chain_id, j.id) for j in jobs if j.chain_id is not None and j.stage == "benchmark"]
    if not later:
        return set()
    chains = {chain for chain, _ in later}  # an `--on all` chain has a benchmark stage per host
    done = set(session.exec(select(Job.chain_id).where(col(Job.chain_id).in_(chains), Job.stage == "compress",
                                                       Job.state == "done")).all())
    return {job_id for chain, job_id in later if chain not in done}


def chain_stage(*, session: Session, chain_id: uuid.UUID, stage: str) -> Job | None:
    return session.exec(select(Job).where(Job.chain_id == chain_id, Job.stage == stage)).first()


def chain_stages(*, session: Session, chain_id: uuid.UUID, stage: str) -> list[Job]:
    """Every job of a chain at `stage` (`--on all` chains have one benchmark stage per host), oldest first."""
    stmt = select(Job).where(Job.chain_id == chain_id, Job.stage == stage).order_by(col(Job.submitted_at))
    return list(session.exec(stmt).all())


def list_epochs(*, session: Session, job_id: uuid.UUID | None = None, artifact_key: str | None = None
                ) -> list[TrainingEpoch]:
    stmt = select(TrainingEpoch).order_by(col(TrainingEpoch.id))
    if job_id:
        stmt = stmt.where(TrainingEpoch.job_id == job_id)
    if artifact_key:
        stmt = stmt.where(TrainingEpoch.artifact_key == artifact_key)
    return list(session.exec(stmt).all())


def list_jobs(*, session: Session, limit: int = 20, states: Sequence[str] | None = None,
              sweep_id: uuid.UUID | None = None) -> list[Job]:
    stmt = select(Job).order_by(col(Job.submitted_at).desc()).limit(limit)
    if states:
        stmt = stmt.where(col(Job.state).in_(states))
    if sweep_id:
        stmt = stmt.where(Job.sweep_id == sweep_id)
    return list(session.exec(stmt).all())


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

    @property
    def variants(self) -> list[str]:
        """The variants `variant` names (one, or several as "a,b"); empty when it names none."""
        return [v.strip() for v in (self.variant or "").split(",") if v.strip()]


def _where(stmt: Any, f: ResultFilter, *, with_baselines: bool = False) -> Any:
    """`stmt` narrowed by the filters. With `with_baselines`, a variant filter also lets the baselines through, so
    that every variant shown keeps something to compare with."""
    if f.variant:
        variants = f.variants
        if with_baselines:
            variants.append("baseline")
        stmt = stmt.where(col(Result.variant).in_(variants))
    if f.model_id:
        stmt = stmt.where(Result.model_id == f.model_id)
    if f.dataset_id:
        stmt = stmt.where(Result.dataset_id == f.dataset_id)
    if f.host:
        stmt = stmt.where(Result.host == f.host)
    if f.hardware:
        pattern = f"%{f.hardware}%"
        stmt = stmt.where(
            or_(
                col(Result.cpu_model).ilike(pattern),
                col(Result.gpu_name).ilike(pattern),
                col(Result.device).ilike(pattern),
                col(Result.hardware_label).ilike(pattern),
                col(Result.hardware_id).ilike(f"{f.hardware}%"),
                cast(Result.hardware, String).ilike(pattern),  # any part of the fingerprint: "avx512_vnni"
            )
        )
    if f.runtime:
        stmt = stmt.where(Result.runtime == f.runtime)
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
    if f.job_ids:
        stmt = stmt.where(col(Result.job_id).in_(f.job_ids))
    if f.sweep_id:
        stmt = stmt.where(col(Result.job_id).in_(select(Job.id).where(Job.sweep_id == f.sweep_id)))
    return stmt


def query_results(
    *, session: Session, filters: ResultFilter = ResultFilter(), limit: int | None = None
) -> list[Result]:
    """Result rows, oldest first. A variant filter may list several (a,b)."""
    stmt = _where(select(Result), filters)
    stmt = stmt.order_by(col(Result.started_at), col(Result.repeat_index))
    if limit:
        stmt = stmt.limit(limit)
    return list(session.exec(stmt).all())




# The measures that aggregates summarise: each gets mean, sum of squares and count in SQL (std is finished in
# Python from those three, because SQLite has no STDDEV).
MEASURES = ("top1", "top5", "time_per_sample_s", "total_energy_per_sample_j", "active_energy_per_sample_j",
            "cpu_temp_start_c")


def aggregate_results(*, session: Session, filters: ResultFilter = ResultFilter(), by: Sequence[str],
                      with_baselines: bool = False) -> list[dict[str, Any]]:
    """One row per group of `by` (Result column names), computed by the database (GROUP BY): `n`, and for each
    of MEASURES its `_mean`, `_std` (sample std, None below 2 values) and `_n`; params and MACs (min and max);
    energy sources (min and max); the hardware label; how many rows carry a noise flag; when the group ran."""
    keys = [getattr(Result, name) for name in by]
    columns: list[Any] = [*keys, func.count().label("n")]
    for m in MEASURES:
        c = getattr(Result, m)
        columns += [func.avg(c).label(f"{m}_mean"), func.sum(c * c).label(f"{m}_sumsq"), func.count(c).label(f"{m}_n")]
    columns += [func.min(Result.params).label("params_min"), func.max(Result.params).label("params_max"),
                func.min(Result.macs).label("macs_min"), func.max(Result.macs).label("macs_max"),
                func.min(Result.energy_source).label("source_min"), func.max(Result.energy_source).label("source_max"),
                func.max(Result.hardware_label).label("hardware_label"),
                func.sum(case((col(Result.noise).is_not(None), 1), else_=0)).label("noisy"),
                func.max(Result.noise).label("noise_example"),
                func.min(Result.started_at).label("first_at"), func.max(Result.started_at).label("last_at")]
    stmt = _where(select(*columns), filters, with_baselines=with_baselines).group_by(*keys).order_by(*keys)
    out = []
    for row in session.execute(stmt).mappings():
        r = dict(row)
        for m in MEASURES:
            n, mean, sumsq = r.pop(f"{m}_n"), r[f"{m}_mean"], r.pop(f"{m}_sumsq")
            r[f"{m}_n"] = n
            spread = (sumsq - n * mean * mean) / (n - 1) if n > 1 and mean is not None else None
            r[f"{m}_std"] = None if spread is None else max(0.0, spread) ** 0.5
        lo, hi = r.pop("source_min"), r.pop("source_max")
        r["energy_source"] = lo if lo == hi else f"{lo},{hi}"
        out.append(r)
    return out
