"""`farm calibrate`: an A/A campaign on one worker that stores the machine's noise floor."""

from __future__ import annotations

from dataclasses import replace

import click

from controller.options import DEVICE, check_bound, job_spec
from controller.services import job_rows, load_settings, open_engine
from shared.devices import Device
from shared.errors import FarmError
from shared.routing import queue_device_class, queue_for_target
from shared.specs import BUILTIN_MODEL, DEFAULT_DATASET, CompareSpec


@click.command()
@click.option("--variant", default="baseline", show_default=True, help="The variant run on both sides.")
@click.option("--pairs", type=click.IntRange(min=3), default=10, show_default=True, help="A/A pairs to run.")
@click.option("--model", default=BUILTIN_MODEL, show_default=True, help="Base model (as for submit).")
@click.option("--dataset", default=DEFAULT_DATASET, show_default=True, help="Dataset (as for submit).")
@click.option("--limit", type=int, default=None, help="Benchmark only the first N test samples.")
@click.option("--on", "target", default="cpu", show_default=True,
              help="Where: cpu, gpu, host:NAME or host:NAME:cpu|gpu (one worker runs the campaign).")
@click.option("--runtime", default=None, help="The runtime (default: the variant's own).")
@click.option("--here", is_flag=True, help="Run it in this process, like `farm run`, with no broker.")
@click.option("--device", type=DEVICE, default="cpu", show_default=True, help="With --here: cpu or cuda:N.")
@click.option("--queue-anyway", is_flag=True, help="Queue even when no live worker serves --on.")
@click.option("--timeout", type=click.FloatRange(min=1), default=None, help="Give up waiting after this many s.")
@click.option("--min-window", "min_window_s", type=click.FloatRange(min=0.0, max=600.0), default=None, metavar="S",
              help="Pass over the data again inside each window until it lasts S seconds (default: the meter's "
                   "minimum; RAPL 1 s, GPU counters 5 s, the CPU-time estimate one pass). Longer windows, lower noise.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
def calibrate(variant: str, pairs: int, model: str, dataset: str, limit: int | None, target: str,
              runtime: str | None, here: bool, device: Device, queue_anyway: bool, timeout: float | None,
              fmt: str, min_window_s: float | None = None) -> None:
    """Measure this hardware's noise floor: VARIANT against itself in PAIRS back-to-back pairs (an A/A run, as
    `farm compare V V`), at the meter's window. Stores the CV of time and energy per sample over the runs and the
    smallest difference the pairs resolve (the 95 % interval's half-width); `farm report` and `farm compare`
    quote it for that machine and device ("below this machine's noise floor of 2.1 %"). Calibrate at the window
    your comparisons use (--min-window): a floor measured at another window does not describe them."""
    from sqlmodel import Session

    from controller.calibration import noise_floor_of
    from controller.commands.compare import _run_here, _submit
    from controller.comparison import sides_of_same
    from shared.db.models import NoiseFloor

    settings = load_settings()
    check_bound("--pairs", pairs, settings.max_pairs, "FARM_MAX_PAIRS")
    cls = device.device_class if here else queue_device_class(queue_for_target(target))
    spec = job_spec(variant, model, dataset, 1, limit, None, device_class=cls, runtime=runtime,
                    bench={} if min_window_s is None else {"min_window_s": min_window_s})
    spec = replace(spec, compare=CompareSpec(spec.variant, pairs, spec.runtime))
    job_id = _run_here(settings, spec, device) if here else _submit(settings, spec, target, queue_anyway, timeout)
    rows, first, second = sides_of_same(job_rows(settings, job_id), variant)
    try:
        floor = noise_floor_of(rows, first, second)
    except ValueError as exc:
        raise FarmError(f"calibration {job_id}: {exc}") from None
    row = NoiseFloor(job_id=job_id, hardware_id=rows[0]["hardware_id"], hardware_label=rows[0]["hardware_label"],
                     device=rows[0]["device"], runtime=rows[0]["runtime"], variant=variant, **floor)
    with Session(open_engine(settings)) as session:
        session.add(row)
        session.commit()
        session.refresh(row)
        stored = row.model_dump()
    contended = sum(1 for r in rows if r.get("contended"))
    if fmt == "json":
        from controller import render

        click.echo(render.to_json([{**stored, "contended_rows": contended}]))
        return
    click.echo(f"noise floor of {stored['hardware_label']} [{stored['hardware_id'][:6]}] {stored['device']} "
               f"({stored['runtime']}, {variant}, {stored['pairs']} A/A pairs, window {stored['window_s'] or 0:.2f} s)")
    click.echo(f"  time per sample: CV {100 * stored['time_cv']:.1f} %, resolves ±"
               f"{100 * stored['time_resolvable_fraction']:.1f} % with {stored['pairs']} pairs")
    click.echo(f"  energy per sample: CV {100 * stored['energy_cv']:.1f} %, resolves ±"
               f"{100 * stored['energy_resolvable_fraction']:.1f} % with {stored['pairs']} pairs")
    if stored["foreign_cpu_cores_max"] is not None:
        click.echo(f"  foreign CPU during the windows: up to {stored['foreign_cpu_cores_max']:.2f} cores"
                   + (f" ({contended} contended windows: this floor includes other work)" if contended else ""))
