"""One delivery's path, as the I/O shell around `worker.delivery.ownership.decide_delivery`: count it, read the job
row, take the lease, claim the job in the store, run it, store (or spool) the outcome; only then does the task
return and Celery ack the message.

The shell only observes and acts; every choice (run, drop, fail, look again) is a row of the ownership table.
When the store or the broker does not answer, the shell waits and looks again, up to FARM_DB_WAIT_S, then puts the
message back on its queue: a blip never reads as "held by another" and never loses a job.
"""

from __future__ import annotations

import json
import logging
import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum, StrEnum
from functools import cache
from typing import TYPE_CHECKING, Any

from sqlmodel import Session

from shared import chains
from shared.db import queries, writes
from shared.db.engine import get_engine
from shared.db.models import FINISHED_STATES, Job
from shared.db.types import utcnow
from shared.devices import Device
from shared.dispatch import dead_letter, dispatch, job_log, redis_client
from shared.errors import FarmError
from shared.keys import cancel_key, deliveries_key, dispatched_key, stop_key
from shared.outcome import Outcome
from shared.redact import redact
from shared.settings import Settings
from shared.specs import JobSpec
from worker.delivery import clock, sink
from worker.delivery.lease import Lease, release_value
from worker.delivery.ownership import Act, DeliverySeen, JobRow, Seen, decide_delivery
from worker.delivery.sink import STORE_ERRORS, Stored

if TYPE_CHECKING:
    from worker.delivery.locks import LockFactory
    from worker.training import EpochMetrics

log = logging.getLogger(__name__)


class Handled(StrEnum):
    """What became of one delivery."""

    DONE = "done"
    FAILED = "failed"
    DROPPED = "dropped"  # not a job farm knows: dead-lettered
    DUPLICATE = "duplicate"  # the job had finished: nothing done
    HELD = "held"  # another live delivery runs the job
    REFUSED = "refused"  # failed without running (payload, stage, deliveries, spec)
    TAKEN = "taken"  # another delivery took the job over mid-run: nothing written
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"  # its worker stopped now: the job went back to its queue
    SPOOLED = "spooled"  # the outcome waits on local disk for the store
    RETRY_LATER = "retry-later"  # the store or broker stayed away: put the message back on its queue


class StopWhy(Enum):
    LEASE_LOST = "lease-lost"  # another delivery has the job now: stop, write nothing
    CANCELLED = "cancelled"  # `farm cancel`: stop, write nothing, let go of it
    INTERRUPTED = "interrupted"  # this worker is stopping now: stop, write nothing, requeue it


class Stopped(Exception):
    """Raised at a batch, epoch or progress line to end a run early; `why` says what follows."""

    def __init__(self, why: StopWhy, text: str) -> None:
        super().__init__(text)
        self.why = why


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
    from worker.delivery.locks import broker_lock

    settings = Settings.from_env()
    return WorkerContext(settings, device, worker, redis_client(settings.broker_url), threads=threads,
                         app=make_app(settings), lock=broker_lock(settings.broker_url, settings.lock_ttl_s))


def local_context(settings: Settings, device: Device, threads: int | None = None,
                  echo: Callable[[str], None] | None = None) -> WorkerContext:
    """For `farm run`: no broker, no leases; the outcome is still fenced and spooled like a worker's. `echo`
    prints the job's progress lines (the built-in model's training epochs, benchmark repeats)."""
    return WorkerContext(settings, device, f"local@{settings.hostname}:{os.getpid()}", threads=threads, echo=echo)


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=repr)


def _disagreement(payload: Any, stored: dict[str, Any]) -> str:
    if not isinstance(payload, dict):
        return f"payload is a {type(payload).__name__}, not a job spec"
    keys = sorted(set(payload) ^ set(stored))
    differ = sorted(k for k in set(payload) & set(stored) if _canonical(payload[k]) != _canonical(stored[k]))
    parts = ([f"unexpected or missing keys {keys}"] if keys else []) + ([f"different {differ}"] if differ else [])
    return "; ".join(parts) or "different values"


def _broker(ctx: WorkerContext, what: str, fn: Any, *, default: Any = None) -> Any:
    """A best-effort broker call for what is not a decision (a log line, a marker the reaper reads)."""
    if ctx.client is None:
        return default
    try:
        return fn()
    except Exception as exc:
        log.warning("broker unreachable while %s (%s)", what, redact(exc))
        return default


