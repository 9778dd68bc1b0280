"""One delivery's path: count it, check it against the store, lease the job, run it, store the outcome, ack.

Every way a job can end goes through here, for Celery deliveries and for `farm run` alike:

- the stored spec rules: a payload that disagrees with it is refused (job failed, message dead-lettered);
- a delivery past FARM_MAX_DELIVERIES (its worker died each time) fails the job and dead-letters it;
- a finished job's duplicate delivery, or one whose job another live delivery holds, does nothing;
- the outcome (rows, or the failure) is written in one fenced transaction, or spooled to local disk when
  the store is away; only then does the task return and Celery ack the message;
- a store that is away when a job is picked up is waited for (FARM_DB_WAIT_S), then the message is requeued.
"""

from __future__ import annotations

import json
import logging
import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any

from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session

from shared.db import crud
from shared.db.engine import get_engine
from shared.db.models import FINISHED_STATES, Job
from shared.db.types import utcnow
from shared.devices import Device
from shared.dispatch import (
    cancel_key,
    dead_letter,
    deliveries_key,
    dispatch,
    dispatched_key,
    job_log,
    redis_client,
    stop_key,
)
from shared.errors import FarmError
from shared.outcome import Outcome
from shared.redact import redact
from shared.settings import Settings
from shared.specs import JobSpec
from worker.lease import Lease, release_value, renew_value
from worker.spool import Spool

if TYPE_CHECKING:
    from worker.locks import LockFactory
    from worker.training import EpochMetrics

log = logging.getLogger(__name__)
STORE_ERRORS = (SQLAlchemyError, FarmError, OSError)


class RequeueLater(Exception):
    """The store stayed unreachable for FARM_DB_WAIT_S after pickup: put the message back on its queue."""


class LeaseLost(Exception):
    """Another delivery has taken this job over (this one stalled past its lease): stop, write nothing."""


class JobCancelled(Exception):
    """`farm cancel` stopped this job (the store already says cancelled): stop, write nothing, let go of it."""


class JobInterrupted(Exception):
    """This worker is stopping now (a second SIGTERM): stop, write nothing, put the job back on its queue."""


@dataclass(frozen=True)
class WorkerContext:
    """What a delivery needs from its worker: settings, device, node name, broker client, app and locks."""

    settings: Settings
    device: Device
    worker: str
    client: Any | None = None  # Redis on the broker; None for `farm run` (no leases)
    threads: int | None = None  # torch intra-op threads (None: torch's default)
    app: Any | None = None  # the Celery app, to send a chain's next stage
    lock: LockFactory | None = None
    echo: Callable[[str], None] | None = None  # `farm run`: each progress line is printed here too


@cache
def worker_context(worker: str, device: Device, threads: int | None = None) -> WorkerContext:
    """The context of this worker process (one per node and device; built once)."""
    from worker.app import make_app
    from worker.locks import broker_lock

    settings = Settings.from_env()
    return WorkerContext(settings, device, worker, redis_client(settings.broker_url), threads=threads,
                         app=make_app(settings), lock=broker_lock(settings.broker_url, settings.lock_ttl_s))


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=repr)


def _disagreement(payload: Any, stored: dict[str, Any]) -> str:
    if not isinstance(payload, dict):
        return f"payload is a {type(payload).__name__}, not a job spec"
    keys = sorted(set(payload) ^ set(stored))
    differ = sorted(k for k in set(payload) & set(stored) if _canonical(payload[k]) != _canonical(stored[k]))
    parts = ([f"unexpected or missing keys {keys}"] if keys else []) + ([f"different {differ}"] if differ else [])
    return "; ".join(parts) or "different values"


def _redis_call(ctx: WorkerContext, what: str, fn: Any, *args: Any, default: Any = None) -> Any:
    """A best-effort broker call: a blip is logged, never fatal to the job."""
    if ctx.client is None:
        return default
    try:
        return fn(*args)
    except Exception as exc:
        log.warning("broker unreachable while %s (%s)", what, redact(exc))
        return default


def _load_job(ctx: WorkerContext, job_id: uuid.UUID) -> tuple[Any, Job | None]:
    """(engine, job) once the store answers; RequeueLater after FARM_DB_WAIT_S without it."""
    deadline, delay, said = time.monotonic() + ctx.settings.db_wait_s, 0.5, False
    while True:
        try:
            engine = get_engine(ctx.settings.database_url)
            with Session(engine) as session:
                return engine, session.get(Job, job_id)
        except STORE_ERRORS as exc:
            if time.monotonic() >= deadline:
                raise RequeueLater(f"store unreachable for {ctx.settings.db_wait_s:g} s: {redact(exc)}") from None
            if not said:
                log.warning("job %s: store unreachable (%s); waiting up to %g s", job_id, redact(exc),
                            ctx.settings.db_wait_s)
                said = True
            time.sleep(delay)
            delay = min(delay * 2, 2.0)


