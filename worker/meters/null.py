"""A meter that measures time only: for speed-only runs (scripts/bench_speed.py) and for tests."""

from __future__ import annotations

from worker.meters.base import EnergyMeasurement, Meter


class NullMeter(Meter):
    """No energy source: its measurement has no domains, so `total_energy_j` raises instead of reading 0 J."""

    name = "none"

    def _begin(self) -> None:
        return None

    def _end(self, state: object, duration_s: float) -> EnergyMeasurement:
        return EnergyMeasurement(duration_s=duration_s, source=self.name,
                                 warnings=("no energy meter: time only",))