class _Delivery:
    """The observations of one delivery, gathered as the ownership table asks for them."""

    def __init__(self, ctx: WorkerContext, key: uuid.UUID, payload: Any, stage: str) -> None:
        self.ctx, self.key, self.payload, self.stage = ctx, key, payload, stage
        self.token = uuid.uuid4().hex
        self.deliveries: int | None = None
        self.engine: Any = None
        self.job: Job | None = None
        self.store_answered = False
        self.lease: Lease | None = None
        self.lease_seen, self.claim_seen = Seen.NOT_TRIED, Seen.NOT_TRIED
        self.spec: JobSpec | None = None
        self.unreadable = ""

    def count(self) -> None:
        if self.deliveries is not None:
            return
        if self.ctx.client is None:
            self.deliveries = 1
            return
        try:  # one round trip: counted, and marked as taken by this delivery (a worker that dies while it waits
            # for the store leaves a claim without a lease, which the reaper resends; a "queued" mark it would trust)
            with self.ctx.client.pipeline() as pipe:
                pipe.incr(deliveries_key(self.key)).set(dispatched_key(self.key), f"claimed:{self.token}")
                self.deliveries = int(pipe.execute()[0])
        except Exception as exc:
            log.warning("job %s: broker unreachable while counting the delivery (%s)", self.key, redact(exc))

    def read_row(self) -> None:
        try:
            self.engine = get_engine(self.ctx.settings.database_url)
            with Session(self.engine) as session:
                self.job = session.get(Job, self.key)
            self.store_answered = True
        except STORE_ERRORS as exc:
            self.store_answered = False
            log.debug("job %s: store unreachable (%s)", self.key, redact(exc))
            return
        if self.job is not None and self.spec is None:
            try:
                self.spec = JobSpec.from_dict(self.job.spec)
            except (KeyError, TypeError, ValueError) as exc:
                self.unreadable = f"{type(exc).__name__}: {exc}"

    def seen(self) -> DeliverySeen:
        job = self.job
        return DeliverySeen(
            stage=self.stage, store_answered=self.store_answered,
            row=None if job is None else JobRow(job.state, job.stage, spec_readable=not self.unreadable),
            deliveries=self.deliveries, max_deliveries=self.ctx.settings.max_deliveries,
            payload_agrees=self.payload is None or job is None or _canonical(self.payload) == _canonical(job.spec),
            lease=self.lease_seen, claim=self.claim_seen)

    def still_ours(self) -> bool | None:
        try:
            with Session(self.engine) as session:
                row = session.get(Job, self.key)
                return row is not None and row.lease_token == self.token and row.state == "running"
        except STORE_ERRORS:
            return None

    def take_lease(self) -> None:
        if self.ctx.client is None:
            self.lease_seen = Seen.OURS
            return
        self.lease = Lease(self.ctx.client, str(self.key), self.token, self.ctx.worker,
                           self.ctx.settings.lease_timeout_s, self.still_ours)
        try:
            self.lease_seen = Seen.OURS if self.lease.acquire() else Seen.OTHER
        except Exception as exc:
            log.warning("job %s: broker unreachable while taking the lease (%s)", self.key, redact(exc))
            self.lease_seen = Seen.UNKNOWN

    def claim(self) -> None:
        try:
            with Session(self.engine) as session:
                claimed = writes.claim_job(session=session, job_id=self.key, token=self.token, worker=self.ctx.worker,
                                         deliveries=self.deliveries or 1)
            self.claim_seen = Seen.OURS if claimed else Seen.FINISHED
        except STORE_ERRORS as exc:
            log.warning("job %s: store failed while claiming the job (%s)", self.key, redact(exc))
            self.claim_seen = Seen.UNKNOWN

    def let_go(self) -> None:
        """Give back what this delivery took before looking again or putting the message back."""
        if self.lease is not None and self.lease_seen is Seen.OURS:
            self.lease.release()
        self.lease, self.lease_seen, self.claim_seen = None, Seen.NOT_TRIED, Seen.NOT_TRIED


