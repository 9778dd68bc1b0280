"""The worker's maintenance thread, in its main process: heartbeat, spool, and the reaper.

Every BEAT_S seconds it
- publishes the worker's heartbeat (`farm:worker:<node>`: host, machine, device, threads, CPU model, runtimes,
  pid, queues, current jobs, spool backlog, start and beat times), the registry that `farm status` and `farm
  submit` read; it expires FARM_LEASE_TIMEOUT_S after the last beat, so a dead worker drops out;
- writes spooled outcomes to the store once it answers, keeping their leases alive meanwhile;
and every REAP_S seconds, on whichever worker takes the `farm:reaper` turn,
- requeues running jobs whose lease expired (their worker died), once per loss;
- re-sends queued jobs that no queue holds (Redis restarted without persistence, a claim that died).
On a SIGTERM it says what happens to the running job; on a second one (or the first, with `--on-stop requeue`)
it marks the running job to stop at its next batch or epoch and go back to its queue.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from functools import cache
from typing import Any

from celery import signals
from sqlmodel import Session

from shared.db import crud
from shared.db.engine import get_engine
from shared.db.types import utcnow
from shared.dispatch import dispatch, dispatched_key, lease_key, worker_key
from shared.redact import redact
from shared.routing import worker_queues
from worker import held_keys

log = logging.getLogger(__name__)
BEAT_S = 2.0
REAP_S = 5.0
QUEUED_GRACE_S = 10.0  # a job this young may still be between its store row and its message
_CAS = """
local v = redis.call('GET', KEYS[1])
if (v == false and ARGV[1] == '') or v == ARGV[1] then redis.call('SET', KEYS[1], ARGV[2]) return 1 end
return 0
"""

_stop = threading.Event()
_stop_now = threading.Event()  # set by a second SIGTERM (or the first, with --on-stop requeue)
_term_count = 0
_thread: threading.Thread | None = None
# Running jobs this reaper has seen without a lease, and since when (monotonic seconds). A lease must stay gone
# for a third of the lease timeout (two of its holder's renewal beats) before the job is requeued: after a
# broker outage longer than the lease, a live holder gets to take its lease again first.
_missing_since: dict[str, float] = {}


@cache
def _cpu_model() -> str:
    from worker.hardware import cpu_model

    return cpu_model()


def beat(ctx: Any, node: str, started_at: float, spool_backlog: int) -> None:
    """Publish this worker's heartbeat; it expires after the lease timeout."""
    from celery.worker.state import active_requests

    info = {
        "worker": node, "host": ctx.settings.hostname, "machine": socket.gethostname(), "device": str(ctx.device),
        "pid": os.getpid(), "queues": worker_queues(ctx.settings.hostname, ctx.device), "threads": ctx.threads,
        "cpu_model": _cpu_model(), "runtimes": _runtimes(ctx.settings.runtimes),
        "jobs": sorted(r.id for r in list(active_requests)), "spool": spool_backlog,
        "started_at": started_at, "beat_at": time.time(),
    }
    ctx.client.set(worker_key(node), json.dumps(info), px=int(ctx.settings.lease_timeout_s * 1000))


def reap(ctx: Any, node: str) -> list[str]:
    """Requeue what died or was lost (see the module doc); returns what it did, a line each."""
    client, settings = ctx.client, ctx.settings
    if client is None or ctx.app is None or not client.set("farm:reaper", node, nx=True, px=int(REAP_S * 1000)):
        return []
    # Right after a Redis restart every lease is missing, the live ones too: give holders a lease period to
    # renew (they recreate their keys) before reading a missing lease as a dead worker.
    fresh_broker = held_keys.broker_restarted_within(client, settings.lease_timeout_s + REAP_S)
    engine = get_engine(settings.database_url)
    with Session(engine) as session:
        jobs = crud.active_jobs(session=session)
        for job in jobs:
            session.expunge(job)
    if not jobs:
        return []
    leases = client.mget([lease_key(j.id) for j in jobs])
    markers = client.mget([dispatched_key(j.id) for j in jobs])
    now, done, tick = utcnow(), [], time.monotonic()
    leaseless = {str(j.id) for j, lease in zip(jobs, leases, strict=True) if lease is None and j.state == "running"}
    for job_id in set(_missing_since) - leaseless:
        del _missing_since[job_id]
    for job, lease, marker in zip(jobs, leases, markers, strict=True):
        if lease is not None:
            continue
        if job.state == "running":
            if fresh_broker or tick - _missing_since.setdefault(str(job.id), tick) < settings.lease_timeout_s / 3:
                continue
            reason = (f"requeued: worker {job.worker} stopped renewing its lease for "
                      f"{settings.lease_timeout_s:g} s")
            with Session(engine) as session:
                if not crud.requeue_job(session=session, job_id=job.id, expected_token=job.lease_token,
                                        reason=reason):
                    continue
        else:
            if (now - job.submitted_at).total_seconds() < QUEUED_GRACE_S:
                continue
            if marker is not None and (not marker.startswith(b"claimed:") or fresh_broker):
                continue  # its message waits on a queue
            if job.chain_id is not None and job.stage == "benchmark":
                with Session(engine) as session:
                    first = crud.chain_stage(session=session, chain_id=job.chain_id, stage="compress")
                if first is None or first.state != "done":
                    continue  # sent when its compress stage is done
            reason = "requeued: its message was lost from the broker"
        if not int(client.eval(_CAS, 1, dispatched_key(job.id), marker or b"", "queued")):
            continue  # another reaper, or a delivery, moved first
        dispatch(ctx.app, client, job_id=job.id, stage=job.stage, queue=job.queue, spec=job.spec)
        log.warning("job %s %s", job.id, reason)
        done.append(f"{job.id} {reason}")
    return done


