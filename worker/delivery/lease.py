"""A job's lease on Redis (`farm:lease:<job>`): which delivery runs it, renewed by a thread that rides out broker
outages (worker.delivery.renewable).

The value is `<token> <node> <pid> <instance>`: the delivery's token, its worker's node name, the pool process and
the worker process's instance id (`farm worker` makes one at start; its pool processes inherit it). It expires
`ttl_s` after the last renewal, so a worker that dies lets the reaper requeue its job. A missing key is taken again
only while the store still names this delivery (after a Redis restart, unless the store says otherwise). Each
renewal also looks for `farm:cancel:<job>` (`farm cancel`) and `farm:stop:<job>` (its worker stopping now): the run
then stops at its next batch or epoch.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from shared.keys import cancel_key, lease_key, stop_key
from worker.delivery import renewable
from worker.delivery.identity import pid_alive
from worker.delivery.renewable import RenewableKey, Renewal

INSTANCE_ENV = "FARM_WORKER_INSTANCE"


def instance_id() -> str:
    """This worker process's instance id (set by `farm worker`; "-" elsewhere)."""
    return os.environ.get(INSTANCE_ENV) or "-"


class Lease(RenewableKey):
    """`farm:lease:<job>` held by one delivery; `lost`, `cancelled` and `interrupted` say why its run must stop."""

    def __init__(self, client: Any, job_id: str, token: str, worker: str, ttl_s: float,
                 still_ours: Callable[[], bool | None] = lambda: False) -> None:
        self.job_id, self.token = job_id, token
        # Asked when the key is missing: whether the store still names this delivery as the job's owner.
        self.still_ours = still_ours
        self.cancelled: str | None = None  # set when `farm cancel` asked this job to stop
        self.interrupted: str | None = None  # set when its worker is stopping now: stop and requeue the job
        super().__init__(client, lease_key(job_id), f"{token} {worker} {os.getpid()} {instance_id()}", ttl_s,
                         period_s=ttl_s / 6, label=f"lease on job {job_id}", may_retake=self._may_retake,
                         after_renewal=self._look_for_marks)

    def _may_retake(self, since_renewed_s: float) -> bool | None:
        ours = self.still_ours()
        if ours is not None:
            return ours
        # The store cannot say now: after a Redis restart the key is surely ours to take again (its fence still
        # guards the outcome); after an expiry while Redis was up, wait and ask again.
        return True if renewable.broker_restarted_within(self.client, since_renewed_s) else None

    def _look_for_marks(self) -> None:
        if self.client.exists(cancel_key(self.job_id)):
            self.cancelled = f"job {self.job_id} was cancelled (farm cancel)"
        elif self.client.exists(stop_key(self.job_id)):
            self.interrupted = f"job {self.job_id} interrupted: its worker is stopping"

    def acquire(self) -> bool:
        """Take the lease; also when its holder was a pool process of this very worker process that has died (OOM,
        SIGKILL): no need to wait for expiry. Raises the broker's errors."""
        if self.take():
            return True
        holder = self.client.get(self.key)
        if holder is None:
            return self.take()
        parts = holder.decode(errors="replace").split()
        if (len(parts) == 4 and parts[3] == instance_id() != "-" and parts[2].isdigit()
                and not pid_alive(int(parts[2]))):
            with self.client.pipeline() as pipe:
                pipe.watch(self.key)
                if pipe.get(self.key) != holder:
                    return False
                pipe.multi()
                pipe.set(self.key, self.value, px=max(1, int(self.ttl_s * 1000)))
                pipe.execute()
            return True
        return False

    def renew_once(self) -> bool:
        """One renewal (raises the broker's errors); False (and `lost` set) when the job may be another's."""
        return self.renew() is not Renewal.LOST


def keep_alive(client: Any, job_id: str, value: str, ttl_s: float) -> bool:
    """Renew, from another thread, the lease of a job whose outcome waits in the spool; False when it is lost. A
    missing key is taken again only after a Redis restart: if it expired while Redis was up, the reaper may have
    requeued the job, and a new delivery must be able to take it (the spooled outcome is then fenced out)."""
    return renewable.renew_once(client, lease_key(job_id), value, ttl_s,
                                lambda _s: renewable.broker_restarted_within(client, ttl_s), 0.0) is not Renewal.LOST


def release_value(client: Any, job_id: str, value: str) -> None:
    renewable.release(client, lease_key(job_id), value)