def handle_delivery(ctx: WorkerContext, job_id: str, payload: Any, stage: str, queue: str | None = None) -> str:
    """Run one delivery of job `job_id` and make its outcome durable; returns what happened, in a word.

    `payload` is the message's spec (None for `farm run`, which runs the stored spec it has just written).
    """
    try:
        key = uuid.UUID(str(job_id))
    except ValueError:
        dead_letter(ctx.client, reason=f"task id {job_id!r} is not a farm job id", payload=payload, queue=queue)
        return "dropped"
    client = ctx.client
    deliveries = int(_redis_call(ctx, "counting a delivery", lambda: client.incr(deliveries_key(key)), default=1))
    try:
        engine, job = _load_job(ctx, key)
    except RequeueLater:
        _redis_call(ctx, "requeueing", lambda: (client.decr(deliveries_key(key)),
                                                 client.set(dispatched_key(key), "queued")))
        raise
    if job is None:
        dead_letter(client, reason="no such job in the store", job_id=str(key), payload=payload, queue=queue)
        return "dropped"
    if job.state in FINISHED_STATES:
        log.info("job %s is already %s; duplicate delivery ignored", key, job.state)
        return "duplicate"
    refusal = None
    if payload is not None and _canonical(payload) != _canonical(job.spec):
        refusal = f"refused: the queue payload disagrees with the stored spec ({_disagreement(payload, job.spec)})"
    elif stage != job.stage:
        refusal = f"refused: a {stage} message for a {job.stage} job"
    elif deliveries > ctx.settings.max_deliveries:
        refusal = (f"delivered {deliveries} times without finishing (its worker died each time; "
                   f"FARM_MAX_DELIVERIES={ctx.settings.max_deliveries}); dead-lettered, `farm retry` runs it again")
    if refusal is None:
        try:
            spec = JobSpec.from_dict(job.spec)
        except (KeyError, TypeError, ValueError) as exc:
            refusal = f"refused: the stored spec cannot be read ({type(exc).__name__}: {exc})"
    if refusal is not None:
        dead_letter(client, reason=refusal, job_id=str(key), payload=payload, queue=queue)
        _finish(ctx, Outcome(str(key), "failed", error=refusal), lease=None)
        return "refused"

    token = uuid.uuid4().hex

    def still_ours() -> bool | None:
        try:
            with Session(engine) as session:
                row = session.get(Job, key)
                return row is not None and row.lease_token == token and row.state == "running"
        except STORE_ERRORS:
            return None

    lease = (Lease(client, str(key), token, ctx.worker, ctx.settings.lease_timeout_s, still_ours)
             if client is not None else None)
    if lease is not None and not _redis_call(ctx, "taking the lease", lambda: lease.acquire(ctx.worker),
                                             default=False):
        # The holder runs it, or died holding it: then its lease expires and the reaper, reading this marker,
        # sends the job again. Either way this message is not needed.
        holder = _redis_call(ctx, "reading the lease", lambda: client.get(lease.key))
        if holder:
            _redis_call(ctx, "marking the job claimed", lambda: client.set(
                dispatched_key(key), b"claimed:" + holder.split(b" ", 1)[0]))
        log.info("job %s is held by another live delivery; this one is dropped", key)
        return "held"
    try:
        with Session(engine) as session:
            claimed = crud.claim_job(session=session, job_id=key, token=token, worker=ctx.worker,
                                     deliveries=deliveries)
    except STORE_ERRORS as exc:
        if lease is not None:
            lease.release()
        raise RequeueLater(f"store failed while claiming the job: {redact(exc)}") from None
    if not claimed:
        if lease is not None:
            lease.release()
        return "duplicate"
    _redis_call(ctx, "marking the job claimed", lambda: client.set(dispatched_key(key), f"claimed:{token}"))
    if lease is not None:
        lease.start()
    job_log(ctx.client, key, ctx.worker, f"delivery {deliveries} claimed by {ctx.worker} on {ctx.device}")
    return _run_claimed(ctx, engine, job, spec, token, lease)