def handle_delivery(ctx: WorkerContext, job_id: str, payload: Any, stage: str, queue: str | None = None) -> Handled:
    """Run one delivery of job `job_id` and make its outcome durable; returns what became of it.

    `payload` is the message's spec (None for `farm run`, which runs the stored spec it has just written).
    """
    try:
        key = uuid.UUID(str(job_id))
    except ValueError:
        dead_letter(ctx.client, reason=f"task id {job_id!r} is not a farm job id", payload=payload, queue=queue)
        return Handled.DROPPED
    d = _Delivery(ctx, key, payload, stage)
    deadline, delay, said = time.monotonic() + ctx.settings.db_wait_s, 0.5, ""
    d.count()
    d.read_row()
    while True:
        decision = decide_delivery(d.seen())
        act = decision.act
        if act is Act.TAKE_LEASE:
            d.take_lease()
        elif act is Act.CLAIM:
            d.claim()
            if d.claim_seen is not Seen.OURS and d.lease is not None:
                d.lease.release()
        elif act is Act.RETRY_LATER:
            d.let_go()
            if time.monotonic() >= deadline:
                return _put_back(ctx, d, decision.reason)
            if said != decision.reason:
                log.warning("job %s: %s; looking again for up to %g s", key, decision.reason, ctx.settings.db_wait_s)
                said = decision.reason
            time.sleep(delay)
            delay = min(delay * 2, 2.0)
            d.count()
            d.read_row()
        elif act is Act.DROP:
            log.info("job %s: %s", key, decision.reason)
            if d.job is not None and d.job.state in FINISHED_STATES:  # nothing of a finished job needs its keys
                _broker(ctx, "clearing a finished job's keys", lambda: ctx.client.delete(
                    dispatched_key(key), deliveries_key(key)))
            return Handled.DUPLICATE
        elif act is Act.DROP_HELD:
            _mark_claimed_by_holder(ctx, d)
            # a duplicate message is not a delivery that died: it must not count towards FARM_MAX_DELIVERIES
            _broker(ctx, "un-counting a duplicate delivery", lambda: ctx.client.decr(deliveries_key(key)))
            log.info("job %s is held by another live delivery; this one is dropped", key)
            return Handled.HELD
        elif act is Act.DEAD_LETTER:
            reason = decision.reason
            if d.job is not None and not d.seen().payload_agrees:
                reason = f"{reason} ({_disagreement(payload, d.job.spec)})"
            dead_letter(ctx.client, reason=reason, job_id=str(key), payload=payload, queue=queue)
            return Handled.DROPPED
        elif act is Act.FAIL:
            return _refuse(ctx, d, decision.reason, payload, queue)
        else:
            assert act is Act.RUN and d.job is not None and d.spec is not None
            _broker(ctx, "marking the job claimed", lambda: ctx.client.set(dispatched_key(key), f"claimed:{d.token}"))
            if d.lease is not None:
                d.lease.start()
            job_log(ctx.client, key, ctx.worker, f"delivery {d.deliveries} claimed by {ctx.worker} on {ctx.device}")
            return _run_claimed(ctx, d.engine, d.job, d.spec, d.token, d.lease)


def _mark_claimed_by_holder(ctx: WorkerContext, d: _Delivery) -> None:
    """The job's marker names the live holder's token, so the reaper resends the job if that holder dies."""
    lease = d.lease
    holder = _broker(ctx, "reading the lease", lambda: ctx.client.get(lease.key)) if lease else None
    if holder:
        _broker(ctx, "marking the job claimed", lambda: ctx.client.set(
            dispatched_key(d.key), b"claimed:" + holder.split(b" ", 1)[0]))


def _put_back(ctx: WorkerContext, d: _Delivery, reason: str) -> Handled:
    """The store or broker stayed away for FARM_DB_WAIT_S: un-count this delivery and let the task put the message
    back on its queue. The marker keeps this delivery's claim (no lease): if the message does not make it back, the
    reaper sends the job again; if it does, the duplicate is harmless."""
    log.warning("job %s: %s for %g s; putting the message back on its queue", d.key, reason, ctx.settings.db_wait_s)
    if d.deliveries is not None:
        _broker(ctx, "un-counting the delivery", lambda: ctx.client.decr(deliveries_key(d.key)))
    return Handled.RETRY_LATER


