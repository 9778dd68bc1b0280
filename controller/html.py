"""`farm report --html FILE`: one self-contained page (tables, notes, figures as inline PNG), no network."""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

STYLE = """body{font-family:system-ui,sans-serif;margin:2em;color:#222}table{border-collapse:collapse;font-size:13px}
th,td{border:1px solid #ccc;padding:3px 7px;text-align:right}th{background:#f3f3f3}td:first-child,th:first-child{
text-align:left}p.note{color:#7a3b00;font-size:13px}img{max-width:100%;margin:1em 0;border:1px solid #eee}"""


def table_html(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(r.get(c, '')))}</td>" for c in columns) + "</tr>"
                   for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def page(title: str, sections: Sequence[tuple[str, str]], notes: Sequence[str], images: dict[str, bytes]) -> str:
    """A whole HTML document: `sections` are (heading, HTML) pairs; `images` are PNG bytes by name."""
    parts = [f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{html.escape(title)}</title>",
             f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>",
             f"<p>generated {datetime.now(UTC).isoformat(timespec='seconds')} by farm report</p>"]
    for heading, body in sections:
        parts.append(f"<h2>{html.escape(heading)}</h2>{body}")
    parts += [f"<p class=note>{html.escape(n)}</p>" for n in notes]
    for name, png in images.items():
        data = base64.b64encode(png).decode()
        parts.append(f"<h2>{html.escape(name)}</h2><img alt='{html.escape(name)}' src='data:image/png;base64,{data}'>")
    parts.append("</body></html>")
    return "\n".join(parts)
