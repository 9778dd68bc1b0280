"""Every key farm keeps on the broker's Redis, and every Lua script that touches them. Nothing else names a key.

Key schema (`<job>` is a farm job id, `<node>` a worker's Celery node name); writer; expiry:

- `farm:dispatched:<job>` string: "sending" (expires in 30 s) while a message is being sent, "queued" once it was
  sent, "claimed:<token>" once a delivery took it; a queued job without it, or with a claim whose lease is gone,
  lost its message. Dispatch, deliveries, the reaper. Never expires once sent.
- `farm:lease:<job>` string: "<token> <node> <pid> <instance>", the delivery running the job. Its delivery,
  renewed every lease/6 s; expires FARM_LEASE_TIMEOUT_S after the last renewal.
- `farm:deliveries:<job>` int: how many times the job's message was delivered (INCR per delivery); cleared when
  the job's outcome is stored.
- `farm:cancel:<job>` string: `farm cancel` asked a running job to stop. Controller; 1 day.
- `farm:stop:<job>` string: the job's worker is stopping now: stop and requeue. The worker; 1 hour.
- `farm:log:<job>` list: the job's log lines (JSON), newest last, at most 500. Workers; 7 days.
- `farm:dead` list: dead letters (JSON), newest first, at most 10,000. Workers and the transport; never.
- `farm:worker:<node>` string: a live worker's heartbeat (JSON), the fleet registry. The worker every 2 s;
  expires FARM_LEASE_TIMEOUT_S after the last beat, deleted at a clean stop.
- `farm:identity:<node>` string: "<instance> <machine> <pid>", the one process that runs as this node name.
  `farm worker` at start, renewed with the heartbeat; same expiry, given back at a clean stop.
- `farm:lock:<name>` string: a cross-machine lock's holder token (`build:<recipe>`, `host:<name>`). Workers,
  renewed every TTL/3; expires FARM_LOCK_TTL_S after the last renewal.
- `farm:starting:<machine>` sorted set: node -> Redis time of each `farm worker` start on that machine in the
  last 120 s, so that workers started together divide its CPUs (controller/cpu_share.py). `farm worker`; 120 s.
- `farm:reaper` string: the node whose turn it is to reap. The maintenance threads; its holder keeps it by
  passing at least every 12.5 s (2.5 reap periods), gives it back when a pass fails, and loses it 12.5 s after its last.

Times that span machines come from Redis (`TIME`) or the store, never from a worker's wall clock.
"""

from __future__ import annotations

import uuid

DEAD_LETTERS = "farm:dead"
REAPER_TURN = "farm:reaper"


def dispatched_key(job_id: uuid.UUID | str) -> str:
    return f"farm:dispatched:{job_id}"


def lease_key(job_id: uuid.UUID | str) -> str:
    return f"farm:lease:{job_id}"


def deliveries_key(job_id: uuid.UUID | str) -> str:
    return f"farm:deliveries:{job_id}"


def cancel_key(job_id: uuid.UUID | str) -> str:
    """Set by `farm cancel` on a running job; the lease thread of the delivery that runs it sees it."""
    return f"farm:cancel:{job_id}"


def stop_key(job_id: uuid.UUID | str) -> str:
    """Set by a worker asked to stop now (a second SIGTERM): the job's delivery stops and requeues the job."""
    return f"farm:stop:{job_id}"


def job_log_key(job_id: uuid.UUID | str) -> str:
    """A job's own log lines (claims, progress, its end), newest last; `farm logs` reads them."""
    return f"farm:log:{job_id}"


def worker_key(node: str) -> str:
    return f"farm:worker:{node}"


WORKER_PATTERN = "farm:worker:*"


def identity_key(node: str) -> str:
    return f"farm:identity:{node}"


def lock_key(name: str) -> str:
    return f"farm:lock:{name}"


# A key held by a value (a lease or a lock): renew it while the value still holds it.
# Returns 1 renewed, 2 missing, 0 held by another value.
RENEW = """
local v = redis.call('GET', KEYS[1])
if v == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) return 1 end
if not v then return 2 end
return 0
"""
# Delete a key only while `value` still holds it. Returns 1 deleted, 0 not ours.
RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
# Compare-and-set: set KEYS[1] to ARGV[2] only while it holds ARGV[1] ('' for "absent"), expiring after ARGV[3] ms
# if given. Returns 1 set, 0 not.
CAS = """
local v = redis.call('GET', KEYS[1])
if (v == false and ARGV[1] == '') or v == ARGV[1] then
  if ARGV[3] then redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3]) else redis.call('SET', KEYS[1], ARGV[2]) end
  return 1
end
return 0
"""


# Take a turn that is free, or keep one this holder has: set KEYS[1] to ARGV[1] for ARGV[2] ms unless another value
# holds it. Returns 1 (this holder's turn now), 0 (another's).
TAKE_OR_KEEP = """
local v = redis.call('GET', KEYS[1])
if v == false or v == ARGV[1] then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) return 1 end
return 0
"""


def starts_key(machine: str) -> str:
    """The `farm worker` starts on one machine in the last few minutes (controller/cpu_share.py)."""
    return f"farm:starting:{machine}"


# Register a start: drop starts older than ARGV[1] s, add node ARGV[2] at Redis time, return every node left.
REGISTER_START = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[1]))
redis.call('ZADD', KEYS[1], now, ARGV[2])
redis.call('EXPIRE', KEYS[1], math.ceil(tonumber(ARGV[1])))
return redis.call('ZRANGE', KEYS[1], 0, -1)
"""
