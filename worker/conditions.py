"""Conditions that the seed blamed for energy drift: temperatures and the CPU frequency governor."""

from __future__ import annotations

from pathlib import Path

# Thermal zone types that report the CPU package, best first.
CPU_ZONE_TYPES = ("x86_pkg_temp", "k10temp", "cpu-thermal", "cpu_thermal", "soc_thermal", "acpitz")


def cpu_temperature_c(thermal_root: str | Path = "/sys/class/thermal") -> float | None:
    """The CPU package temperature in °C from /sys/class/thermal, or None where there is none."""
    zones: dict[str, Path] = {}
    for zone in Path(thermal_root).glob("thermal_zone*"):
        try:
            zones.setdefault((zone / "type").read_text().strip(), zone)
        except OSError:
            continue
    for kind in CPU_ZONE_TYPES:
        if kind in zones:
            try:
                return int((zones[kind] / "temp").read_text().strip()) / 1000.0
            except (OSError, ValueError):
                return None
    return None


def cpu_governor(cpufreq: str | Path = "/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor") -> str | None:
    try:
        return Path(cpufreq).read_text().strip()
    except OSError:
        return None
