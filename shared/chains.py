"""A chain's rules in one place: what a pruned variant's jobs are, what follows a compress stage, and which stages a
failure, a cancel or a retry reaches. Pure functions over job-like values (anything with `id`, `stage`, `state`,
`chain_id`); the store, the controller and the worker apply them.

A pruned variant is a chain of one `compress` stage (prune, retrain or distill; stores the artifact) and one
`benchmark` stage per target queue (one per host for `--on all`), sharing a `chain_id`. The benchmark stages are sent
when the compress stage is done, by the worker that finished it (or the reaper).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

COMPRESS, BENCHMARK = "compress", "benchmark"
FINISHED = ("done", "failed", "cancelled")
RETRYABLE = ("failed", "cancelled")


class JobLike(Protocol):
    id: Any
    stage: str
    state: str
    chain_id: Any


def is_chained(spec: Any) -> bool:
    """Whether a job spec becomes a chain (its variant prunes, so it needs a compressed artifact first). A comparison
    (`farm compare`) is one job that builds both of its sides on the worker that compares them."""
    return spec.variant.prune is not None and getattr(spec, "compare", None) is None


def stages_of(spec: Any, queues: Sequence[str], train_queue: str) -> list[tuple[str, str]]:
    """(stage, queue) for each job a submission of `spec` stores, in order: the compress stage first for a chain,
    then a benchmark stage per queue (an unchained spec runs on one queue)."""
    if not is_chained(spec):
        if len(queues) != 1:
            raise ValueError("an unchained job runs on one queue")
        return [(BENCHMARK, queues[0])]
    return [(COMPRESS, train_queue), *((BENCHMARK, q) for q in queues)]




def waits_for_compress(job: JobLike) -> bool:
    """A chain's benchmark stage: sent only once its chain's compress stage is done."""
    return job.chain_id is not None and job.stage == BENCHMARK


def sent_after(done: JobLike, chain: Sequence[JobLike]) -> list[JobLike]:
    """What a finished (done) stage lets go: after a compress stage, every queued benchmark stage of its chain."""
    if done.stage != COMPRESS:
        return []
    return [j for j in chain if j.stage == BENCHMARK and j.state == "queued"]


def failed_with(failed: JobLike, chain: Sequence[JobLike]) -> list[JobLike]:
    """The stages a failed stage takes down with it: every queued stage of its chain (they can never run)."""
    return [j for j in chain if j.id != failed.id and j.state == "queued"]


def cancelled_with(job: JobLike, chain: Sequence[JobLike]) -> list[JobLike]:
    """What `farm cancel JOB` cancels: the whole chain, except that one host's benchmark stage of an `--on all` chain
    goes alone while another host's is unfinished (finished ones are left as they are by the store)."""
    others = [j for j in chain if j.stage == BENCHMARK and j.id != job.id and j.state not in FINISHED]
    return [job] if job.stage == BENCHMARK and others else list(chain) or [job]


def retried_with(job: JobLike, chain: Sequence[JobLike]) -> list[JobLike]:
    """What `farm retry JOB` runs again: the job, and for a compress stage every retryable benchmark stage after it."""
    if job.stage != COMPRESS:
        return [job]
    return [job, *(j for j in chain if j.stage == BENCHMARK and j.state in RETRYABLE)]
