"""The meters for a device, from a registry: each entry opens its meter where it applies to the device.

`METERS` is tried in order; each factory returns a Meter, None when it does not apply to the device, and
raises MeterError when it applies but cannot read (a GPU whose NVML fails: the job fails, no 0 J). The CPU
entry falls back to the labelled estimate when RAPL is unreadable, with the reason as a note.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from shared.settings import Settings
from worker.devices.base import DeviceHandle
from worker.meters.base import Meter, MeterError
from worker.meters.combined import CombinedMeter
from worker.meters.estimate import CpuTimeEstimate
from worker.meters.rapl import RaplMeter, RaplPermissionError

log = logging.getLogger(__name__)
MeterFactory = Callable[[DeviceHandle, Settings, list[str]], "Meter | None"]


def nvml_meter(device: DeviceHandle, settings: Settings, notes: list[str]) -> Meter | None:
    """NVML on a CUDA device (energy counter, or polled power on GPUs without one)."""
    if device.device.kind != "cuda":
        return None
    from worker.meters.nvml import NvmlMeter, nvml_index

    return NvmlMeter([nvml_index(device.device.index or 0)], sync=device.synchronize)


def cpu_meter(device: DeviceHandle, settings: Settings, notes: list[str]) -> Meter:
    """RAPL when its counters can be read; otherwise the CPU-time estimate, with the reason as a note."""
    try:
        return RaplMeter(settings.powercap_root, mode=settings.rapl_domains)
    except MeterError as exc:
        note = f"RAPL unavailable ({exc}); CPU energy estimated from CPU time"
        log.warning(note)
        notes.append(note)
        return CpuTimeEstimate(settings.cpu_watts_per_core)


METERS: list[MeterFactory] = [nvml_meter, cpu_meter]


def rapl_access_problem(settings: Settings) -> str | None:
    """Why RAPL, present on this machine, cannot be read (the file, the reason, the fix), for the worker's one
    line at start; None when it reads, or when there is no RAPL at all (the estimate is then the only choice)."""
    try:
        RaplMeter(settings.powercap_root, mode=settings.rapl_domains)
    except RaplPermissionError as exc:
        return f"CPU energy will be estimated, not measured: {exc}"
    except MeterError:
        return None
    return None


def build_meter(device: DeviceHandle, settings: Settings) -> CombinedMeter:
    """Every meter that applies to `device`, opened together; MeterError when one that applies cannot read."""
    notes: list[str] = []
    meters: list[Meter] = []
    try:
        for factory in METERS:
            meter = factory(device, settings, notes)
            if meter is not None:
                meters.append(meter)
    except BaseException:
        for meter in meters:
            meter.close()
        raise
    return CombinedMeter(meters, tuple(notes))
