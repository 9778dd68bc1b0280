"""The energy meters, one descriptor each, tried in this order for every device a job runs on.

A meter applies to the devices of its `vendors`; `opens` names the worker function (device handle, settings,
notes) -> Meter that opens it, which raises MeterError when the meter applies but cannot read (a GPU whose
library fails: the job fails, never 0 J). To add a meter: one module in worker/meters/ with its `open_meter`,
and one `MeterInfo` here (docs/extending.md walks through the AMD one).
"""

from __future__ import annotations

from dataclasses import dataclass

from shared.devices import Vendor


@dataclass(frozen=True)
class MeterInfo:
    """One meter. `packages` are the modules it imports (checked without importing them); `sources` the labels
    its measurements carry (shared/energy.py: a label starting with `estimated:` is an estimate)."""

    name: str
    vendors: tuple[Vendor, ...]
    packages: tuple[str, ...]
    opens: str
    sources: tuple[str, ...]
    summary: str


METERS: tuple[MeterInfo, ...] = (
    MeterInfo("nvml", ("nvidia",), ("pynvml",), "worker.meters.nvml:open_meter",
              ("measured:nvml-counter", "measured:nvml-polling"),
              "NVIDIA GPU energy counter (Volta+), or power polled at 20 Hz and integrated"),
    MeterInfo("amdsmi", ("amd",), ("amdsmi",), "worker.meters.amd:open_meter",
              ("measured:amdsmi-counter", "measured:amdsmi-polling"),
              "AMD GPU energy accumulator (MI200+, RDNA3, ROCm >= 6), or socket power polled at 20 Hz"),
    # The host CPU runs every job's data loading and launches, so it is metered on every device.
    MeterInfo("cpu", ("cpu", "nvidia", "amd"), (), "worker.meters.cpu:open_meter",
              ("measured:rapl", "estimated:cpu-time"),
              "RAPL package (and DRAM, psys) counters; the CPU-time estimate where RAPL cannot be read"),
)


def meters_for(vendor: Vendor) -> tuple[MeterInfo, ...]:
    """The meters that apply to a device of `vendor`, in the order they are opened."""
    return tuple(m for m in METERS if vendor in m.vendors)
