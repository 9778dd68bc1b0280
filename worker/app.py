"""The worker's Celery app: `celery -A worker` finds `app` here. The app itself is built by
shared/celery_app.py (the controller builds the same one to send tasks, without importing the worker); this
module adds what only a worker reads back from it, its device and torch threads.
"""

from __future__ import annotations

from typing import Any

from shared.celery_app import COMPRESS_TASK, RUN_JOB_TASK, make_app
from shared.devices import Device

__all__ = ["COMPRESS_TASK", "RUN_JOB_TASK", "app", "app_device", "app_threads", "make_app"]


def app_device(app: Any) -> Device:
    """The device of the worker that runs `app`: what `farm worker --device` gave it, else the CPU (a worker
    started with plain `celery -A worker worker` consumes the cpu queue)."""
    configured = getattr(getattr(app, "conf", None), "farm_device", None)
    return Device.parse(configured or "cpu")


def app_threads(app: Any) -> int | None:
    """The torch threads of the worker that runs `app` (None: torch's default, all cores)."""
    return getattr(getattr(app, "conf", None), "farm_threads", None)


app = make_app()
