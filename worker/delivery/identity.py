"""A worker's identity on the broker (`farm:identity:<node>`): one live process per node name.

`farm worker` claims its node name at start; a second process with the same name (the same FARM_HOSTNAME and
device on two machines, or a worker started twice) is refused with an error naming the first. The claim expires
a lease timeout after the last heartbeat, so a dead worker's name is free again; a clean stop gives it back at once.
"""

from __future__ import annotations

import os
import socket
import uuid
from typing import Any

from shared.errors import FarmError
from shared.keys import CAS, RELEASE, RENEW, identity_key, worker_key


def new_instance() -> str:
    return uuid.uuid4().hex[:16]


def claim(client: Any, node: str, instance: str, ttl_s: float) -> None:
    """Take `node` for this process; FarmError naming the live holder when another process has it. A holder on
    this machine whose process is gone (killed before its claim expired) is replaced."""
    value = f"{instance} {socket.gethostname()} {os.getpid()}"
    ttl_ms = max(1, int(ttl_s * 1000))
    if client.set(identity_key(node), value, nx=True, px=ttl_ms):
        return
    holder = client.get(identity_key(node))
    if holder is None:
        return claim(client, node, instance, ttl_s)
    parts = holder.decode(errors="replace").split()
    if len(parts) == 3 and parts[1] == socket.gethostname() and parts[2].isdigit() and not pid_alive(int(parts[2])):
        if int(client.eval(CAS, 1, identity_key(node), holder, value)):
            client.pexpire(identity_key(node), ttl_ms)
            return
    machine, pid = (parts[1], parts[2]) if len(parts) == 3 else ("?", "?")
    raise FarmError(f"another worker is already running as {node} (pid {pid} on machine {machine}); two workers "
                    "with one name would take each other's jobs. Give this one another --name, or another "
                    "FARM_HOSTNAME if it is another machine")


def renew(client: Any, node: str, value: str, ttl_s: float) -> bool:
    """Keep the claim; False when another process holds the name now (this one stalled past its claim)."""
    status = int(client.eval(RENEW, 1, identity_key(node), value, max(1, int(ttl_s * 1000))))
    if status == 2:  # expired (a long outage or a Redis restart): take it again unless someone has
        return bool(client.set(identity_key(node), value, nx=True, px=max(1, int(ttl_s * 1000))))
    return status == 1


def value_of(client: Any, node: str) -> str | None:
    raw = client.get(identity_key(node))
    return None if raw is None else raw.decode(errors="replace")


def deregister(client: Any, node: str, value: str | None) -> None:
    """A clean stop: drop the heartbeat and give the name back now, so `farm status` and `--on` stop naming it; only
    while the name is still this process's (another that took it over keeps its heartbeat)."""
    if value is None or value_of(client, node) == value:
        client.delete(worker_key(node))
    if value:
        client.eval(RELEASE, 1, identity_key(node), value)


def pid_alive(pid: int) -> bool:
    """Whether process `pid` exists on this machine (one owned by another user counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
