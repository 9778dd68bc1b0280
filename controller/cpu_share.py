"""Workers of one machine that start together see each other before either has a heartbeat.

`farm worker` divides the machine's CPUs among the farm workers alive on it (their heartbeats), but a worker
publishes its first heartbeat only once Celery is up, seconds after it chose its threads: two workers started
together each saw none and took every CPU. Each start is therefore registered atomically on the broker first
(one Lua script: drop registrations older than the window, add this one, return all), so the second of two
simultaneous starts always counts the first.
"""

from __future__ import annotations

import socket
from typing import Any

from shared.keys import REGISTER_START, starts_key

# Long enough to cover a worker's start until its first heartbeat; heartbeats count it after that.
START_WINDOW_S = 120.0


def register_start(client: Any, node: str, machine: str | None = None,
                   window_s: float = START_WINDOW_S) -> set[str]:
    """Record that `node` starts on `machine` (default: this one) and return every node that started there within
    `window_s` seconds, this one included; atomic, so simultaneous starts see each other. Empty without a broker."""
    if client is None:
        return set()
    found = client.eval(REGISTER_START, 1, starts_key(machine or socket.gethostname()), window_s, node)
    return {n.decode() if isinstance(n, bytes) else str(n) for n in found}
