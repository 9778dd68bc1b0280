"""A lock across machines, held while an artifact is built, so that one recipe is trained once."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from typing import Any

# Released automatically after this long, so a worker that dies while training cannot block others forever.
LOCK_EXPIRY_S = 12 * 3600


def broker_lock(broker_url: str) -> Any:
    """A `lock(name)` factory on the Redis broker; a no-op on other brokers (the cache still dedupes)."""
    if not broker_url.startswith(("redis://", "rediss://", "unix://")):
        return lambda name: nullcontext()

    import redis

    client = redis.Redis.from_url(broker_url)

    @contextmanager
    def lock(name: str) -> Iterator[None]:
        with client.lock(f"farm:build:{name}", timeout=LOCK_EXPIRY_S, blocking_timeout=None):
            yield

    return lock
