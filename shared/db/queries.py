"""Read-side queries of the store: jobs by id or prefix, the reaper's pages, chains, results and their aggregates.
Each takes the session as a keyword argument and never opens one itself, and none writes (the job table's writes
are shared/db/writes.py)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, case, func, or_, text
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.expression import ColumnElement
from sqlalchemy.types import NullType
from sqlmodel import Session, col, select

from shared import chains
from shared.db.filters import ResultFilter, id_prefix_pattern, narrows, one_id, prefix_sql, where_sql
from shared.db.models import Job, NoiseFloor, Result, TrainingEpoch
from shared.errors import FarmError

# ResultFilter lives in shared/db/filters.py (no SQLAlchemy); queries.ResultFilter is the same class.
EVERY_RESULT = ResultFilter()  # no filter


def get_job(*, session: Session, job_id: uuid.UUID | str) -> Job:
    try:
        key = job_id if isinstance(job_id, uuid.UUID) else uuid.UUID(str(job_id))
    except ValueError:
        raise FarmError(f"bad job id {job_id!r}") from None
    job = session.get(Job, key)
    if job is None:
        raise FarmError(f"no job {job_id}")
    return job


def _one_by_prefix(session: Session, column: str, prefix: str, what: str) -> uuid.UUID:
    """The one distinct value of the job table's UUID `column` (id or sweep_id) that starts with `prefix` (dashes
    optional, as git takes a commit prefix); FarmError when the prefix is malformed, matches nothing, or matches
    several. The SQL is shared/db/filters.py's, which the driver-only path (shared/db/quick.py) runs too."""
    pattern = id_prefix_pattern(prefix, what)
    found = session.execute(text(prefix_sql(column, ":pattern")), {"pattern": pattern}).scalars().all()
    return one_id(found, prefix, what)


def find_sweep(*, session: Session, prefix: str) -> uuid.UUID:
    """The one sweep id that starts with `prefix`."""
    return _one_by_prefix(session, "sweep_id", prefix, "sweep")


def has_baseline(*, session: Session, host: str, model_id: str, dataset_id: str, batch_size: int = 8) -> bool:
    """Whether `host` already has baseline results for this model and dataset at this inference batch size (a
    sweep then adds none). Rows from before migration 0011 have no batch size: they ran the seed's 8."""
    from sqlalchemy import or_

    same_batch = Result.batch_size == batch_size
    if batch_size == 8:
        same_batch = or_(same_batch, Result.batch_size.is_(None))  # type: ignore[union-attr]
    stmt = select(Result.id).where(Result.variant == "baseline", Result.host == host, Result.model_id == model_id,
                                   Result.dataset_id == dataset_id, same_batch).limit(1)
    return session.exec(stmt).first() is not None


def find_job(*, session: Session, prefix: str) -> Job:
    """The one job whose id starts with `prefix` (dashes optional, as git takes a commit prefix)."""
    return get_job(session=session, job_id=_one_by_prefix(session, "id", prefix, "job"))


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
    later = [(j.chain_id, j.id) for j in jobs if chains.waits_for_compress(j)]
    if not later:
        return set()
    chain_ids = {chain for chain, _ in later}  # an `--on all` chain has a benchmark stage per host
    done = set(session.exec(select(Job.chain_id).where(col(Job.chain_id).in_(chain_ids), Job.stage == "compress",
                                                       Job.state == "done")).all())
    return {job_id for chain, job_id in later if chain not in done}


def chain_of(*, session: Session, job: Job) -> list[Job]:
    """Every job of `job`'s chain, oldest first ([job] for a job outside any chain)."""
    if job.chain_id is None:
        return [job]
    return list(session.exec(select(Job).where(Job.chain_id == job.chain_id).order_by(col(Job.submitted_at))))


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


def _where(stmt: Any, f: ResultFilter, *, with_baselines: bool = False) -> Any:
    """`stmt` narrowed by the filters (shared/db/filters.py `where_sql`, the one source of their SQL). With
    `with_baselines`, a variant filter also lets the baselines through, so that every variant shown keeps
    something to compare with."""
    if not narrows(f, with_baselines=with_baselines):
        return stmt
    return stmt.where(_ResultWhere(f, with_baselines))


