"""Locks across machines on the Redis broker.

- `build:<recipe>` is held while an artifact is built, so a recipe submitted by many chains trains once.
- `host:<name>` is held while a host measures (idle baseline and benchmark) or trains: RAPL counts the
  whole CPU package, so two workers on one machine must not run at the same time.

A lock expires `ttl_s` after its holder stops renewing it (a heartbeat thread renews it every ttl/3), so a
worker killed while holding one blocks the others for seconds, not hours.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext

LockFactory = Callable[[str], AbstractContextManager[None]]


def broker_lock(broker_url: str, ttl_s: float = 60.0) -> LockFactory:
    """A `lock(name)` factory on the Redis broker; a no-op on other brokers (the artifact cache still dedupes)."""
    if not broker_url.startswith(("redis://", "rediss://", "unix://")):
        return lambda name: nullcontext()

    import redis

    client = redis.Redis.from_url(broker_url)

    @contextmanager
    def lock(name: str) -> Iterator[None]:
        # thread_local=False: the heartbeat thread renews the token that this thread acquired.
        held = client.lock(f"farm:lock:{name}", timeout=ttl_s, blocking_timeout=None, thread_local=False)
        held.acquire()
        stop = threading.Event()

        def heartbeat() -> None:
            while not stop.wait(ttl_s / 3):
                held.reacquire()

        beat = threading.Thread(target=heartbeat, name=f"farm-lock-{name}", daemon=True)
        beat.start()
        try:
            yield
        finally:
            stop.set()
            beat.join()
            held.release()

    return lock
