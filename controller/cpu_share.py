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

# Long enough to cover a worker's start until its first heartbeat; heartbeats count it after that.
START_WINDOW_S = 120.0
# KEYS[1]: the machine's starts (sorted set: node -> Redis time of its start); ARGV: window (s), node.
_REGISTER = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[1]))
redis.call('ZADD', KEYS[1], now, ARGV[2])
redis.call('EXPIRE', KEYS[1], math.ceil(tonumber(ARGV[1])))
return redis.call('ZRANGE', KEYS[1], 0, -1)
"""


def starts_key(machine: str) -> str:
    return f"farm:starting:{machine}"


def register_start(client: Any, node: str, machine: str | None = None,
                   window_s: float = START_WINDOW_S) -> set[str]:
    """Record that `node` starts on `machine` (default: this one) and return every node that started there within
    `window_s` seconds, this one included; atomic, so simultaneous starts see each other. Empty without a broker."""
    if client is None:
        return set()
    found = client.eval(_REGISTER, 1, starts_key(machine or socket.gethostname()), window_s, node)
    return {n.decode() if isinstance(n, bytes) else str(n) for n in found}
