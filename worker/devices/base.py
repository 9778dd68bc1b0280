"""What the benchmark needs from a device, whatever its kind."""

from __future__ import annotations

from abc import ABC, abstractmethod

from shared.devices import Device, Vendor
from worker.conditions import cpu_temperature_c
from worker.hardware import cpu_model


class DeviceHandle(ABC):
    """An opened device. Construction checks that it exists here (FarmError if not)."""

    def __init__(self, device: Device) -> None:
        self.device = device

    @property
    def vendor(self) -> Vendor:
        """Who made the device ("cpu", "nvidia", "amd"): it picks the meters (worker/meters/select.py) and the NUMA
        lookup (worker/devices/numa.py)."""
        return "cpu"

    @property
    def torch_device(self) -> str:
        """The name torch knows it by: "cpu" or "cuda:N"."""
        return str(self.device)

    @property
    def gpu_name(self) -> str | None:
        """The accelerator's name (None on the CPU)."""
        return None

    @property
    def gpu_memory_gb(self) -> float | None:
        """The accelerator's memory in GB (None on the CPU)."""
        return None

    def host_cpu(self) -> str:
        """The host CPU's model name; every result names it, GPU or not."""
        return cpu_model()

    @abstractmethod
    def synchronize(self) -> None:
        """Wait until work queued on the device has finished (timing and metering edges)."""

    def temperatures_c(self) -> dict[str, float | None]:
        """`cpu_temp_c` and `gpu_temp_c` in °C now; None where there is no sensor."""
        return {"cpu_temp_c": cpu_temperature_c(), "gpu_temp_c": None}

    def __str__(self) -> str:
        return str(self.device)
