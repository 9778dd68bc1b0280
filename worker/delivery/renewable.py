"""One primitive for a Redis key held by a value (a job's lease, a cross-machine lock): taken, renewed by a
daemon thread, released only by its holder.

A renewal finds the key holding this value (renewed), another value (lost), or nothing. A missing key is the hard
case: Redis may have restarted and lost it (take it again), or it expired while this holder stalled or the broker
was away (someone else may have had it since). The holder's `may_retake(since_renewed_s)` policy decides: True
retakes it, False gives it up, None ("cannot tell now") tries again on the next beat. Broker errors are retried
every second and never fatal: the key outlives short outages.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from enum import Enum
from typing import Any

from shared.keys import RELEASE, RENEW
from shared.redact import redact

log = logging.getLogger(__name__)


class Renewal(Enum):
    RENEWED = "renewed"
    RETAKEN = "retaken"  # it was missing and is this holder's again
    LOST = "lost"  # another value has it, or it is missing and the policy gave it up
    UNDECIDED = "undecided"  # missing, and the policy cannot tell yet


def broker_restarted_within(client: Any, seconds: float) -> bool:
    """Whether Redis started less than `seconds` ago (keys it held then may be gone through no one's doing)."""
    return int(client.info("server")["uptime_in_seconds"]) < seconds + 1


def retake(client: Any, key: str, value: str | bytes, ttl_s: float) -> bool:
    """Set a missing `key` to `value` again; False when someone else took it first."""
    return bool(client.set(key, value, nx=True, px=_ms(ttl_s)))


def release(client: Any, key: str, value: str | bytes) -> None:
    """Delete `key` if `value` still holds it."""
    client.eval(RELEASE, 1, key, value)


def renew_once(client: Any, key: str, value: str | bytes, ttl_s: float,
               may_retake: Callable[[float], bool | None], since_renewed_s: float) -> Renewal:
    """Renew `key` for `ttl_s`; for a missing key ask `may_retake`. Raises the broker's errors."""
    status = int(client.eval(RENEW, 1, key, value, _ms(ttl_s)))
    if status == 1:
        return Renewal.RENEWED
    if status == 0:
        return Renewal.LOST
    verdict = may_retake(since_renewed_s)
    if verdict is None:
        return Renewal.UNDECIDED
    if verdict and retake(client, key, value, ttl_s):
        return Renewal.RETAKEN
    return Renewal.LOST


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))


class RenewableKey:
    """`key` held by `value`: `take()`, then `start()` a thread that renews it every `period_s` until `stop()`;
    `lost` says why once it is another's. `after_renewal()` runs after each successful renewal (a lease looks for
    cancel and stop marks there)."""

    def __init__(self, client: Any, key: str, value: str, ttl_s: float, *, period_s: float, label: str,
                 may_retake: Callable[[float], bool | None],
                 after_renewal: Callable[[], None] = lambda: None) -> None:
        self.client, self.key, self.value, self.ttl_s, self.period_s = client, key, value, ttl_s, period_s
        self.label, self.may_retake, self.after_renewal = label, may_retake, after_renewal
        self.lost: str | None = None
        self._renewed_at = time.monotonic()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def since_renewed_s(self) -> float:
        return time.monotonic() - self._renewed_at

    def take(self) -> bool:
        """SET NX: True when this value now holds the key. Raises the broker's errors."""
        if self.client.set(self.key, self.value, nx=True, px=_ms(self.ttl_s)):
            self._renewed_at = time.monotonic()
            return True
        return False

    def renew(self) -> Renewal:
        """One renewal (raises the broker's errors); sets `lost` when the key is another's."""
        result = renew_once(self.client, self.key, self.value, self.ttl_s, self.may_retake, self.since_renewed_s)
        if result is Renewal.LOST:
            self.lost = (f"{self.label} was taken by another holder (or expired while this one stalled or the broker "
                         "was away)")
        elif result in (Renewal.RENEWED, Renewal.RETAKEN):
            if result is Renewal.RETAKEN:
                log.warning("%s was missing on the broker; taken again", self.label)
            self._renewed_at = time.monotonic()
            self.after_renewal()
        return result

    def start(self) -> None:
        def beat() -> None:
            failing_since: float | None = None
            while not self._stop.wait(self.period_s if failing_since is None else min(1.0, self.period_s)):
                try:
                    result = self.renew()
                except Exception as exc:  # a broker blip: keep trying, the key outlives short outages
                    if failing_since is None:
                        failing_since = time.monotonic()
                        log.warning("cannot renew %s (%s); retrying every second", self.label, redact(exc))
                    continue
                if failing_since is not None:
                    log.warning("%s renewed again after %.1f s without the broker", self.label,
                                time.monotonic() - failing_since)
                    failing_since = None
                if result is Renewal.LOST:
                    log.error("%s", self.lost)
                    return

        self._thread = threading.Thread(target=beat, name=f"farm-{self.label}"[:60], daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()

    def release(self) -> None:
        """Stop renewing and delete the key if it is still ours; errors are logged (the key expires anyway)."""
        self.stop()
        try:
            release(self.client, self.key, self.value)
        except Exception as exc:
            log.warning("could not release %s (%s); it expires in %g s", self.label, redact(exc), self.ttl_s)
