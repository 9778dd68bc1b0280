"""Which CPUs a worker's torch threads should use: those of its device's NUMA node, or the whole machine.

A GPU sits on one NUMA node (its PCI device's `numa_node` in sysfs); host-side work for it (data, kernel
launches) runs best on that node's cores. Its PCI address comes from its vendor's library (NVML for NVIDIA, AMD
SMI for AMD): a ROCm GPU is `cuda:N` to torch too, so the vendor, not the device kind, picks the lookup.
A CPU worker uses every CPU it may run on. Both are cut to this process's affinity (taskset, cgroups).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from types import ModuleType

from shared.devices import Device, Vendor

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


def nvml_bus_id(cuda_index: int, nvml: ModuleType | None = None) -> str | None:
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


def amd_bus_id(cuda_index: int, smi: ModuleType | None = None) -> str | None:
    """The sysfs name of ROCm GPU `cuda_index`'s PCI device, from AMD SMI; None when it cannot say."""
    from worker.meters.amd import pci_bus_id

    return pci_bus_id(cuda_index, smi)


def device_cpus(device: Device, vendor: Vendor, *, sysfs: Path = Path("/sys"), nvml: ModuleType | None = None,
                smi: ModuleType | None = None) -> set[int]:
    """The CPUs a worker on `device` (made by `vendor`) should run its threads on: its GPU's NUMA node's CPUs
    that this process may use, or every CPU it may use (a CPU device, a GPU on no node, or a node whose CPUs are
    all outside the affinity). `nvml` and `smi` replace the vendors' libraries (tests)."""
    allowed = allowed_cpus()
    if device.kind != "cuda" or vendor == "cpu":
        return allowed
    index = device.index or 0
    bus = amd_bus_id(index, smi) if vendor == "amd" else nvml_bus_id(index, nvml)
    if bus is None:
        return allowed
    try:
        node = int((sysfs / "bus" / "pci" / "devices" / bus / "numa_node").read_text())
    except (OSError, ValueError):
        return allowed
    if node < 0:  # a single-node machine reports -1
        return allowed
    return (numa_node_cpus(node, sysfs) & allowed) or allowed
