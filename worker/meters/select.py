"""The meters for a device, from the descriptors in shared/meters.py: those whose vendors include the device's
vendor, opened in order (a ROCm GPU is `cuda:N` too, and gets AMD SMI, never NVML).

Each descriptor's `opens` function returns a Meter and raises MeterError when it applies but cannot read (a GPU
whose library fails: the job fails, no 0 J). The CPU meter falls back to the labelled estimate when RAPL is
unreadable, with the reason as a note.
"""

from __future__ import annotations

from collections.abc import Callable

from shared.meters import meters_for
from shared.refs import resolve
from shared.settings import Settings
from worker.devices.base import DeviceHandle
from worker.meters.base import Meter, MeterError
from worker.meters.combined import CombinedMeter
from worker.meters.rapl import RaplMeter, RaplPermissionError

MeterFactory = Callable[[DeviceHandle, Settings, list[str]], Meter]


def factories(device: DeviceHandle) -> list[tuple[str, MeterFactory]]:
    """(meter name, its opening function) for each meter that applies to `device`, in order."""
    return [(info.name, resolve(info.opens)) for info in meters_for(device.vendor)]


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
        for _name, factory in factories(device):
            meters.append(factory(device, settings, notes))
    except BaseException:
        for meter in meters:
            meter.close()
        raise
    return CombinedMeter(meters, tuple(notes))
