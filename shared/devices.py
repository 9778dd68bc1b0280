"""One device value, parsed once: `cpu` or `cuda:N`. Light (no torch): the controller validates with it and
the worker opens it (`worker.devices.open_device`) to synchronise, name it and read its temperatures."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from shared.errors import FarmError

DeviceClass = Literal["cpu", "gpu"]
DEVICE_CLASSES: tuple[DeviceClass, ...] = ("cpu", "gpu")
# Who made the device: known only on the worker (a ROCm GPU is `cuda:N` to torch too). shared/vendors.py holds
# each vendor's descriptor; the worker's device handle says which one it opened.
Vendor = Literal["cpu", "nvidia", "amd"]
DEVICE_GRAMMAR = "cpu or cuda:N"


@dataclass(frozen=True)
class Device:
    """A benchmarking device: `kind` is "cpu" or "cuda"; `index` is the CUDA ordinal (None on the CPU)."""

    kind: Literal["cpu", "cuda"]
    index: int | None = None

    @classmethod
    def parse(cls, text: str | Device) -> Device:
        """`cpu`, `cuda` (= cuda:0) or `cuda:N`; FarmError for anything else."""
        if isinstance(text, Device):
            return text
        raw = str(text).strip()
        if raw == "cpu":
            return cls("cpu")
        kind, sep, index = raw.partition(":")
        if kind == "cuda" and (not sep or index.isdigit()):
            return cls("cuda", int(index) if sep else 0)
        raise FarmError(f"device must be {DEVICE_GRAMMAR}, got {text!r}")

    @property
    def device_class(self) -> DeviceClass:
        """The queue class of workers on this device: "cpu" or "gpu"."""
        return "cpu" if self.kind == "cpu" else "gpu"

    def __str__(self) -> str:
        return "cpu" if self.kind == "cpu" else f"cuda:{self.index}"
