"""Pick the best meter this machine offers for a device."""

from __future__ import annotations

from shared.settings import Settings
from worker.meters.base import Meter
from worker.meters.estimate import CpuTimeEstimate


def build_meter(device: str, settings: Settings) -> Meter:
    return CpuTimeEstimate(settings.cpu_watts_per_core)
