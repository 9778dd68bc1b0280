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
from shared.redact import redact
from shared.settings import Settings
from shared.specs import (
    BUILTIN_MODEL,
    DEFAULT_DATASET,
    QUANT_SCHEMES,
    BenchSpec,
    JobSpec,
    VariantSpec,
    example_variants,
    parse_variant,
    queue_for_target,
    with_train_overrides,
)

FORMATS = click.Choice(["table", "json", "csv"])


class FarmGroup(click.Group):
    """Turns FarmError (bad input, unreachable services) and usage errors into one line on stderr, exit code 2."""

    def main(self, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        kwargs["standalone_mode"] = False
        try:
            code = super().main(*args, **kwargs)
        except click.UsageError as exc:
            where = f" (see `{exc.ctx.command_path} --help`)" if exc.ctx is not None else ""
            click.echo(f"farm: error: {redact(exc.format_message())}{where}", err=True)
            sys.exit(2)
        except click.Abort:
            click.echo("farm: aborted", err=True)
            sys.exit(130)
        except click.ClickException as exc:
            click.echo(f"farm: error: {redact(exc.format_message())}", err=True)
            sys.exit(exc.exit_code)
        sys.exit(code if isinstance(code, int) else 0)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except FarmError as exc:
            click.echo(f"farm: error: {redact(exc)}", err=True)
            ctx.exit(2)


def _redacting_excepthook(kind: type[BaseException], exc: BaseException, tb: Any) -> None:
    """A bug keeps its traceback, but never shows a password that an URL in it carried."""
    import traceback

    sys.stderr.write(redact("".join(traceback.format_exception(kind, exc, tb))))


sys.excepthook = _redacting_excepthook


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
              until_cv: float | None, train: dict[str, Any] | None = None) -> JobSpec:
    if repeats < 1:
        raise FarmError(f"--repeats must be at least 1, got {repeats}")
    if limit is not None and limit < 1:
        raise FarmError(f"--limit must be at least 1, got {limit}")
    if until_cv is not None and not 0 < until_cv < 1:
        raise FarmError(f"--until-cv must be in (0, 1), e.g. 0.02, got {until_cv}")
    from shared.inputs import check_dataset, check_model

    roots = _settings().data_roots
    model, dataset = check_model(model, roots), check_dataset(dataset, roots)
    parsed = parse_variant(variant, builtin=model == BUILTIN_MODEL)
    overrides = {k: v for k, v in (train or {}).items() if v is not None}
    if overrides and parsed.train is None:
        raise FarmError(f"--{next(iter(overrides)).replace('_', '-')} applies only to retrained/distilled variants")
    for key, value in overrides.items():
        if value <= 0 or (key == "alpha" and value > 1):
            raise FarmError(f"--{key.replace('_', '-')} must be positive{' and at most 1' if key == 'alpha' else ''}")
    return JobSpec(
        variant=with_train_overrides(parsed, **overrides),
        model=model,
        dataset=dataset,
        bench=BenchSpec(repeats=repeats, limit=limit, until_cv=until_cv),
    )


def _train_overrides(epochs: int | None, lr: float | None, batch_size: int | None, alpha: float | None,
                     temperature: float | None) -> dict[str, Any]:
    """The training options of `job_options`, as overrides for `_job_spec` (None: the variant's default)."""
    return {"epochs": epochs, "lr": lr, "batch_size": batch_size, "alpha": alpha, "temperature": temperature}


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
        click.option("--epochs", type=int, default=None, help="Training epochs (retrained/distilled variants)."),
        click.option("--lr", type=float, default=None, help="Peak learning rate of AdamW (cosine schedule)."),
        click.option("--batch-size", type=int, default=None, help="Training batch size."),
        click.option("--alpha", type=float, default=None, help="Distillation weight of the KL term (0-1]."),
        click.option("--temperature", type=float, default=None, help="Distillation temperature T."),
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
@click.option("--only", is_flag=True, help="Benchmark only VARIANT, not each stage that leads to it.")
@click.option("--format", "fmt", type=FORMATS, default="table", show_default=True)
def run(variant: str, model: str, dataset: str, repeats: int, limit: int | None, until_cv: float | None,
        epochs: int | None, lr: float | None, batch_size: int | None, alpha: float | None,
        temperature: float | None, device: str, only: bool, fmt: str) -> None:
    """Benchmark a variant here, in this process, with no broker; store and print the results.

    A composed variant also benchmarks each stage that leads to it (baseline, pruned, pruned-distilled,
    pruned-distilled-uint8), giving a table like the seed's Table III. Trained stages are cached by recipe.
    """
    from sqlmodel import Session

    from shared.db import crud
    from worker.jobs import check_device, preflight
    from worker.lifecycle import flush_spool, handle_delivery, local_context

    settings = _settings()
    train = _train_overrides(epochs, lr, batch_size, alpha, temperature)
    target = _job_spec(variant, model, dataset, repeats, limit, until_cv, train)
    names = [target.variant.name] if only else stage_names(target.variant)
    check_device(device)
    preflight(target, settings)
    engine = _engine(settings)
    ctx = local_context(settings, device)
    if flush_spool(ctx):
        click.echo(f"warning: outcomes still wait in the spool {settings.spool_dir}", err=True)
    rows: list[dict[str, Any]] = []
    for name in names:
        trained = parse_variant(name, builtin=target.model == BUILTIN_MODEL).train is not None
        spec = _job_spec(name, target.model, target.dataset, repeats, limit, until_cv, train if trained else None)
        with Session(engine) as session:
            job_id = crud.create_job(session=session, variant=name, spec=spec.to_dict(), queue="local").id
        click.echo(f"job {job_id}: {name} on {device} ({settings.hostname})", err=True)
        what = handle_delivery(ctx, str(job_id), None, "benchmark")
        if what == "spooled":
            raise FarmError(f"the store failed while saving job {job_id}; its results are kept in "
                            f"{settings.spool_dir} and are written by the next `farm run` or `farm worker`")
        with Session(engine) as session:
            job = crud.get_job(session=session, job_id=job_id)
            if job.state == "failed":  # a job that could not run leaves nothing behind
                error = job.error
                crud.delete_job(session=session, job_id=job_id)
                raise FarmError(f"{name}: {error}")
        rows += _job_rows(settings, job_id)
    _print_results(rows, fmt, summary=True)


