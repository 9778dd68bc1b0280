"""`farm predict` and `farm plan`: what unmeasured (variant, hardware) cells would cost, and which to measure
next (docs/prediction.md)."""

from __future__ import annotations

import math
from typing import Any

import click

from controller.options import FORMATS
from shared.errors import FarmError
from shared.specs import BUILTIN_MODEL

# The most measurements one `farm plan` proposes (docs/security.md, "Bounds").
MAX_BUDGET = 10_000

LEVEL = click.FloatRange(0.5, 0.99)


def _query_options(f: Any) -> Any:
    for opt in reversed([
        click.option("-v", "--variant", "variant", default=None,
                     help="Variant(s) to predict, comma-separated (default with --all: every stored variant)."),
        click.option("--hardware", default=None, metavar="ID|LABEL",
                     help="A hardware_id prefix, else (when no id starts with it) a piece of its label "
                          "(default: every measured machine)."),
        click.option("--runtime", default=None, help="torch, onnxruntime or openvino (default: every measured one)."),
        click.option("--batch-size", type=click.IntRange(min=1), default=None,
                     help="Inference batch size (rows stored without one count as 8). One nobody measured on a "
                          "machine is predicted from that machine's rates at the work of that batch size, with no "
                          "interval (nothing calibrates it): basis `+batch`."),
        click.option("-m", "--model", default=BUILTIN_MODEL, show_default=True, help="Base model."),
        click.option("--level", type=LEVEL, default=0.9, show_default=True,
                     help="Prediction interval level (split-conformal, calibrated on the store's own cells)."),
    ]):
        f = opt(f)
    return f


def _fitted(model: str, batch_size: int | None, level: float, query: Any = None) -> Any:
    from sqlmodel import Session

    from controller.predict.features import load_cells
    from controller.predict.grid import check_query, fit_and_calibrate
    from controller.services import load_settings, open_engine

    with Session(open_engine(load_settings())) as session:
        cells = load_cells(session, model_id=model)
    if not cells:
        raise FarmError(f"no stored results of {model}: `farm run` or `farm submit` some variants first")
    if query is not None:
        check_query(cells, query)
    return fit_and_calibrate(cells, level)


def _query(variant: str | None, hardware: str | None, runtime: str | None, batch_size: int | None,
           model: str) -> Any:
    from controller.predict.grid import Query
    from shared.specs import parse_variant

    variants = tuple(v.strip() for v in variant.split(",") if v.strip()) if variant else None
    for v in variants or ():
        parse_variant(v, model=model)  # FarmError for a name outside the grammar
    return Query(variants=variants, hardware=hardware, runtime=runtime, batch_size=batch_size, model_id=model)


@click.command()
@_query_options
@click.option("--all", "everything", is_flag=True, help="The whole grid: every stored variant on every machine.")
@click.option("--validate", is_flag=True,
              help="Leave-one-out over the store, by variant and by (variant, hardware) cell: median and p90 "
                   "absolute % error of time and energy, and the intervals' real coverage.")
@click.option("--format", "fmt", type=FORMATS, default="table", show_default=True)
def predict(variant: str | None, hardware: str | None, runtime: str | None, batch_size: int | None, model: str,
            level: float, everything: bool, validate: bool, fmt: str) -> None:
    """Predict time and energy per sample of variants on machines (hardware_id x runtime x batch size), with a
    LEVEL interval, from the store's measured rows. Cells the store measured are marked `measured` and show the
    measurement beside the model's leave-one-out prediction; a prediction is never shown as a measurement.

    The model (pure Python, no numpy): each cell's work by kind (fp32 and int8 GEMM MACs, non-GEMM work,
    int8 activation quantization, weight dequantization, weight bytes, per-batch cost) times per-machine rates
    fitted by non-negative least squares on the machine with the most cells per runtime; every other machine
    borrows those rates, rescaled by its own cells and shrunk toward them kind by kind (one anchor measurement
    is enough to predict it); then a rank-1 model of the machine x variant matrix of log residuals borrows
    strength across machines. Intervals are split-conformal on leave-one-out residuals; `--validate` shows
    their real coverage.
    """
    from controller import render
    from controller.predict.grid import predict_rows

    if not (variant or everything or validate):
        raise click.UsageError("give --variant, --all or --validate")
    query = None if validate else _query(variant, hardware, runtime, batch_size, model)
    fitted = _fitted(model, batch_size, level, query)
    if validate:
        _print_validation(fitted, level, fmt)
        return
    rows = predict_rows(fitted, query)
    if not rows:
        raise FarmError("no cell matches: the variant cannot run on the runtimes asked for")
    if fmt == "json":
        click.echo(render.to_json(rows))
    elif fmt == "csv":
        click.echo(render.to_csv(rows, list(rows[0])), nl=False)
    else:
        view = [{"variant": r["variant"], "hardware": r["hardware_id"][:8], "runtime": r["runtime"],
                 "batch": r["batch_size"], "status": r["status"],
                 "predicted ms/sample": _with_interval(r["predicted_time_per_sample_s"], r["time_low_s"],
                                                       r["time_high_s"]),
                 "measured ms": render.scaled(r["measured_time_per_sample_s"], 1e3, 3),
                 "predicted mJ/sample": _with_interval(r["predicted_energy_per_sample_j"], r["energy_low_j"],
                                                       r["energy_high_j"]),
                 "measured mJ": render.scaled(r["measured_energy_per_sample_j"], 1e3, 3),
                 "basis": r["basis"]} for r in rows]
        click.echo(render.to_table(view, list(view[0])))
        click.echo(f"intervals: {100 * level:g} % split-conformal (calibrated on {fitted.calibration.n['cell']} "
                   f"held-out cells); `measured` rows show the model's prediction made without that cell.")
        labels = sorted({(r["hardware_id"][:8], r["hardware_label"]) for r in rows})
        for hid, label in labels:
            click.echo(f"hardware {hid}: {label}")


