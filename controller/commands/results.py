"""`farm results` and `farm report`: query stored results and summarise them like the seed paper."""

from __future__ import annotations

import click

from controller.options import FORMATS, query_results, result_filters
from controller.output import print_results
from shared.errors import FarmError


@click.command()
@result_filters
@click.option("--summary", is_flag=True,
              help="Mean ± std per variant, model, dataset, host and device instead of one row per repeat.")
@click.option("--format", "fmt", type=FORMATS, default="table", show_default=True)
def results(summary: bool, fmt: str, **filters: str | None) -> None:
    """List stored results, one row per repeat. JSON objects carry every column of the result table."""
    rows = query_results(**filters)
    print_results(rows, fmt, summary=summary)


@click.command()
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

    rows = query_results(**filters)
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

