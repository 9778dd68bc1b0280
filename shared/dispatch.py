"""Putting a job on the queue, job logs and dead letters. The Redis keys they use are in shared/keys.py.

One function, `dispatch`, sends every job message (submit, the next stage of a chain, the reaper's
requeue, `farm retry`): the Celery task id is the farm job id, and the only argument is the job's spec,
which the worker checks against the stored one.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from shared.keys import CAS, DEAD_LETTERS, RELEASE, dispatched_key, job_log_key
from shared.redact import redact

log = logging.getLogger(__name__)

RUN_JOB_TASK = "farm.run_job"
COMPRESS_TASK = "farm.compress"
DEAD_LETTER_LIMIT = 10_000
PAYLOAD_SHOWN = 2_000  # characters of a dead message's raw payload that are kept
JOB_LOG_LINES = 500  # kept per job
JOB_LOG_TTL_S = 7 * 24 * 3600


def job_log(client: Any, job_id: uuid.UUID | str, worker: str, text: str) -> None:
    """Append one line to a job's log (best effort: a broker blip loses a log line, never the job)."""
    if client is None:
        return
    line = json.dumps({"at": time.time(), "worker": worker, "text": text})
    try:
        with client.pipeline() as pipe:
            pipe.rpush(job_log_key(job_id), line).ltrim(job_log_key(job_id), -JOB_LOG_LINES, -1)
            pipe.expire(job_log_key(job_id), JOB_LOG_TTL_S).execute()
    except Exception:  # noqa: S110  (a log line is not worth failing a job)
        pass


def redis_client(broker_url: str, timeout_s: float = 3.0) -> Any | None:
    """A Redis client on the broker, or None when the broker is not Redis (leases and dead letters then off)."""
    if not broker_url.startswith(("redis://", "rediss://", "unix://")):
        return None
    import redis

    return redis.Redis.from_url(broker_url, socket_connect_timeout=timeout_s, socket_timeout=timeout_s,
                                health_check_interval=30)


def task_for_stage(stage: str) -> str:
    return COMPRESS_TASK if stage == "compress" else RUN_JOB_TASK


SENDING_MARK_S = 30  # a "sending" marker whose send failed (and whose cleanup failed too) expires by itself


def dispatch(app: Any, client: Any | None, *, job_id: uuid.UUID | str, stage: str, queue: str,
             spec: dict[str, Any], producer: Any = None) -> None:
    """Send the job's message (task id = job id) and mark it queued on the broker. Raises when the broker is away.
    `producer` (from `ready_producer`) sends on a connection that is already open.

    The marker says "sending" (expiring) until the send has returned, then "queued", unless a delivery has claimed
    the job meanwhile: a send that fails never leaves a "queued" marker without a message (which the reaper would
    trust for ever); it leaves none, and the reaper sends the job again."""
    key = dispatched_key(job_id)
    if client is not None:
        client.set(key, "sending", px=SENDING_MARK_S * 1000)
    try:
        app.send_task(task_for_stage(stage), args=[spec], task_id=str(job_id), queue=queue, producer=producer)
    except Exception:
        if client is not None:
            try:
                client.eval(RELEASE, 1, key, "sending")
            except Exception:  # the marker expires by itself; then the reaper finds the job without one
                pass
        raise
    if client is not None:
        client.eval(CAS, 1, key, "sending", "queued")


@contextmanager
def ready_producer(app: Any) -> Iterator[Any]:
    """A Celery producer whose broker connection and transport are set up now, before any job is stored: a cold
    `farm submit` otherwise spent 50-100 ms of each job's submit-to-start time loading kombu's transport and
    connecting, after the job's submitted_at."""
    with app.producer_or_acquire() as producer:
        producer.connection.default_channel  # noqa: B018  (connects, and loads the transport)
        yield producer


def dead_letter(client: Any | None, *, reason: str, job_id: str | None = None, payload: Any = None,
                queue: str | None = None) -> None:
    """Park a message that cannot run where `farm dead` lists it; logs instead when Redis is unreachable."""
    raw = payload if isinstance(payload, str) else json.dumps(payload, default=repr, sort_keys=True)
    entry = {"job_id": job_id, "reason": redact(reason), "queue": queue, "at": time.time(),
             "payload": redact(raw[:PAYLOAD_SHOWN])}
    log.error("dead letter: job %s on %s: %s", job_id or "-", queue or "-", redact(reason))
    if client is None:
        return
    try:
        pipe = client.pipeline()
        pipe.lpush(DEAD_LETTERS, json.dumps(entry))
        pipe.ltrim(DEAD_LETTERS, 0, DEAD_LETTER_LIMIT - 1)
        pipe.execute()
    except Exception as exc:
        log.error("could not store the dead letter for job %s: %s", job_id or "-", redact(exc))


def dead_letters(client: Any, limit: int = 100) -> list[dict[str, Any]]:
    """The newest dead letters first."""
    out = []
    for raw in client.lrange(DEAD_LETTERS, 0, limit - 1):
        try:
            out.append(json.loads(raw))
        except ValueError:
            out.append({"job_id": None, "reason": "unreadable dead letter", "payload": repr(raw[:200])})
    return out


def forget_dead_letters(client: Any, job_id: str) -> int:
    """Remove a job's dead letters (it is being retried); returns how many."""
    removed = 0
    for raw in client.lrange(DEAD_LETTERS, 0, -1):
        try:
            if json.loads(raw).get("job_id") == job_id:
                removed += int(client.lrem(DEAD_LETTERS, 0, raw))
        except ValueError:
            continue
    return removed
