"""Devices: open a parsed `shared.devices.Device` into a handle that checks it exists, synchronises it, names
it and reads its temperatures. One module per kind; `DEVICE_KINDS` is the registry."""

from __future__ import annotations

from shared.devices import Device
from worker.devices.base import DeviceHandle
from worker.devices.cpu import CpuDevice
from worker.devices.cuda import CudaDevice

DEVICE_KINDS: dict[str, type[DeviceHandle]] = {"cpu": CpuDevice, "cuda": CudaDevice}


def open_device(device: Device | str) -> DeviceHandle:
    """The handle of `device` (a Device or its text); FarmError when it is malformed or absent here."""
    parsed = Device.parse(device)
    return DEVICE_KINDS[parsed.kind](parsed)


__all__ = ["DEVICE_KINDS", "DeviceHandle", "open_device"]
