"""Who owns a job: the decisions of a delivery and of the reaper, as pure functions over what they observed.

No Redis, no SQL, no clock here. The I/O shells (`worker.delivery.handle` for a delivery, `worker.delivery.reaper`
for the reaper) read the job row, the broker keys and the broker's clock once, build a `DeliverySeen` or a
`ReapSeen`, and carry out the `Decision` they get back. "I could not see" (the store or the broker did not answer)
is its own input and leads to waiting and looking again, never to a guess.

A delivery walks `decide_delivery` until it reaches a final act: TAKE_LEASE and CLAIM ask the shell to act and
observe again. Its table, first matching row wins:

| # | observed                                                   | act          | why                                  |
|---|------------------------------------------------------------|--------------|--------------------------------------|
| 1 | the store did not answer                                   | RETRY_LATER  | no decision without the row          |
| 2 | no row for the job                                         | DEAD_LETTER  | a message for a job farm never stored|
| 3 | the row is done, failed or cancelled                       | DROP         | a duplicate of a finished job        |
| 4 | the broker did not answer the delivery count               | RETRY_LATER  | a blip is not a reason to run or drop|
| 5 | lease not tried yet                                        | TAKE_LEASE   |                                      |
| 6 | the broker did not answer while taking the lease           | RETRY_LATER  | never read as "held by another"      |
| 7 | another live delivery holds the lease, payload disagrees   | DEAD_LETTER  | the message parked, the job untouched|
| 8 | another live delivery holds the lease                      | DROP_HELD    | its holder runs it (marker: claimed) |
| 9 | lease ours, not claimed yet                                | CLAIM        | the store names this delivery        |
|10 | claim: the store did not answer                            | RETRY_LATER  | lease released, message requeued     |
|11 | claim: the job finished meanwhile                          | DROP         |                                      |
|12 | claimed; payload disagrees with the stored spec            | FAIL         | refused, dead-lettered               |
|13 | claimed; a message for another stage                       | FAIL         | refused, dead-lettered               |
|14 | claimed; delivered more than FARM_MAX_DELIVERIES times     | FAIL         | its worker died each time            |
|15 | claimed; the stored spec cannot be read                    | FAIL         |                                      |
|16 | claimed                                                    | RUN          |                                      |

Every FAIL is written under this delivery's own lease and claim, so a job that another live delivery runs is
never failed by a redelivery (rows 7, 8 come first), and the store's fence takes only outcomes whose token it holds.

The reaper's table (`decide_reap`), for each queued or running job, first matching row wins:

| # | job     | observed                                                      | act     |
|---|---------|---------------------------------------------------------------|---------|
| 1 | any     | run by `farm run` in its own process (queue local, no lease)  | KEEP    |
| 2 | any     | the broker did not answer for its keys                        | KEEP    |
| 3 | running | a lease is live                                               | KEEP    |
| 4 | running | Redis restarted within a lease period (holders recreate keys) | KEEP    |
| 5 | running | no lease, seen so for less than the running grace             | WATCH   |
| 6 | running | no lease for the running grace                                | REQUEUE |
| 7 | queued  | a chain's later stage whose compress stage is not done        | KEEP    |
| 8 | queued  | marker "queued" (its message waits on a queue)                | KEEP    |
| 9 | queued  | marker "claimed", a lease is live                             | KEEP    |
|10 | queued  | marker "claimed", Redis restarted within a lease period       | KEEP    |
|11 | queued  | no marker or a dead claim, seen so for less than the grace    | WATCH   |
|12 | queued  | no marker or a dead claim for the queued grace                | RESEND  |

"Seen so for" is measured on the broker's clock by the reaper that watches, never against a submitter's or a
worker's wall clock, so a skewed clock anywhere neither hides a lost job nor requeues a live one.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

FINISHED = ("done", "failed", "cancelled")


class Act(Enum):
    """What the shell does next."""

    TAKE_LEASE = "take-lease"
    CLAIM = "claim"
    RUN = "run"
    DROP = "drop"  # a duplicate: ack, do nothing
    DROP_HELD = "drop-held"  # another live delivery runs it: ack, mark the job claimed by its holder
    FAIL = "fail"  # write a failed outcome under this delivery's claim, dead-letter the message
    DEAD_LETTER = "dead-letter"  # park the message; touch no job
    RETRY_LATER = "retry-later"  # wait, look again; past the wait bound put the message back
    KEEP = "keep"  # the reaper leaves the job alone
    WATCH = "watch"  # the reaper starts or continues timing a suspicion
    REQUEUE = "requeue"  # a running job whose delivery died: back to queued, sent again
    RESEND = "resend"  # a queued job whose message is gone: sent again


class Seen(Enum):
    """The outcome of one step the shell tried (taking the lease, claiming in the store)."""

    NOT_TRIED = "not-tried"
    OURS = "ours"  # lease taken by this delivery / job claimed by it
    OTHER = "other"  # lease held by another live delivery
    FINISHED = "finished"  # claim found the job finished meanwhile
    UNKNOWN = "unknown"  # the broker or the store did not answer


@dataclass(frozen=True)
class JobRow:
    """The job row as the store returned it."""

    state: str
    stage: str
    spec_readable: bool = True


@dataclass(frozen=True)
class DeliverySeen:
    """What one delivery has observed so far."""

    stage: str  # the message's stage
    store_answered: bool
    row: JobRow | None  # None: no such job (when the store answered)
    deliveries: int | None  # None: the broker did not answer the count
    max_deliveries: int
    payload_agrees: bool = True
    lease: Seen = Seen.NOT_TRIED
    claim: Seen = Seen.NOT_TRIED


@dataclass(frozen=True)
class Decision:
    act: Act
    reason: str = ""


def decide_delivery(o: DeliverySeen) -> Decision:
    """One row of the delivery table (module doc) per branch, in order."""
    if not o.store_answered:
        return Decision(Act.RETRY_LATER, "the store did not answer")
    if o.row is None:
        return Decision(Act.DEAD_LETTER, "no such job in the store")
    if o.row.state in FINISHED:
        return Decision(Act.DROP, f"the job is already {o.row.state}; duplicate delivery ignored")
    if o.deliveries is None:
        return Decision(Act.RETRY_LATER, "the broker did not answer while counting the delivery")
    if o.lease is Seen.NOT_TRIED:
        return Decision(Act.TAKE_LEASE)
    if o.lease is Seen.OTHER:
        if not o.payload_agrees:
            return Decision(Act.DEAD_LETTER, "refused: the queue payload disagrees with the stored spec (the job "
                                              "itself runs under another live delivery and is left alone)")
        return Decision(Act.DROP_HELD, "held by another live delivery; this one is dropped")
    if o.lease is not Seen.OURS:
        return Decision(Act.RETRY_LATER, "the broker did not answer while taking the lease")
    if o.claim is Seen.NOT_TRIED:
        return Decision(Act.CLAIM)
    if o.claim is not Seen.OURS and o.claim is not Seen.FINISHED:
        return Decision(Act.RETRY_LATER, "the store did not answer while claiming the job")
    if o.claim is Seen.FINISHED:
        return Decision(Act.DROP, "the job finished while this delivery claimed it")
    if not o.payload_agrees:
        return Decision(Act.FAIL, "refused: the queue payload disagrees with the stored spec")
    if o.stage != o.row.stage:
        return Decision(Act.FAIL, f"refused: a {o.stage} message for a {o.row.stage} job")
    if o.deliveries > o.max_deliveries:
        return Decision(Act.FAIL, f"delivered {o.deliveries} times without finishing (its worker died each time; "
                                  f"FARM_MAX_DELIVERIES={o.max_deliveries}); dead-lettered, `farm retry` runs it again")
    if not o.row.spec_readable:
        return Decision(Act.FAIL, "refused: the stored spec cannot be read")
    return Decision(Act.RUN)


class Marker(Enum):
    """`farm:dispatched:<job>` as the reaper read it."""

    NONE = "none"
    QUEUED = "queued"
    CLAIMED = "claimed"


@dataclass(frozen=True)
class ReapSeen:
    """What the reaper observed of one queued or running job."""

    state: str  # queued | running
    broker_answered: bool
    lease_live: bool
    marker: Marker
    broker_restarted_recently: bool  # Redis came up within a lease period: live holders may not have renewed yet
    suspect_for_s: float  # how long, on the broker's clock, this reaper has seen the job look orphaned (0: just now)
    waits_for_earlier_stage: bool = False  # a chain's later stage whose compress stage is not done
    local: bool = False  # a job that `farm run` or `compare --here` runs in its own process (no lease, never sent)


@dataclass(frozen=True)
class ReapLimits:
    running_grace_s: float  # a lease must stay gone this long before its job is requeued
    queued_grace_s: float  # a queued job must stay without a message this long before it is sent again


def looks_orphaned(o: ReapSeen) -> bool:
    """Whether the job is a candidate (WATCH, REQUEUE or RESEND): the reaper times how long this stays true."""
    return decide_reap(o, ReapLimits(float("inf"), float("inf"))).act is Act.WATCH


def decide_reap(o: ReapSeen, limits: ReapLimits) -> Decision:
    """One row of the reaper table (module doc) per branch, in order."""
    if o.local:
        return Decision(Act.KEEP, "run by `farm run` in its own process, which holds no lease")
    if not o.broker_answered:
        return Decision(Act.KEEP, "the broker did not answer")
    if o.state == "running":
        if o.lease_live:
            return Decision(Act.KEEP, "its lease is live")
        if o.broker_restarted_recently:
            return Decision(Act.KEEP, "Redis restarted within a lease period; its holder may still renew")
        if o.suspect_for_s < limits.running_grace_s:
            return Decision(Act.WATCH, "no lease")
        return Decision(Act.REQUEUE, f"requeued: its worker stopped renewing its lease for {o.suspect_for_s:.0f} s")
    if o.waits_for_earlier_stage:
        return Decision(Act.KEEP, "sent when its compress stage is done")
    if o.marker is Marker.QUEUED:
        return Decision(Act.KEEP, "its message waits on a queue")
    if o.marker is Marker.CLAIMED and (o.lease_live or o.broker_restarted_recently):
        return Decision(Act.KEEP, "a live delivery has claimed it")
    if o.suspect_for_s < limits.queued_grace_s:
        return Decision(Act.WATCH, "no message")
    return Decision(Act.RESEND, "requeued: its message was lost from the broker" if o.marker is Marker.NONE
                    else "requeued: the delivery that claimed it died before running it")
