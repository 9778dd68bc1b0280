"""NVIDIA GPU energy through NVML (nvidia-ml-py, `import pynvml`).

Volta and newer GPUs have a total-energy counter (mJ); older ones (the seed's Quadro P2000, Pascal) do not and
are polled (worker/meters/gpu.py holds the window logic both paths share).
"""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType
from typing import TYPE_CHECKING, Any

from worker.meters.base import Meter, MeterError
from worker.meters.gpu import (
    COUNTER_MIN_WINDOW_S,
    DEFAULT_POLL_HZ,
    GpuEnergyMeter,
    GpuInfo,
    integrate_power,
    visible_index,
)
from worker.meters.gpu import text as _text

if TYPE_CHECKING:
    from shared.settings import Settings
    from worker.devices.base import DeviceHandle

__all__ = ["COUNTER_MIN_WINDOW_S", "GpuInfo", "NvmlMeter", "integrate_power", "nvml_index", "open_meter"]


def _load_pynvml() -> ModuleType:
    try:
        import pynvml
    except ImportError:
        raise MeterError("nvidia-ml-py is not installed (pip install 'farm[worker]')") from None
    return pynvml


def nvml_index(cuda_index: int) -> int:
    """Map a CUDA ordinal to an NVML index, honouring a numeric CUDA_VISIBLE_DEVICES."""
    return visible_index(cuda_index, ("CUDA_VISIBLE_DEVICES",))


class NvmlMeter(GpuEnergyMeter):
    """Energy of the given NVIDIA GPUs: `measured:nvml-counter` or `measured:nvml-polling`."""

    library = "nvml"

    def __init__(
        self,
        indices: list[int],
        *,
        sync: Callable[[], None] | None = None,
        poll_hz: float = DEFAULT_POLL_HZ,
        nvml: ModuleType | None = None,
    ) -> None:
        super().__init__(sync=sync, poll_hz=poll_hz)
        self.nvml = nvml or _load_pynvml()
        self._call(self.nvml.nvmlInit)
        self.handles = [self._call(self.nvml.nvmlDeviceGetHandleByIndex, i) for i in indices]
        driver = _text(self._call(self.nvml.nvmlSystemGetDriverVersion))
        self.gpus = [
            GpuInfo(i, _text(self._call(self.nvml.nvmlDeviceGetName, h)), driver, self._power_limit_w(h),
                    self._has_counter(h))
            for i, h in zip(indices, self.handles, strict=True)
        ]
        self._ready()

    def _call(self, fn: Callable[..., Any], *args: Any) -> Any:
        try:
            return fn(*args)
        except self.nvml.NVMLError as exc:
            raise MeterError(f"NVML {getattr(fn, '__name__', fn)} failed: {exc}") from None

    def _has_counter(self, handle: Any) -> bool:
        try:
            self.nvml.nvmlDeviceGetTotalEnergyConsumption(handle)
            return True
        except self.nvml.NVMLError:
            return False

    def _power_limit_w(self, handle: Any) -> float | None:
        try:
            return self.nvml.nvmlDeviceGetPowerManagementLimit(handle) / 1000.0
        except self.nvml.NVMLError:
            return None

    def _counters_j(self) -> list[float]:
        return [int(self._call(self.nvml.nvmlDeviceGetTotalEnergyConsumption, h)) / 1000.0 for h in self.handles]

    def _powers_w(self) -> list[float]:
        return [self._call(self.nvml.nvmlDeviceGetPowerUsage, h) / 1000.0 for h in self.handles]

    def close(self) -> None:
        try:
            self.nvml.nvmlShutdown()
        except self.nvml.NVMLError:
            pass


def open_meter(device: DeviceHandle, settings: Settings, notes: list[str]) -> Meter:
    """The NVML meter of an NVIDIA `cuda:N` device (MeterError when NVML cannot read it: no 0 J)."""
    return NvmlMeter([nvml_index(device.device.index or 0)], sync=device.synchronize)