def _run_claimed(ctx: WorkerContext, engine: Any, job: Job, spec: JobSpec, token: str, lease: Lease | None) -> str:
    from worker.jobs import build_stage, execute

    job_id, settings = str(job.id), ctx.settings
    epochs: list[dict[str, Any]] = []
    store_ok = [True]

    def check_lease() -> None:
        """Called at every batch, epoch and progress line: stop when the job is another's or was cancelled."""
        if lease is not None and lease.lost:
            raise LeaseLost(lease.lost)
        if lease is not None and lease.cancelled:
            raise JobCancelled(lease.cancelled)
        if lease is not None and lease.interrupted:
            raise JobInterrupted(lease.interrupted)

    def progress(text: str) -> None:
        check_lease()
        if ctx.echo is not None:
            ctx.echo(text)
        job_log(ctx.client, job_id, ctx.worker, text)
        try:  # progress is for people watching; a store blip must not stop the job
            with Session(engine) as session:
                crud.set_progress(session=session, job_id=job_id, progress=text, token=token)
            store_ok[0] = True
        except STORE_ERRORS as exc:
            if store_ok[0]:
                log.warning("job %s: cannot show progress (%s); carrying on", job_id, redact(exc))
            store_ok[0] = False

    def on_epoch(artifact_key: str, kind: str, m: EpochMetrics) -> None:
        if kind == "base":  # the built-in base model, trained once before anything else (minutes on a CPU)
            from worker.workloads.models import BUILTIN_RECIPE

            progress(f"training the built-in base model: epoch {m.epoch + 1}/{BUILTIN_RECIPE['fit']['epochs']}, "
                     f"loss {m.train_loss:.3f}, val top-1 {m.val_top1:.1%}")
            return
        epochs.append({"artifact_key": artifact_key, "kind": kind, "epoch": m.epoch, "train_loss": m.train_loss,
                       "val_top1": m.val_top1, "duration_s": m.duration_s, "recorded_at": utcnow()})
        total = spec.variant.train.epochs if spec.variant.train else 0
        progress(f"{kind} epoch {m.epoch + 1}/{total}, val top-1 {m.val_top1:.1%}")

    lock = ctx.lock
    host_lock = (lambda: lock(f"host:{settings.hostname}")) if lock else None
    build_lock = (lambda key: lock(f"build:{key}")) if lock else None  # key: the artifact's (recipe_of)
    try:
        if job.stage == "compress":
            progress("building")
            built = build_stage(spec, settings, ctx.device, on_epoch=on_epoch, build_lock=build_lock,
                                host_lock=host_lock, threads=ctx.threads, on_progress=progress)
            outcome = Outcome(job_id, "done", token, epochs=epochs, artifact_key=built.artifact_key,
                              trained=built.trained_now,
                              progress="built" if built.trained_now else "found in the artifact cache")
        else:
            rows = execute(spec, settings, ctx.device, allow_train=job.chain_id is None, on_progress=progress,
                           on_epoch=on_epoch, host_lock=host_lock, build_lock=build_lock, checkpoint=check_lease,
                           threads=ctx.threads)
            # No lease check here: a finished job's rows go to the store, whose fence decides whether they count.
            outcome = Outcome(job_id, "done", token, rows=rows, epochs=epochs)
    except LeaseLost as exc:
        log.error("job %s: %s; stopping without writing", job_id, exc)
        if lease is not None:
            lease.stop()
        return "taken"
    except JobCancelled as exc:
        log.warning("%s; stopped, partial results dropped", exc)
        job_log(ctx.client, job_id, ctx.worker, "cancelled: stopped, partial results dropped")
        if lease is not None:
            lease.release()
        _redis_call(ctx, "clearing the job's keys", lambda: ctx.client.delete(
            dispatched_key(job_id), deliveries_key(job_id), cancel_key(job_id)))
        return "cancelled"
    except JobInterrupted as exc:
        return _requeue_interrupted(ctx, engine, job, token, lease, str(exc))
    except FarmError as exc:
        log.warning("job %s failed: %s", job_id, redact(exc))
        outcome = Outcome(job_id, "failed", token, error=redact(exc), epochs=epochs)
    except Exception as exc:
        log.exception("job %s failed", job_id)
        outcome = Outcome(job_id, "failed", token, error=redact(f"{type(exc).__name__}: {exc}"), epochs=epochs)
    return _finish(ctx, outcome, lease)


def _requeue_interrupted(ctx: WorkerContext, engine: Any, job: Job, token: str, lease: Lease | None,
                         why: str) -> str:
    """Put an interrupted job back on its queue for another worker (or this one, restarted); partial work dropped.

    If the store is away the job stays `running` under this token; once the lease is gone the reaper requeues it.
    """
    job_id = str(job.id)
    if lease is not None:
        lease.release()
    _redis_call(ctx, "clearing the stop mark", lambda: ctx.client.delete(stop_key(job_id), deliveries_key(job_id)))
    try:
        with Session(engine) as session:
            requeued = crud.requeue_job(session=session, job_id=job.id, expected_token=token,
                                        reason="requeued: its worker stopped mid-job")
    except STORE_ERRORS as exc:
        log.warning("%s; the store is away (%s), the reaper requeues it", why, redact(exc))
        return "interrupted"
    if requeued and ctx.app is not None:
        try:
            dispatch(ctx.app, ctx.client, job_id=job.id, stage=job.stage, queue=job.queue, spec=job.spec)
        except Exception as exc:  # the reaper re-sends a queued job that no queue holds
            log.warning("job %s requeued in the store but not sent (%s); the reaper sends it", job_id, redact(exc))
    log.warning("%s; stopped and requeued, partial results dropped", why)
    job_log(ctx.client, job_id, ctx.worker, f"{why}; requeued, partial results dropped")
    return "interrupted"


