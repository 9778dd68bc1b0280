"""What machine a result came from: CPU model and fingerprint, software versions, local time (the GPU's own
facts come from worker/devices and the meters)."""

from __future__ import annotations

import hashlib
import json
import os
import platform
from datetime import datetime
from importlib import metadata
from pathlib import Path
from typing import Any

# CPU features that change inference speed by a large factor (int8 dot products, bf16, matrix tiles), best last.
SPEED_ISA = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_int8", "amx_bf16")
# The one ISA feature a label names: the best for int8 inference that the CPU has.
LABEL_ISA = ("amx_int8", "amx_tile", "avx512_vnni", "avx512f", "avx2")
# What hardware_id hashes: the machine and the threads used, not the software that ran on it.
HARDWARE_ID_KEYS = ("cpu_model", "isa", "sockets", "cpus", "memory_gb", "threads", "gpu_name", "gpu_memory_gb",
                    "gpu_driver", "gpu_power_limit_w")


def cpu_facts(cpuinfo: str | None = None, meminfo: str | None = None) -> dict[str, Any]:
    """Sockets, logical CPUs, the speed-relevant ISA flags, memory (GB) from /proc (or the texts given)."""
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text() if cpuinfo is None else cpuinfo
    except OSError:
        cpuinfo = ""
    try:
        meminfo = Path("/proc/meminfo").read_text() if meminfo is None else meminfo
    except OSError:
        meminfo = ""
    flags: set[str] = set()
    sockets: set[str] = set()
    cpus = 0
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key == "processor":
            cpus += 1
        elif key == "physical id":
            sockets.add(value.strip())
        elif key == "flags" and not flags:
            flags = set(value.split())
    memory_gb = None
    for line in meminfo.splitlines():
        if line.startswith("MemTotal:"):
            memory_gb = round(int(line.split()[1]) / 1e6, 1)  # kB
    return {"isa": [f for f in SPEED_ISA if f in flags], "sockets": len(sockets) or 1,
            "cpus": cpus or os.cpu_count() or 1, "memory_gb": memory_gb}


def fingerprint(cpu: str, threads: int | None, runtime: str, runtime_version: str | None,
                gpu: dict[str, Any] | None = None, facts: dict[str, Any] | None = None) -> dict[str, Any]:
    """A result's machine: CPU model and facts (cpu_facts), threads used, GPU facts, and the runtime."""
    gpu = gpu or {}
    return {"cpu_model": cpu, **(facts if facts is not None else cpu_facts()), "threads": threads,
            "gpu_name": gpu.get("gpu_name"), "gpu_memory_gb": gpu.get("gpu_memory_gb"),
            "gpu_driver": gpu.get("gpu_driver"), "gpu_power_limit_w": gpu.get("gpu_power_limit_w"),
            "runtime": runtime, "runtime_version": runtime_version}


def hardware_id(fp: dict[str, Any]) -> str:
    """12 hex digits of SHA-256 over the machine part of a fingerprint (HARDWARE_ID_KEYS): equal on two hosts of
    the same build, different when the ISA, GPU, driver, power limit or threads differ. The runtime is a column
    of its own, so one machine's torch and other runtimes share an id and compare against one baseline."""
    machine = {k: fp.get(k) for k in HARDWARE_ID_KEYS}
    return hashlib.sha256(json.dumps(machine, sort_keys=True).encode()).hexdigest()[:12]


def hardware_label(fp: dict[str, Any]) -> str:
    """A short readable name: "NVIDIA H200 (700 W) · Intel Xeon · avx512_vnni · 16 CPUs · 8 threads"."""
    parts = []
    if fp.get("gpu_name"):
        limit = fp.get("gpu_power_limit_w")
        parts.append(f"{fp['gpu_name']}" + (f" ({limit:.0f} W)" if limit else ""))
    parts.append(str(fp.get("cpu_model") or "unknown CPU"))
    isa = fp.get("isa") or []
    parts.append(next((f for f in LABEL_ISA if f in isa), "no avx2"))
    parts.append(f"{fp.get('cpus')} CPUs" + (f" x{fp['sockets']}" if (fp.get("sockets") or 1) > 1 else ""))
    if fp.get("threads"):
        parts.append(f"{fp['threads']} threads")
    return " · ".join(parts)


def cpu_model() -> str:
    """The CPU's marketing name from /proc/cpuinfo, or the platform's processor string."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(("model name", "hardware", "cpu model")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def software_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for dist in ("farm", "torch", "transformers", "torch-pruning", "optimum-quanto", "nvidia-ml-py"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return versions


def local_time_info(moment: datetime) -> tuple[int, str]:
    """(local hour 0-23, timezone name) of a tz-aware moment on this machine."""
    local = moment.astimezone()
    return local.hour, local.tzname() or "UTC"
