"""Workers of one machine started together divide its CPUs: the start registration on the real Redis is atomic."""

from __future__ import annotations

import threading

import redis

from controller.commands.fleet import default_threads
from controller.cpu_share import register_start
from shared.keys import starts_key


def test_simultaneous_starts_see_each_other_and_split_the_cpus(redis_url: str) -> None:
    barrier = threading.Barrier(4)
    threads: dict[str, int] = {}

    def start(node: str) -> None:
        client = redis.Redis.from_url(redis_url)
        barrier.wait()
        threads[node] = default_threads([], node, cpus=8, starting=register_start(client, node, "box"))

    runners = [threading.Thread(target=start, args=(f"w{i}@box",)) for i in range(4)]
    for t in runners:
        t.start()
    for t in runners:
        t.join()
    # the k-th start to register saw k-1 others: 8, 4, 2 (8 // 3) and 2 threads; without it, all four took 8
    assert sorted(threads.values()) == [2, 2, 4, 8], threads
    client = redis.Redis.from_url(redis_url)
    assert client.zcard(starts_key("box")) == 4 and 0 < client.ttl(starts_key("box")) <= 120


def test_old_starts_lapse_and_a_restart_counts_once(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    client.zadd(starts_key("box"), {"gone@box": 1.0})  # started long ago (epoch second 1)
    assert register_start(client, "me@box", "box") == {"me@box"}
    assert register_start(client, "me@box", "box") == {"me@box"}
    assert default_threads([{"machine": "elsewhere", "worker": "x@y"}], "me@box", 8, {"me@box"}) == 8
    assert register_start(None, "me@box") == set()
