"""Cross-machine locks on the real Redis broker."""

from __future__ import annotations

import subprocess
import sys
import time

import redis

from worker.delivery.locks import broker_lock


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
        "from worker.delivery.locks import broker_lock\n"
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


def test_lock_rides_out_a_broker_restart_and_release_never_raises(tmp_path) -> None:  # noqa: ANN001
    """The bug: the heartbeat died on its first ConnectionError and release() then raised inside the job."""
    from harness.faultkit import LocalRedis

    broker = LocalRedis(tmp_path / "redis", aof=False)
    try:
        lock = broker_lock(broker.url, ttl_s=1.5)
        with lock("host:a") as hold:
            broker.restart(down_s=2.0)  # longer than the TTL; the key is lost with the data
            time.sleep(1.5)  # the heartbeat retries, then recreates the key with its own token
            assert redis.Redis.from_url(broker.url).exists("farm:lock:host:a")
        assert hold.lost is None
        assert not redis.Redis.from_url(broker.url).exists("farm:lock:host:a")
        with lock("host:b") as hold:
            broker.kill()  # gone for good: release must not raise, the job's results must not be lost
        assert hold.lost is None
    finally:
        broker.close()


def test_a_lock_taken_by_another_holder_is_reported_lost(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    with broker_lock(redis_url, ttl_s=0.6)("host:c") as hold:
        client.set("farm:lock:host:c", "someone-else")  # as after an outage that outlived the TTL
        time.sleep(0.8)
        assert hold.lost is not None and "taken by another holder" in hold.lost
    assert client.get("farm:lock:host:c") == b"someone-else"  # release left the other holder's lock alone


def test_a_lease_recreated_after_a_stall_is_given_up_when_the_store_names_another_delivery(tmp_path) -> None:  # noqa: ANN001
    """Seen in the fault table: a worker frozen for longer than its young Redis had been up found its lease key
    gone (another delivery had finished the job and released it), took it for a Redis restart, recreated the key
    and measured for nothing. The store decides: not ours, so the lease is lost and the key given back."""
    import time

    from harness.faultkit import LocalRedis
    from worker.delivery.lease import Lease

    broker = LocalRedis(tmp_path / "redis", aof=False)
    try:
        import redis

        client = redis.Redis.from_url(broker.url)
        time.sleep(1.2)  # Redis up about a second: a "stall" of 5 s is longer than its uptime
        stale = Lease(client, "job-1", "t-stale", "w1@h", ttl_s=30.0, still_ours=lambda: False)
        stale._renewed_at -= 5.0
        assert stale.renew_once() is False and stale.lost and "taken by another holder" in stale.lost
        assert client.get(stale.key) is None  # the recreated key was given back
        ours = Lease(client, "job-2", "t-ours", "w1@h", ttl_s=30.0, still_ours=lambda: True)
        ours._renewed_at -= 5.0
        assert ours.renew_once() is True and ours.lost is None
        assert client.get(ours.key) == ours.value.encode()  # a real restart, and the store agrees: kept
    finally:
        broker.close()
