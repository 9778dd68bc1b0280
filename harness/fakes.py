"""Fakes of hardware this machine lacks: a powercap sysfs tree, a pynvml module and an amdsmi module. Nothing else
is faked."""

from __future__ import annotations

import types
from pathlib import Path


class FakePowercap:
    """A directory laid out like /sys/class/powercap with writable counters."""

    def __init__(self, root: Path, sockets: int = 1, dram: bool = False, max_range_uj: int = 262_143_328_850):
        self.root = root
        self.max_range_uj = max_range_uj
        for s in range(sockets):
            self._zone(f"intel-rapl:{s}", f"package-{s}")
            self._zone(f"intel-rapl:{s}/intel-rapl:{s}:0", "core")
            if dram:
                self._zone(f"intel-rapl:{s}/intel-rapl:{s}:1", "dram")
        # The kernel also links subzones at the top level; the reader must not count them twice.
        for s in range(sockets):
            link = root / f"intel-rapl:{s}:0"
            link.symlink_to(root / f"intel-rapl:{s}" / f"intel-rapl:{s}:0")

    @classmethod
    def layout(cls, root: Path, zones: dict[str, str], max_range_uj: int = 262_143_328_850) -> FakePowercap:
        """A tree with exactly `zones` ({"intel-rapl:0": "package-0", "intel-rapl:0:0": "core", ...}); subzones
        are nested in their parent's folder and also linked at the top level, as the kernel does."""
        tree = cls.__new__(cls)
        tree.root, tree.max_range_uj = root, max_range_uj
        for zone, name in zones.items():
            parts = zone.split(":")
            rel = zone if len(parts) == 2 else f"{':'.join(parts[:2])}/{zone}"
            tree._zone(rel, name)
            if len(parts) == 3:
                (root / zone).symlink_to(root / rel)
        return tree

    def _zone(self, rel: str, name: str) -> None:
        zone = self.root / rel
        zone.mkdir(parents=True)
        (zone / "name").write_text(name + "\n")
        (zone / "energy_uj").write_text("0\n")
        (zone / "max_energy_range_uj").write_text(f"{self.max_range_uj}\n")

    def set(self, zone: str, energy_uj: int) -> None:
        """Set a counter: `zone` like "intel-rapl:0" or "intel-rapl:0:1"."""
        parts = zone.split(":")
        path = self.root / ":".join(parts[:2]) if len(parts) == 2 else self.root / ":".join(parts[:2]) / zone
        tmp = path / "energy_uj.tmp"  # replace atomically, as sysfs reads are: a poller never sees ""
        tmp.write_text(f"{energy_uj % (self.max_range_uj + 1)}\n")
        tmp.replace(path / "energy_uj")


class FakeNVMLError(Exception):
    pass


def fake_pynvml(*, has_counter: bool, power_w: float = 100.0, names: tuple[str, ...] = ("NVIDIA H100",),
                bus_ids: tuple[str, ...] = ("00000000:3B:00.0",)):
    """A stand-in for the pynvml module: constant power, and an energy counter that follows wall time."""
    import time

    t0 = time.perf_counter()
    calls: dict[str, int] = {}

    def count(name: str) -> None:
        calls[name] = calls.get(name, 0) + 1

    def energy(handle: int) -> int:
        count("energy")
        if not has_counter:
            raise FakeNVMLError("Not Supported")
        return int((time.perf_counter() - t0) * power_w * 1000)  # mJ

    def power(handle: int) -> int:
        count("power")
        return int(power_w * 1000)  # mW

    mod = types.SimpleNamespace(
        NVMLError=FakeNVMLError,
        NVML_TEMPERATURE_GPU=0,
        nvmlInit=lambda: count("init"),
        nvmlShutdown=lambda: count("shutdown"),
        nvmlDeviceGetHandleByIndex=lambda i: i if i < len(names) else (_ for _ in ()).throw(FakeNVMLError("Invalid")),
        nvmlDeviceGetName=lambda h: names[h],
        nvmlSystemGetDriverVersion=lambda: "550.54.15",
        nvmlDeviceGetPowerManagementLimit=lambda h: 350_000,
        nvmlDeviceGetTotalEnergyConsumption=energy,
        nvmlDeviceGetPowerUsage=power,
        nvmlDeviceGetTemperature=lambda h, sensor: 41 + h,
        nvmlDeviceGetPciInfo=lambda h: types.SimpleNamespace(busId=bus_ids[h].encode()),
        calls=calls,
    )
    return mod


class FakeAmdSmiException(Exception):
    pass


def fake_amdsmi(*, has_counter: bool, power_w: float = 300.0, names: tuple[str, ...] = ("AMD Instinct MI250X",),
                bdfs: tuple[str, ...] = ("0000:C1:00.0",), resolution_uj: float = 15.259, legacy_key: bool = False,
                power_key: str = "current_socket_power", temps_c: dict[str, float] | None = None):
    """A stand-in for the amdsmi module (ROCm's AMD SMI): constant power, and an energy accumulator that follows
    wall time in ticks of `resolution_uj` µJ (ROCm 6.0 calls it `power`, later ones `energy_accumulator`). A GPU
    without a counter (`has_counter=False`) raises as AMD SMI does for an unsupported call. `temps_c` maps
    sensor name (EDGE, HOTSPOT) to °C; a sensor absent from it raises."""
    import time

    t0 = time.perf_counter()
    calls: dict[str, int] = {}
    temps = {"EDGE": 45.0} if temps_c is None else temps_c

    def count(name: str) -> None:
        calls[name] = calls.get(name, 0) + 1

    def energy(handle: int) -> dict[str, float]:
        count("energy")
        if not has_counter:
            raise FakeAmdSmiException("AMDSMI_STATUS_NOT_SUPPORTED")
        ticks = int((time.perf_counter() - t0) * power_w * 1e6 / resolution_uj)
        return {"power" if legacy_key else "energy_accumulator": ticks, "counter_resolution": resolution_uj,
                "timestamp": time.time_ns()}

    def power(handle: int) -> dict[str, object]:
        count("power")
        info: dict[str, object] = {"socket_power": "N/A", "current_socket_power": "N/A",
                                   "average_socket_power": "N/A", "power_limit": 500}
        info[power_key] = int(power_w)
        return info

    def temp(handle: int, sensor: str, metric: str) -> float:
        if sensor not in temps:
            raise FakeAmdSmiException("AMDSMI_STATUS_NOT_SUPPORTED")
        return temps[sensor] + handle

    handles = list(range(len(names)))
    mod = types.SimpleNamespace(
        AmdSmiException=FakeAmdSmiException,
        AmdSmiTemperatureType=types.SimpleNamespace(EDGE="EDGE", HOTSPOT="HOTSPOT"),
        AmdSmiTemperatureMetric=types.SimpleNamespace(CURRENT="CURRENT"),
        amdsmi_init=lambda *flags: count("init"),
        amdsmi_shut_down=lambda: count("shutdown"),
        amdsmi_get_processor_handles=lambda: list(handles),
        amdsmi_get_gpu_asic_info=lambda h: {"market_name": names[h], "vendor_id": "0x1002"},
        amdsmi_get_gpu_driver_info=lambda h: {"driver_name": "amdgpu", "driver_version": "6.8.5"},
        amdsmi_get_power_cap_info=lambda h: {"power_cap": 500_000_000, "default_power_cap": 500_000_000},  # µW
        amdsmi_get_energy_count=energy,
        amdsmi_get_power_info=power,
        amdsmi_get_temp_metric=temp,
        amdsmi_get_gpu_device_bdf=lambda h: bdfs[h],
        calls=calls,
    )
    return mod
