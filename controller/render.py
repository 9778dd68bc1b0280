"""Print rows as a table, JSON or CSV, and summarise repeats the way the seed's tables do."""

from __future__ import annotations

import csv
import io
import json
import statistics
import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any


def jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    return value


def to_json(rows: Iterable[dict[str, Any]]) -> str:
    return json.dumps([{k: jsonable(v) for k, v in r.items()} for r in rows], indent=2)


def to_csv(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(columns), extrasaction="ignore")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: json.dumps(v) if isinstance(v, dict | list) else jsonable(v) for k, v in r.items()})
    return buf.getvalue()


def to_table(rows: Sequence[dict[str, Any]], columns: Sequence[str], headers: Sequence[str] | None = None) -> str:
    headers = list(headers or columns)
    cells = [[_cell(r.get(c)) for c in columns] for r in rows]
    widths = [max([len(h), *(len(row[i]) for row in cells)]) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, datetime):
        return value.astimezone().strftime("%Y-%m-%d %H:%M")
    return str(value)


def _mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def _pm(values: list[float | None], scale: float, digits: int) -> str:
    present = [v for v in values if v is not None]
    if not present:
        return "-"
    mean, std = _mean_std([v * scale for v in present])
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


SUMMARY_COLUMNS = ("variant", "model_id", "dataset_id", "host", "device", "n", "top1_pct", "top5_pct",
                   "ms_per_sample", "mj_per_sample", "params_m", "macs_m", "energy_source")
SUMMARY_HEADERS = ("variant", "model", "dataset", "host", "device", "n", "top-1 %", "top-5 %", "ms/sample",
                   "mJ/sample", "params (M)", "MACs (M)", "energy source")


def _one(values: set[Any], fmt: str) -> str:
    """The value all rows of a group share, or the range when they differ (never the first row's alone)."""
    if len(values) == 1:
        return fmt.format(next(iter(values)))
    return f"{fmt.format(min(values))}–{fmt.format(max(values))}"


def summarize(results: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean ± std over repeats, one row per (variant, model, dataset, host, device), in first-seen order."""
    groups: dict[tuple[str, str, str, str, str], list[dict[str, Any]]] = {}
    for r in results:
        groups.setdefault((r["variant"], r["model_id"], r["dataset_id"], r["host"], r["device"]), []).append(r)
    out = []
    for (variant, model_id, dataset_id, host, device), rows in groups.items():
        out.append(
            {
                "variant": variant,
                "model_id": model_id,
                "dataset_id": dataset_id,
                "host": host,
                "device": device,
                "n": len(rows),
                "top1_pct": _pm([r["top1"] for r in rows], 100, 2),
                "top5_pct": _pm([r["top5"] for r in rows], 100, 2),
                "ms_per_sample": _pm([r["time_per_sample_s"] for r in rows], 1e3, 4),
                "mj_per_sample": _pm([r["total_energy_per_sample_j"] for r in rows], 1e3, 3),
                "params_m": _one({r["params"] / 1e6 for r in rows}, "{:.4f}"),
                "macs_m": _one({r["macs"] / 1e6 for r in rows}, "{:.3f}"),
                "energy_source": ",".join(sorted({r["energy_source"] for r in rows})),
            }
        )
    return out


RESULT_TABLE_COLUMNS = ("job_id", "variant", "host", "device", "started_at", "repeat_index", "samples", "top1",
                        "time_per_sample_s", "total_energy_per_sample_j", "energy_source")
RESULT_TABLE_HEADERS = ("job", "variant", "host", "device", "started (local)", "rep", "samples", "top-1",
                        "s/sample", "J/sample", "energy source")
