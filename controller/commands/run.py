"""`farm run`: benchmark a variant and each stage leading to it, here, without a broker."""

from __future__ import annotations

from typing import Any

import click

from controller.deployer import batch_sizes, bench_fields
from controller.options import DEVICE, FORMATS, job_options, job_spec, train_overrides
from controller.output import print_rows, print_summary
from controller.services import job_rows, load_settings, open_engine
from shared.devices import Device
from shared.errors import FarmError
from shared.specs import parse_variant


@click.command()
@job_options
@click.option("--device", type=DEVICE, default="cpu", show_default=True, help="cpu or cuda:N (cuda means cuda:0).")
@click.option("--only", is_flag=True, help="Benchmark only VARIANT, not each stage that leads to it.")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="torch threads (default: torch's, every CPU). Every result records it.")
@click.option("--format", "fmt", type=FORMATS, default="table", show_default=True)
def run(variant: str, model: str, dataset: str, repeats: int, limit: int | None, runtime: str | None,
        until_cv: float | None,
        epochs: int | None, lr: float | None, train_batch_size: int | None, alpha: float | None,
        temperature: float | None, device: Device, only: bool, threads: int | None, fmt: str, **deploy: Any) -> None:
    """Benchmark a variant here, in this process, with no broker; store and print the results.

    A composed variant also benchmarks each stage that leads to it (baseline, pruned, pruned-distilled,
    pruned-distilled-uint8), giving a table like the seed's Table III. Trained stages are cached by recipe.
    --batch-sizes runs each of them at each inference batch size; --scenario picks MLPerf's loop.
    """
    from sqlmodel import Session

    from controller.enqueue import Enqueuer
    from shared.db import queries, writes
    from worker.delivery.handle import flush_spool, handle_delivery, local_context
    from worker.devices import open_device
    from worker.jobs import preflight

    if not variant:
        raise click.UsageError("Missing option '--variant' / '-v'.")
    settings = load_settings()
    where = device
    train = train_overrides(epochs, lr, train_batch_size, alpha, temperature)
    benches = [bench_fields(**{**deploy, "batch_size": size})
               for size in batch_sizes(deploy.get("batch_size"), deploy.get("batch_sizes"))]
    target = job_spec(variant, model, dataset, repeats, limit, until_cv, train, device_class=where.device_class,
                      runtime=runtime, bench=benches[0])
    names = [target.variant.name] if only else target.variant.stage_names()
    open_device(where)  # FarmError now when the device is absent here
    preflight(target, settings)
    engine = open_engine(settings)
    enqueuer = Enqueuer(settings)
    ctx = local_context(settings, where, threads, echo=lambda text: click.echo(f"  {text}", err=True))
    if flush_spool(ctx):
        click.echo(f"warning: outcomes still wait in the spool {settings.spool_dir}", err=True)
    rows: list[dict[str, Any]] = []
    job_ids = []
    for bench, name in [(b, n) for b in benches for n in names]:
        trained = parse_variant(name, model=target.model).train is not None
        spec = job_spec(name, target.model, target.dataset, repeats, limit, until_cv, train if trained else None,
                        device_class=where.device_class, runtime=target.runtime, bench=bench)
        job_id = enqueuer.store_local(spec)
        click.echo(f"job {job_id}: {name} on {where} ({settings.hostname})", err=True)
        what = handle_delivery(ctx, str(job_id), None, "benchmark")
        if what == "spooled":
            raise FarmError(f"the store failed while saving job {job_id}; its results are kept in "
                            f"{settings.spool_dir} and are written by the next `farm run` or `farm worker`")
        with Session(engine) as session:
            job = queries.get_job(session=session, job_id=job_id)
            if job.state == "failed":  # a job that could not run leaves nothing behind
                error = job.error
                writes.delete_job(session=session, job_id=job_id)
                raise FarmError(f"{name}: {error}")
        rows += job_rows(settings, job_id)
        job_ids.append(job_id)
    if fmt == "table":
        print_summary(queries.ResultFilter(job_ids=tuple(job_ids)), fmt)
    else:
        print_rows(rows, fmt)

