"""The reaper: on whichever worker takes the `farm:reaper` turn, requeue running jobs whose delivery died and
resend queued jobs whose message is gone. It observes, asks `ownership.decide_reap`, and acts.

It scales with the backlog: running jobs (few: at most one per worker) are read in full on every pass, by the
state index, so a backlog of queued jobs can never hide a dead worker's job; queued jobs are read a page at a time
(keyset on the (state, submitted_at, id) index), one page per pass, so every one is looked at within a few passes
whatever their number. Keys are read with one MGET per kind, chain predecessors with one query per pass.
Suspicions are timed on the broker's clock (Redis TIME), never against a submitter's or a worker's wall clock.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlmodel import Session

from shared.db import queries, writes
from shared.db.engine import get_engine
from shared.dispatch import SENDING_MARK_S, dispatch
from shared.keys import CAS, REAPER_TURN, RELEASE, TAKE_OR_KEEP, dispatched_key, lease_key
from shared.routing import LOCAL_QUEUE
from worker.delivery import clock
from worker.delivery.ownership import Act, Marker, ReapLimits, ReapSeen, decide_reap, looks_orphaned
from worker.delivery.renewable import broker_restarted_within

log = logging.getLogger(__name__)
REAP_S = 5.0
# How long the reaper's turn outlives its holder's last pass. A worker tries every REAP_S, on its 2 s beat (so about
# every 6 s): the holder keeps the turn across its own tries. A turn that lasted one REAP_S passed from worker to
# worker when their tries fell less than a second apart around that cycle (a large fleet), and no reaper then saw a
# lost job twice within STALE_S: none was ever sent again.
TURN_S = 2.5 * REAP_S
STALE_S = 2.5 * REAP_S  # a reaper whose last pass is older than this forgets what it timed
QUEUED_GRACE_S = 10.0  # a job this young may still be between its store row and its message
PAGE = 1000  # queued jobs looked at per pass


def _marker(raw: bytes | None) -> Marker:
    if raw is None:
        return Marker.NONE
    return Marker.CLAIMED if raw.startswith(b"claimed:") else Marker.QUEUED


class Reaper:
    """One worker's reaper and its state: when it first saw each job look orphaned (broker seconds), and where its
    walk through the queued jobs stands."""

    def __init__(self, ctx: Any, node: str, page: int = PAGE) -> None:
        self.ctx, self.node, self.page = ctx, node, page
        self.first_seen_s: dict[str, float] = {}
        self.cursor: tuple[Any, Any] | None = None
        self.last_pass_s = float("-inf")  # broker seconds of this reaper's last pass
        self.limits = ReapLimits(running_grace_s=ctx.settings.lease_timeout_s / 3, queued_grace_s=QUEUED_GRACE_S)

    def my_turn(self) -> bool:
        """Take the turn if it is free, or keep it if it is this worker's."""
        return bool(int(self.ctx.client.eval(TAKE_OR_KEEP, 1, REAPER_TURN, self.node, int(TURN_S * 1000))))

    def give_turn_back(self) -> None:
        """After a pass that failed (this worker cannot reach the store, say): another worker may reap meanwhile."""
        try:
            self.ctx.client.eval(RELEASE, 1, REAPER_TURN, self.node)
        except Exception:  # noqa: S110  (the turn expires by itself)
            pass

    def reap(self) -> list[str]:
        """One pass, if it is this worker's turn; returns what it did, a line each. Raises the broker's and the
        store's errors (the maintenance loop retries on its next beat)."""
        ctx, client = self.ctx, self.ctx.client
        if client is None or ctx.app is None or not self.my_turn():
            return []
        try:
            return self._pass()
        except Exception:
            self.give_turn_back()
            raise

    def _pass(self) -> list[str]:
        ctx, client = self.ctx, self.ctx.client
        now_s = clock.broker_now_s(client)
        if now_s - self.last_pass_s > STALE_S:
            # The turn was another worker's meanwhile: what this one timed then is stale (a lease gap it saw long ago
            # must not count towards a new one).
            self.first_seen_s.clear()
        self.last_pass_s = now_s
        fresh = broker_restarted_within(client, ctx.settings.lease_timeout_s + REAP_S)
        engine = get_engine(ctx.settings.database_url)
        with Session(engine) as session:
            running = queries.running_jobs(session=session)
            queued, self.cursor = queries.queued_page(session=session, after=self.cursor, limit=self.page)
            waiting = queries.chains_waiting(session=session, jobs=queued)
            for job in (*running, *queued):
                session.expunge(job)
        jobs = [*running, *queued]
        if not jobs:
            return []
        leases = client.mget([lease_key(j.id) for j in jobs])
        markers = client.mget([dispatched_key(j.id) for j in jobs])
        done: list[str] = []
        for job, lease, raw in zip(jobs, leases, markers, strict=True):
            job_id = str(job.id)
            seen = ReapSeen(state=job.state, broker_answered=True, lease_live=lease is not None, marker=_marker(raw),
                            broker_restarted_recently=fresh, suspect_for_s=0.0,
                            waits_for_earlier_stage=job.id in waiting, local=job.queue == LOCAL_QUEUE)
            if not looks_orphaned(seen):
                self.first_seen_s.pop(job_id, None)
                continue
            seen = ReapSeen(**{**seen.__dict__, "suspect_for_s": now_s - self.first_seen_s.setdefault(job_id, now_s)})
            decision = decide_reap(seen, self.limits)
            if decision.act in (Act.REQUEUE, Act.RESEND) and self._act(engine, job, raw, decision.act,
                                                                        decision.reason):
                self.first_seen_s.pop(job_id, None)
                done.append(f"{job_id} {decision.reason}")
        return done

    def _act(self, engine: Any, job: Any, marker: bytes | None, act: Act, reason: str) -> bool:
        client = self.ctx.client
        if act is Act.REQUEUE:
            with Session(engine) as session:
                if not writes.requeue_job(session=session, job_id=job.id, expected_token=job.lease_token,
                                        reason=reason):
                    return False
        if not int(client.eval(CAS, 1, dispatched_key(job.id), marker or b"", "sending", SENDING_MARK_S * 1000)):
            return False  # another reaper, or a delivery, moved first
        dispatch(self.ctx.app, client, job_id=job.id, stage=job.stage, queue=job.queue, spec=job.spec)
        log.warning("job %s %s", job.id, reason)
        return True
