"""Queue names, in one place: a queue per device class (`cpu`, `gpu`), per host (`host.NAME`) and per host
and class (`host.NAME.cpu`). Submitters name a target (`--on`), workers consume the queues of their device."""

from __future__ import annotations

from shared.devices import DEVICE_CLASSES, Device, DeviceClass
from shared.errors import FarmError

TARGET_GRAMMAR = "cpu, gpu, host:NAME or host:NAME:cpu|gpu"


def class_queue(device_class: DeviceClass) -> str:
    """The queue that every worker of a device class consumes."""
    return device_class


def host_queue(hostname: str, device_class: DeviceClass | None = None) -> str:
    """The queue that only workers on `hostname` consume (only its `cpu` or `gpu` workers, if given)."""
    return f"host.{hostname}" if device_class is None else f"host.{hostname}.{device_class}"


def queue_for_target(target: str) -> str:
    """Map `cpu`, `gpu`, `host:NAME` or `host:NAME:cpu|gpu` to a queue name."""
    if target in DEVICE_CLASSES:
        return class_queue(target)  # type: ignore[arg-type]
    parts = target.split(":")
    if parts[0] == "host" and len(parts) in (2, 3) and parts[1]:
        if len(parts) == 2:
            return host_queue(parts[1])
        if parts[2] in DEVICE_CLASSES:
            return host_queue(parts[1], parts[2])  # type: ignore[arg-type]
    raise FarmError(f"--on must be {TARGET_GRAMMAR}, got {target!r}")


def queue_device_class(queue: str) -> DeviceClass | None:
    """The device class a queue's jobs run on, or None when any worker of a host may take them."""
    last = queue.split(".")[-1]
    return last if last in DEVICE_CLASSES else None  # type: ignore[return-value]


def worker_queues(hostname: str, device: Device) -> list[str]:
    """The queues a worker on `device` consumes: its class's, its host's, and its host's for its class."""
    cls = device.device_class
    return [class_queue(cls), host_queue(hostname), host_queue(hostname, cls)]


def training_queue(consumed: set[str]) -> str:
    """Where `--train-on auto` sends a chain's compress stage: gpu when a GPU worker is consuming, else cpu."""
    return class_queue("gpu") if class_queue("gpu") in consumed else class_queue("cpu")
