"""Energy source labels, shared by the meters that write them and the reports that read them."""

from __future__ import annotations

ESTIMATED_PREFIX = "estimated:"
MEASURED_PREFIX = "measured:"


def is_estimate(source: str) -> bool:
    """Whether a source label (e.g. "measured:nvml-counter+estimated:cpu-time") contains an estimate."""
    return any(part.startswith(ESTIMATED_PREFIX) for part in source.split("+"))


def estimate_note(sources: list[str]) -> str | None:
    """One line for a person saying which part of the energy in `sources` is estimated and which measured (None
    when nothing is estimated). A GPU row on a host without RAPL is measured by NVML and estimated on the CPU."""
    parts = {part for source in sources for part in source.split("+")}
    estimated = sorted(p.removeprefix(ESTIMATED_PREFIX) for p in parts if p.startswith(ESTIMATED_PREFIX))
    if not estimated:
        return None
    measured = sorted(p.removeprefix(MEASURED_PREFIX) for p in parts if p.startswith(MEASURED_PREFIX))
    note = (f"CPU energy is ESTIMATED ({', '.join(estimated)}: no RAPL readable here; "
            "see FARM_CPU_WATTS_PER_CORE)")
    return note + (f"; measured: {', '.join(measured)}" if measured else "")
