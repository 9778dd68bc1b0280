"""Locks across machines on the Redis broker (`farm:lock:<name>`), on the same renewable key as a job's lease.

- `build:<recipe>` is held while an artifact is built, so a recipe submitted by many chains trains once.
- `host:<name>` is held while a host measures (idle baseline and benchmark) or trains: RAPL counts the
  whole CPU package, so two workers on one machine must not run at the same time.

A lock expires `ttl_s` after its holder stops renewing it (renewed every ttl/3), so a worker killed while holding
one blocks the others for seconds, not hours. A missing key is taken again only when Redis restarted since the
last renewal; if it expired while Redis was up, another holder may have had it, and `LockHold.lost` says so (the
job's rows are kept, with that note in their warnings). Releasing never raises.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Any

from shared.keys import lock_key
from shared.redact import redact
from worker.delivery import renewable
from worker.delivery.renewable import RenewableKey

log = logging.getLogger(__name__)


@dataclass
class LockHold:
    """What a `with lock(name) as hold:` block holds; `lost` is set when the lock stopped being ours."""

    name: str
    key: RenewableKey | None = None

    @property
    def lost(self) -> str | None:
        return None if self.key is None else self.key.lost


LockFactory = Callable[[str], AbstractContextManager[LockHold]]


@contextmanager
def no_lock(name: str) -> Iterator[LockHold]:
    yield LockHold(name)


def broker_lock(broker_url: str, ttl_s: float = 60.0) -> LockFactory:
    """A `lock(name)` factory on the Redis broker; a no-op on other brokers (the artifact cache still dedupes)."""
    from shared.dispatch import redis_client

    client = redis_client(broker_url)
    if client is None:
        return no_lock

    @contextmanager
    def lock(name: str) -> Iterator[LockHold]:
        key = _held(client, name, ttl_s)
        _take(key)
        key.start()
        try:
            yield LockHold(name, key)
        finally:
            key.release()

    return lock


def _held(client: Any, name: str, ttl_s: float) -> RenewableKey:
    def may_retake(since_renewed_s: float) -> bool:
        return renewable.broker_restarted_within(client, since_renewed_s)

    return RenewableKey(client, lock_key(name), uuid.uuid4().hex, ttl_s, period_s=ttl_s / 3, label=f"lock {name}",
                        may_retake=may_retake)


def _take(key: RenewableKey) -> None:
    """Wait until `key` is ours, however long the broker is away."""
    import redis

    failing = False
    while True:
        try:
            if key.take():
                return
        except redis.RedisError as exc:
            if not failing:
                log.warning("cannot reach the broker to take %s (%s); retrying", key.label, redact(exc))
            failing = True
        time.sleep(0.1 if not failing else 1.0)
