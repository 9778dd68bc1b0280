"""How results are printed: one row per repeat, or summarised by the database, as a table, JSON or CSV.

Tables use the units a person reads (top-1 %, ms and mJ per sample); JSON and CSV keep SI units with the unit in
the column name (fractions, seconds, joules per sample).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from shared.db.filters import ResultFilter

SUMMARY_GROUP = ("variant", "model_id", "dataset_id", "host", "device", "hardware_id", "runtime", "batch_size",
                 "scenario", "target_qps")
SUMMARY_SI_COLUMNS = (*SUMMARY_GROUP, "hardware_label", "n", "top1_mean", "top1_std", "top5_mean",
                      "time_per_sample_s_mean", "time_per_sample_s_std", "total_energy_per_sample_j_mean",
                      "total_energy_per_sample_j_std", "params_max", "macs_max", "energy_source", "noisy",
                      "noise_example", "latency_p50_s_mean", "latency_p99_s_mean", "throughput_sps_mean",
                      "peak_rss_bytes_max", "weight_bytes_max")


def print_rows(rows: list[dict[str, Any]], fmt: str) -> None:
    """One row per repeat: every column in JSON and CSV, the readable ones in a table."""
    from controller import render
    from shared.db.models import RESULT_COLUMNS

    if fmt == "json":
        click.echo(render.to_json([{c: r.get(c) for c in RESULT_COLUMNS} for r in rows]))
    elif fmt == "csv":
        click.echo(render.to_csv(rows, RESULT_COLUMNS), nl=False)
    elif not rows:
        click.echo("no results match")
    else:
        view = [{"job": str(r["job_id"])[:8], "variant": r["variant"], "host": r["host"], "device": r["device"],
                 "hardware": (r.get("hardware_id") or "?")[:6], "runtime": r.get("runtime"),
                 "started (local)": r["started_at"], "rep": r["repeat_index"], "samples": r["samples"],
                 "top-1 %": render.pct(r["top1"]), "ms/sample": render.scaled(r["time_per_sample_s"], 1e3, 3),
                 "mJ/sample": render.scaled(r["total_energy_per_sample_j"], 1e3, 2),
                 "flags": "!" if r.get("noise") else "", "energy source": r["energy_source"]} for r in rows]
        click.echo(render.to_table(view, list(view[0]) if view else ["job"]))
        _estimate_note([r["energy_source"] for r in rows])


def print_summary(filters: ResultFilter, fmt: str) -> None:
    """Mean ± std per variant, model, dataset, host, device, hardware and runtime, aggregated by the database."""
    from sqlmodel import Session

    from controller import render
    from controller.services import load_settings, open_engine
    from shared.db import queries

    with Session(open_engine(load_settings())) as session:
        groups = queries.aggregate_results(session=session, filters=filters, by=SUMMARY_GROUP)
    if fmt == "json":
        click.echo(render.to_json([{c: g.get(c) for c in SUMMARY_SI_COLUMNS} for g in groups]))
        return
    if fmt == "csv":
        click.echo(render.to_csv(groups, SUMMARY_SI_COLUMNS), nl=False)
        return
    if not groups:
        click.echo("no results match")
        return
    view = [{"variant": g["variant"], "model": g["model_id"], "dataset": g["dataset_id"], "host": g["host"],
             "device": g["device"], "hardware": f"{g['hardware_label'] or '?'} [{(g['hardware_id'] or '?')[:6]}]",
             "runtime": g["runtime"], "n": g["n"],
             "top-1 %": render.scaled(g["top1_mean"], 100, 2, g["top1_std"]),
             "top-5 %": render.scaled(g["top5_mean"], 100, 2, g["top5_std"]),
             "ms/sample": render.scaled(g["time_per_sample_s_mean"], 1e3, 4, g["time_per_sample_s_std"]),
             "mJ/sample": render.scaled(g["total_energy_per_sample_j_mean"], 1e3, 3,
                                        g["total_energy_per_sample_j_std"]),
             "batch": "-" if g.get("batch_size") is None else g["batch_size"],
             "p50 ms": render.scaled(g.get("latency_p50_s_mean"), 1e3, 3),
             "p99 ms": render.scaled(g.get("latency_p99_s_mean"), 1e3, 3),
             "samples/s": render.scaled(g.get("throughput_sps_mean"), 1, 1),
             "params (M)": _span(g["params_min"], g["params_max"], 1e-6, "{:.4f}"),
             "MACs (M)": _span(g["macs_min"], g["macs_max"], 1e-6, "{:.3f}"),
             "flags": "!" if g["noisy"] else "", "energy source": g["energy_source"]} for g in groups]
    click.echo(render.to_table(view, list(view[0]) if view else ["variant"]))
    noisy = [g for g in groups if g["noisy"]]
    for g in noisy:
        click.echo(f"! {g['variant']} on {g['host']}: {g['noise_example']}", err=True)
    _estimate_note([g["energy_source"] for g in groups])


def _span(lo: float, hi: float, scale: float, fmt: str) -> str:
    """The value all rows of a group share, or its range when they differ (never one row's alone)."""
    return fmt.format(lo * scale) if lo == hi else f"{fmt.format(lo * scale)}–{fmt.format(hi * scale)}"


def _estimate_note(sources: list[str]) -> None:
    from shared.energy import estimate_note

    if note := estimate_note(sources):
        click.echo(note, err=True)