def store_outcome(settings: Settings, outcome: Outcome) -> str:
    """Write `outcome` to the store ("written", "taken", "gone"), or to the spool ("spooled") when it is away.

    Raises OSError only when neither can hold it (the message is then requeued, not acked).
    """
    try:
        with Session(get_engine(settings.database_url)) as session:
            return crud.apply_outcome(session=session, outcome=outcome)
    except STORE_ERRORS as exc:
        path = Spool(settings.spool_dir).put(outcome)
        log.warning("job %s: store unreachable (%s); outcome kept in %s until it returns", outcome.job_id,
                    redact(exc), path)
        return "spooled"


def _finish(ctx: WorkerContext, outcome: Outcome, lease: Lease | None) -> str:
    job_log(ctx.client, outcome.job_id, ctx.worker, outcome.state if outcome.state == "done" else
            f"{outcome.state}: {outcome.error}")
    outcome.lease_value = lease.value if lease is not None else None
    if lease is not None:
        lease.stop()  # from here the spool keeper (or the release below) looks after the key
    where = store_outcome(ctx.settings, outcome)
    if where == "spooled":
        return "spooled"
    if where == "taken":
        log.warning("job %s was taken over by another delivery; this outcome is not written", outcome.job_id)
    after_stored(ctx, outcome, written=where == "written")
    return outcome.state if where == "written" else where


def after_stored(ctx: WorkerContext, outcome: Outcome, *, written: bool) -> None:
    """Once an outcome is durable in the store: drop the job's broker keys; a done compress stage sends the next."""
    client, job_id = ctx.client, outcome.job_id
    if client is not None and outcome.lease_value:
        _redis_call(ctx, "releasing the lease", release_value, client, job_id, outcome.lease_value)
    if not written:
        return
    _redis_call(ctx, "clearing the job's keys", lambda: client.delete(dispatched_key(job_id), deliveries_key(job_id)))
    if outcome.state == "done" and outcome.trained is not None:  # only a compress stage records `trained`
        send_next_stage(ctx, uuid.UUID(job_id))


def send_next_stage(ctx: WorkerContext, job_id: uuid.UUID) -> None:
    """After a chain's compress stage is done, queue its benchmark stages, one per host of `--on all` (the reaper
    does it if this fails)."""
    if ctx.app is None:
        return
    try:
        with Session(get_engine(ctx.settings.database_url)) as session:
            job = session.get(Job, job_id)
            if job is None or job.chain_id is None or job.stage != "compress":
                return
            for nxt in crud.chain_stages(session=session, chain_id=job.chain_id, stage="benchmark"):
                if nxt.state == "queued":
                    dispatch(ctx.app, ctx.client, job_id=nxt.id, stage=nxt.stage, queue=nxt.queue, spec=nxt.spec)
    except Exception as exc:
        log.warning("could not queue the next stage after job %s (%s); the reaper will", job_id, redact(exc))


def flush_spool(ctx: WorkerContext) -> int:
    """Write spooled outcomes to the store, keeping their leases alive meanwhile; returns how many remain."""
    spool = Spool(ctx.settings.spool_dir)
    pending = spool.pending()
    for _path, outcome in pending:  # every lease first: while the store is away, none of them may lapse
        if ctx.client is not None and outcome.lease_value:
            _redis_call(ctx, "keeping a spooled job's lease", renew_value, ctx.client, outcome.job_id,
                        outcome.lease_value, ctx.settings.lease_timeout_s)
    for path, outcome in pending:
        try:
            with Session(get_engine(ctx.settings.database_url)) as session:
                where = crud.apply_outcome(session=session, outcome=outcome)
        except STORE_ERRORS:
            break  # still away; try again on the next beat
        if where == "written":
            log.info("job %s: spooled outcome written to the store", outcome.job_id)
        else:
            log.warning("job %s: spooled outcome discarded (%s: another delivery owns the job)", outcome.job_id,
                        where)
        spool.remove(path)
        after_stored(ctx, outcome, written=where == "written")
    return spool.count()


def local_context(settings: Settings, device: Device, threads: int | None = None,
                  echo: Callable[[str], None] | None = None) -> WorkerContext:
    """For `farm run`: no broker, no leases; the outcome is still fenced and spooled like a worker's. `echo`
    prints the job's progress lines (the built-in model's training epochs, benchmark repeats)."""
    return WorkerContext(settings, device, f"local@{settings.hostname}:{os.getpid()}", threads=threads, echo=echo)