def stage_names(variant: VariantSpec) -> list[str]:
    """The variants a composed variant passes through: baseline, then each stage's prefix of its name."""
    names = ["baseline"]
    rest = variant.name
    suffixes = []
    if variant.quant is not None:
        suffixes.append(rest)
        rest = rest[: -len(variant.quant.scheme) - 1]
    if variant.train is not None:
        suffixes.append(rest)
        rest = rest[: -len(variant.train.kind) - 1]
    if variant.prune is not None:
        suffixes.append(rest)
    names += reversed(suffixes)
    return list(dict.fromkeys(names))


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
        raise FarmError(f"cannot reach broker {redact(settings.broker_url)}: {redact(exc)}") from None


@main.command()
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

    settings = _settings()
    if timeout is not None and not timeout > 0:
        raise FarmError(f"--timeout must be a positive number of seconds, got {timeout:g}")
    train = _train_overrides(epochs, lr, batch_size, alpha, temperature)
    spec = _job_spec(variant, model, dataset, repeats, limit, until_cv, train)
    queue = queue_for_target(target)
    if spec.variant.quant is not None and spec.variant.quant.scheme == "int8dyn" and queue.split(".")[-1] == "gpu":
        raise FarmError(f"{spec.variant.name}: int8dyn runs on CPUs only; benchmark it --on cpu or host:NAME:cpu")
    if train_on != "auto":
        train_queue = queue_for_target(train_on)
    check_broker(settings)
    app = make_app(settings)
    client = redis_client(settings.broker_url, settings.broker_timeout_s)
    engine = _engine(settings)
    payload = spec.to_dict()
    chained = spec.variant.prune is not None
    consumed = _consumed_queues(client) if wait or (chained and train_on == "auto") else set()
    if chained and train_on == "auto":
        train_queue = "gpu" if "gpu" in consumed else "cpu"
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
    _print_results(_job_rows(settings, job_id), fmt, summary=True)


def _live_workers(client: Any) -> list[dict[str, Any]]:
    """Live workers from their heartbeats on the broker (each expires when its worker stops beating)."""
    if client is None:
        return []
    keys = sorted(client.scan_iter(match="farm:worker:*", count=500))
    out = []
    for raw in client.mget(keys) if keys else []:
        if not raw:
            continue  # expired between the scan and the read
        try:
            out.append(json.loads(raw))
        except ValueError:
            continue
    return out


def _consumed_queues(client: Any) -> set[str]:
    """The queues that live workers consume."""
    return {q for w in _live_workers(client) for q in w.get("queues", [])}


