"""A GPU by torch ordinal (`cuda:N`): NVIDIA under CUDA, or AMD under ROCm (torch's HIP build names its GPUs
`cuda:N` too; `torch.version.hip` tells them apart)."""

from __future__ import annotations

import logging
from types import ModuleType

from shared.devices import Device, Vendor
from shared.errors import FarmError
from worker.devices.base import DeviceHandle

log = logging.getLogger(__name__)


def gpu_vendor(torch: ModuleType) -> Vendor:
    """"amd" when this torch is a ROCm (HIP) build, else "nvidia"."""
    return "amd" if getattr(getattr(torch, "version", None), "hip", None) else "nvidia"


class CudaDevice(DeviceHandle):
    """`cuda:N`; FarmError at construction when CUDA is unavailable or there is no GPU N."""

    def __init__(self, device: Device) -> None:
        import torch

        super().__init__(device)
        if not torch.cuda.is_available():
            raise FarmError(f"device {device} requested but CUDA is not available here")
        if (device.index or 0) >= torch.cuda.device_count():
            raise FarmError(f"device {device} does not exist ({torch.cuda.device_count()} GPUs)")
        self._torch = torch
        self._vendor = gpu_vendor(torch)

    @property
    def vendor(self) -> Vendor:
        return self._vendor

    @property
    def gpu_name(self) -> str | None:
        return str(self._torch.cuda.get_device_name(self._torch.device(self.torch_device)))

    @property
    def gpu_memory_gb(self) -> float | None:
        props = self._torch.cuda.get_device_properties(self._torch.device(self.torch_device))
        return round(props.total_memory / 1e9, 1)

    def synchronize(self) -> None:
        self._torch.cuda.synchronize(self._torch.device(self.torch_device))

    def temperatures_c(self) -> dict[str, float | None]:
        temps = super().temperatures_c()
        if self.vendor == "amd":
            from worker.meters.amd import gpu_temperature_c

            temps["gpu_temp_c"] = gpu_temperature_c(self.device.index or 0)
            return temps
        try:  # through NVML (nvidia-ml-py); None where it cannot be read
            temps["gpu_temp_c"] = float(self._torch.cuda.temperature(self._torch.device(self.torch_device)))
        except Exception as exc:  # pynvml missing, or NVML refused: a drift probe is not worth a failed job
            log.debug("no GPU temperature for %s: %s", self.device, exc)
        return temps
