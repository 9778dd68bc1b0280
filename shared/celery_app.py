"""The Celery app that both sides build: JSON only, late acks, one job at a time, a queue per device class and
per host. The controller sends tasks by name with it; the worker (worker/app.py) consumes with it.

Importing this module must stay light (no torch, nothing from worker/): tasks and the transport are named by
text and resolved only in a worker process.
"""

from __future__ import annotations

from celery import Celery
from kombu import Queue

from shared.devices import DEVICE_CLASSES, Device
from shared.dispatch import COMPRESS_TASK, RUN_JOB_TASK
from shared.routing import class_queue
from shared.settings import Settings

__all__ = ["COMPRESS_TASK", "RUN_JOB_TASK", "make_app"]


def make_app(settings: Settings | None = None, device: Device | None = None, threads: int | None = None,
             on_stop: str = "finish") -> Celery:
    """The Celery app; a worker's app also carries the device its tasks run on and their torch threads
    (`farm worker --device --threads`)."""
    settings = settings or Settings.from_env()
    app = Celery("farm", broker=settings.broker_url, include=["worker.tasks"])
    app.conf.farm_device = None if device is None else str(device)
    app.conf.farm_threads = threads
    app.conf.farm_on_stop = on_stop  # what the first SIGTERM does to a running job: finish it, or requeue it
    if settings.broker_url.startswith(("redis://", "rediss://")):
        # kombu's Redis transport, but a poison item on a queue is dead-lettered instead of killing the worker.
        app.conf.broker_transport = "worker.transport:Transport"
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        result_serializer="json",
        task_ignore_result=True,  # results go to the store, not to a result backend
        task_acks_late=True,  # a job whose worker dies is redelivered, not lost
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        worker_concurrency=1,  # one benchmark at a time per worker
        task_default_queue="cpu",
        task_queues=[Queue(class_queue(c)) for c in DEVICE_CLASSES],
        task_create_missing_queues=True,  # host.<name> queues
        broker_connection_retry_on_startup=True,
        broker_connection_timeout=settings.broker_timeout_s,
        # A job may run for hours (training); Redis redelivers unacked messages after this many seconds. Keep it
        # long: a dead worker's job comes back sooner through its lease (worker.delivery).
        broker_transport_options=_transport_options(settings),
        # A task body never raises for a job's own failure (it stores it); what escapes is a bug or a full disk,
        # and then the message goes back to the queue rather than being acked and lost.
        task_acks_on_failure_or_timeout=False,
        # Task events, so Flower and `celery events` show farm jobs (a task id is a farm job id).
        worker_send_task_events=True,
        task_send_sent_event=True,
        worker_cancel_long_running_tasks_on_connection_loss=False,
        worker_hijack_root_logger=False,
        enable_utc=True,
    )
    return app


def _transport_options(settings: Settings) -> dict[str, float]:
    options: dict[str, float] = {"visibility_timeout": settings.visibility_timeout_s}
    if settings.visibility_timeout_s < 100:
        # kombu sweeps for expired messages every 10 s x 10 calls; a short timeout should mean short.
        options.update(unacked_restore_interval=1, unacked_restore_throttle=1)
    return options
