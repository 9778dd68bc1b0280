"""`farm compare A B`: two variants on one worker, interleaved in pairs, with a paired verdict."""

from __future__ import annotations

import json
import uuid
from dataclasses import replace
from typing import Any

import click

from controller.deployer import batch_sizes, bench_fields
from controller.options import DEVICE, check_bound, finite, job_spec
from controller.services import check_broker, describe_fleet, job_rows, live_workers, load_settings, open_engine
from shared.devices import Device
from shared.errors import FarmError
from shared.routing import queue_device_class, queue_for_target
from shared.runtimes import DEFAULT_RUNTIME, runtime_choices
from shared.specs import BUILTIN_MODEL, DEFAULT_DATASET, CompareSpec


@click.command()
@click.argument("a")
@click.argument("b")
@click.option("--pairs", type=click.IntRange(min=2), default=5, show_default=True,
              help="Pairs of runs (one pass over the test split each), ordered A B, B A, A B, ...")
@click.option("--model", default=BUILTIN_MODEL, show_default=True, help="Base model (as for submit).")
@click.option("--dataset", default=DEFAULT_DATASET, show_default=True, help="Dataset (as for submit).")
@click.option("--limit", type=int, default=None, help="Benchmark only the first N test samples.")
@click.option("--batch-size", type=int, default=None, help="Inference batch size of both (default 8).")
@click.option("--on", "target", default="cpu", show_default=True,
              help="Where: cpu, gpu, host:NAME or host:NAME:cpu|gpu (one worker runs both variants).")
@click.option("--runtime", default=None,
              help=f"The runtime of both, {runtime_choices()} (default: each variant's own: ort-int8dyn runs on "
                   f"onnxruntime, else {DEFAULT_RUNTIME}).")
@click.option("--runtime-b", default=None, help="B's runtime, to compare runtimes (e.g. baseline vs baseline).")
@click.option("--here", is_flag=True, help="Run it in this process, like `farm run`, with no broker.")
@click.option("--device", type=DEVICE, default="cpu", show_default=True, help="With --here: cpu or cuda:N.")
@click.option("--queue-anyway", is_flag=True, help="Queue even when no live worker serves --on.")
@click.option("--timeout", type=finite(min=1), default=None, help="Give up waiting after this many s.")
@click.option("--precision", type=click.FloatRange(min=0.1, max=100), default=10.0, show_default=True,
              metavar="PCT", help="State a difference only when its 95 % interval is within ±PCT % (and excludes "
                                  "no change); otherwise the verdict is inconclusive, with the pairs it would take.")
@click.option("--until-conclusive", is_flag=True,
              help="Add pairs after --pairs until both intervals are within ±--precision, at most --max-pairs; "
                   "intervals then use Bonferroni alpha spending over the looks, valid under that stopping rule.")
