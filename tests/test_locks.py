"""Cross-machine locks on the real Redis broker."""

from __future__ import annotations

import subprocess
import sys
import time

import redis

from worker.locks import broker_lock


def test_lock_is_renewed_while_held_beyond_its_ttl(redis_url: str) -> None:
    lock = broker_lock(redis_url, ttl_s=0.6)
    client = redis.Redis.from_url(redis_url)
    with lock("host:a"):
        time.sleep(1.5)  # 2.5 TTLs: only the heartbeat keeps it
        assert client.pttl("farm:lock:host:a") > 0
    assert not client.exists("farm:lock:host:a")


def test_lock_of_a_killed_holder_expires_after_its_ttl(redis_url: str) -> None:
    script = (
        "import os, sys\n"
        "from worker.locks import broker_lock\n"
        f"with broker_lock({redis_url!r}, ttl_s=1.0)('build:r'):\n"
        "    print('held', flush=True)\n"
        "    os._exit(9)  # dies holding it, as a SIGKILLed worker would\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "held"
    assert redis.Redis.from_url(redis_url).exists("farm:lock:build:r")
    t0 = time.monotonic()
    with broker_lock(redis_url, ttl_s=1.0)("build:r"):
        waited = time.monotonic() - t0
    assert waited < 3.0


def test_non_redis_brokers_get_a_no_op_lock() -> None:
    with broker_lock("amqp://guest@localhost//")("anything"):
        pass
