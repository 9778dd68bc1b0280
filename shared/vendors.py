"""The device vendors farm knows, one descriptor each: the device class its devices serve and what a worker
needs installed to meter them. The worker's device handle names its vendor (DeviceHandle.vendor): a ROCm GPU is
`cuda:N` to torch like an NVIDIA one, so the vendor, not the device text, picks meters and NUMA lookups.
"""

from __future__ import annotations

from dataclasses import dataclass

from shared.devices import DeviceClass, Vendor


@dataclass(frozen=True)
class VendorInfo:
    """One vendor: `extra` is the pip extra that installs its meter's library (None: nothing beyond farm)."""

    name: Vendor
    device_class: DeviceClass
    extra: str | None
    summary: str


VENDORS: tuple[VendorInfo, ...] = (
    VendorInfo("cpu", "cpu", None, "the host CPU: RAPL through powercap sysfs, else a labelled CPU-time estimate"),
    VendorInfo("nvidia", "gpu", "worker", "NVIDIA GPUs under CUDA, metered through NVML (nvidia-ml-py)"),
    VendorInfo("amd", "gpu", "amd", "AMD GPUs under ROCm (torch.version.hip set), metered through AMD SMI (amdsmi)"),
)


def vendor(name: str) -> VendorInfo:
    for info in VENDORS:
        if info.name == name:
            return info
    raise KeyError(f"unknown vendor {name!r}; farm knows {', '.join(v.name for v in VENDORS)}")
