"""What every command needs: the settings, the store's engine, the broker, and the live workers."""

from __future__ import annotations

import json
import uuid
from typing import Any

from shared.errors import FarmError
from shared.redact import redact
from shared.settings import Settings


def load_settings() -> Settings:
    return Settings.from_env()


def open_engine(settings: Settings) -> Any:
    from shared.db.engine import get_engine

    return get_engine(settings.database_url)


def check_broker(settings: Settings) -> Any | None:
    """The broker's Redis client, once it has answered a PING (no kombu connection to set up); None for another
    broker, which gets a kombu connection instead. FarmError naming the URL when the broker does not answer
    within the timeout. Callers use the client it returns rather than opening a second one."""
    from shared.dispatch import redis_client

    timeout = settings.broker_timeout_s
    try:
        client = redis_client(settings.broker_url, timeout)
        if client is not None:
            client.ping()
            return client
        from kombu import Connection

        with Connection(settings.broker_url, connect_timeout=timeout, transport_options={
            "socket_connect_timeout": timeout, "socket_timeout": timeout,
        }) as conn:
            conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=timeout)
        return None
    except Exception as exc:  # kombu raises transport-specific types
        raise FarmError(f"cannot reach broker {redact(settings.broker_url)}: {redact(exc)}") from None


def live_workers(client: Any) -> list[dict[str, Any]]:
    """Live workers from their heartbeats on the broker (each expires when its worker stops beating)."""
    if client is None:
        return []
    keys = sorted(client.scan_iter(match="farm:worker:*", count=500))
    out = []
    for raw in client.mget(keys) if keys else []:
        if not raw:
            continue  # expired between the scan and the read
        try:
            out.append(json.loads(raw))
        except ValueError:
            continue
    return out


def describe_fleet(workers: list[dict[str, Any]]) -> str:
    """The live hosts and their device classes, for an error message: "live: host-a (cpu), host-b (cpu, gpu)"."""
    from shared.routing import queue_device_class

    hosts: dict[str, set[str]] = {}
    for w in workers:
        hosts.setdefault(str(w.get("host")), set()).update(
            c for c in map(queue_device_class, w.get("queues", [])) if c is not None)
    if not hosts:
        return "no worker is alive"
    return "live: " + ", ".join(f"{h} ({', '.join(sorted(c))})" for h, c in sorted(hosts.items()))


def job_rows(settings: Settings, job_id: uuid.UUID) -> list[dict[str, Any]]:
    from sqlmodel import Session

    from shared.db import queries

    with Session(open_engine(settings)) as session:
        results = queries.query_results(session=session, filters=queries.ResultFilter(job_id=job_id))
        return [r.model_dump() for r in results]
