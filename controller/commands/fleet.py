"""`farm worker`, `farm status` and `farm dead`: the workers and what they hold."""

from __future__ import annotations

import json
from typing import Any

import click

from controller.options import DEVICE
from controller.services import check_broker, live_workers, load_settings, open_engine
from shared.devices import Device
from shared.errors import FarmError


@click.command()
@click.option("--device", type=DEVICE, required=True, help="cpu or cuda:N: the device this worker benchmarks on.")
@click.option("--loglevel", default="info", show_default=True,
              type=click.Choice(["debug", "info", "warning", "error"]))
@click.option("--name", default=None, help="Celery node name (default farm-<device>@<FARM_HOSTNAME>).")
def worker(device: Device, loglevel: str, name: str | None) -> None:
    """Start a Celery worker pinned to DEVICE: it consumes its device class's queue (cpu or gpu), its
    host's queue (host.NAME) and its host's queue for its class (host.NAME.cpu or host.NAME.gpu).

    One job at a time, acknowledged only when done, so a job whose worker dies goes back to the queue.
    Workers that share a machine (same FARM_HOSTNAME) take turns to train and measure.
    """
    from shared.dispatch import redis_client
    from shared.routing import worker_queues
    from worker.app import make_app
    from worker.devices import open_device

    settings = load_settings()
    where = device
    open_device(where)
    check_broker(settings)
    open_engine(settings)  # fail fast on a bad store, and migrate it
    warning = _broker_persistence_warning(redis_client(settings.broker_url, settings.broker_timeout_s))
    if warning:
        click.echo(f"warning: {warning}", err=True)
    queues = worker_queues(settings.hostname, where)
    node = name or f"farm-{str(where).replace(':', '')}@{settings.hostname}"
    click.echo(f"worker {node}: device {where}, queues {', '.join(queues)}", err=True)
    make_app(settings, device=where).worker_main([
        "worker", "--queues", ",".join(queues), "--concurrency", "1", "--pool", "prefork",
        "--hostname", node, "--loglevel", loglevel, "--without-gossip", "--without-mingle",
    ])


def _broker_persistence_warning(client: Any) -> str | None:
    """What a Redis restart would lose, when the broker keeps nothing on disk (None if it does, or if unknown)."""
    if client is None:
        return None
    try:
        aof = client.config_get("appendonly").get("appendonly")
        save = client.config_get("save").get("save")
    except Exception:  # CONFIG is often disabled on managed Redis: nothing to say
        return None
    if aof == "yes" or save:
        return None
    return ("the broker's Redis keeps nothing on disk (no AOF, no RDB snapshots): a Redis restart loses every "
            "queued message, dead letter and lease. farm requeues lost jobs from the store, but run Redis with "
            "--appendonly yes (docker-compose.yml does)")


@click.command()
@click.option("--limit", default=20, show_default=True, type=click.IntRange(min=1),
              help="How many recent jobs to show.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
def status(limit: int, fmt: str) -> None:
    """Show recent jobs, the live workers (from their heartbeats) with their spool backlogs, and dead letters."""
    from sqlmodel import Session

    from controller import render
    from shared.db import crud
    from shared.dispatch import DEAD_LETTERS, redis_client

    settings = load_settings()
    with Session(open_engine(settings)) as session:
        jobs = [j.model_dump(exclude={"spec"}) for j in crud.list_jobs(session=session, limit=limit)]
    workers: list[dict[str, Any]] = []
    broker_error, dead = None, None
    try:
        check_broker(settings)
        client = redis_client(settings.broker_url, settings.broker_timeout_s)
        for w in live_workers(client):
            workers.append({"worker": w["worker"], "host": w.get("host"), "device": w.get("device"),
                            "queues": ",".join(w.get("queues", [])), "running": len(w.get("jobs", [])),
                            "jobs": ",".join(j[:8] for j in w.get("jobs", [])), "spool": w.get("spool", 0)})
        dead = int(client.llen(DEAD_LETTERS)) if client is not None else None
    except FarmError as exc:
        broker_error = str(exc)
    if fmt == "json":
        click.echo(json.dumps({"jobs": [{k: render.jsonable(v) for k, v in j.items()} for j in jobs],
                               "workers": workers, "dead_letters": dead, "broker_error": broker_error}, indent=2))
        return
    view = [{**j, "id": str(j["id"])[:8], "chain": str(j["chain_id"])[:8] if j["chain_id"] else None} for j in jobs]
    click.echo(render.to_table(view, ("id", "chain", "stage", "variant", "queue", "state", "progress",
                                      "submitted_at", "worker", "error")))
    click.echo("")
    if broker_error:
        click.echo(f"workers: unknown ({broker_error})")
    elif workers:
        click.echo(render.to_table(workers, ("worker", "host", "device", "queues", "jobs", "spool")))
        backlog = sum(w["spool"] or 0 for w in workers)
        if backlog:
            click.echo(f"spool: {backlog} finished job(s) wait on worker disks for the store to return")
    else:
        click.echo("workers: none alive")
    if dead:
        click.echo(f"dead letters: {dead} (`farm dead` lists them, `farm retry JOB` runs a job again)")


@click.command()
@click.option("--limit", default=50, show_default=True, type=click.IntRange(min=1), help="How many to show.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
def dead(limit: int, fmt: str) -> None:
    """List dead letters, newest first: messages that could not be decoded, jobs refused for a payload that
    disagrees with the stored spec, and jobs delivered FARM_MAX_DELIVERIES times without finishing."""
    from datetime import UTC, datetime

    from controller import render
    from shared.dispatch import dead_letters, redis_client

    settings = load_settings()
    check_broker(settings)
    client = redis_client(settings.broker_url, settings.broker_timeout_s)
    if client is None:
        raise FarmError("dead letters live on a Redis broker; FARM_BROKER_URL is not Redis")
    entries = dead_letters(client, limit)
    if fmt == "json":
        click.echo(json.dumps(entries, indent=2))
        return
    view = [{**e, "job_id": (e.get("job_id") or "-")[:8],
             "at": datetime.fromtimestamp(e.get("at", 0), UTC).isoformat(timespec="seconds"),
             "payload": (e.get("payload") or "")[:40]} for e in entries]
    click.echo(render.to_table(view, ("at", "job_id", "queue", "reason", "payload")) if view else "no dead letters")