def _with_interval(value: float | None, low: float | None, high: float | None) -> str:
    if value is None:
        return "-"
    if low is None or high is None:
        return f"{value * 1e3:.3g} [?]"
    return f"{value * 1e3:.3g} [{low * 1e3:.3g}, {high * 1e3:.3g}]"


def _print_validation(fitted: Any, level: float, fmt: str) -> None:
    from controller import render
    from controller.predict.conformal import noise_floor, same_variant, summary

    rows = [{"held_out": "one (variant, hardware) cell", **summary(fitted.held_cells, level)},
            {"held_out": "one variant (all its cells)",
             **summary(fitted.held_variants, level, same_group=same_variant)}]
    floor = {"held_out": "noise floor: half the repeats vs the other half", **noise_floor(fitted.predictor.cells)}
    cells = fitted.predictor.cells
    configs = sorted({(c.config.key(), c.hardware_label) for c in cells})
    if fmt == "json":
        import json

        def finite(v: Any) -> Any:
            return None if isinstance(v, float) and not math.isfinite(v) else v

        click.echo(json.dumps({"summary": [{k: finite(v) for k, v in r.items()} for r in rows],
                               "noise_floor": {k: finite(v) for k, v in floor.items()}, "cells": len(cells),
                               "configurations": [{"configuration": k, "hardware_label": lab} for k, lab in configs]},
                              indent=2))
        return
    if fmt == "csv":
        click.echo(render.to_csv(rows, list(rows[0])), nl=False)
        return
    view = [{"held out": r["held_out"], "cells": r["cells"],
             "time median %": f"{r['time_median_ape_pct']:.1f}", "time p90 %": f"{r['time_p90_ape_pct']:.1f}",
             f"time {100 * level:g} % cover": f"{100 * r['time_coverage']:.0f} %",
             "energy median %": f"{r['energy_median_ape_pct']:.1f}", "energy p90 %": f"{r['energy_p90_ape_pct']:.1f}",
             f"energy {100 * level:g} % cover": f"{100 * r['energy_coverage']:.0f} %"} for r in rows]
    view.append({"held out": floor["held_out"], "cells": floor["cells"],
                 "time median %": f"{floor['time_median_ape_pct']:.1f}",
                 "time p90 %": f"{floor['time_p90_ape_pct']:.1f}",
                 f"time {100 * level:g} % cover": "", "energy median %": f"{floor['energy_median_ape_pct']:.1f}",
                 "energy p90 %": f"{floor['energy_p90_ape_pct']:.1f}", f"energy {100 * level:g} % cover": ""})
    click.echo(render.to_table(view, list(view[0])))
    click.echo(f"{len(cells)} measured cells (median over each cell's repeats) on {len(configs)} configurations:")
    for key, label in configs:
        click.echo(f"  {key}  {label}")
    click.echo("coverage: each held-out cell's interval is calibrated on the other held-out residuals only. The "
               "noise floor is how much the store's own medians move between halves of their repeats: a model "
               "cannot be shown more accurate than that.")


@click.command()
@_query_options
@click.option("--budget", type=click.IntRange(min=1, max=MAX_BUDGET), required=True, metavar="N",
              help=f"How many (variant, hardware) measurements to propose (at most {MAX_BUDGET:,}).")