class _ResultWhere(ColumnElement[bool]):
    """`where_sql`'s conditions, rendered for the dialect the statement is compiled for (see _render_where)."""

    inherit_cache = False  # its text depends on the filter's values, which a cache key would not see
    type = NullType()  # not Boolean: SQLite would compare the whole clause with 1, hiding it from its indexes

    def __init__(self, f: ResultFilter, with_baselines: bool) -> None:
        self.filters, self.with_baselines = f, with_baselines


@compiles(_ResultWhere)
def _render_where(element: _ResultWhere, compiler: Any, **kw: Any) -> str:
    """Each value becomes a bound parameter passed to the driver untouched (NullType: it is already stored form)."""

    def mark(value: Any) -> str:
        return str(compiler.process(bindparam(None, value, type_=NullType()), **kw))

    conditions = where_sql(element.filters, compiler.dialect.name, mark, with_baselines=element.with_baselines)
    return "(" + " AND ".join(conditions) + ")"


def count_left_out(*, session: Session, filters: ResultFilter, with_baselines: bool = False) -> dict[str, int]:
    """How many rows matching `filters` its exclusions leave out: {"contended": n, "pairs": n}."""
    wide = replace(filters, exclude_contended=False, exclude_pairs=False)
    out = {"contended": 0, "pairs": 0}
    if filters.exclude_contended:
        stmt = _where(select(func.count()).select_from(Result), wide, with_baselines=with_baselines)
        out["contended"] = int(session.execute(stmt.where(col(Result.contended).is_(True))).scalar_one())
    if filters.exclude_pairs:
        narrowed = replace(wide, exclude_contended=filters.exclude_contended)
        stmt = _where(select(func.count()).select_from(Result), narrowed, with_baselines=with_baselines)
        out["pairs"] = int(session.execute(stmt.where(col(Result.pair_index).is_not(None))).scalar_one())
    return out


def latest_noise_floor(*, session: Session, hardware_id: str, device: str) -> NoiseFloor | None:
    """The newest `farm calibrate` measurement of this machine and device, or None."""
    stmt = (select(NoiseFloor).where(NoiseFloor.hardware_id == hardware_id, NoiseFloor.device == device)
            .order_by(col(NoiseFloor.measured_at).desc()).limit(1))
    return session.exec(stmt).first()


def query_results(
    *, session: Session, filters: ResultFilter = EVERY_RESULT, limit: int | None = None
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
# The deployer's measures (migration 0011): their mean and maximum per group (no std: bytes squared overflow
# BIGINT); NULL on rows that did not measure them.
DEPLOYER_MEASURES = ("latency_p50_s", "latency_p90_s", "latency_p99_s", "latency_max_s", "throughput_sps",
                     "peak_rss_bytes", "rss_rise_bytes", "gpu_max_allocated_bytes", "gpu_max_reserved_bytes",
                     "weight_bytes", "artifact_bytes", "load_s", "load_energy_j", "cold_latency_s", "achieved_qps",
                     "late_queries", "dropped_queries", "energy_per_query_j")



def aggregate_results(*, session: Session, filters: ResultFilter = EVERY_RESULT, by: Sequence[str],
                      with_baselines: bool = False) -> list[dict[str, Any]]:
    """One row per group of `by` (Result column names), computed by the database (GROUP BY): `n`, and for each
    of MEASURES its `_mean`, `_std` (sample std, None below 2 values) and `_n`; params and MACs (min and max);
    energy sources (min and max); the hardware label; how many rows carry a noise flag; when the group ran."""
    keys = [getattr(Result, name) for name in by]
    columns: list[Any] = [*keys, func.count().label("n")]
    for m in MEASURES:
        c = getattr(Result, m)
        columns += [func.avg(c).label(f"{m}_mean"), func.sum(c * c).label(f"{m}_sumsq"), func.count(c).label(f"{m}_n")]
    for m in DEPLOYER_MEASURES:
        c = getattr(Result, m)
        columns += [func.avg(c).label(f"{m}_mean"), func.max(c).label(f"{m}_max")]
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