def _refuse(ctx: WorkerContext, d: _Delivery, reason: str, payload: Any, queue: str | None) -> Handled:
    """Fail the job without running it, under this delivery's lease and claim, and park its message."""
    assert d.job is not None
    if not d.seen().payload_agrees:
        reason = f"{reason} ({_disagreement(payload, d.job.spec)})"
    elif d.unreadable and "cannot be read" in reason:
        reason = f"{reason} ({d.unreadable})"
    dead_letter(ctx.client, reason=reason, job_id=str(d.key), payload=payload, queue=queue)
    stored = _finish(ctx, Outcome(str(d.key), "failed", d.token, error=reason), d.lease)
    return Handled.SPOOLED if stored is Handled.SPOOLED else Handled.REFUSED


def _run_claimed(ctx: WorkerContext, engine: Any, job: Job, spec: JobSpec, token: str, lease: Lease | None) -> Handled:
    from worker.jobs import build_stage, execute

    job_id, settings = str(job.id), ctx.settings
    epochs: list[dict[str, Any]] = []
    store_ok = [True]

    def check_lease() -> None:
        """Called at every batch, epoch and progress line: stop when the job is another's or was cancelled."""
        if lease is None:
            return
        if lease.lost:
            raise Stopped(StopWhy.LEASE_LOST, lease.lost)
        if lease.cancelled:
            raise Stopped(StopWhy.CANCELLED, lease.cancelled)
        if lease.interrupted:
            raise Stopped(StopWhy.INTERRUPTED, lease.interrupted)

    def progress(text: str) -> None:
        check_lease()
        if ctx.echo is not None:
            ctx.echo(text)
        job_log(ctx.client, job_id, ctx.worker, text)
        try:  # progress is for people watching; a store blip must not stop the job
            with Session(engine) as session:
                writes.set_progress(session=session, job_id=job_id, progress=text, token=token)
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
            _note_clock_skew(engine, ctx.client, rows)
            # No lease check here: a finished job's rows go to the store, whose fence decides whether they count.
            outcome = Outcome(job_id, "done", token, rows=rows, epochs=epochs)
    except Stopped as stop:
        return _stopped(ctx, engine, job, token, lease, stop)
    except FarmError as exc:
        log.warning("job %s failed: %s", job_id, redact(exc))
        outcome = Outcome(job_id, "failed", token, error=redact(exc), epochs=epochs)
    except Exception as exc:
        log.exception("job %s failed", job_id)
        outcome = Outcome(job_id, "failed", token, error=redact(f"{type(exc).__name__}: {exc}"), epochs=epochs)
    return _finish(ctx, outcome, lease)


def _note_clock_skew(engine: Any, client: Any, rows: list[dict[str, Any]]) -> None:
    """Each row records this worker's clock skew against the store's (or broker's) clock; one beyond the bound is
    also said in its warnings, since its timestamps and local hour are off by that much."""
    skew = clock.worker_skew_s(engine, client)
    for row in rows:
        row["clock_skew_s"] = skew
        if skew is not None and abs(skew) > clock.SKEW_BOUND_S:
            row["energy_warnings"] = [*row.get("energy_warnings", []),
                                      f"this worker's clock is {skew:+.1f} s off the store's: started_at and "
                                      "local_hour carry that error"]


def _stopped(ctx: WorkerContext, engine: Any, job: Job, token: str, lease: Lease | None, stop: Stopped) -> Handled:
    job_id = str(job.id)
    if stop.why is StopWhy.LEASE_LOST:
        log.error("job %s: %s; stopping without writing", job_id, stop)
        if lease is not None:
            lease.stop()
        return Handled.TAKEN
    if stop.why is StopWhy.CANCELLED:
        log.warning("%s; stopped, partial results dropped", stop)
        job_log(ctx.client, job_id, ctx.worker, "cancelled: stopped, partial results dropped")
        if lease is not None:
            lease.release()
        _broker(ctx, "clearing the job's keys", lambda: ctx.client.delete(
            dispatched_key(job_id), deliveries_key(job_id), cancel_key(job_id)))
        return Handled.CANCELLED
    return _requeue_interrupted(ctx, engine, job, token, lease, str(stop))


