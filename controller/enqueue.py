"""Putting jobs in the store and on the queues: the one path that `farm submit`, `compare`, `retry` and `run` take.

- `Enqueuer.enqueue(spec, queues)` stores a spec's jobs in one transaction (a pruned variant is a chain:
  shared/chains.py decides its stages) and sends the first one's message (shared/dispatch.py). When the send fails,
  the jobs it just stored are deleted (in one transaction) and a FarmError names the broker: no job is left queued
  without a message unless the delete fails too; then the FarmError names the jobs left queued, which the reaper
  sends once the broker is back (it finds a queued job with no marker), so that no one submits them twice.
- `Enqueuer.store_local(spec)` stores a job that this process runs itself (`farm run`, `compare --here`): no broker.
- `Enqueuer.retry(prefix)` puts a failed or cancelled job, and the chain stages after it, back on its queue: the
  broker's stale keys are cleared first, then every stage is reset in one transaction (a broker or store that fails
  leaves none of them half retried), then the first is sent.

New rows go through `shared.db.quick.insert_jobs` (the database driver alone) when the store is at the newest
migration, else the ORM's `shared.db.writes.create_jobs`, which migrates it first; both encode the rows with
`shared.db.quick.new_job_row`.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from controller.services import open_engine
from shared import chains
from shared.errors import FarmError
from shared.redact import redact
from shared.settings import Settings
from shared.specs import JobSpec


def chain_per_recipe(plan: Sequence[tuple[JobSpec, str]]) -> list[tuple[JobSpec, list[str]]]:
    """A plan of (spec, queue) with each pruned spec's queues gathered: one compress stage builds it for all of them
    (`--on all` would otherwise train one recipe once per host, each waiting on the build lock). Order is kept."""
    out: list[tuple[JobSpec, list[str]]] = []
    gathered: dict[str, list[str]] = {}
    for spec, q in plan:
        if not chains.is_chained(spec):
            out.append((spec, [q]))
            continue
        key = json.dumps(spec.to_dict(), sort_keys=True)
        if key in gathered:
            gathered[key].append(q)
        else:
            gathered[key] = [q]
            out.append((spec, gathered[key]))
    return out


@dataclass
class Enqueuer:
    """Stores and sends jobs for one command. `client` is the broker's Redis client (None for another broker, or
    for `store_local`), `app` the Celery app that sends, `producer` a connection opened ahead (`ready_producer`)."""

    settings: Settings
    client: Any | None = None
    app: Any | None = None
    producer: Any | None = None
    _quick: bool | None = None

    def quick(self) -> bool:
        """Whether new rows go in on the driver alone (the store exists at the newest migration); else the ORM
        creates or migrates the store now. Asked once; FarmError when the store cannot be reached."""
        if self._quick is None:
            from shared.db.quick import NotQuick, check
            from shared.db.revision import head_revision

            try:
                check(self.settings.database_url, head_revision())
                self._quick = True
            except NotQuick:
                open_engine(self.settings)
                self._quick = False
        return self._quick

    def store(self, jobs: Sequence[dict[str, Any]]) -> list[uuid.UUID]:
        """Store new queued jobs (keyword dicts of `writes.create_job`) in one transaction; their ids. Ids are chosen
        here, so that a store that fails after the commit landed (its reply lost) can be told apart: the FarmError
        then names the jobs that stay queued, or may, rather than saying that nothing was stored."""
        jobs = [{**job, "id": job.get("id") or uuid.uuid4()} for job in jobs]
        self.quick()  # a store that cannot be reached at all: its FarmError as it is, nothing was sent to it
        try:
            return self._store(jobs)
        except FarmError as exc:
            raise FarmError(f"{exc}{self._landed([job['id'] for job in jobs])}") from None

    def _landed(self, ids: Sequence[uuid.UUID]) -> str:
        """"" when none of the jobs `ids` is in the store; else what the user must know before submitting again."""
        from shared.db.quick import count_jobs

        named = ", ".join(str(i) for i in ids)
        try:  # a fresh connection: the one that failed may be the one that went away
            found = count_jobs(self.settings.database_url, list(ids))
        except Exception:
            return (f"; the store went away while storing, so job(s) {named} may have been stored: if `farm status` "
                    "lists them, the workers' reaper sends them; do not submit again before checking")
        if found:
            return (f"; but the commit landed (its reply was lost), so job(s) {named} stay queued: the workers' reaper "
                    f"sends them (`farm cancel {ids[0]}` drops them)")
        return ""

    def _store(self, jobs: Sequence[dict[str, Any]]) -> list[uuid.UUID]:
        if self.quick():
            from shared.db.quick import NotQuick, insert_jobs
            from shared.db.revision import head_revision

            try:
                return insert_jobs(self.settings.database_url, head_revision(), list(jobs))
            except NotQuick:
                self._quick = False  # migrated meanwhile by a newer farm: the ORM path below
            except Exception as exc:
                raise FarmError(f"could not store the job in {redact(self.settings.database_url)}: "
                                f"{redact(exc)}") from None
        from sqlalchemy.exc import SQLAlchemyError
        from sqlmodel import Session

        from shared.db import writes

        try:  # ids are the client's (new_job_row): read after the commit without another round trip
            with Session(open_engine(self.settings), expire_on_commit=False) as session:
                return [job.id for job in writes.create_jobs(session=session, jobs=jobs)]
        except SQLAlchemyError as exc:
            first = (str(getattr(exc, "orig", None) or exc).strip().splitlines() or [type(exc).__name__])[0]
            raise FarmError(f"could not store the job in {redact(self.settings.database_url)}: "
                            f"{redact(first)}") from None

    def store_local(self, spec: JobSpec, variant: str | None = None) -> uuid.UUID:
        """Store one job that this process runs itself (queue "local"); nothing is sent."""
        from shared.routing import LOCAL_QUEUE

        return self.store([{"variant": variant or spec.variant.name, "spec": spec.to_dict(), "queue": LOCAL_QUEUE,
                            "stage": chains.BENCHMARK}])[0]

    def enqueue(self, spec: JobSpec, queues: Sequence[str], *, train_queue: str | None = None,
                sweep_id: uuid.UUID | None = None, variant: str | None = None) -> list[dict[str, Any]]:
        """Store `spec`'s jobs (a chain for a pruned variant: a compress stage on `train_queue`, then a benchmark
        stage per queue) and send the first one's message; one entry per benchmark job: job_id, queue, variant,
        and for a chain chain_id, compress_job_id and train_queue."""
        from shared.dispatch import dispatch

        if self.app is None:
            raise ValueError("an Enqueuer that sends needs the Celery app")
        name = variant or spec.variant.name
        payload = spec.to_dict()
        chained = chains.is_chained(spec)
        if chained and train_queue is None:
            raise ValueError("a chained spec needs a training queue")
        planned = chains.stages_of(spec, queues, train_queue or "")
        chain_id = uuid.uuid4() if chained else None
        row = {"variant": name, "spec": payload, "chain_id": chain_id, "sweep_id": sweep_id}
        stored = self.store([{**row, "queue": q, "stage": st} for st, q in planned])
        try:  # a chain's benchmark stages are sent by the worker that finishes its compress stage
            first_stage, first_queue = planned[0]
            dispatch(self.app, self.client, job_id=stored[0], stage=first_stage, queue=first_queue, spec=payload,
                     producer=self.producer)
        except Exception as exc:
            reason = f"could not enqueue on {redact(self.settings.broker_url)}: {redact(exc)}"
            kept = self._unstore(stored)
            if kept:  # the job runs after all: say so, or the user submits it again and it runs twice
                reason += (f"; and the store failed while removing the job ({kept}), so job(s) "
                           f"{', '.join(str(j) for j in stored)} stay queued: the workers' reaper sends them once "
                           f"the broker is back (`farm cancel {stored[0]}` drops them)")
            raise FarmError(reason) from None
        compress_id, job_ids = (stored[0], stored[1:]) if chained else (None, stored)
        out: list[dict[str, Any]] = []
        for job_id, q in zip(job_ids, queues, strict=True):
            entry: dict[str, Any] = {"job_id": str(job_id), "queue": q, "variant": name}
            if compress_id is not None:
                entry.update(chain_id=str(chain_id), compress_job_id=str(compress_id), train_queue=train_queue)
            out.append(entry)
        return out

    def _unstore(self, job_ids: Sequence[uuid.UUID]) -> str:
        """Delete jobs whose message was never sent, all or none (a chain's benchmark stages left without their
        compress stage would wait for it for ever); "" when done, else the store's error, redacted (the jobs then
        stay queued and the reaper sends them)."""
        from sqlmodel import Session

        from shared.db import writes

        try:
            with Session(open_engine(self.settings)) as session:
                writes.delete_jobs(session=session, job_ids=job_ids)
        except Exception as exc:
            return redact(f"{type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[0][:200]}")
        return ""

    def retry(self, prefix: str) -> uuid.UUID:
        """Queue a failed or cancelled job again with its stored spec, and for a compress stage the benchmark stages
        after it; their delivery counts, stale leases and dead letters are cleared. The first job's id."""
        from sqlmodel import Session

        from shared.db import queries, writes
        from shared.dispatch import dispatch, forget_dead_letters
        from shared.keys import cancel_key, deliveries_key, lease_key

        if self.app is None:
            raise ValueError("an Enqueuer that sends needs the Celery app")
        with Session(open_engine(self.settings)) as session:
            found = queries.find_job(session=session, prefix=prefix)
            if found.state not in chains.RETRYABLE:
                raise FarmError(f"job {found.id} is {found.state}; only a failed or cancelled job can be retried")
            jobs = chains.retried_with(found, queries.chain_of(session=session, job=found))
            # The broker's keys first, while the jobs are still finished (nothing renews or reads them then): a broker
            # that fails here leaves every stage as it was, never a chain half queued again.
            if self.client is not None:  # a stale lease of the delivery that died last would hold the job back
                try:
                    for j in jobs:
                        self.client.delete(deliveries_key(j.id), lease_key(j.id), cancel_key(j.id))
                        forget_dead_letters(self.client, str(j.id))
                except Exception as exc:
                    raise FarmError(f"cannot reach broker {redact(self.settings.broker_url)} ({redact(exc)}); "
                                    f"nothing was retried") from None
            writes.reset_for_retry(session=session, jobs=jobs)  # every stage in one transaction
            first = jobs[0]
            try:
                dispatch(self.app, self.client, job_id=first.id, stage=first.stage, queue=first.queue,
                         spec=first.spec, producer=self.producer)
            except Exception as exc:  # queued with no marker: the reaper sends it after its grace
                raise FarmError(f"job {first.id} is queued again but its message could not be sent to "
                                f"{redact(self.settings.broker_url)} ({redact(exc)}); the workers' reaper sends "
                                "it once the broker is back") from None
            return first.id
