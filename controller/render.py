"""Print rows as a table, JSON or CSV, and summarise repeats the way the seed's tables do."""

from __future__ import annotations

import csv
import io
import json
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


# One set of units wherever a person reads: top-1 in %, ms and mJ per sample, signed changes. JSON and CSV keep
# SI units (fractions, seconds, joules) with the unit in the column name.
MINUS = "\u2212"


def pct(fraction: float | None, digits: int = 2) -> str:
    """0.9556 -> "95.56"."""
    return "-" if fraction is None else f"{100 * fraction:.{digits}f}"


def signed_pct(change: float | None, digits: int = 0) -> str:
    """A relative change as a signed percentage: 1.134 -> "+113 %", -0.29 -> "−29 %" (never a bare 113.4)."""
    return _signed(change, digits, "%")


def signed_pts(diff: float | None, digits: int = 1) -> str:
    """A difference of fractions in percentage points: -0.032 -> "−3.2 pts"."""
    return _signed(diff, digits, "pts")


def _signed(fraction: float | None, digits: int, unit: str) -> str:
    if fraction is None:
        return "-"
    text = f"{100 * abs(fraction):.{digits}f}"
    if float(text) == 0:
        return f"±{text} {unit}"
    return f"{'+' if fraction > 0 else MINUS}{text} {unit}"


def scaled(value: float | None, scale: float, digits: int, std: float | None = None) -> str:
    """`value` x `scale` with `digits` decimals, and ± its std when given: 0.00027 s -> "0.270 ± 0.004" ms."""
    if value is None:
        return "-"
    text = f"{value * scale:.{digits}f}"
    return text if std is None else f"{text} ± {std * scale:.{digits}f}"


def change_interval(low: float | None, high: float | None) -> str:
    """A ratio's interval as changes: (0.65, 0.73) -> "−35 to −27 %"."""
    if low is None or high is None:
        return "-"
    lo, hi = signed_pct(low - 1), signed_pct(high - 1)
    return f"{lo.removesuffix(' %')} to {hi}"
