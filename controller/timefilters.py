"""Parse `--since/--until` moments and `--hours` ranges."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from shared.errors import FarmError

_RELATIVE = re.compile(r"^(?P<n>\d+)\s*(?P<unit>[smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_moment(text: str, *, now: datetime | None = None, option: str = "--since") -> datetime:
    """An ISO 8601 date/time (naive means this machine's local time) or an age like `2h`, `7d`; tz-aware UTC."""
    now = now or datetime.now(UTC)
    m = _RELATIVE.match(text.strip())
    if m:
        try:
            return now - timedelta(**{_UNITS[m["unit"]]: int(m["n"])})
        except OverflowError:
            raise FarmError(f"{option} {text!r} reaches before year 1; give a smaller age") from None
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise FarmError(
            f"{option} must be an ISO date/time (2026-11-25, 2026-11-25T09:00) or an age (2h, 7d), got {text!r}"
        ) from None
    try:
        if moment.tzinfo is None:
            moment = moment.astimezone()  # interpret as local time
        return moment.astimezone(UTC)
    except (OverflowError, ValueError, OSError):
        raise FarmError(f"{option} {text!r} is out of range") from None


def parse_hours(text: str) -> tuple[int, int]:
    """`9-17` means local hours 9 through 16 (half-open); `22-6` wraps past midnight."""
    m = re.match(r"^\s*(\d{1,2})\s*-\s*(\d{1,2})\s*$", text)
    if not m:
        raise FarmError(f"--hours must look like 9-17 (local hours, end excluded), got {text!r}")
    start, end = int(m[1]), int(m[2])
    if not (0 <= start <= 23 and 0 <= end <= 24) or start == end:
        raise FarmError(f"--hours needs two different hours in 0-24, got {text!r}")
    return start, end % 24 if end == 24 and start > 0 else end
