"""The worker: Celery app, compression, meters and the benchmark. `celery -A worker` finds `app` here."""

from worker.app import app

__all__ = ["app"]
