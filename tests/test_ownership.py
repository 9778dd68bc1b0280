"""Every row of the ownership tables (worker/delivery/ownership.py), as pure function calls: milliseconds each.

The real-process fault tests (tests/test_faults.py, harness/faultkit.py) then check that the I/O shells feed these
decisions what they saw.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from worker.delivery.ownership import (
    Act,
    DeliverySeen,
    JobRow,
    Marker,
    ReapLimits,
    ReapSeen,
    Seen,
    decide_delivery,
    decide_reap,
    looks_orphaned,
)

QUEUED = JobRow("queued", "benchmark")
FRESH = DeliverySeen(stage="benchmark", store_answered=True, row=QUEUED, deliveries=1, max_deliveries=3)
OURS = replace(FRESH, lease=Seen.OURS, claim=Seen.OURS)


@pytest.mark.parametrize(("seen", "act", "said"), [
    (replace(FRESH, store_answered=False, row=None), Act.RETRY_LATER, "store did not answer"),  # 1
    (replace(FRESH, row=None), Act.DEAD_LETTER, "no such job"),  # 2
    (replace(FRESH, row=JobRow("done", "benchmark")), Act.DROP, "already done"),  # 3
    (replace(FRESH, row=JobRow("cancelled", "benchmark"), lease=Seen.OURS), Act.DROP, "already cancelled"),  # 3
    (replace(FRESH, deliveries=None), Act.RETRY_LATER, "counting the delivery"),  # 4
    (FRESH, Act.TAKE_LEASE, ""),  # 5
    (replace(FRESH, lease=Seen.UNKNOWN), Act.RETRY_LATER, "taking the lease"),  # 6: never read as "held"
    (replace(FRESH, lease=Seen.OTHER, payload_agrees=False), Act.DEAD_LETTER, "left alone"),  # 7
    (replace(FRESH, lease=Seen.OTHER), Act.DROP_HELD, "held by another live delivery"),  # 8
    (replace(FRESH, lease=Seen.OURS), Act.CLAIM, ""),  # 9
    (replace(FRESH, lease=Seen.OURS, claim=Seen.UNKNOWN), Act.RETRY_LATER, "claiming"),  # 10
    (replace(FRESH, lease=Seen.OURS, claim=Seen.FINISHED), Act.DROP, "finished while"),  # 11
    (replace(OURS, payload_agrees=False), Act.FAIL, "payload disagrees"),  # 12
    (replace(OURS, stage="compress"), Act.FAIL, "a compress message for a benchmark job"),  # 13
    (replace(OURS, deliveries=4), Act.FAIL, "delivered 4 times"),  # 14
    (replace(OURS, row=JobRow("queued", "benchmark", spec_readable=False)), Act.FAIL, "cannot be read"),  # 15
    (OURS, Act.RUN, ""),  # 16
    (replace(OURS, row=JobRow("running", "benchmark")), Act.RUN, ""),  # 16: an orphaned running job, requeued
    (replace(OURS, deliveries=3), Act.RUN, ""),  # 16: at the limit, not past it
])
def test_each_row_of_the_delivery_table(seen: DeliverySeen, act: Act, said: str) -> None:
    decision = decide_delivery(seen)
    assert decision.act is act
    assert said in decision.reason


def test_a_redelivery_past_the_limit_never_fails_a_job_that_a_live_delivery_holds() -> None:
    """The fault: a redelivery past FARM_MAX_DELIVERIES wrote its refusal before looking at the lease, and failed a
    healthy job running elsewhere. Now the lease comes first: held by another means dropped, never failed."""
    past = replace(FRESH, deliveries=9, row=JobRow("running", "benchmark"))
    assert decide_delivery(past).act is Act.TAKE_LEASE
    assert decide_delivery(replace(past, lease=Seen.OTHER)).act is Act.DROP_HELD
    assert decide_delivery(replace(past, lease=Seen.OURS, claim=Seen.OURS)).act is Act.FAIL


def test_a_broker_that_does_not_answer_never_ends_a_delivery() -> None:
    """The fault: a frozen Redis at pickup read as "held by another live delivery"; the message was acked and the
    job stayed queued for ever. Unknown is never final: every unknown observation means look again."""
    for seen in (replace(FRESH, deliveries=None), replace(FRESH, lease=Seen.UNKNOWN),
                 replace(FRESH, lease=Seen.OURS, claim=Seen.UNKNOWN), replace(FRESH, store_answered=False)):
        assert decide_delivery(seen).act is Act.RETRY_LATER


def test_every_fail_comes_after_this_delivery_holds_the_lease_and_the_claim() -> None:
    for payload_agrees in (True, False):
        for deliveries in (1, 9):
            for stage in ("benchmark", "compress"):
                for lease in Seen:
                    for claim in Seen:
                        seen = replace(FRESH, payload_agrees=payload_agrees, deliveries=deliveries, stage=stage,
                                       lease=lease, claim=claim)
                        if decide_delivery(seen).act is Act.FAIL:
                            assert lease is Seen.OURS and claim is Seen.OURS, seen


LIMITS = ReapLimits(running_grace_s=10.0, queued_grace_s=10.0)
RUNNING = ReapSeen(state="running", broker_answered=True, lease_live=False, marker=Marker.CLAIMED,
                   broker_restarted_recently=False, suspect_for_s=0.0)
LOST = ReapSeen(state="queued", broker_answered=True, lease_live=False, marker=Marker.NONE,
                broker_restarted_recently=False, suspect_for_s=0.0)


@pytest.mark.parametrize(("seen", "act"), [
    (replace(RUNNING, local=True, suspect_for_s=99), Act.KEEP),  # 1: `farm run` holds no lease, never sent
    (replace(LOST, local=True, suspect_for_s=99), Act.KEEP),  # 1
    (replace(RUNNING, broker_answered=False, suspect_for_s=99), Act.KEEP),  # 2
    (replace(RUNNING, lease_live=True, suspect_for_s=99), Act.KEEP),  # 3
    (replace(RUNNING, broker_restarted_recently=True, suspect_for_s=99), Act.KEEP),  # 4
    (replace(RUNNING, suspect_for_s=9.9), Act.WATCH),  # 5
    (replace(RUNNING, suspect_for_s=10.0), Act.REQUEUE),  # 6
    (replace(LOST, waits_for_earlier_stage=True, suspect_for_s=99), Act.KEEP),  # 7
    (replace(LOST, marker=Marker.QUEUED, suspect_for_s=99), Act.KEEP),  # 8
    (replace(LOST, marker=Marker.CLAIMED, lease_live=True, suspect_for_s=99), Act.KEEP),  # 9
    (replace(LOST, marker=Marker.CLAIMED, broker_restarted_recently=True, suspect_for_s=99), Act.KEEP),  # 10
    (replace(LOST, suspect_for_s=5.0), Act.WATCH),  # 11
    (replace(LOST, marker=Marker.CLAIMED, suspect_for_s=5.0), Act.WATCH),  # 11: a claim whose delivery died
    (replace(LOST, suspect_for_s=10.0), Act.RESEND),  # 12
    (replace(LOST, marker=Marker.CLAIMED, suspect_for_s=11.0), Act.RESEND),  # 12
])
def test_each_row_of_the_reaper_table(seen: ReapSeen, act: Act) -> None:
    assert decide_reap(seen, LIMITS).act is act


def test_only_watched_jobs_are_timed() -> None:
    """The reaper times how long a job has looked orphaned; a job that does not look so is never timed."""
    assert looks_orphaned(RUNNING) and looks_orphaned(LOST)
    assert not looks_orphaned(replace(RUNNING, lease_live=True))
    assert not looks_orphaned(replace(LOST, marker=Marker.QUEUED))
    assert not looks_orphaned(replace(LOST, broker_answered=False))
