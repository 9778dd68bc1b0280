"""Energy source labels, shared by the meters that write them and the reports that read them."""

from __future__ import annotations

ESTIMATED_PREFIX = "estimated:"
MEASURED_PREFIX = "measured:"


def is_estimate(source: str) -> bool:
    """Whether a source label (e.g. "measured:nvml-counter+estimated:cpu-time") contains an estimate."""
    return any(part.startswith(ESTIMATED_PREFIX) for part in source.split("+"))
