"""The worker's maintenance thread, in its main process: heartbeat, identity, spool, and the reaper.

Every BEAT_S seconds it
- publishes the worker's heartbeat (`farm:worker:<node>`: host, machine, device, threads, CPU model, runtimes,
  pid, queues, current jobs, spool backlog, clock skew, start and beat times on the broker's clock), the registry
  that `farm status` and `farm submit` read; it expires FARM_LEASE_TIMEOUT_S after the last beat, so a dead worker
  drops out, and a clean stop removes it at once;
- renews the worker's claim on its node name (worker.delivery.identity);
- writes spooled outcomes to the store once it answers, keeping their leases alive meanwhile;
and every REAP_S seconds, on whichever worker takes the `farm:reaper` turn, runs the reaper (worker.delivery.reaper).
On a SIGTERM it says what happens to the running job; on a second one (or the first, with `--on-stop requeue`)
it marks the running job to stop at its next batch or epoch and go back to its queue.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import threading
import time
from functools import cache
from typing import Any

from celery import signals

from shared.keys import worker_key
from shared.redact import redact
from shared.routing import worker_queues
from worker.delivery import clock, identity
from worker.delivery.reaper import REAP_S, Reaper

log = logging.getLogger(__name__)
BEAT_S = 2.0
SKEW_EVERY_S = 60.0  # how often the heartbeat measures the worker's clock skew

_stop = threading.Event()
_stop_now = threading.Event()  # set by a second SIGTERM (or the first, with --on-stop requeue)
_term_count = 0
_thread: threading.Thread | None = None
_ctx_node: tuple[Any, str] | None = None


@cache
def _cpu_model() -> str:
    from worker.hardware import cpu_model

    return cpu_model()


def beat(ctx: Any, node: str, started_at_s: float, spool_backlog: int, skew_s: float | None) -> None:
    """Publish this worker's heartbeat, stamped on the broker's clock; it expires after the lease timeout."""
    from celery.worker.state import active_requests

    info = {
        "worker": node, "host": ctx.settings.hostname, "machine": socket.gethostname(), "device": str(ctx.device),
        "pid": os.getpid(), "queues": worker_queues(ctx.settings.hostname, ctx.device), "threads": ctx.threads,
        "cpu_model": _cpu_model(), "runtimes": _runtimes(ctx.settings.runtimes),
        "jobs": sorted(r.id for r in list(active_requests)), "spool": spool_backlog,
        "started_at": started_at_s, "beat_at": clock.broker_now_s(ctx.client), "clock_skew_s": skew_s,
    }
    ctx.client.set(worker_key(node), json.dumps(info), px=int(ctx.settings.lease_timeout_s * 1000))


def mark_running_jobs_to_stop(ctx: Any) -> list[str]:
    """Ask the deliveries running in this worker to stop at their next batch or epoch and requeue their jobs."""
    from celery.worker.state import active_requests

    from shared.keys import stop_key

    ids = sorted(r.id for r in list(active_requests))
    for job_id in ids:
        ctx.client.set(stop_key(job_id), "1", ex=3600)
    return ids


def identity_value() -> str | None:
    """This worker's claim on its node name, as `farm worker` made it (None for a worker started otherwise)."""
    from worker.delivery.lease import instance_id

    instance = instance_id()
    return None if instance == "-" else f"{instance} {socket.gethostname()} {os.getpid()}"


def _loop(ctx: Any, node: str) -> None:
    from worker.delivery.handle import flush_spool
    from worker.delivery.spool import Spool

    started_at = clock.broker_now_s(ctx.client) if ctx.client is not None else time.time()
    last_reap, last_skew, skew, failing = 0.0, -SKEW_EVERY_S, None, False
    reaper, claim = Reaper(ctx, node), identity_value()
    while True:
        if _stop_now.is_set() and ctx.client is not None:
            try:
                ids = mark_running_jobs_to_stop(ctx)
                _stop_now.clear()
                log.warning("stopping now: job(s) %s stop at their next batch or epoch and go back to their queues",
                            ", ".join(i[:8] for i in ids) or "none")
            except Exception as exc:
                log.warning("cannot ask the running job to stop (%s); retrying", redact(exc))
        try:  # a spool that cannot be flushed (a full disk, an unreadable file) never stops the heartbeat
            backlog = flush_spool(ctx)
        except Exception as exc:
            log.warning("maintenance: cannot flush the spool %s: %s", ctx.settings.spool_dir, redact(exc))
            backlog = Spool(ctx.settings.spool_dir).count()
        try:
            if ctx.client is not None:
                if claim and not identity.renew(ctx.client, node, claim, ctx.settings.lease_timeout_s):
                    log.error("another process now runs as %s (this one stalled past its claim); stopping", node)
                    os.kill(os.getpid(), signal.SIGTERM)
                    claim = None
                if time.monotonic() - last_skew >= SKEW_EVERY_S:
                    from shared.db.engine import get_engine

                    skew = clock.worker_skew_s(get_engine(ctx.settings.database_url), ctx.client)
                    last_skew = time.monotonic()
                    if skew is not None and abs(skew) > clock.SKEW_BOUND_S:
                        log.warning("this machine's clock is %+.1f s off the store's: result timestamps carry that "
                                    "error (run NTP); farm's own timing decisions use the broker's clock", skew)
                beat(ctx, node, started_at, backlog, skew)
                if time.monotonic() - last_reap >= REAP_S:
                    last_reap = time.monotonic()
                    reaper.reap()
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
    global _ctx_node
    from worker.app import app_device, app_threads
    from worker.delivery.handle import worker_context

    node = getattr(sender, "hostname", None) or socket.gethostname()
    app = getattr(sender, "app", None)
    ctx = worker_context(node, app_device(app), app_threads(app))
    _ctx_node = (ctx, node)
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
    if _ctx_node is not None and _ctx_node[0].client is not None:
        ctx, node = _ctx_node
        try:
            identity.deregister(ctx.client, node, identity_value())
        except Exception as exc:  # the broker is away: the heartbeat and the claim expire by themselves
            log.warning("could not deregister %s (%s); it drops out within %g s", node, redact(exc),
                        ctx.settings.lease_timeout_s)


def _runtimes(allowed: tuple[str, ...] | None) -> list[str]:
    """The runtimes this worker can run (their packages are installed, FARM_RUNTIMES allows them), which `farm
    submit` checks."""
    from worker.installed import available_runtimes  # not worker.runtimes: that imports torch

    return available_runtimes(allowed)
