"""What machine a result came from: CPU model, software versions, local time (the GPU: worker/devices)."""

from __future__ import annotations

import platform
from datetime import datetime
from importlib import metadata
from pathlib import Path


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