@click.option("--max-pairs", type=click.IntRange(min=2), default=30, show_default=True,
              help="With --until-conclusive: the most pairs to run.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
def compare(a: str, b: str, pairs: int, model: str, dataset: str, limit: int | None, target: str,
            runtime: str | None, runtime_b: str | None, here: bool, device: Device, queue_anyway: bool,
            timeout: float | None, precision: float, until_conclusive: bool, max_pairs: int, fmt: str,
            batch_size: int | None = None) -> None:
    """Compare variant B with variant A on one worker: A and B run in back-to-back pairs whose order alternates
    (A B, B A, ...), so drift over the run (temperature, clocks, the seed's time of day) hits both alike. Prints
    B/A for time and energy per sample with 95 % intervals (paired t on the log ratios of the pairs), the top-1
    difference, and a verdict that states a difference only when the data support one (see --precision). `farm
    compare A A` (an A/A run) measures the machine's noise and says "no difference". The rows are stored as one
    job, each tagged with its pair; reports leave pair rows out of the variants' statistics unless asked."""
    settings = load_settings()
    check_bound("--pairs", pairs, settings.max_pairs, "FARM_MAX_PAIRS")
    if until_conclusive:
        check_bound("--max-pairs", max_pairs, settings.max_pairs, "FARM_MAX_PAIRS")
    cls = device.device_class if here else queue_device_class(queue_for_target(target))
    bench = bench_fields(batch_size=batch_sizes(batch_size, None)[0])
    spec_a = job_spec(a, model, dataset, 1, limit, None, device_class=cls, runtime=runtime, bench=bench)
    spec_b = job_spec(b, model, dataset, 1, limit, None, device_class=cls, runtime=runtime_b or runtime, bench=bench)
    same = a == b and spec_a.runtime == spec_b.runtime
    if until_conclusive and max_pairs < pairs:
        raise click.UsageError(f"--max-pairs {max_pairs} is below --pairs {pairs}")
    spec = replace(spec_a, compare=CompareSpec(spec_b.variant, pairs, spec_b.runtime,
                                               max_pairs if until_conclusive else None, precision / 100))
    job_id = _run_here(settings, spec, device) if here else _submit(settings, spec, target, queue_anyway, timeout)
    rows = job_rows(settings, job_id)
    from controller.comparison import sides_of_same, summarise

    if same:
        rows, a, b = sides_of_same(rows, a)
    elif spec_a.runtime != spec_b.runtime:  # name each side by variant and runtime (baseline vs baseline)
        a, b = f"{a} ({spec_a.runtime})", f"{b} ({spec_b.runtime})"
        rows = [{**r, "variant": f"{r['variant']} ({r['runtime']})"} for r in rows]
    answer = {"job_id": str(job_id), **summarise(rows, a, b, precision=precision / 100, same=same,
                                                   max_pairs=max_pairs if until_conclusive else None,
                                                   min_pairs=pairs, floor=noise_floor(settings, rows))}
    if fmt == "json":
        click.echo(json.dumps(answer, indent=2))
        return
    _print(answer, rows)


def noise_floor(settings: Any, rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The newest `farm calibrate` row for the comparison's machine and device (None if never calibrated)."""
    from sqlmodel import Session

    from shared.db import queries

    if not rows or not rows[0].get("hardware_id"):
        return None
    with Session(open_engine(settings)) as session:
        floor = queries.latest_noise_floor(session=session, hardware_id=rows[0]["hardware_id"],
                                           device=rows[0]["device"])
        return None if floor is None else floor.model_dump()


def _run_here(settings: Any, spec: Any, device: Device) -> uuid.UUID:
    from controller.enqueue import Enqueuer
    from worker.delivery.handle import handle_delivery, local_context
    from worker.devices import open_device
    from worker.jobs import preflight

    open_device(device)
    preflight(spec, settings)
    job_id = Enqueuer(settings).store_local(spec, _name(spec))
    click.echo(f"job {job_id}: {_name(spec)} on {device} ({settings.hostname})", err=True)
    if handle_delivery(local_context(settings, device), str(job_id), None, "benchmark") == "spooled":
        raise FarmError(f"the store failed while saving job {job_id}; its results wait in {settings.spool_dir}")
    _raise_if_failed(settings, job_id)
    return job_id


def _submit(settings: Any, spec: Any, target: str, queue_anyway: bool, timeout: float | None) -> uuid.UUID:
    from controller.commands.control import wait_for
    from controller.enqueue import Enqueuer
    from shared.celery_app import make_app

    queue = queue_for_target(target)
    client = check_broker(settings)
    workers = live_workers(client)
    if not queue_anyway and queue not in {q for w in workers for q in w.get("queues", [])}:
        raise FarmError(f"no live worker serves --on {target} (queue {queue}); {describe_fleet(workers)}. "
                        "--queue-anyway queues it for a worker that starts later")
    entry = Enqueuer(settings, client, make_app(settings)).enqueue(spec, [queue], variant=_name(spec))[0]
    job_id = uuid.UUID(entry["job_id"])
    click.echo(f"job {job_id}: {_name(spec)} on {queue}", err=True)
    wait_for(settings, job_id, timeout)
    _raise_if_failed(settings, job_id)
    return job_id


def _name(spec: Any) -> str:
    a, b = spec.variant.name, spec.compare.versus.name
    if spec.compare.runtime and spec.compare.runtime != spec.runtime:
        a, b = f"{a} ({spec.runtime})", f"{b} ({spec.compare.runtime})"
    return f"{a} vs {b}"


def _raise_if_failed(settings: Any, job_id: uuid.UUID) -> None:
    from sqlmodel import Session

    from shared.db import queries

    with Session(open_engine(settings)) as session:
        job = queries.get_job(session=session, job_id=job_id)
    if job.state != "done":
        raise FarmError(f"comparison {job_id} {job.state}: {job.error or '-'}")


def _print(answer: dict[str, Any], rows: list[dict[str, Any]]) -> None:
    from controller import render

    a, b = answer["a"], answer["b"]
    label = rows[0].get("hardware_label") if rows else "?"
    click.echo(f"comparison {answer['job_id'][:8]}: {answer['pairs']} pairs on {label}")
    for name, unit, scale in (("time", "ms/sample", 1e3), ("energy", "mJ/sample", 1e3)):
        column = "time_per_sample_s" if name == "time" else "total_energy_per_sample_j"
        means = {v: [r[column] for r in rows if r["variant"] == v] for v in (a, b)}
        shown = {v: render.scaled(sum(x) / len(x), scale, 3) if x else "-" for v, x in means.items()}
        click.echo(f"  {name}: {a} {shown[a]} {unit}, {b} {shown[b]} {unit}")
        click.echo(f"    {answer[f'{name}_verdict']}")
    click.echo(f"  top-1: {a} {render.pct(answer['top1_a'])} %, {b} {render.pct(answer['top1_b'])} % "
               f"({render.signed_pts(answer['top1_change_fraction'])})")
    method = (answer["energy"] or answer["time"] or {}).get("method")
    if method:
        click.echo(f"  interval: {method}")
    from shared.energy import estimate_note

    if note := estimate_note([r["energy_source"] for r in rows]):
        click.echo(f"  {note}", err=True)