@click.option("--submit", "do_submit", is_flag=True,
              help="Queue the proposed measurements (`farm submit --on host:HOST:cpu|gpu`): the worker there must "
                   "run with the threads that hardware_id was measured with.")
@click.option("--repeats", type=click.IntRange(min=1), default=5, show_default=True, help="With --submit.")
@click.option("--queue-anyway", is_flag=True, help="With --submit: queue even when no live worker serves that host.")
@click.option("--yes", is_flag=True,
              help="With --submit: queue more than FARM_CONFIRM_JOBS measurements (without it they are listed and "
                   "nothing is queued).")
@click.option("--format", "fmt", type=FORMATS, default="table", show_default=True)
def plan(variant: str | None, hardware: str | None, runtime: str | None, batch_size: int | None, model: str,
         level: float, budget: int, do_submit: bool, repeats: int, queue_anyway: bool, yes: bool, fmt: str) -> None:
    """The N (variant, hardware) measurements that would most shrink the uncertainty of the predictions asked
    about (--variant/--hardware/--runtime; default: every unmeasured cell of the grid), chosen greedily by the
    drop in the summed posterior variance of those predictions (docs/prediction.md)."""
    from controller import render
    from controller.predict.grid import plan_rows

    query = _query(variant, hardware, runtime, batch_size, model)
    fitted = _fitted(model, batch_size, level, query)
    rows = plan_rows(fitted, query, budget)
    if not rows:
        raise FarmError("nothing to plan: every cell asked about is measured, or no measurement would help")
    if do_submit:
        _confirm_plan(rows, yes)
        _submit(rows, repeats, model, queue_anyway, echo_ids=fmt == "table")
    if fmt == "json":
        click.echo(render.to_json(rows))
    elif fmt == "csv":
        click.echo(render.to_csv(rows, list(rows[0])), nl=False)
    else:
        click.echo(render.to_table([{"#": i + 1, "variant": r["variant"], "hardware": r["hardware_id"][:8],
                                     "runtime": r["runtime"], "gain": f"{r['gain']:.3g}",
                                     "targets' variance left": f"{r['remaining_var']:.3g}",
                                     "measure with": r["command"]}
                                    for i, r in enumerate(rows)], ["#", "variant", "hardware", "runtime", "gain",
                                                                  "targets' variance left", "measure with"]))


def _confirm_plan(rows: list[dict[str, Any]], yes: bool) -> None:
    """The same threshold as `farm submit`: without --yes, a plan of more than FARM_CONFIRM_JOBS jobs is listed and
    refused (FarmError, nothing queued)."""
    from controller.services import load_settings
    from shared.specs import parse_variant

    threshold = load_settings().confirm_jobs
    # Counted as `farm submit` counts: a pruned variant is two jobs (compress, then benchmark).
    jobs = sum(2 if parse_variant(r["variant"]).prune is not None else 1 for r in rows)
    if jobs <= threshold or yes:
        return
    for r in rows:
        click.echo(r["command"])
    raise FarmError(f"this plan would queue {jobs:,} jobs for {len(rows):,} measurements (listed above), more than "
                    f"FARM_CONFIRM_JOBS={threshold}; nothing was queued. Check the list and add --yes to queue them")


def _submit(rows: list[dict[str, Any]], repeats: int, model: str, queue_anyway: bool, echo_ids: bool) -> None:
    """Queue each pick through `farm submit` itself (its checks, routing and chains), at the pick's batch size.
    Each row gets its `job_id` (and `compress_job_id` for a chain); `echo_ids` prints them as `farm submit` does
    (the table format), else they are only in the rows, so that JSON and CSV output stay parseable."""
    import contextlib
    import io
    import json

    from controller.commands.submit import submit

    for r in rows:
        if not r["host"]:
            raise FarmError(f"no host is known for hardware {r['hardware_id']}: submit {r['variant']} yourself")
    for r in rows:
        where = f"host:{r['host']}:{'gpu' if r['device'].startswith('cuda') else 'cpu'}"
        args = ["-v", r["variant"], "-m", model, "--runtime", r["runtime"], "--batch-size", str(r["batch_size"]),
                "--on", where, "--repeats", str(repeats), "--format", "json",
                *(["--queue-anyway"] if queue_anyway else [])]
        out = io.StringIO()
        with contextlib.redirect_stdout(out), submit.make_context("submit", args) as ctx:
            submit.invoke(ctx)
        queued = json.loads(out.getvalue())
        r["job_id"] = queued["job_id"]
        if queued.get("compress_job_id"):
            r["compress_job_id"] = queued["compress_job_id"]
        r["submitted"] = True
        if echo_ids:
            click.echo(r["job_id"])
