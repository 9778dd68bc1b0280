"""Queue names, in one place: a queue per device class (`cpu`, `gpu`), per host (`host.NAME`) and per host
and class (`host.NAME.cpu`). Submitters name a target (`--on`), workers consume the queues of their device.

A host name becomes part of a queue name escaped (every character but letters, digits, `-` and `_` as `~XX`, its
UTF-8 bytes in hex), so `lab.cpu` cannot share `lab`'s class queue and an FQDN or a unicode name keeps its own
queue; names that the `--on` grammar or Celery's queue list cannot carry (commas, colons, spaces, control
characters) are refused where a worker starts."""

from __future__ import annotations

import re

from shared.devices import DEVICE_CLASSES, Device, DeviceClass
from shared.errors import FarmError

TARGET_GRAMMAR = "cpu, gpu, host:NAME or host:NAME:cpu|gpu"
# The queue of a job that `farm run` (or `farm compare --here`) stores and runs in its own process: never sent, no
# lease (no broker), and so never the reaper's to requeue.
LOCAL_QUEUE = "local"
_PLAIN = re.compile(r"[A-Za-z0-9_-]")
_REFUSED = re.compile(r"[\s,:\x00-\x1f\x7f]")
MAX_HOST_CHARS = 128


def check_hostname(name: str, what: str = "FARM_HOSTNAME") -> str:
    """`name` when it can name a farm host; FarmError saying why not."""
    if not name or len(name) > MAX_HOST_CHARS:
        raise FarmError(f"{what} must be 1 to {MAX_HOST_CHARS} characters, got {name!r}")
    bad = _REFUSED.search(name)
    if bad:
        raise FarmError(f"{what} {name!r} cannot name a farm host: {bad.group(0)!r} is not allowed (no commas, "
                        "colons, spaces or control characters; dots and other characters are fine)")
    return name


def escape_host(name: str) -> str:
    """`name` as it appears in a queue name: letters, digits, - and _ as they are, every other byte as ~XX."""
    return "".join(c if _PLAIN.fullmatch(c) else "".join(f"~{b:02x}" for b in c.encode()) for c in name)


def unescape_host(part: str) -> str:
    return re.sub(rb"~([0-9a-f]{2})", lambda m: bytes([int(m.group(1), 16)]), part.encode()).decode(
        errors="replace")


def queue_host(queue: str) -> str | None:
    """The host a `host.NAME[.class]` queue belongs to (None for a class queue)."""
    parts = queue.split(".")
    return unescape_host(parts[1]) if len(parts) in (2, 3) and parts[0] == "host" else None


def class_queue(device_class: DeviceClass) -> str:
    """The queue that every worker of a device class consumes."""
    return device_class


def host_queue(hostname: str, device_class: DeviceClass | None = None) -> str:
    """The queue that only workers on `hostname` consume (only its `cpu` or `gpu` workers, if given)."""
    host = escape_host(hostname)
    return f"host.{host}" if device_class is None else f"host.{host}.{device_class}"


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
        raise FarmError(f"--on {target!r}: a host name cannot hold ':' (farm refuses such FARM_HOSTNAMEs); the part "
                        f"after the host is a device class, cpu or gpu")
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
