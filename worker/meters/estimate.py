"""The honest fallback when no meter exists: process CPU time times a per-core power."""

from __future__ import annotations

import time

from worker.meters.base import EnergyMeasurement, Meter


class CpuTimeEstimate(Meter):
    """Estimates CPU energy as (process CPU seconds) x `watts_per_core`.

    The default, 12 W per busy core, is a rough figure for a server core at load (a 24-core,
    ~290 W package). Set FARM_CPU_WATTS_PER_CORE for your machine. It ignores idle and uncore power.
    """

    name = "estimated:cpu-time"
    min_window_reason = "process CPU time is read at ns resolution (CLOCK_PROCESS_CPUTIME_ID): one pass is a window"

    def __init__(self, watts_per_core: float) -> None:
        if watts_per_core <= 0:
            raise ValueError("watts_per_core must be positive")
        self.watts_per_core = watts_per_core

    def _begin(self) -> float:
        return time.process_time()

    def _end(self, state: object, duration_s: float) -> EnergyMeasurement:
        cpu_s = time.process_time() - float(state)  # type: ignore[arg-type]
        return EnergyMeasurement(
            duration_s=duration_s,
            source=self.name,
            energy_by_domain_j={"process-cpu-time": cpu_s * self.watts_per_core},
        )
