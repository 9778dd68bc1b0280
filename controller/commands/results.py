"""`farm results`, `farm report` and `farm recommend`: stored results, the seed's tables, and answers."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import click

from controller.options import FORMATS, finite, result_filter, result_filters
from shared.errors import FarmError
from shared.specs import SCENARIOS


@click.command()
@result_filters
@click.option("--summary", is_flag=True,
              help="Mean ± std per variant, model, dataset, host, device, hardware and runtime (computed by the "
                   "database) instead of one row per repeat.")
@click.option("--format", "fmt", type=FORMATS, default="table", show_default=True)
def results(summary: bool, fmt: str, **filters: Any) -> None:
    """List stored results, one row per repeat. Tables show top-1 in %, ms and mJ per sample; JSON and CSV carry
    every column of the result table in SI units (fractions, seconds, joules per sample)."""
    from controller.options import query_results
    from controller.output import print_rows, print_summary

    if summary:
        print_summary(result_filter(**filters), fmt)
    elif fmt == "csv":
        from controller.export import stream_csv

        if stream_csv(result_filter(**filters)) == 0:
            click.echo("no results match", err=True)
    else:
        print_rows(query_results(**filters), fmt)


def _carbon(grid_intensity: float | None, grid_csv: str | None) -> Any:
    from controller.report import Carbon, read_intensity_csv

    if grid_intensity is not None and grid_csv is not None:
        raise click.UsageError("give --grid-intensity or --grid-csv, not both")
    if grid_csv is not None:
        try:
            with open(grid_csv) as fh:
                return Carbon(by_hour_g_per_kwh=read_intensity_csv(fh.read()))
        except OSError as exc:
            raise FarmError(f"cannot read --grid-csv {grid_csv}: {exc.strerror}") from None
        except ValueError as exc:
            raise FarmError(f"--grid-csv {grid_csv}: {exc}") from None
    return Carbon(flat_g_per_kwh=grid_intensity) if grid_intensity is not None else None


def trust_options(fn: Any) -> Any:
    """--include-contended and --include-pairs: what report and recommend leave out unless asked."""
    fn = click.option("--include-pairs", is_flag=True,
                      help="Count `farm compare` pair rows into each variant's statistics (left out by default: "
                           "one pass each, measured beside another variant).")(fn)
    return click.option("--include-contended", is_flag=True,
                        help="Keep rows whose window ran while other work used the machine (left out by default; "
                             "see FARM_CONTENTION).")(fn)


def _tables(filters: dict[str, Any], carbon: Any, hourly: bool = True, include_contended: bool = False,
            include_pairs: bool = False) -> tuple[list[dict[str, Any]], list[str], list[dict[str, Any]]]:
    """The variant table (with baselines, whatever the variant filter), its notes, and the hourly table (empty
    unless `hourly`: with many hosts it has many groups, and only --by hour and the figures need it). Contended
    rows and compare pair rows are left out unless included, and the notes say how many."""
    from sqlmodel import Session

    from controller import report as rep
    from controller.services import load_settings, open_engine
    from shared.db import queries

    f = replace(result_filter(**filters), exclude_contended=not include_contended, exclude_pairs=not include_pairs)
    with Session(open_engine(load_settings())) as session:
        left_out = queries.count_left_out(session=session, filters=f, with_baselines=True)
        groups = queries.aggregate_results(session=session, filters=f, by=rep.VARIANT_GROUP, with_baselines=True)
        if not groups or (f.variants and not any(g["variant"] in f.variants for g in groups)):
            raise FarmError("no results match these filters")
        hourly_groups = queries.aggregate_results(session=session, filters=f, by=rep.HOURLY_GROUP) if hourly else []
        by_hour = (queries.aggregate_results(session=session, filters=f, by=(*rep.VARIANT_GROUP, "local_hour"),
                                          with_baselines=True)
                   if carbon is not None and carbon.by_hour_g_per_kwh is not None else [])
        floors = {(t["hardware_id"], t["device"]): queries.latest_noise_floor(
            session=session, hardware_id=t["hardware_id"], device=t["device"])
            for t in groups if t.get("hardware_id")}
    table, notes = rep.variant_table(groups, carbon, by_hour)
    notes = rep.left_out_notes(left_out) + notes + rep.noise_floor_notes(table, {
        k: v.model_dump() for k, v in floors.items() if v is not None})
    return table, notes, rep.hourly_table(hourly_groups)


@click.command()
@result_filters
@click.option("--by", type=click.Choice(["variant", "hour"]), default="variant", show_default=True,
              help="variant: the seed's Table III, each variant against its baseline on the same hardware; hour: "
                   "energy by local hour (drift).")
@click.option("--plot", "plot_dir", default=None, metavar="DIR",
              help="Write three figures to DIR: energy and top-1 against pruning ratio, top-1 against energy with "
                   "the Pareto front, energy by local hour per host.")
@click.option("--html", "html_path", default=None, metavar="FILE",
              help="Write one self-contained HTML page with the tables, notes and figures.")
@click.option("--grid-intensity", type=finite(min=0), default=None, metavar="G",
              help="Grid carbon intensity in gCO2e/kWh: adds gCO2e per 1,000 inferences.")
@click.option("--grid-csv", default=None, metavar="FILE",
              help="Grid intensity by local hour (lines: hour,g_per_kwh), weighted by when each variant ran.")
@click.option("--load", "load", is_flag=True,
              help="Per variant: seconds (and joules) to load it on the device, its first batch (cold) against the "
                   "steady median, its weight and artifact MB.")
@click.option("--format", "fmt", type=FORMATS, default="table", show_default=True)
@trust_options
def report(by: str, plot_dir: str | None, html_path: str | None, grid_intensity: float | None,
           grid_csv: str | None, fmt: str, include_contended: bool, include_pairs: bool, load: bool = False,
           **filters: Any) -> None:
    """Summarise results like the seed paper, aggregated by the database. Each variant is compared with the
    baseline on the same hardware (hardware_id), model, data and device, even when --variant names only it:
    Δ energy with a 95 % interval (Welch t on log ratios of the repeats), Δ time, Δ top-1 in points. A place
    with no baseline is named under the table; noisy runs are flagged "!", estimated energy "est."."""
    from controller import render
    from controller import report as rep

    carbon = _carbon(grid_intensity, grid_csv)
    table, notes, hourly = _tables(filters, carbon, hourly=by == "hour" or bool(plot_dir or html_path),
                                   include_contended=include_contended, include_pairs=include_pairs)
    if load:
        shown, view = table, rep.load_view(table)
        columns = list(view[0]) if view else []
    elif by == "variant":
        shown, view = table, rep.variant_view(table)
        columns = rep.view_columns(view, carbon is not None)
    else:
        shown, view = hourly, rep.hourly_view(hourly)
        columns = list(view[0]) if view else []
    if fmt == "json":
        click.echo(render.to_json(shown))
    elif fmt == "csv":
        click.echo(render.to_csv(shown, list(shown[0])), nl=False)
    else:
        click.echo(render.to_table(view, columns))
        for note in notes:
            click.echo(note)
    if plot_dir:
        from controller.figures import write_figures

        for path in write_figures(table, hourly, plot_dir):
            click.echo(f"figure written to {path}", err=True)
    if html_path:
        _write_html(html_path, table, hourly, notes, carbon is not None)
        click.echo(f"page written to {html_path}", err=True)


def _write_html(path: str, table: list[dict[str, Any]], hourly: list[dict[str, Any]], notes: list[str],
                carbon: bool) -> None:
    from controller import html
    from controller import report as rep
    from controller.figures import draw_all, png_bytes

    view, hview = rep.variant_view(table), rep.hourly_view(hourly)
    sections = [("Variants against their baselines", html.table_html(view, rep.view_columns(view, carbon))),
                ("Energy by local hour", html.table_html(hview, list(hview[0]) if hview else []))]
    images = {name: png_bytes(fig) for name, fig in draw_all(table, hourly).items()}
    try:
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(html.page("farm report", sections, notes, images))
    except OSError as exc:
        raise FarmError(f"cannot write {path}: {exc.strerror}") from None


@click.command()
@result_filters
@click.option("--max-drop", type=finite(min=0), default=None, metavar="PTS",
              help="Keep top-1 within PTS percentage points of the baseline on the same hardware (default 1).")
@click.option("--min-top1", type=finite(0, 100), default=None, metavar="PCT",
              help="Keep top-1 at or above PCT % instead.")
@click.option("--max-p99-ms", type=click.FloatRange(min=0, min_open=True), default=None, metavar="MS",
              help="Only variants whose latency p99 (per batch; server: per query) is at most MS.")
@click.option("--max-memory-mb", type=click.FloatRange(min=0, min_open=True), default=None, metavar="MB",
              help="Only variants whose worker peak resident memory is at most MB (MiB).")
@click.option("--scenario", type=click.Choice(SCENARIOS), default=None,
              help="Only rows of this MLPerf scenario (offline, single-stream, server).")
@click.option("--predicted", is_flag=True,
              help="Also list variants NOT measured on that machine that `farm predict` says would use less energy "
                   "(top-1 as measured on other machines), each marked `predicted` with its 90 % interval. They are "
                   "never merged into the measured answer.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@trust_options
def recommend(max_drop: float | None, min_top1: float | None, max_p99_ms: float | None, max_memory_mb: float | None,
              scenario: str | None, predicted: bool, fmt: str, include_contended: bool, include_pairs: bool,
              **filters: Any) -> None:
    """For each machine (hardware_id), model, dataset and device: the variant with the least energy per sample
    that keeps accuracy, its saving against the baseline with a 95 % interval, and the runner-up. From stored
    rows only: it names what is missing (no baseline there, one repeat only) instead of guessing; --predicted
    adds, apart, what the predictor expects of variants nobody measured there."""
    from controller import render
    from controller.recommend import Criterion, verdict
    from controller.recommend import recommend as choose

    if max_drop is not None and min_top1 is not None:
        raise click.UsageError("give --max-drop or --min-top1, not both")
    limits = {"max_p99_s": None if max_p99_ms is None else max_p99_ms / 1e3,
              "max_memory_bytes": None if max_memory_mb is None else max_memory_mb * 2**20}
    criterion = Criterion(min_top1=min_top1 / 100, **limits) if min_top1 is not None else Criterion(
        max_drop=(1.0 if max_drop is None else max_drop) / 100, **limits)
    table, notes, _hourly = _tables(filters, None, hourly=False, include_contended=include_contended,
                                    include_pairs=include_pairs)
    if scenario is not None:
        table = [t for t in table if (t.get("scenario") or "offline") == scenario]
        if not table:
            raise FarmError(f"no results match these filters in the {scenario} scenario")
    answers = choose(table, criterion)
    alternatives = _predicted(answers, criterion) if predicted else {}
    if fmt == "json":
        click.echo(render.to_json([{**{k: v for k, v in a.items() if k not in ("choice", "runner_up", "baseline")},
                                    "choice": a["choice"] and _brief(a["choice"]),
                                    "runner_up": a["runner_up"] and _brief(a["runner_up"]),
                                    "baseline": a["baseline"] and _brief(a["baseline"]),
                                    "verdict": verdict(a),
                                    **({"predicted": alternatives.get(_place(a), [])} if predicted else {})}
                                   for a in answers]))
        return
    click.echo(f"criterion: {criterion.describe()}")
    for note in notes:
        if note.startswith("left out:"):
            click.echo(note)
    for a in answers:
        click.echo(f"\n{a['model_id']} on {a['dataset_id']}, {a['hardware_label'] or '?'} [{a['hardware_id']}] "
                   f"{a['device']}, batch {a.get('batch_size') or '-'}, {a.get('scenario') or 'offline'}"
                   + (f" @{a['target_qps']:g} QPS" if a.get("target_qps") is not None else ""))
        click.echo(f"  recommend: {verdict(a)}")
        if a["runner_up"] is not None:
            r = a["runner_up"]
            click.echo(f"  runner-up: {r['variant']} ({render.signed_pct(r['energy_change_fraction'])} energy, "
                       f"top-1 {render.signed_pts(r['top1_change_fraction'])})")
        for note in a["notes"]:
            click.echo(f"  note: {note}")
        for r in alternatives.get(_place(a), [])[:3]:
            click.echo(f"  predicted (not measured here): {r['variant']}"
                       + ("" if r["runtime"] == "torch" else f" on {r['runtime']}")
                       + f" {render.scaled(r['predicted_energy_per_sample_j'], 1e3, 3)} mJ/sample "
                       f"[{render.scaled(r['energy_low_j'], 1e3, 3)}, {render.scaled(r['energy_high_j'], 1e3, 3)}] "
                       f"({100 * r['level']:g} % interval), top-1 {render.pct(r['top1_elsewhere'])} % elsewhere: "
                       f"measure it before trusting it")


def _place(a: dict[str, Any]) -> tuple[str, str, str, str]:
    return (a["model_id"], a["dataset_id"], a["hardware_id"], a["device"])


def _predicted(answers: list[dict[str, Any]], criterion: Any) -> dict[tuple[str, str, str, str], list[dict[str, Any]]]:
    """`farm predict`'s view of the variants each place lacks (one model fitted per model id in the answers)."""
    from sqlmodel import Session

    from controller.predict.features import load_cells
    from controller.predict.grid import fit_and_calibrate, predicted_alternatives
    from controller.services import load_settings, open_engine

    out: dict[tuple[str, str, str, str], list[dict[str, Any]]] = {}
    for model_id in sorted({a["model_id"] for a in answers}):
        with Session(open_engine(load_settings())) as session:
            cells = load_cells(session, model_id=model_id)
        try:
            fitted = fit_and_calibrate(cells, 0.9)
        except FarmError:
            continue  # too little stored to predict from: the measured answer stands alone
        out.update(predicted_alternatives(fitted, [a for a in answers if a["model_id"] == model_id],
                                          criterion.max_drop, criterion.min_top1))
    return out


def _brief(t: dict[str, Any]) -> dict[str, Any]:
    keys = ("variant", "runtime", "repeats", "top1", "total_energy_per_sample_j", "total_energy_per_sample_std_j",
            "energy_change_fraction", "energy_change_low", "energy_change_high", "top1_change_fraction",
            "batch_size", "scenario", "latency_p99_s", "peak_rss_bytes")
    return {k: t[k] for k in keys}
