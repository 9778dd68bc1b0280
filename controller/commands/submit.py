"""`farm submit` and `farm retry`: put jobs on the queues, and wait for them."""

from __future__ import annotations

import gc
import json
import sys
import uuid
from dataclasses import replace
from typing import Any

import click

from controller.commands.control import wait_for
from controller.deployer import batch_sizes, bench_fields
from controller.options import FORMATS, finite, job_options, job_spec, train_overrides
from controller.output import print_rows, print_summary
from controller.services import check_broker, describe_fleet, job_rows, live_workers, load_settings, open_engine
from shared.devices import DeviceClass
from shared.errors import FarmError
from shared.redact import redact
from shared.routing import host_queue, queue_device_class, queue_for_target, queue_host, training_queue
from shared.specs import JobSpec, parse_variant

# The seed paper's tables as sweeps (`farm submit --sweep table2`).
SWEEPS: dict[str, tuple[str, ...]] = {
    "table1": ("baseline", "quant-uint8", "quant-float8"),
    "table2": tuple(f"prune-r{r:.2f}" for r in (0.05, 0.10, 0.15, 0.20, 0.25, 0.30)),
    "table3": ("baseline", "pruned", "pruned-distilled", "pruned-distilled-uint8"),
}


@click.command()
@job_options
@click.option("--variants", default=None, help="Several variants at once, comma-separated: one sweep.")
@click.option("--sweep", "sweep", type=click.Choice(sorted(SWEEPS)), default=None,
              help="The seed's tables: table1 (quantization schemes), table2 (MLP pruning ratios 0.05-0.30), "
                   "table3 (the pipeline's stages).")
@click.option("--on", "target", default="cpu", show_default=True,
              help="Where to benchmark: cpu, gpu (any worker of that class), host:NAME, host:NAME:cpu|gpu, or all "
                   "(one job per live host) / all:cpu / all:gpu (per live host with that device class).")
@click.option("--train-on", default="auto", show_default=True,
              help="Where to prune and train: auto (gpu when a GPU worker is live, else cpu), or as --on.")
@click.option("--queue-anyway", is_flag=True,
              help="Queue even when no live worker serves --on / --train-on (for a machine that starts later).")
@click.option("--yes", is_flag=True,
              help="Queue a submit of more than FARM_CONFIRM_JOBS jobs (200); without it such a submit prints its "
                   "plan and queues nothing.")
