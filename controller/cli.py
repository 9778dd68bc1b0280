"""The `farm` command: one click command per user action. Parse, call, print."""

from __future__ import annotations

import json
import os
import sys
import time
import uuid
from typing import Any

import click

from shared.errors import FarmError
from shared.settings import Settings, host_queue
from shared.specs import (
    BUILTIN_MODEL,
    DEFAULT_DATASET,
    QUANT_SCHEMES,
    BenchSpec,
    JobSpec,
    example_variants,
    parse_variant,
    queue_for_target,
)

FORMATS = click.Choice(["table", "json", "csv"])


class FarmGroup(click.Group):
    """Turns FarmError (bad input, unreachable services) into one line on stderr and exit code 2."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except FarmError as exc:
            click.echo(f"farm: error: {exc}", err=True)
            ctx.exit(2)


@click.group(cls=FarmGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="farm")
def main() -> None:
    """farm: measure how much energy and time model compression saves at inference.

    Settings come from FARM_BROKER_URL, FARM_DATABASE_URL, FARM_ARTIFACTS and FARM_HOSTNAME
    (see the README). `farm run` needs no broker; `farm submit` sends jobs to `farm worker`s.
    """


def _settings() -> Settings:
    return Settings.from_env()


def _engine(settings: Settings) -> Any:
    from shared.db.engine import get_engine

    return get_engine(settings.database_url)


def _job_spec(variant: str, model: str, dataset: str, repeats: int, limit: int | None,
              until_cv: float | None) -> JobSpec:
    if repeats < 1:
        raise FarmError(f"--repeats must be at least 1, got {repeats}")
    if limit is not None and limit < 1:
        raise FarmError(f"--limit must be at least 1, got {limit}")
    if until_cv is not None and not 0 < until_cv < 1:
        raise FarmError(f"--until-cv must be in (0, 1), e.g. 0.02, got {until_cv}")
    return JobSpec(
        variant=parse_variant(variant, builtin=model == BUILTIN_MODEL),
        model=model,
        dataset=dataset,
        bench=BenchSpec(repeats=repeats, limit=limit, until_cv=until_cv),
    )


def job_options(fn: Any) -> Any:
    """The options that describe a job, shared by `run` and `submit`."""
    options = [
        click.option("--variant", "-v", required=True, help="Variant name; `farm variants` lists the grammar."),
        click.option("--model", "-m", default=BUILTIN_MODEL, show_default=True,
                     help="Base model: the built-in ViT, a hub id, or a local model folder."),
        click.option("--dataset", "-d", default=DEFAULT_DATASET, show_default=True,
                     help="digits, cifar100:PATH (archive or folder) or synthetic:N."),
        click.option("--repeats", "-r", default=5, show_default=True, type=int,
                     help="Benchmark passes over the test split; one result row each."),
        click.option("--limit", type=int, default=None, help="Benchmark only the first N test samples."),
        click.option("--until-cv", type=float, default=None,
                     help="Repeat until time/sample's coefficient of variation is at most this (e.g. 0.02)."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def _print_results(rows: list[dict[str, Any]], fmt: str, summary: bool) -> None:
    from controller import render
    from shared.db.models import RESULT_COLUMNS

    if fmt == "json":
        click.echo(render.to_json([{c: r.get(c) for c in RESULT_COLUMNS} for r in rows]))
    elif fmt == "csv":
        click.echo(render.to_csv(rows, RESULT_COLUMNS), nl=False)
    elif summary:
        click.echo(render.to_table(render.summarize(rows), render.SUMMARY_COLUMNS, render.SUMMARY_HEADERS))
        sources = {r["energy_source"] for r in rows}
        if any(s.startswith("estimated:") for s in sources):
            click.echo("energy is ESTIMATED from process CPU time (no RAPL/NVML here); see FARM_CPU_WATTS_PER_CORE",
                       err=True)
    else:
        view = [{**r, "job_id": str(r["job_id"])[:8]} for r in rows]
        click.echo(render.to_table(view, render.RESULT_TABLE_COLUMNS, render.RESULT_TABLE_HEADERS))


def _job_rows(settings: Settings, job_id: uuid.UUID) -> list[dict[str, Any]]:
    from sqlmodel import Session

    from shared.db import crud

    with Session(_engine(settings)) as session:
        results = crud.query_results(session=session, filters=crud.ResultFilter(job_id=job_id))
        return [r.model_dump() for r in results]


@main.command()
@job_options
@click.option("--device", default="cpu", show_default=True, help="cpu or cuda:N.")
@click.option("--format", "fmt", type=FORMATS, default="table", show_default=True)
def run(variant: str, model: str, dataset: str, repeats: int, limit: int | None, until_cv: float | None,
        device: str, fmt: str) -> None:
    """Benchmark a variant here, in this process, with no broker; store and print the results."""
    from sqlmodel import Session

    from shared.db import crud
    from worker.jobs import check_device, run_job

    settings = _settings()
    spec = _job_spec(variant, model, dataset, repeats, limit, until_cv)
    check_device(device)
    with Session(_engine(settings)) as session:
        job = crud.create_job(session=session, variant=spec.variant.name, spec=spec.to_dict(), queue="local")
        job_id = job.id
    click.echo(f"job {job_id}: {spec.variant.name} on {device} ({settings.hostname})", err=True)
    run_job(job_id, settings, device, worker_name=f"local@{settings.hostname}", spec=spec)
    _print_results(_job_rows(settings, job_id), fmt, summary=True)


def check_broker(settings: Settings) -> None:
    """FarmError naming the URL when the broker does not answer within the timeout."""
    from kombu import Connection

    timeout = settings.broker_timeout_s
    try:
        with Connection(settings.broker_url, connect_timeout=timeout, transport_options={
            "socket_connect_timeout": timeout, "socket_timeout": timeout,
        }) as conn:
            conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=timeout)
    except Exception as exc:  # kombu raises transport-specific types
        raise FarmError(f"cannot reach broker {_redact(settings.broker_url)}: {exc}") from None


def _redact(url: str) -> str:
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url


@main.command()
@job_options
@click.option("--on", "target", default="cpu", show_default=True,
              help="Where to benchmark: cpu, gpu (any worker of that class) or host:NAME.")
@click.option("--wait", is_flag=True, help="Wait for the job and print its results.")
@click.option("--timeout", type=float, default=None, help="With --wait: give up after this many seconds.")
@click.option("--format", "fmt", type=FORMATS, default="table", show_default=True)
def submit(variant: str, model: str, dataset: str, repeats: int, limit: int | None, until_cv: float | None,
           target: str, wait: bool, timeout: float | None, fmt: str) -> None:
    """Queue a benchmark job for the farm's workers (prints the job id)."""
    from sqlmodel import Session

    from shared.db import crud
    from worker.app import RUN_JOB_TASK, make_app

    settings = _settings()
    spec = _job_spec(variant, model, dataset, repeats, limit, until_cv)
    queue = queue_for_target(target)
    check_broker(settings)
    engine = _engine(settings)
    with Session(engine) as session:
        job = crud.create_job(session=session, variant=spec.variant.name, spec=spec.to_dict(), queue=queue)
        job_id = job.id
    try:
        make_app(settings).send_task(RUN_JOB_TASK, args=[str(job_id), spec.to_dict()], queue=queue)
    except Exception as exc:
        with Session(engine) as session:
            crud.delete_job(session=session, job_id=job_id)
        raise FarmError(f"could not enqueue on {_redact(settings.broker_url)}: {exc}") from None
    if not wait:
        if fmt == "json":
            click.echo(json.dumps({"job_id": str(job_id), "queue": queue, "variant": spec.variant.name}))
        else:
            click.echo(str(job_id))
        return
    click.echo(f"job {job_id} queued on {queue}", err=True)
    state = _wait_for(settings, job_id, timeout)
    if state.state == "failed":
        click.echo(f"job {job_id} failed on {state.worker}: {state.error}", err=True)
        sys.exit(1)
    _print_results(_job_rows(settings, job_id), fmt, summary=True)


