"""The host CPU: nothing to synchronise."""

from __future__ import annotations

from worker.devices.base import DeviceHandle


class CpuDevice(DeviceHandle):
    """The CPU that the worker runs on."""

    def synchronize(self) -> None:
        return None