def _wait_for(settings: Settings, job_id: uuid.UUID, timeout: float | None, label: str = "job") -> Any:
    from sqlmodel import Session

    from shared.db import crud

    deadline = None if timeout is None else time.monotonic() + timeout
    last = None
    while True:
        with Session(_engine(settings)) as session:
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
@click.option("--name", default=None, help="Celery node name (default farm-<device>@<FARM_HOSTNAME>).")
def worker(device: str, loglevel: str, name: str | None) -> None:
    """Start a Celery worker pinned to DEVICE: it consumes its device class's queue (cpu or gpu), its
    host's queue (host.NAME) and its host's queue for its class (host.NAME.cpu or host.NAME.gpu).

    One job at a time, acknowledged only when done, so a job whose worker dies goes back to the queue.
    Workers that share a machine (same FARM_HOSTNAME) take turns to train and measure.
    """
    from shared.dispatch import redis_client
    from worker.app import make_app
    from worker.jobs import check_device
    from worker.maintenance import worker_queues

    settings = _settings()
    device_class(device)
    check_device(device)
    check_broker(settings)
    _engine(settings)  # fail fast on a bad store, and migrate it
    warning = _broker_persistence_warning(redis_client(settings.broker_url, settings.broker_timeout_s))
    if warning:
        click.echo(f"warning: {warning}", err=True)
    os.environ["FARM_WORKER_DEVICE"] = device
    queues = worker_queues(settings.hostname, device)
    node = name or f"farm-{device.replace(':', '')}@{settings.hostname}"
    click.echo(f"worker {node}: device {device}, queues {', '.join(queues)}", err=True)
    make_app(settings).worker_main([
        "worker", "--queues", ",".join(queues), "--concurrency", "1", "--pool", "prefork",
        "--hostname", node, "--loglevel", loglevel, "--without-gossip", "--without-mingle",
    ])


def _broker_persistence_warning(client: Any) -> str | None:
    """What a Redis restart would lose, when the broker keeps nothing on disk (None if it does, or if unknown)."""
    if client is None:
        return None
    try:
        aof = client.config_get("appendonly").get("appendonly")
        save = client.config_get("save").get("save")
    except Exception:  # CONFIG is often disabled on managed Redis: nothing to say
        return None
    if aof == "yes" or save:
        return None
    return ("the broker's Redis keeps nothing on disk (no AOF, no RDB snapshots): a Redis restart loses every "
            "queued message, dead letter and lease. farm requeues lost jobs from the store, but run Redis with "
            "--appendonly yes (docker-compose.yml does)")