@click.option("--wait", is_flag=True, help="Wait for the jobs and print their results.")
@click.option("--timeout", type=finite(), default=None, help="With --wait: give up after this many seconds.")
@click.option("--format", "fmt", type=FORMATS, default="table", show_default=True)
def submit(variant: str | None, model: str, dataset: str, repeats: int, limit: int | None, runtime: str | None,
           until_cv: float | None,
           epochs: int | None, lr: float | None, train_batch_size: int | None, alpha: float | None,
           temperature: float | None, variants: str | None, sweep: str | None, target: str, train_on: str,
           queue_anyway: bool, yes: bool, wait: bool, timeout: float | None, fmt: str, **deploy: Any) -> None:
    """Queue benchmark jobs for the farm's workers (prints the job id, or a sweep's ids).

    A pruned variant becomes a chain: one compress job (prune, retrain or distill) on the training queue,
    then a benchmark job on each target queue (one per host with --on all), sent when the compress job is done.
    The compressed model is stored under FARM_ARTIFACTS by recipe, so benchmarking it on many machines trains
    it once. Several variants (--variants, --sweep) or hosts (--on all) make one sweep, whose id `results`,
    `report` and `status` take with --sweep; each host of a sweep also gets a baseline, unless it has baseline
    results for that model and data already.
    --batch-sizes 1,8,32 fans out like --variants (a baseline is matched at each batch size).
    """
    from controller.enqueue import Enqueuer, chain_per_recipe
    from shared.celery_app import make_app

    names = _variant_names(variant, variants, sweep)
    settings = load_settings()
    if timeout is not None and not timeout > 0:
        raise FarmError(f"--timeout must be a positive number of seconds, got {timeout:g}")
    train = train_overrides(epochs, lr, train_batch_size, alpha, temperature)
    benches = [bench_fields(**{**deploy, "batch_size": size})
               for size in batch_sizes(deploy.get("batch_size"), deploy.get("batch_sizes"))]
    fan_out = target == "all" or target.startswith("all:")
    first_queue = None if fan_out else queue_for_target(target)
    trains = [parse_variant(name, model=model).train is not None for name in names]
    if any(trains) and len(names) > 1:  # training options go to the variants that train; job_spec checks the rest
        names_train = [(n, train if t else None) for n, t in zip(names, trains, strict=True)]
    else:
        names_train = [(n, train) for n in names]
    specs = [job_spec(name, model, dataset, repeats, limit, until_cv, overrides,
                      device_class=_fan_out_class(target) if fan_out else queue_device_class(first_queue or ""),
                      runtime=runtime, bench=bench)
             for bench in benches for name, overrides in names_train]
    if train_on != "auto":
        queue_for_target(train_on)
    client = check_broker(settings)
    enqueuer = Enqueuer(settings, client, make_app(settings))
    enqueuer.quick()  # a bad store is reported before anything about workers
    workers = live_workers(client)
    consumed = {q for w in workers for q in w.get("queues", [])}
    queues = _fan_out_queues(target, workers) if fan_out else [first_queue or ""]
    train_queue = training_queue(consumed) if train_on == "auto" else queue_for_target(train_on)
    chained = any(s.variant.prune is not None for s in specs)
    if not queue_anyway:
        for q, option, given in ([(train_queue, "--train-on", train_on)] if chained else []) + [
                (q, "--on", target) for q in queues]:
            if q not in consumed:
                raise FarmError(f"no live worker serves {option} {given} (queue {q}); {describe_fleet(workers)}. "
                                "--queue-anyway queues it for a worker that starts later")
        _check_runtimes(specs, queues, workers)
    plan = [(spec, q) for q in queues for spec in specs]
    sweep_id = uuid.uuid4() if len(plan) > 1 else None
    if sweep_id is not None:
        from sqlmodel import Session

        with Session(open_engine(settings)) as session:
            plan = _with_baselines(session, plan, specs[0], model, dataset, repeats, limit, until_cv)
    _confirm_fan_out(plan, train_queue, settings.confirm_jobs, yes)
    from shared.dispatch import ready_producer

    # Set up now what the first job would otherwise pay for after its submitted_at: the broker connection, and a
    # full garbage collection over everything the imports made (gc.freeze: 20-50 ms of a cold process's first
    # job here came from a collection that happened to fall inside its INSERT).
    gc.freeze()
    try:
        with ready_producer(enqueuer.app) as enqueuer.producer:
            submitted = [entry for spec, qs in chain_per_recipe(plan)
                         for entry in enqueuer.enqueue(spec, qs, train_queue=train_queue, sweep_id=sweep_id)]
    except FarmError:
        raise
    except Exception as exc:  # the broker went away between the check and the send
        raise FarmError(f"could not enqueue on {redact(settings.broker_url)}: {redact(exc)}") from None
    if not wait:
        if fmt == "json":
            click.echo(json.dumps(submitted[0] if sweep_id is None else {"sweep_id": str(sweep_id),
                                                                          "jobs": submitted}))
        elif sweep_id is None:
            click.echo(submitted[0]["job_id"])
        else:
            click.echo(f"sweep {sweep_id}: {len(submitted)} jobs", err=True)
            for s in submitted:
                click.echo(f"{s['job_id']}  {s['variant']}  on {s['queue']}")
        return
    for q in sorted({train_queue} if chained else set()) + queues:
        if q not in consumed:
            click.echo(f"warning: no live worker consumes queue {q!r}; the job waits until one starts", err=True)
    failed = 0
    for s in submitted:
        if "compress_job_id" in s:
            wait_for(settings, uuid.UUID(s["compress_job_id"]), timeout, label="compress")
        state = wait_for(settings, uuid.UUID(s["job_id"]), timeout)
        if state.state != "done":
            click.echo(f"job {s['job_id']} {state.state} on {state.worker or '-'}: {state.error}", err=True)
            failed += 1
    rows = [r for s in submitted for r in job_rows(settings, uuid.UUID(s["job_id"]))]
    if rows and fmt == "table":
        from shared.db.queries import ResultFilter

        print_summary(ResultFilter(job_ids=tuple(uuid.UUID(s["job_id"]) for s in submitted)), fmt)
    elif rows:
        print_rows(rows, fmt)
    if failed:
        sys.exit(1)