def _requeue_interrupted(ctx: WorkerContext, engine: Any, job: Job, token: str, lease: Lease | None,
                         why: str) -> Handled:
    """Put an interrupted job back on its queue for another worker (or this one, restarted); partial work dropped.

    If the store is away the job stays `running` under this token; once the lease is gone the reaper requeues it.
    """
    job_id = str(job.id)
    if lease is not None:
        lease.release()
    _broker(ctx, "clearing the stop mark", lambda: ctx.client.delete(stop_key(job_id), deliveries_key(job_id)))
    try:
        with Session(engine) as session:
            requeued = writes.requeue_job(session=session, job_id=job.id, expected_token=token,
                                        reason="requeued: its worker stopped mid-job")
    except STORE_ERRORS as exc:
        log.warning("%s; the store is away (%s), the reaper requeues it", why, redact(exc))
        return Handled.INTERRUPTED
    if requeued and ctx.app is not None:
        try:
            dispatch(ctx.app, ctx.client, job_id=job.id, stage=job.stage, queue=job.queue, spec=job.spec)
        except Exception as exc:  # the reaper re-sends a queued job that no queue holds
            log.warning("job %s requeued in the store but not sent (%s); the reaper sends it", job_id, redact(exc))
    log.warning("%s; stopped and requeued, partial results dropped", why)
    job_log(ctx.client, job_id, ctx.worker, f"{why}; requeued, partial results dropped")
    return Handled.INTERRUPTED


def _finish(ctx: WorkerContext, outcome: Outcome, lease: Lease | None) -> Handled:
    job_log(ctx.client, outcome.job_id, ctx.worker, outcome.state if outcome.state == "done" else
            f"{outcome.state}: {outcome.error}")
    outcome.lease_value = lease.value if lease is not None else None
    if lease is not None:
        lease.stop()  # from here the spool keeper (or the release below) looks after the key
    where = sink.store_outcome(ctx.settings, outcome, ctx.client)
    if where is Stored.SPOOLED:
        return Handled.SPOOLED
    if where is Stored.TAKEN:
        log.warning("job %s was taken over by another delivery; this outcome is not written", outcome.job_id)
    after_stored(ctx, outcome, where)
    if where is Stored.WRITTEN:
        return Handled(outcome.state)
    return Handled.FAILED if where is Stored.REFUSED else Handled.TAKEN


def after_stored(ctx: WorkerContext, outcome: Outcome, where: Stored) -> None:
    """Once an outcome has left this worker: drop the job's broker keys; a done compress stage sends the next."""
    client, job_id = ctx.client, outcome.job_id
    if client is not None and outcome.lease_value:
        _broker(ctx, "releasing the lease", lambda: release_value(client, job_id, outcome.lease_value or ""))
    if where not in (Stored.WRITTEN, Stored.REFUSED):
        return
    _broker(ctx, "clearing the job's keys", lambda: client.delete(dispatched_key(job_id), deliveries_key(job_id)))
    if where is Stored.WRITTEN and outcome.state == "done" and outcome.trained is not None:
        send_next_stage(ctx, uuid.UUID(job_id))  # only a compress stage records `trained`


def send_next_stage(ctx: WorkerContext, job_id: uuid.UUID) -> None:
    """After a chain's compress stage is done, queue its benchmark stages, one per host of `--on all` (the reaper
    does it if this fails)."""
    if ctx.app is None:
        return
    try:
        with Session(get_engine(ctx.settings.database_url)) as session:
            job = session.get(Job, job_id)
            if job is None:
                return
            for nxt in chains.sent_after(job, queries.chain_of(session=session, job=job)):
                dispatch(ctx.app, ctx.client, job_id=nxt.id, stage=nxt.stage, queue=nxt.queue, spec=nxt.spec)
    except Exception as exc:
        log.warning("could not queue the next stage after job %s (%s); the reaper will", job_id, redact(exc))


def flush_spool(ctx: WorkerContext) -> int:
    """Write spooled outcomes to the store, keeping their leases alive meanwhile; returns how many remain."""
    from worker.delivery.lease import keep_alive
    from worker.delivery.spool import Spool

    if ctx.client is not None:  # every lease first: while the store is away, none of them may lapse
        for _path, outcome in Spool(ctx.settings.spool_dir).pending():
            if outcome.lease_value:
                _broker(ctx, "keeping a spooled job's lease", lambda o=outcome: keep_alive(
                    ctx.client, o.job_id, o.lease_value, ctx.settings.lease_timeout_s))
    return sink.flush(ctx.settings, ctx.client, lambda outcome, where: after_stored(ctx, outcome, where))

