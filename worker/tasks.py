"""Thin Celery tasks: the task id is the farm job id and the one argument is the job's spec as JSON.

Each task hands the delivery to `worker.delivery.handle.handle_delivery`, which checks the payload against the
stored job, runs it and makes its outcome durable before the task returns (and Celery acks).
"""

from __future__ import annotations

from typing import Any

from celery import Task
from celery.exceptions import Reject

from worker.app import COMPRESS_TASK, RUN_JOB_TASK, app


def _deliver(task: Task, stage: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    from shared.settings import Settings
    from worker.app import app_device, app_threads
    from worker.delivery.handle import Handled, handle_delivery, worker_context

    payload = args[0] if len(args) == 1 and not kwargs else {"args": list(args), "kwargs": kwargs}
    worker = task.request.hostname or Settings.from_env().hostname
    ctx = worker_context(worker, app_device(task.app), app_threads(task.app))
    queue = (task.request.delivery_info or {}).get("routing_key")
    handled = handle_delivery(ctx, task.request.id, payload, stage, queue=queue)
    if handled is Handled.RETRY_LATER:  # the store or broker stayed away: the message goes back on its queue
        raise Reject(f"job {task.request.id}: store or broker unreachable; requeued", requeue=True)
    return handled.value


@app.task(name=RUN_JOB_TASK, bind=True)
def run_job_task(self: Task, *args: Any, **kwargs: Any) -> str:
    """Benchmark the job whose id is this task's id, on this worker's device."""
    return _deliver(self, "benchmark", args, kwargs)


@app.task(name=COMPRESS_TASK, bind=True)
def compress_task(self: Task, *args: Any, **kwargs: Any) -> str:
    """Build and store the variant's artifact (prune, retrain or distill) on this worker's device."""
    return _deliver(self, "compress", args, kwargs)


# The worker's maintenance thread (heartbeat, spool, reaper) starts with the worker's main process.
import worker.delivery.maintenance  # noqa: E402,F401
