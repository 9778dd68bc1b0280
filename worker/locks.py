"""Locks across machines on the Redis broker.

- `build:<recipe>` is held while an artifact is built, so a recipe submitted by many chains trains once.
- `host:<name>` is held while a host measures (idle baseline and benchmark) or trains: RAPL counts the
  whole CPU package, so two workers on one machine must not run at the same time.

A lock expires `ttl_s` after its holder stops renewing it (a heartbeat thread renews it every ttl/3), so a
worker killed while holding one blocks the others for seconds, not hours. Renewal rides out broker outages:
it retries every second, recreates the key with its own token if Redis lost it in a restart, and gives up
only when another holder has the lock or it expired while this holder stalled. Then `LockHold.lost` says
what happened; the job's rows are kept, with that note in their warnings. Releasing never raises.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass

from shared.redact import redact
from worker import held_keys

log = logging.getLogger(__name__)


@dataclass
class LockHold:
    """What a `with lock(name) as hold:` block holds; `lost` is set when the lock stopped being ours."""

    name: str
    lost: str | None = None


LockFactory = Callable[[str], AbstractContextManager[LockHold]]

@contextmanager
def no_lock(name: str) -> Iterator[LockHold]:
    yield LockHold(name)


def broker_lock(broker_url: str, ttl_s: float = 60.0) -> LockFactory:
    """A `lock(name)` factory on the Redis broker; a no-op on other brokers (the artifact cache still dedupes)."""
    import redis

    from shared.dispatch import redis_client

    client = redis_client(broker_url)
    if client is None:
        return no_lock
    ttl_ms = max(1, int(ttl_s * 1000))

    def acquire(key: str, token: str) -> None:
        failing = False
        while True:
            try:
                if client.set(key, token, nx=True, px=ttl_ms):
                    return
            except redis.RedisError as exc:
                if not failing:
                    log.warning("cannot reach the broker to take lock %s (%s); retrying", key, redact(exc))
                failing = True
            time.sleep(0.1 if not failing else 1.0)

    @contextmanager
    def lock(name: str) -> Iterator[LockHold]:
        key, token, hold = f"farm:lock:{name}", uuid.uuid4().hex, LockHold(name)
        acquire(key, token)
        stop = threading.Event()

        def heartbeat() -> None:
            failing_since: float | None = None
            renewed_at = time.monotonic()
            while not stop.wait(ttl_s / 3 if failing_since is None else min(1.0, ttl_s / 3)):
                try:
                    status = held_keys.renew(client, key, token, ttl_s, since_s=time.monotonic() - renewed_at)
                    if status == held_keys.MISSING:  # expired under us: another holder may have had it since
                        status = held_keys.LOST
                    if status != held_keys.LOST:
                        renewed_at = time.monotonic()
                except redis.RedisError as exc:
                    if failing_since is None:
                        failing_since = time.monotonic()
                        log.warning("cannot renew lock %s (%s); retrying every second", name, redact(exc))
                    continue
                if failing_since is not None:
                    log.warning("lock %s renewed after %.1f s without the broker", name,
                                time.monotonic() - failing_since)
                    failing_since = None
                if status == held_keys.RECREATED:
                    log.warning("lock %s was lost with a broker restart; taken again", name)
                if status == held_keys.LOST:
                    hold.lost = (f"lock {name} was taken by another holder (or expired while this job stalled) "
                                 "while this job held it")
                    log.error("%s", hold.lost)
                    return

        beat = threading.Thread(target=heartbeat, name=f"farm-lock-{name}", daemon=True)
        beat.start()
        try:
            yield hold
        finally:
            stop.set()
            beat.join()
            try:
                held_keys.release(client, key, token)
            except redis.RedisError as exc:
                log.warning("could not release lock %s (%s); it expires in %g s", name, redact(exc), ttl_s)

    return lock
