"""Thin Celery tasks: parse the payload (a job id and its JobSpec as JSON), call the core, nothing else."""

from __future__ import annotations

import os
from typing import Any

from celery import Task

from shared.settings import Settings
from shared.specs import JobSpec
from worker.app import COMPRESS_TASK, RUN_JOB_TASK, app


def _context(task: Task) -> tuple[Settings, str, str]:
    settings = Settings.from_env()
    device = os.environ.get("FARM_WORKER_DEVICE", "cpu")
    return settings, device, task.request.hostname or settings.hostname


@app.task(name=RUN_JOB_TASK, bind=True)
def run_job_task(self: Task, job_id: str, spec: dict[str, Any]) -> list[int]:
    """Benchmark job `job_id` on this worker's device; returns the new result ids."""
    from worker.jobs import run_job
    from worker.locks import broker_lock

    settings, device, worker = _context(self)
    return run_job(job_id, settings, device, worker_name=worker, spec=JobSpec.from_dict(spec),
                   lock=broker_lock(settings.broker_url, settings.lock_ttl_s))


@app.task(name=COMPRESS_TASK, bind=True)
def compress_task(self: Task, job_id: str, spec: dict[str, Any]) -> str | None:
    """Build and store the variant's artifact (prune, retrain or distill) on this worker's device."""
    from worker.jobs import run_compress_job
    from worker.locks import broker_lock

    settings, device, worker = _context(self)
    return run_compress_job(job_id, settings, device, worker_name=worker, spec=JobSpec.from_dict(spec),
                            lock=broker_lock(settings.broker_url, settings.lock_ttl_s))
