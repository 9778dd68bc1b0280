"""The host CPU's meter, opened for every job: RAPL when its counters can be read, else the labelled CPU-time
estimate (with the reason as a note, so a result says why it is an estimate)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from worker.meters.base import Meter, MeterError
from worker.meters.estimate import CpuTimeEstimate
from worker.meters.rapl import RaplMeter

if TYPE_CHECKING:
    from shared.settings import Settings
    from worker.devices.base import DeviceHandle

log = logging.getLogger(__name__)


def open_meter(device: DeviceHandle, settings: Settings, notes: list[str]) -> Meter:
    """RAPL when its counters can be read; otherwise the CPU-time estimate, with the reason as a note."""
    try:
        return RaplMeter(settings.powercap_root, mode=settings.rapl_domains)
    except MeterError as exc:
        note = f"RAPL unavailable ({exc}); CPU energy estimated from CPU time"
        log.warning(note)
        notes.append(note)
        return CpuTimeEstimate(settings.cpu_watts_per_core)
