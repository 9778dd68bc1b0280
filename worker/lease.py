"""A job's lease on Redis: which delivery runs it, renewed by a thread that rides out broker outages.

The lease value is `<token> <worker node> <pid>`. It expires `ttl_s` after the last renewal, so a worker
that dies (a whole machine, or one pool process) lets the reaper requeue its job. A renewal that finds
another token, or that cannot recreate the key after Redis lost it, marks the lease lost: the run then
stops at its next batch or epoch and writes nothing (the store's fence, `job.lease_token`, decides). Each
renewal also looks for `farm:cancel:<job>` (`farm cancel`) and `farm:stop:<job>` (its worker stopping now): the
run then stops the same way.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from shared.dispatch import cancel_key, lease_key, stop_key
from shared.redact import redact
from worker import held_keys

log = logging.getLogger(__name__)

class Lease:
    """`farm:lease:<job>` held by one delivery; `lost` says why, once another delivery has the job."""

    def __init__(self, client: Any, job_id: str, token: str, worker: str, ttl_s: float,
                 still_ours: Callable[[], bool | None] = lambda: False) -> None:
        self.client, self.job_id, self.token, self.ttl_s = client, job_id, token, ttl_s
        # Asked when the key expired while Redis was up (a long outage, or this holder stalled): whether the store
        # still names this delivery as the job's owner (None: cannot tell now).
        self.still_ours = still_ours
        self.value = f"{token} {worker} {os.getpid()}"
        self.key = lease_key(job_id)
        self.lost: str | None = None
        self.cancelled: str | None = None  # set when `farm cancel` asked this job to stop
        self.interrupted: str | None = None  # set when its worker is stopping now: stop and requeue the job
        self._renewed_at = time.monotonic()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def _ttl_ms(self) -> int:
        return max(1, int(self.ttl_s * 1000))

    def acquire(self, worker: str) -> bool:
        """Take the lease; also when its holder was a process of this worker node that has died."""
        if self.client.set(self.key, self.value, nx=True, px=self._ttl_ms):
            return True
        holder = self.client.get(self.key)
        if holder is None:
            return bool(self.client.set(self.key, self.value, nx=True, px=self._ttl_ms))
        parts = holder.decode(errors="replace").split()
        if len(parts) == 3 and parts[1] == worker and parts[2].isdigit() and not _alive(int(parts[2])):
            # A pool process of this very worker died holding it (OOM, SIGKILL): no need to wait for expiry.
            with self.client.pipeline() as pipe:
                pipe.watch(self.key)
                if pipe.get(self.key) != holder:
                    return False
                pipe.multi()
                pipe.set(self.key, self.value, px=self._ttl_ms)
                pipe.execute()
            return True
        return False

    def renew_once(self) -> bool:
        """One renewal; False (and `lost` set) when the job may be another delivery's now."""
        status = held_keys.renew(self.client, self.key, self.value, self.ttl_s, since_s=self.since_renewed_s)
        if status == held_keys.RECREATED:
            # Redis's uptime only says that a restart *may* explain the missing key: a holder that stalled longer
            # than a young Redis has been up looks the same, and its job may be done by another delivery by now.
            # The store decides, as for a key that expired.
            if self.still_ours() is False:
                held_keys.release(self.client, self.key, self.value)
                status = held_keys.LOST
            else:
                log.warning("lease on job %s was lost with a Redis restart; recreated", self.job_id)
        if status == held_keys.MISSING:
            ours = self.still_ours()
            if ours is None:
                return True  # the store cannot say now; its fence still guards the outcome
            if ours and held_keys.retake(self.client, self.key, self.value, self.ttl_s):
                log.warning("lease on job %s expired (broker unreachable or this worker stalled), but the store "
                            "still names this delivery: taken again", self.job_id)
                status = held_keys.RENEWED
            else:
                status = held_keys.LOST
        if status == held_keys.LOST:
            self.lost = f"lease on job {self.job_id} taken by another delivery (or expired while this one stalled)"
            return False
        self._renewed_at = time.monotonic()
        cancelled, stopping = self.client.exists(cancel_key(self.job_id)), self.client.exists(stop_key(self.job_id))
        if cancelled:
            self.cancelled = f"job {self.job_id} was cancelled (farm cancel)"
        elif stopping:
            self.interrupted = f"job {self.job_id} interrupted: its worker is stopping"
        return True

    @property
    def since_renewed_s(self) -> float:
        return time.monotonic() - self._renewed_at

    def start(self) -> None:
        """Renew every ttl/6 s in a daemon thread until `stop`; broker errors are retried, not fatal."""
        def beat() -> None:
            failing = False
            while not self._stop.wait(self.ttl_s / 6):
                try:
                    if not self.renew_once():
                        log.error("%s; this run stops without writing", self.lost)
                        return
                    if failing:
                        log.warning("lease on job %s renewed again after a broker outage", self.job_id)
                    failing = False
                except Exception as exc:  # a broker blip: keep trying, the key outlives short outages
                    if not failing:
                        log.warning("cannot renew lease on job %s (%s); retrying", self.job_id, redact(exc))
                    failing = True

        self._thread = threading.Thread(target=beat, name=f"farm-lease-{self.job_id[:8]}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def release(self) -> None:
        """Stop renewing and delete the key if it is still ours; errors are logged (the key expires anyway)."""
        self.stop()
        try:
            held_keys.release(self.client, self.key, self.value)
        except Exception as exc:
            log.warning("could not release lease on job %s (%s); it expires in %g s", self.job_id,
                        redact(exc), self.ttl_s)


def renew_value(client: Any, job_id: str, value: str, ttl_s: float) -> int:
    """Keep alive, from another thread, the lease of a job whose outcome waits in the spool (0: lost)."""
    return held_keys.renew(client, lease_key(job_id), value, ttl_s, since_s=None)


def release_value(client: Any, job_id: str, value: str) -> None:
    held_keys.release(client, lease_key(job_id), value)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