@main.command()
@click.option("--limit", default=20, show_default=True, type=click.IntRange(min=1),
              help="How many recent jobs to show.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
def status(limit: int, fmt: str) -> None:
    """Show recent jobs, the live workers (from their heartbeats) with their spool backlogs, and dead letters."""
    from sqlmodel import Session

    from controller import render
    from shared.db import crud
    from shared.dispatch import DEAD_LETTERS, redis_client

    settings = _settings()
    with Session(_engine(settings)) as session:
        jobs = [j.model_dump(exclude={"spec"}) for j in crud.list_jobs(session=session, limit=limit)]
    workers: list[dict[str, Any]] = []
    broker_error, dead = None, None
    try:
        check_broker(settings)
        client = redis_client(settings.broker_url, settings.broker_timeout_s)
        for w in _live_workers(client):
            workers.append({"worker": w["worker"], "host": w.get("host"), "device": w.get("device"),
                            "queues": ",".join(w.get("queues", [])), "running": len(w.get("jobs", [])),
                            "jobs": ",".join(j[:8] for j in w.get("jobs", [])), "spool": w.get("spool", 0)})
        dead = int(client.llen(DEAD_LETTERS)) if client is not None else None
    except FarmError as exc:
        broker_error = str(exc)
    if fmt == "json":
        click.echo(json.dumps({"jobs": [{k: render.jsonable(v) for k, v in j.items()} for j in jobs],
                               "workers": workers, "dead_letters": dead, "broker_error": broker_error}, indent=2))
        return
    view = [{**j, "id": str(j["id"])[:8], "chain": str(j["chain_id"])[:8] if j["chain_id"] else None} for j in jobs]
    click.echo(render.to_table(view, ("id", "chain", "stage", "variant", "queue", "state", "progress",
                                      "submitted_at", "worker", "error")))
    click.echo("")
    if broker_error:
        click.echo(f"workers: unknown ({broker_error})")
    elif workers:
        click.echo(render.to_table(workers, ("worker", "host", "device", "queues", "jobs", "spool")))
        backlog = sum(w["spool"] or 0 for w in workers)
        if backlog:
            click.echo(f"spool: {backlog} finished job(s) wait on worker disks for the store to return")
    else:
        click.echo("workers: none alive")
    if dead:
        click.echo(f"dead letters: {dead} (`farm dead` lists them, `farm retry JOB` runs a job again)")


@main.command()
@click.option("--limit", default=50, show_default=True, type=click.IntRange(min=1), help="How many to show.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
def dead(limit: int, fmt: str) -> None:
    """List dead letters, newest first: messages that could not be decoded, jobs refused for a payload that
    disagrees with the stored spec, and jobs delivered FARM_MAX_DELIVERIES times without finishing."""
    from datetime import UTC, datetime

    from controller import render
    from shared.dispatch import dead_letters, redis_client

    settings = _settings()
    check_broker(settings)
    client = redis_client(settings.broker_url, settings.broker_timeout_s)
    if client is None:
        raise FarmError("dead letters live on a Redis broker; FARM_BROKER_URL is not Redis")
    entries = dead_letters(client, limit)
    if fmt == "json":
        click.echo(json.dumps(entries, indent=2))
        return
    view = [{**e, "job_id": (e.get("job_id") or "-")[:8],
             "at": datetime.fromtimestamp(e.get("at", 0), UTC).isoformat(timespec="seconds"),
             "payload": (e.get("payload") or "")[:40]} for e in entries]
    click.echo(render.to_table(view, ("at", "job_id", "queue", "reason", "payload")) if view else "no dead letters")


@main.command()
@click.argument("job")
def retry(job: str) -> None:
    """Queue a failed job again (JOB: its id or a unique prefix), with its stored spec; its delivery count and
    dead letters are cleared. A failed chain stage is retried with the stages after it."""
    from sqlmodel import Session

    from shared.db import crud
    from shared.dispatch import deliveries_key, dispatch, forget_dead_letters, lease_key, redis_client
    from worker.app import make_app

    settings = _settings()
    check_broker(settings)
    client = redis_client(settings.broker_url, settings.broker_timeout_s)
    with Session(_engine(settings)) as session:
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


def result_filters(fn: Any) -> Any:
    """The filter options shared by `results` and `report`."""
    options = [
        click.option("--variant", default=None, help="Only this variant."),
        click.option("--model", "model_id", default=None, help="Only this base model (as submitted)."),
        click.option("--dataset", "dataset_id", default=None, help="Only this dataset (as submitted)."),
        click.option("--host", default=None, help="Only results from this host."),
        click.option("--hardware", default=None,
                     help="Substring of the CPU model, GPU name or device (case-insensitive)."),
        click.option("--since", default=None,
                     help="Started at or after: ISO date/time (local if no zone) or an age (2h, 7d)."),
        click.option("--until", default=None, help="Started before: same forms as --since."),
        click.option("--hours", default=None, help="Local hours, end excluded: 9-17 (wraps: 22-6)."),
        click.option("--job", "job_id", default=None, help="Only this job's results."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def _query(*, since: str | None, until: str | None, hours: str | None, job_id: str | None,
           **exact: str | None) -> list[dict[str, Any]]:
    """Result rows matching the options of `result_filters` (variant, model_id, dataset_id, host, hardware...)."""
    from sqlmodel import Session

    from controller.timefilters import parse_hours, parse_moment
    from shared.db import crud

    filters = crud.ResultFilter(
        **exact,
        since=parse_moment(since, option="--since") if since else None,
        until=parse_moment(until, option="--until") if until else None,
        hours=parse_hours(hours) if hours else None,
        job_id=_uuid(job_id) if job_id else None,
    )
    settings = _settings()
    with Session(_engine(settings)) as session:
        return [r.model_dump() for r in crud.query_results(session=session, filters=filters)]


@main.command()
@result_filters
@click.option("--summary", is_flag=True,
              help="Mean ± std per variant, model, dataset, host and device instead of one row per repeat.")
@click.option("--format", "fmt", type=FORMATS, default="table", show_default=True)
def results(summary: bool, fmt: str, **filters: str | None) -> None:
    """List stored results, one row per repeat. JSON objects carry every column of the result table."""
    rows = _query(**filters)
    _print_results(rows, fmt, summary=summary)


@main.command()
@result_filters
@click.option("--by", type=click.Choice(["variant", "hour"]), default="variant", show_default=True,
              help="variant: the seed's Table III with change vs baseline; hour: energy by local hour (drift).")
@click.option("--plot", "plot_path", default=None, help="Also draw accuracy vs energy and energy by hour to this PNG.")
@click.option("--format", "fmt", type=FORMATS, default="table", show_default=True)
def report(by: str, plot_path: str | None, fmt: str, **filters: str | None) -> None:
    """Summarise results like the seed paper: per variant against its baseline on the same host and device
    (Δ energy %, Δ top-1 points), or by local hour of day."""
    from controller import render
    from controller import report as rep

    rows = _query(**filters)
    if not rows:
        raise FarmError("no results match these filters")
    table, hourly = rep.variant_table(rows), rep.hourly_table(rows)
    shown, columns, headers = (table, rep.VARIANT_COLUMNS, rep.VARIANT_HEADERS) if by == "variant" else (
        hourly, rep.HOURLY_COLUMNS, rep.HOURLY_HEADERS)
    if fmt == "json":
        click.echo(render.to_json(shown))
    elif fmt == "csv":
        click.echo(render.to_csv(shown, columns), nl=False)
    else:
        click.echo(render.to_table(shown, columns, headers))
    if plot_path:
        rep.plot(table, hourly, plot_path)
        click.echo(f"plot written to {plot_path}", err=True)


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