def mark_running_jobs_to_stop(ctx: Any) -> list[str]:
    """Ask the deliveries running in this worker to stop at their next batch or epoch and requeue their jobs."""
    from celery.worker.state import active_requests

    from shared.dispatch import stop_key

    ids = sorted(r.id for r in list(active_requests))
    for job_id in ids:
        ctx.client.set(stop_key(job_id), "1", ex=3600)
    return ids


def _loop(ctx: Any, node: str) -> None:
    from worker.lifecycle import flush_spool

    started_at, last_reap, failing = time.time(), 0.0, False
    while True:
        if _stop_now.is_set() and ctx.client is not None:
            try:
                ids = mark_running_jobs_to_stop(ctx)
                _stop_now.clear()
                log.warning("stopping now: job(s) %s stop at their next batch or epoch and go back to their queues",
                            ", ".join(i[:8] for i in ids) or "none")
            except Exception as exc:
                log.warning("cannot ask the running job to stop (%s); retrying", redact(exc))
        try:
            backlog = flush_spool(ctx)
            if ctx.client is not None:
                beat(ctx, node, started_at, backlog)
                if time.monotonic() - last_reap >= REAP_S:
                    last_reap = time.monotonic()
                    reap(ctx, node)
            if failing:
                log.warning("maintenance: broker and store answer again")
            failing = False
        except Exception as exc:  # an outage: the next beat tries again
            if not failing:
                log.warning("maintenance: %s (retrying every %g s)", redact(exc), BEAT_S)
            failing = True
        if _stop.wait(BEAT_S if not _stop_now.is_set() else 0.2):
            return


@signals.after_setup_logger.connect
@signals.after_setup_task_logger.connect
def _redact_logs(logger: logging.Logger | None = None, **_: Any) -> None:
    """No log line of a worker shows a password (Celery's handlers, set up by Celery, get the filter)."""
    from shared.redact import install_log_redaction

    install_log_redaction(logger)
    install_log_redaction()


@signals.worker_ready.connect
def _start(sender: Any = None, **_: Any) -> None:
    global _thread
    from worker.app import app_device, app_threads
    from worker.lifecycle import worker_context

    node = getattr(sender, "hostname", None) or socket.gethostname()
    app = getattr(sender, "app", None)
    ctx = worker_context(node, app_device(app), app_threads(app))
    _stop.clear()
    _thread = threading.Thread(target=_loop, args=(ctx, node), name="farm-maintenance", daemon=True)
    _thread.start()


@signals.worker_shutting_down.connect
def _shutting_down(sig: str = "", how: str = "", **_: Any) -> None:
    """SIGTERM (a warm shutdown): the first finishes the current job, or requeues it with --on-stop requeue; a
    second one requeues it now. In a signal handler: only flags here, the maintenance thread talks to Redis."""
    global _term_count
    from celery import current_app
    from celery.worker.state import active_requests

    _term_count += 1
    running = ", ".join(r.id[:8] for r in list(active_requests)) or "no job"
    requeue = _term_count > 1 or getattr(current_app.conf, "farm_on_stop", "finish") == "requeue"
    if requeue:
        _stop_now.set()
        log.warning("%s shutdown (%s #%d): stopping %s now and requeueing it", how, sig, _term_count, running)
    else:
        log.warning("%s shutdown (%s): finishing %s first, taking no new jobs; send %s again to stop now and "
                    "requeue it", how, sig, running, sig or "SIGTERM")


@signals.worker_shutdown.connect
def _shutdown(**_: Any) -> None:
    _stop.set()
    if _thread is not None:
        _thread.join(timeout=5)


def _runtimes(allowed: tuple[str, ...] | None) -> list[str]:
    """The runtimes this worker can run (their packages are installed, FARM_RUNTIMES allows them), which `farm
    submit` checks."""
    from worker.installed import available_runtimes  # not worker.runtimes: that imports torch

    return available_runtimes(allowed)
