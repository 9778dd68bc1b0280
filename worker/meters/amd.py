"""AMD GPU energy through AMD SMI (`import amdsmi`, shipped with ROCm >= 6; pip install 'farm[amd]').

MI200 and newer Instinct GPUs and RDNA3 have an energy accumulator (ticks x `counter_resolution` µJ); on GPUs
without one, socket power (W) is polled and integrated (worker/meters/gpu.py). Also read: the GPU's name,
driver, power cap and temperature, which results record.
"""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType
from typing import TYPE_CHECKING, Any

from worker.meters.base import Meter, MeterError
from worker.meters.gpu import DEFAULT_POLL_HZ, GpuEnergyMeter, GpuInfo, text, visible_index

if TYPE_CHECKING:
    from shared.settings import Settings
    from worker.devices.base import DeviceHandle

# A ROCm process sees the GPUs these lists name, in their order (torch's cuda:N is the Nth of them).
VISIBLE_ENV = ("HIP_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES", "CUDA_VISIBLE_DEVICES")
# amdsmi_get_power_info's socket power, by ROCm release (7: socket_power; MI300: current_; older: average_).
POWER_KEYS = ("socket_power", "current_socket_power", "average_socket_power")


def load_amdsmi() -> ModuleType:
    try:
        import amdsmi
    except ImportError:
        raise MeterError("amdsmi is not installed (pip install 'farm[amd]', or ROCm's own amdsmi)") from None
    return amdsmi


def amd_index(ordinal: int) -> int:
    """The AMD SMI index of torch's `cuda:N` on ROCm, honouring a numeric HIP/ROCR/CUDA_VISIBLE_DEVICES."""
    return visible_index(ordinal, VISIBLE_ENV)


class AmdSmiMeter(GpuEnergyMeter):
    """Energy of the given AMD GPUs: `measured:amdsmi-counter` or `measured:amdsmi-polling`."""

    library = "amdsmi"

    def __init__(
        self,
        indices: list[int],
        *,
        sync: Callable[[], None] | None = None,
        poll_hz: float = DEFAULT_POLL_HZ,
        smi: ModuleType | None = None,
    ) -> None:
        super().__init__(sync=sync, poll_hz=poll_hz)
        self.smi = smi or load_amdsmi()
        self._call(self.smi.amdsmi_init)
        try:
            every = self._call(self.smi.amdsmi_get_processor_handles)
            missing = [i for i in indices if i >= len(every)]
            if missing:
                raise MeterError(f"AMD SMI sees {len(every)} GPUs, not GPU {missing[0]}")
            self.handles = [every[i] for i in indices]
            self.gpus = [GpuInfo(i, self._name(h), self._driver(h), self._power_limit_w(h), self._has_counter(h))
                         for i, h in zip(indices, self.handles, strict=True)]
        except BaseException:
            self.close()
            raise
        self._ready()

    def _call(self, fn: Callable[..., Any], *args: Any) -> Any:
        try:
            return fn(*args)
        except self.smi.AmdSmiException as exc:
            raise MeterError(f"AMD SMI {getattr(fn, '__name__', fn)} failed: {exc}") from None

    def _optional(self, fn: Callable[..., Any], *args: Any) -> Any:
        """What `fn` returns, or None where this GPU or ROCm release does not report it."""
        try:
            return fn(*args)
        except self.smi.AmdSmiException:
            return None

    def _name(self, handle: Any) -> str:
        info = self._optional(self.smi.amdsmi_get_gpu_asic_info, handle) or {}
        return text(info.get("market_name") or "AMD GPU")

    def _driver(self, handle: Any) -> str:
        info = self._optional(self.smi.amdsmi_get_gpu_driver_info, handle) or {}
        return text(info.get("driver_version") or "unknown")

    def _power_limit_w(self, handle: Any) -> float | None:
        info = self._optional(self.smi.amdsmi_get_power_cap_info, handle) or {}
        cap = info.get("power_cap")
        return cap / 1e6 if isinstance(cap, int | float) and cap > 0 else None  # µW

    def _has_counter(self, handle: Any) -> bool:
        reading = self._optional(self.smi.amdsmi_get_energy_count, handle)
        return reading is not None and _energy_uj(reading) is not None

    def _counters_j(self) -> list[float]:
        out = []
        for h in self.handles:
            uj = _energy_uj(self._call(self.smi.amdsmi_get_energy_count, h))
            if uj is None:
                raise MeterError("AMD SMI returned no energy accumulator")
            out.append(uj / 1e6)
        return out

    def _powers_w(self) -> list[float]:
        out = []
        for h in self.handles:
            info = self._call(self.smi.amdsmi_get_power_info, h)
            watts = next((info[k] for k in POWER_KEYS if isinstance(info.get(k), int | float)), None)
            if watts is None:  # "N/A" in every field: a reading of 0 W would be a silent 0 J
                raise MeterError(f"AMD SMI reports no socket power ({', '.join(POWER_KEYS)} are N/A)")
            out.append(float(watts))
        return out

    def close(self) -> None:
        try:
            self.smi.amdsmi_shut_down()
        except self.smi.AmdSmiException:
            pass


def _energy_uj(reading: dict[str, Any]) -> float | None:
    """µJ of an amdsmi_get_energy_count reading (ROCm 6.1+: `energy_accumulator`; 6.0: `power`); None when the GPU
    has no accumulator (a zero resolution)."""
    ticks = reading.get("energy_accumulator", reading.get("power"))
    resolution = reading.get("counter_resolution")
    if not isinstance(ticks, int | float) or not isinstance(resolution, int | float) or resolution <= 0:
        return None
    return float(ticks) * float(resolution)


def gpu_temperature_c(ordinal: int, smi: ModuleType | None = None) -> float | None:
    """The edge (else hotspot) temperature of torch's `cuda:N` on ROCm in °C; None where AMD SMI cannot say."""
    try:
        smi = smi or load_amdsmi()
        smi.amdsmi_init()
    except Exception:  # MeterError or a driver refusal: a drift probe is not worth a failed job
        return None
    try:
        handle = smi.amdsmi_get_processor_handles()[amd_index(ordinal)]
        for sensor in ("EDGE", "HOTSPOT"):
            try:
                return float(smi.amdsmi_get_temp_metric(handle, getattr(smi.AmdSmiTemperatureType, sensor),
                                                        smi.AmdSmiTemperatureMetric.CURRENT))
            except smi.AmdSmiException:
                continue
        return None
    except Exception:
        return None
    finally:
        try:
            smi.amdsmi_shut_down()
        except Exception:
            pass


def pci_bus_id(ordinal: int, smi: ModuleType | None = None) -> str | None:
    """The sysfs name ("0000:03:00.0") of torch's `cuda:N` on ROCm, from AMD SMI; None when it cannot say."""
    try:
        smi = smi or load_amdsmi()
        smi.amdsmi_init()
        try:
            bdf = smi.amdsmi_get_gpu_device_bdf(smi.amdsmi_get_processor_handles()[amd_index(ordinal)])
        finally:
            smi.amdsmi_shut_down()
    except Exception:
        return None
    return text(bdf).lower()


def open_meter(device: DeviceHandle, settings: Settings, notes: list[str]) -> Meter:
    """The AMD SMI meter of a ROCm `cuda:N` device (MeterError when AMD SMI cannot read it: no 0 J)."""
    return AmdSmiMeter([amd_index(device.device.index or 0)], sync=device.synchronize)
