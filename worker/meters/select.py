"""Pick the best meters this machine offers for a device: RAPL, else the labelled estimate; NVML on GPUs."""

from __future__ import annotations

import logging

from shared.settings import Settings
from worker.meters.base import Meter, MeterError
from worker.meters.combined import CombinedMeter
from worker.meters.estimate import CpuTimeEstimate
from worker.meters.rapl import RaplMeter

log = logging.getLogger(__name__)


def cpu_meter(settings: Settings) -> tuple[Meter, tuple[str, ...]]:
    """RAPL when its counters can be read; otherwise the CPU-time estimate, with the reason as a note."""
    try:
        return RaplMeter(settings.powercap_root, mode=settings.rapl_domains), ()
    except MeterError as exc:
        note = f"RAPL unavailable ({exc}); CPU energy estimated from CPU time"
        log.warning(note)
        return CpuTimeEstimate(settings.cpu_watts_per_core), (note,)


def build_meter(device: str, settings: Settings) -> CombinedMeter:
    """The meter for a benchmark on `device`. A GPU whose NVML cannot be read raises MeterError."""
    cpu, notes = cpu_meter(settings)
    gpu = None
    if device.startswith("cuda"):
        import torch

        from worker.meters.nvml import NvmlMeter, nvml_index

        index = int(device.split(":", 1)[1]) if ":" in device else 0
        gpu = NvmlMeter([nvml_index(index)], sync=lambda: torch.cuda.synchronize(torch.device(device)))
    return CombinedMeter(cpu, gpu, notes)