def _wait_for(settings: Settings, job_id: uuid.UUID, timeout: float | None) -> Any:
    from sqlmodel import Session

    from shared.db import crud

    deadline = None if timeout is None else time.monotonic() + timeout
    last = None
    while True:
        with Session(_engine(settings)) as session:
            job = crud.get_job(session=session, job_id=job_id)
            session.expunge(job)
        if job.state != last:
            where = f" on {job.worker}" if job.worker else ""
            click.echo(f"job {str(job_id)[:8]}: {job.state}{where}", err=True)
            last = job.state
        if job.state in ("done", "failed"):
            return job
        if deadline is not None and time.monotonic() > deadline:
            click.echo(f"timed out after {timeout:g} s; the job stays queued (farm status)", err=True)
            sys.exit(1)
        time.sleep(0.5)


def device_class(device: str) -> str:
    if device == "cpu":
        return "cpu"
    if device.startswith("cuda"):
        return "gpu"
    raise FarmError(f"--device must be cpu or cuda:N, got {device!r}")


@main.command()
@click.option("--device", required=True, help="cpu or cuda:N: the device this worker benchmarks on.")
@click.option("--loglevel", default="info", show_default=True,
              type=click.Choice(["debug", "info", "warning", "error"]))
def worker(device: str, loglevel: str) -> None:
    """Start a Celery worker pinned to DEVICE: it consumes its device class's queue and its host's queue.

    One job at a time, acknowledged only when done, so a job whose worker dies goes back to the queue.
    """
    from worker.app import make_app
    from worker.jobs import check_device

    settings = _settings()
    cls = device_class(device)
    check_device(device)
    check_broker(settings)
    _engine(settings)  # fail fast on a bad store, and migrate it
    os.environ["FARM_WORKER_DEVICE"] = device
    queues = [cls, host_queue(settings.hostname)]
    node = f"farm-{device.replace(':', '')}@{settings.hostname}"
    click.echo(f"worker {node}: device {device}, queues {', '.join(queues)}", err=True)
    make_app(settings).worker_main([
        "worker", "--queues", ",".join(queues), "--concurrency", "1", "--pool", "prefork",
        "--hostname", node, "--loglevel", loglevel, "--without-gossip", "--without-mingle",
    ])


