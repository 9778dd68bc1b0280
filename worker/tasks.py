"""Thin Celery tasks: parse the payload, call the core, let the core store the result."""

from __future__ import annotations

import os
from typing import Any

from celery import Task

from shared.settings import Settings
from shared.specs import JobSpec
from worker.app import RUN_JOB_TASK, app


class JobTask(Task):
    """Base task: user errors fail the job once; they are not retried."""

    acks_late = True


@app.task(name=RUN_JOB_TASK, base=JobTask, bind=True)
def run_job_task(self: Task, job_id: str, spec: dict[str, Any]) -> list[int]:
    """Run job `job_id` (its JobSpec as a JSON object) on this worker's device; returns the new result ids."""
    from worker.jobs import run_job

    settings = Settings.from_env()
    device = os.environ.get("FARM_WORKER_DEVICE", "cpu")
    worker = self.request.hostname or settings.hostname
    return run_job(job_id, settings, device, worker_name=worker, spec=JobSpec.from_dict(spec))
