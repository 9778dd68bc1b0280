"""Which CPUs a worker's torch threads should use: those of its device's NUMA node, or the whole machine.

A GPU sits on one NUMA node (its PCI device's `numa_node` in sysfs); host-side work for it (data, kernel
launches) runs best on that node's cores. A CPU worker uses every CPU it may run on. Both are cut to this
process's affinity (taskset, cgroups).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from types import ModuleType

from shared.devices import Device

log = logging.getLogger(__name__)


def parse_cpulist(text: str) -> set[int]:
    """The CPUs of a sysfs cpulist ("0-3,8,10-11")."""
    cpus: set[int] = set()
    for part in text.strip().split(","):
        if not part:
            continue
        lo, _, hi = part.partition("-")
        cpus.update(range(int(lo), int(hi or lo) + 1))
    return cpus


def allowed_cpus() -> set[int]:
    """The CPUs this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return set(os.sched_getaffinity(0))
    return set(range(os.cpu_count() or 1))


def pci_bus_id(cuda_index: int, nvml: ModuleType | None = None) -> str | None:
    """The sysfs name ("0000:3b:00.0") of GPU `cuda_index`'s PCI device, from NVML; None when NVML cannot say."""
    try:
        if nvml is None:
            import pynvml as nvml
        from worker.meters.nvml import nvml_index

        nvml.nvmlInit()
        try:
            info = nvml.nvmlDeviceGetPciInfo(nvml.nvmlDeviceGetHandleByIndex(nvml_index(cuda_index)))
        finally:
            nvml.nvmlShutdown()
    except Exception as exc:  # no pynvml, no driver: the thread default falls back to the machine
        log.debug("no PCI bus id for cuda:%s: %s", cuda_index, exc)
        return None
    bus = info.busId.decode() if isinstance(info.busId, bytes) else str(info.busId)
    domain, _, rest = bus.lower().partition(":")
    return f"{int(domain, 16):04x}:{rest}"  # NVML writes an 8-digit domain, sysfs a 4-digit one


def numa_node_cpus(node: int, sysfs: Path = Path("/sys")) -> set[int]:
    path = sysfs / "devices" / "system" / "node" / f"node{node}" / "cpulist"
    try:
        return parse_cpulist(path.read_text())
    except (OSError, ValueError):
        return set()


def device_cpus(device: Device, *, sysfs: Path = Path("/sys"), nvml: ModuleType | None = None) -> set[int]:
    """The CPUs a worker on `device` should run its threads on: its GPU's NUMA node's CPUs that this process may
    use, or every CPU it may use (a CPU device, a GPU on no node, or a node whose CPUs are all outside the
    affinity)."""
    allowed = allowed_cpus()
    if device.kind != "cuda":
        return allowed
    bus = pci_bus_id(device.index or 0, nvml)
    if bus is None:
        return allowed
    try:
        node = int((sysfs / "bus" / "pci" / "devices" / bus / "numa_node").read_text())
    except (OSError, ValueError):
        return allowed
    if node < 0:  # a single-node machine reports -1
        return allowed
    return (numa_node_cpus(node, sysfs) & allowed) or allowed
