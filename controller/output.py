"""How result rows are printed: one row per repeat, or summarised, as a table, JSON or CSV."""

from __future__ import annotations

from typing import Any

import click


def print_results(rows: list[dict[str, Any]], fmt: str, summary: bool) -> None:
    from controller import render
    from shared.db.models import RESULT_COLUMNS

    if fmt == "json":
        click.echo(render.to_json([{c: r.get(c) for c in RESULT_COLUMNS} for r in rows]))
    elif fmt == "csv":
        click.echo(render.to_csv(rows, RESULT_COLUMNS), nl=False)
    elif summary:
        click.echo(render.to_table(render.summarize(rows), render.SUMMARY_COLUMNS, render.SUMMARY_HEADERS))
        from shared.energy import estimate_note

        if note := estimate_note([r["energy_source"] for r in rows]):
            click.echo(note, err=True)
    else:
        view = [{**r, "job_id": str(r["job_id"])[:8]} for r in rows]
        click.echo(render.to_table(view, render.RESULT_TABLE_COLUMNS, render.RESULT_TABLE_HEADERS))