@main.command()
@click.option("--limit", default=20, show_default=True, help="How many recent jobs to show.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
def status(limit: int, fmt: str) -> None:
    """Show recent jobs and the live workers (workers need the broker; jobs only the store)."""
    from sqlmodel import Session

    from controller import render
    from shared.db import crud
    from worker.app import make_app

    settings = _settings()
    with Session(_engine(settings)) as session:
        jobs = [j.model_dump(exclude={"spec"}) for j in crud.list_jobs(session=session, limit=limit)]
    workers: list[dict[str, Any]] = []
    broker_error = None
    try:
        check_broker(settings)
        inspector = make_app(settings).control.inspect(timeout=1.0)
        queues = inspector.active_queues() or {}
        active = inspector.active() or {}
        for name in sorted(queues):
            workers.append({"worker": name, "queues": ",".join(q["name"] for q in queues[name]),
                            "running": len(active.get(name, []))})
    except FarmError as exc:
        broker_error = str(exc)
    if fmt == "json":
        click.echo(json.dumps({"jobs": [{k: render.jsonable(v) for k, v in j.items()} for j in jobs],
                               "workers": workers, "broker_error": broker_error}, indent=2))
        return
    click.echo(render.to_table([{**j, "id": str(j["id"])[:8]} for j in jobs],
                               ("id", "variant", "queue", "state", "submitted_at", "worker", "error")))
    click.echo("")
    if broker_error:
        click.echo(f"workers: unknown ({broker_error})")
    elif workers:
        click.echo(render.to_table(workers, ("worker", "queues", "running")))
    else:
        click.echo("workers: none alive")


@main.command()
@click.option("--variant", default=None, help="Only this variant.")
@click.option("--host", default=None, help="Only results from this host.")
@click.option("--hardware", default=None, help="Substring of the CPU model, GPU name or device (case-insensitive).")
@click.option("--since", default=None, help="Started at or after: ISO date/time (local if no zone) or an age (2h, 7d).")
@click.option("--until", default=None, help="Started before: same forms as --since.")
@click.option("--hours", default=None, help="Local hours, end excluded: 9-17 (wraps: 22-6).")
@click.option("--job", "job_id", default=None, help="Only this job's results.")
@click.option("--summary", is_flag=True, help="Mean ± std per variant, host and device instead of one row per repeat.")
@click.option("--format", "fmt", type=FORMATS, default="table", show_default=True)
def results(variant: str | None, host: str | None, hardware: str | None, since: str | None, until: str | None,
            hours: str | None, job_id: str | None, summary: bool, fmt: str) -> None:
    """List stored results, one row per repeat. JSON objects carry every column of the result table."""
    from sqlmodel import Session

    from controller.timefilters import parse_hours, parse_moment
    from shared.db import crud

    filters = crud.ResultFilter(
        variant=variant,
        host=host,
        hardware=hardware,
        since=parse_moment(since, option="--since") if since else None,
        until=parse_moment(until, option="--until") if until else None,
        hours=parse_hours(hours) if hours else None,
        job_id=_uuid(job_id) if job_id else None,
    )
    settings = _settings()
    with Session(_engine(settings)) as session:
        rows = [r.model_dump() for r in crud.query_results(session=session, filters=filters)]
    _print_results(rows, fmt, summary=summary)


def _uuid(text: str) -> uuid.UUID:
    try:
        return uuid.UUID(text)
    except ValueError:
        raise FarmError(f"--job must be a job id (a UUID), got {text!r}") from None


@main.command()
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
def variants(fmt: str) -> None:
    """Explain the variant grammar and list examples."""
    import shared.specs as specs

    if fmt == "json":
        click.echo(json.dumps({"examples": example_variants(), "quantization": QUANT_SCHEMES}, indent=2))
        return
    click.echo((specs.__doc__ or "").split("Grammar", 1)[1].strip().lstrip("(").split("\n", 1)[1])
    click.echo("\nQuantization schemes:")
    for name, what in QUANT_SCHEMES.items():
        click.echo(f"  {name:8s} {what}")
    click.echo("\nExamples: " + ", ".join(example_variants()))


@main.command()
@click.option("--variant", "-v", required=True, help="Variant name; `farm variants` lists the grammar.")
@click.option("--model", "-m", default=BUILTIN_MODEL, show_default=True,
              help="Hub id, local model folder, or a folder holding only config.json (random weights).")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object with integer params and macs.")
def inspect(variant: str, model: str, as_json: bool) -> None:
    """Print a compressed model's params and MACs without training or benchmarking it.

    MACs are torch-pruning's count for one sample (the seed paper's "FLOPs").
    """
    from worker.inspect import inspect_variant

    spec = parse_variant(variant, builtin=model == BUILTIN_MODEL)
    result = inspect_variant(spec, model)
    if as_json:
        from dataclasses import asdict

        click.echo(json.dumps(asdict(result)))
        return
    click.echo(f"{result.variant} of {result.model} ({result.image_size}x{result.image_size} input)")
    click.echo(f"  params: {result.params / 1e6:10.2f} M   ({result.params / result.base_params:6.1%} of base)")
    click.echo(f"  MACs:   {result.macs / 1e9:10.3f} G   ({result.macs / result.base_macs:6.1%} of base)")
