"""`farm submit` and `farm retry`: put jobs on the queues, and wait for them."""

from __future__ import annotations

import json
import sys
import time
import uuid
from typing import Any

import click

from controller.options import FORMATS, job_options, job_spec, train_overrides
from controller.output import print_results
from controller.services import check_broker, consumed_queues, job_rows, load_settings, open_engine
from shared.errors import FarmError
from shared.redact import redact
from shared.routing import queue_device_class, queue_for_target, training_queue
from shared.settings import Settings


@click.command()
@job_options
@click.option("--on", "target", default="cpu", show_default=True,
              help="Where to benchmark: cpu, gpu (any worker of that class), host:NAME or host:NAME:cpu|gpu.")
@click.option("--train-on", default="auto", show_default=True,
              help="Where to prune and train: auto (gpu when a GPU worker is live, else cpu), or as --on.")
@click.option("--wait", is_flag=True, help="Wait for the job and print its results.")
@click.option("--timeout", type=float, default=None, help="With --wait: give up after this many seconds.")
@click.option("--format", "fmt", type=FORMATS, default="table", show_default=True)
def submit(variant: str, model: str, dataset: str, repeats: int, limit: int | None, until_cv: float | None,
           epochs: int | None, lr: float | None, batch_size: int | None, alpha: float | None,
           temperature: float | None, target: str, train_on: str, wait: bool, timeout: float | None,
           fmt: str) -> None:
    """Queue a benchmark job for the farm's workers (prints the job id).

    A pruned variant becomes a chain of two jobs: compress (prune, retrain or distill) on the training
    queue, then benchmark on the target queue. The compressed model is stored under FARM_ARTIFACTS by
    recipe, so benchmarking it on many machines trains it once.
    """
    from sqlmodel import Session

    from shared.db import crud
    from shared.dispatch import dispatch, redis_client
    from worker.app import make_app

    settings = load_settings()
    if timeout is not None and not timeout > 0:
        raise FarmError(f"--timeout must be a positive number of seconds, got {timeout:g}")
    train = train_overrides(epochs, lr, batch_size, alpha, temperature)
    queue = queue_for_target(target)
    spec = job_spec(variant, model, dataset, repeats, limit, until_cv, train, device_class=queue_device_class(queue))
    if train_on != "auto":
        train_queue = queue_for_target(train_on)
    check_broker(settings)
    app = make_app(settings)
    client = redis_client(settings.broker_url, settings.broker_timeout_s)
    engine = open_engine(settings)
    payload = spec.to_dict()
    chained = spec.variant.prune is not None
    consumed = consumed_queues(client) if wait or (chained and train_on == "auto") else set()
    if chained and train_on == "auto":
        train_queue = training_queue(consumed)
    chain_id = uuid.uuid4() if chained else None
    with Session(engine) as session:
        if chained:
            compress_id = crud.create_job(session=session, variant=spec.variant.name, spec=payload,
                                          queue=train_queue, stage="compress", chain_id=chain_id).id
        job_id = crud.create_job(session=session, variant=spec.variant.name, spec=payload, queue=queue,
                                 chain_id=chain_id).id
    try:  # a chain's benchmark stage is sent by the worker that finishes its compress stage
        if chained:
            dispatch(app, client, job_id=compress_id, stage="compress", queue=train_queue, spec=payload)
        else:
            dispatch(app, client, job_id=job_id, stage="benchmark", queue=queue, spec=payload)
    except Exception as exc:
        with Session(engine) as session:
            for jid in ([compress_id] if chained else []) + [job_id]:
                crud.delete_job(session=session, job_id=jid)
        raise FarmError(f"could not enqueue on {redact(settings.broker_url)}: {redact(exc)}") from None
    if not wait:
        if fmt == "json":
            out = {"job_id": str(job_id), "queue": queue, "variant": spec.variant.name}
            if chained:
                out.update(chain_id=str(chain_id), compress_job_id=str(compress_id), train_queue=train_queue)
            click.echo(json.dumps(out))
        else:
            click.echo(str(job_id))
        return
    for q in ([train_queue] if chained else []) + [queue]:
        if q not in consumed:
            click.echo(f"warning: no live worker consumes queue {q!r}; the job waits until one starts", err=True)
    if chained:
        click.echo(f"chain {chain_id}: compress on {train_queue}, then benchmark on {queue}", err=True)
        _wait_for(settings, compress_id, timeout, label="compress")
    click.echo(f"job {job_id} queued on {queue}", err=True)
    state = _wait_for(settings, job_id, timeout)
    if state.state == "failed":
        click.echo(f"job {job_id} failed on {state.worker or '-'}: {state.error}", err=True)
        sys.exit(1)
    print_results(job_rows(settings, job_id), fmt, summary=True)


def _wait_for(settings: Settings, job_id: uuid.UUID, timeout: float | None, label: str = "job") -> Any:
    from sqlmodel import Session

    from shared.db import crud

    deadline = None if timeout is None else time.monotonic() + timeout
    last = None
    while True:
        with Session(open_engine(settings)) as session:
            job = crud.get_job(session=session, job_id=job_id)
            session.expunge(job)
        shown = (job.state, job.progress)
        if shown != last:
            where = f" on {job.worker}" if job.worker else ""
            progress = f" ({job.progress})" if job.progress else ""
            click.echo(f"{label} {str(job_id)[:8]}: {job.state}{where}{progress}", err=True)
            last = shown
        if job.state in ("done", "failed"):
            return job
        if deadline is not None and time.monotonic() > deadline:
            click.echo(f"timed out after {timeout:g} s; the job stays queued (farm status)", err=True)
            sys.exit(1)
        time.sleep(0.5)


@click.command()
@click.argument("job")
def retry(job: str) -> None:
    """Queue a failed job again (JOB: its id or a unique prefix), with its stored spec; its delivery count and
    dead letters are cleared. A failed chain stage is retried with the stages after it."""
    from sqlmodel import Session

    from shared.db import crud
    from shared.dispatch import deliveries_key, dispatch, forget_dead_letters, lease_key, redis_client
    from worker.app import make_app

    settings = load_settings()
    check_broker(settings)
    client = redis_client(settings.broker_url, settings.broker_timeout_s)
    with Session(open_engine(settings)) as session:
        found = crud.find_job(session=session, prefix=job)
        if found.state != "failed":
            raise FarmError(f"job {found.id} is {found.state}; only a failed job can be retried")
        jobs = [found]
        if found.chain_id is not None and found.stage == "compress":
            later = crud.chain_stage(session=session, chain_id=found.chain_id, stage="benchmark")
            if later is not None and later.state == "failed":
                jobs.append(later)
        for j in jobs:
            crud.reset_for_retry(session=session, job=j)
            if client is not None:  # a stale lease of the delivery that died last would hold the job back
                client.delete(deliveries_key(j.id), lease_key(j.id))
                forget_dead_letters(client, str(j.id))
        first = jobs[0]
        dispatch(make_app(settings), client, job_id=first.id, stage=first.stage, queue=first.queue, spec=first.spec)
        click.echo(str(first.id))