def _confirm_fan_out(plan: list[tuple[JobSpec, str]], train_queue: str, threshold: int, yes: bool) -> None:
    """Without --yes, a plan of more than `threshold` jobs (a pruned variant is two: compress, benchmark) is printed,
    one line per job, and refused (FarmError, nothing stored or queued)."""
    lines = [line for spec, q in plan for line in (
        [f"compress   {spec.variant.name}  on {train_queue}"] if spec.variant.prune is not None else [])
        + [f"benchmark  {spec.variant.name}  on {q}"]]
    if len(lines) <= threshold or yes:
        return
    for line in lines:
        click.echo(line)
    raise FarmError(f"this submit would queue {len(lines):,} jobs (listed above), more than FARM_CONFIRM_JOBS="
                    f"{threshold}; nothing was queued. Check the list and add --yes to queue them")


def _variant_names(variant: str | None, variants: str | None, sweep: str | None) -> list[str]:
    given = [o for o, v in (("--variant", variant), ("--variants", variants), ("--sweep", sweep)) if v]
    if len(given) != 1:
        raise click.UsageError("give one of --variant, --variants or --sweep" if not given
                               else f"{' and '.join(given)} cannot be combined; give one")
    if sweep:
        return list(SWEEPS[sweep])
    if variants:
        names = [n.strip() for n in variants.split(",") if n.strip()]
        if not names:
            raise FarmError("--variants needs at least one variant name")
        return list(dict.fromkeys(names))
    return [str(variant)]


def _check_runtimes(specs: list[JobSpec], queues: list[str], workers: list[dict[str, Any]]) -> None:
    """FarmError when a job's runtime is on no live worker that serves its queue (workers advertise theirs)."""
    for spec in specs:
        for q in queues:
            serving = [w for w in workers if q in w.get("queues", [])]
            if serving and not any(spec.runtime in w.get("runtimes", ["torch"]) for w in serving):
                have = sorted({r for w in serving for r in w.get("runtimes", ["torch"])})
                raise FarmError(f"no live worker on queue {q} has the {spec.runtime} runtime (they have "
                                f"{', '.join(have)}; pip install 'farm[runtimes]' there). --queue-anyway queues it "
                                "for a worker that starts later")


def _fan_out_class(target: str) -> DeviceClass | None:
    """The device class of `all:cpu` / `all:gpu` (None for plain `all`); FarmError for another `all:` form."""
    if target == "all":
        return None
    cls = target.split(":", 1)[1]
    if cls not in ("cpu", "gpu"):
        raise FarmError(f"--on must be all, all:cpu or all:gpu for a fan-out, got {target!r}")
    return cls  # type: ignore[return-value]


def _fan_out_queues(target: str, workers: list[dict[str, Any]]) -> list[str]:
    """One queue per live host (`host.NAME`, or `host.NAME.cpu|gpu` for all:cpu|gpu); FarmError when none."""
    cls = _fan_out_class(target)
    hosts = sorted({str(w.get("host")) for w in workers
                    if cls is None or host_queue(str(w.get("host")), cls) in w.get("queues", [])})
    if not hosts:
        raise FarmError(f"--on {target}: no live worker{'' if cls is None else f' of class {cls}'}; "
                        f"{describe_fleet(workers)}")
    return [host_queue(h, cls) for h in hosts]


def _with_baselines(session: Any, plan: list[tuple[JobSpec, str]], template: JobSpec, model: str, dataset: str,
                    repeats: int, limit: int | None, until_cv: float | None) -> list[tuple[JobSpec, str]]:
    """Add a baseline for each queue of the sweep that has none in it, unless that host (a host queue) already
    has baseline results for this model and data."""
    from shared.db import queries

    out = list(plan)
    # a baseline is matched at the same benchmark protocol (inference batch size, scenario)
    for q, bench in dict.fromkeys((q, s.bench) for s, q in plan):
        if any(s.variant.name == "baseline" and pq == q and s.bench == bench for s, pq in plan):
            continue
        host = queue_host(q)
        if host and bench.scenario == "offline" and queries.has_baseline(
                session=session, host=host, model_id=template.model, dataset_id=template.dataset,
                batch_size=bench.batch_size):
            continue
        out.insert(0, (replace(job_spec("baseline", model, dataset, repeats, limit, until_cv), bench=bench), q))
    return out



@click.command()
@click.argument("job")
def retry(job: str) -> None:
    """Queue a failed or cancelled job again (JOB: its id or a unique prefix), with its stored spec; its
    delivery count and dead letters are cleared. A chain stage is retried with the stages after it."""
    from controller.enqueue import Enqueuer
    from shared.celery_app import make_app

    settings = load_settings()
    client = check_broker(settings)
    click.echo(str(Enqueuer(settings, client, make_app(settings)).retry(job)))
