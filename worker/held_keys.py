"""Redis keys held by a token (job leases, cross-machine locks): renewed and released only by their holder.

A missing key is recreated only when Redis restarted since the holder last renewed it (its uptime is shorter):
a key that expired while Redis was up means the holder stalled past it, and someone else may hold it now.
"""

from __future__ import annotations

from typing import Any

# 1 renewed, 2 missing, 0 another holder's.
_RENEW = """
local v = redis.call('GET', KEYS[1])
if v == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) return 1 end
if not v then return 2 end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
RENEWED, RECREATED, LOST, MISSING = 1, 2, 0, 3


def renew(client: Any, key: str, value: str | bytes, ttl_s: float, *, since_s: float | None) -> int:
    """Renew `key` held by `value` for `ttl_s`: RENEWED; RECREATED (Redis restarted and lost it); LOST (another
    holder has it); or MISSING (it expired while Redis was up: the holder stalled, or Redis was unreachable
    for longer than the TTL; the caller decides whether it may `retake` it).

    `since_s`: seconds since the holder's last renewal; None recreates a missing key unconditionally.
    """
    status = int(client.eval(_RENEW, 1, key, value, max(1, int(ttl_s * 1000))))
    if status != 2:
        return status
    if since_s is not None and not broker_restarted_within(client, since_s):
        return MISSING
    return RECREATED if retake(client, key, value, ttl_s) else LOST


def retake(client: Any, key: str, value: str | bytes, ttl_s: float) -> bool:
    """Set a missing `key` to `value` again; False when someone else took it first."""
    return bool(client.set(key, value, nx=True, px=max(1, int(ttl_s * 1000))))


def release(client: Any, key: str, value: str | bytes) -> None:
    """Delete `key` if `value` still holds it."""
    client.eval(_RELEASE, 1, key, value)


def broker_restarted_within(client: Any, seconds: float) -> bool:
    """Whether Redis started less than `seconds` ago (so keys it held then may be gone through no one's doing)."""
    return int(client.info("server")["uptime_in_seconds"]) < seconds + 1
