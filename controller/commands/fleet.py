"""`farm worker`, `farm status` and `farm dead`: the workers and what they hold."""

from __future__ import annotations

import json
import re
import time
from datetime import UTC, datetime
from typing import Any

import click

from controller.options import DEVICE, finite
from controller.services import check_broker, live_workers, load_settings, open_engine
from shared.devices import Device
from shared.errors import FarmError

# The most rows `farm status` and `farm dead` list at once (docs/security.md, "Bounds").
MAX_LIST = 10_000


@click.command()
@click.option("--device", type=DEVICE, required=True, help="cpu or cuda:N: the device this worker benchmarks on.")
@click.option("--loglevel", default="info", show_default=True,
              type=click.Choice(["debug", "info", "warning", "error"]))
@click.option("--name", default=None, help="Celery node name (default farm-<device>@<FARM_HOSTNAME>).")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="torch threads for its jobs (default: the CPUs of its GPU's NUMA node, or of the machine for a "
                   "cpu worker, within this process's affinity, shared evenly with the farm workers already alive "
                   "on this machine). Every result records it.")
@click.option("--on-stop", type=click.Choice(["finish", "requeue"]), default="finish", show_default=True,
              help="What the first SIGTERM does to a running job: finish it, or stop it at the next batch or epoch "
                   "and requeue it. A second SIGTERM always requeues it now.")
def worker(device: Device, loglevel: str, name: str | None, threads: int | None, on_stop: str) -> None:
    """Start a Celery worker pinned to DEVICE: it consumes its device class's queue (cpu or gpu), its
    host's queue (host.NAME) and its host's queue for its class (host.NAME.cpu or host.NAME.gpu).

    One job at a time, acknowledged only when done, so a job whose worker dies goes back to the queue.
    Workers that share a FARM_HOSTNAME take turns to train and measure; workers on one machine split its
    CPUs between them (see --threads).
    """
    from shared.celery_app import make_app
    from shared.routing import worker_queues
    from worker.devices import open_device

    settings = load_settings()
    where = device
    vendor = open_device(where).vendor
    client = check_broker(settings)
    open_engine(settings)  # fail fast on a bad store, and migrate it
    warning = _broker_persistence_warning(client)
    if warning:
        click.echo(f"warning: {warning}", err=True)
    from worker.meters.select import rapl_access_problem

    rapl = rapl_access_problem(settings)
    if rapl:
        click.echo(f"warning: {rapl}", err=True)
    queues = worker_queues(settings.hostname, where)
    node = name or f"farm-{str(where).replace(':', '')}@{settings.hostname}"
    if threads is None:
        from controller.cpu_share import register_start
        from worker.devices.numa import device_cpus

        threads = default_threads(live_workers(client), node, len(device_cpus(where, vendor)),
                                  register_start(client, node))
    _claim_identity(client, node, settings.lease_timeout_s)
    click.echo(f"worker {node}: device {where}, queues {', '.join(queues)}, {threads} torch threads", err=True)
    make_app(settings, device=where, threads=threads, on_stop=on_stop).worker_main([
        "worker", "--queues", ",".join(queues), "--concurrency", "1", "--pool", "prefork",
        "--hostname", node, "--loglevel", loglevel, "--without-gossip", "--without-mingle",
    ])


def _claim_identity(client: Any, node: str, ttl_s: float) -> None:
    """One live process per node name: refuse to start as a name another live worker has (FarmError naming it).
    The instance id goes to this process's environment, which Celery's pool processes inherit (leases name it)."""
    import os

    from worker.delivery.identity import claim, new_instance
    from worker.delivery.lease import INSTANCE_ENV

    instance = new_instance()
    if client is not None:
        claim(client, node, instance, ttl_s)
    os.environ[INSTANCE_ENV] = instance


def default_threads(workers: list[dict[str, Any]], node: str, cpus: int, starting: set[str] = frozenset()) -> int:
    """`cpus` (those of the worker's device's NUMA node, or of the machine: worker/devices/numa.py), divided
    evenly among this worker and the other farm workers on this machine: alive (their heartbeats name it) or
    starting (`starting`, from controller/cpu_share.py); at least 1."""
    import socket

    here = socket.gethostname()
    others = {w.get("worker") for w in workers if w.get("machine") == here} | set(starting)
    return max(1, cpus // (len(others - {node}) + 1))


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
@click.option("--limit", default=20, show_default=True, type=click.IntRange(min=1, max=MAX_LIST),
              help=f"How many recent jobs to show (at most {MAX_LIST:,}).")
@click.option("--sweep", default=None, help="Only the jobs of this sweep (an id or a prefix).")
@click.option("--watch", type=finite(min=0.5), default=None, metavar="SECONDS",
              help="Redraw every SECONDS until interrupted.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
def status(limit: int, sweep: str | None, watch: float | None, fmt: str) -> None:
    """Show recent jobs (running ones with elapsed time and an ETA from their progress), the live workers from
    their heartbeats (a worker that has not beaten for FARM_LEASE_TIMEOUT_S is dead and disappears; its jobs
    are requeued), their spool backlogs, and dead letters."""
    while True:
        if watch is not None and fmt == "table":
            click.clear()
        _status_once(limit, sweep, fmt)
        if watch is None:
            return
        time.sleep(watch)


def _recent_jobs(settings: Any, limit: int, sweep: str | None) -> list[dict[str, Any]]:
    """The most recent jobs (every column but the spec), newest first: on the database driver alone when it can
    (shared/db/quick.py: no SQLAlchemy import, half of a cold call), else through the ORM, which also migrates."""
    if sweep is None:
        from shared.db.quick import NotQuick, recent_jobs
        from shared.db.revision import head_revision

        try:
            return recent_jobs(settings.database_url, head_revision(), limit)
        except NotQuick:
            pass
    from sqlmodel import Session

    from shared.db import queries

    with Session(open_engine(settings)) as session:
        sweep_id = queries.find_sweep(session=session, prefix=sweep) if sweep else None
        return [j.model_dump(exclude={"spec"}) for j in queries.list_jobs(session=session, limit=limit,
                                                                          sweep_id=sweep_id)]


def _status_once(limit: int, sweep: str | None, fmt: str) -> None:
    from controller import render
    from shared.keys import DEAD_LETTERS

    settings = load_settings()
    now = datetime.now(UTC)
    jobs = [{**j, **_timing(j, now)} for j in _recent_jobs(settings, limit, sweep)]
    workers: list[dict[str, Any]] = []
    broker_error, dead = None, None
    try:
        client = check_broker(settings)
        now_s = _broker_now(client)
        for w in live_workers(client):
            skew = w.get("clock_skew_s")
            workers.append({"worker": w["worker"], "host": w.get("host"), "device": w.get("device"),
                            "threads": w.get("threads"), "runtimes": ",".join(w.get("runtimes", [])),
                            "queues": ",".join(w.get("queues", [])),
                            "running": len(w.get("jobs", [])), "jobs": ",".join(j[:8] for j in w.get("jobs", [])),
                            "spool": w.get("spool", 0), "beat_s_ago": round(now_s - w.get("beat_at", 0), 1),
                            "clock_skew_s": skew,
                            "clock": None if skew is None else f"{skew:+.1f} s" + (" !" if abs(skew) > 2 else "")})
        dead = int(client.llen(DEAD_LETTERS)) if client is not None else None
    except FarmError as exc:
        broker_error = str(exc)
    if fmt == "json":
        click.echo(json.dumps({"jobs": [{k: render.jsonable(v) for k, v in j.items()} for j in jobs],
                               "workers": workers, "dead_letters": dead, "broker_error": broker_error}, indent=2))
        return
    view = [{**j, "id": str(j["id"])[:8], "chain": str(j["chain_id"])[:8] if j["chain_id"] else None,
             "elapsed": _duration(j["elapsed_s"]), "eta": _duration(j["eta_s"])} for j in jobs]
    click.echo(render.to_table(view, ("id", "chain", "stage", "variant", "queue", "state", "progress", "elapsed",
                                      "eta", "submitted_at", "worker", "error")))
    click.echo("")
    if broker_error:
        click.echo(f"workers: unknown ({broker_error})")
    elif workers:
        click.echo(render.to_table(workers, ("worker", "host", "device", "threads", "runtimes", "queues", "jobs",
                                             "spool", "beat_s_ago", "clock"),
                                   ("worker", "host", "device", "threads", "runtimes", "queues", "jobs", "spool",
                                    "last beat (s ago)", "clock skew")))
        skewed = [w["worker"] for w in workers if w["clock_skew_s"] is not None and abs(w["clock_skew_s"]) > 2]
        if skewed:
            click.echo(f"clock: {', '.join(skewed)} more than 2 s off the store's clock: their rows' timestamps and "
                       "local hours carry that error (run NTP there)")
        backlog = sum(w["spool"] or 0 for w in workers)
        if backlog:
            click.echo(f"spool: {backlog} finished job(s) wait on worker disks for the store to return")
    else:
        click.echo("workers: none alive")
    if dead:
        click.echo(f"dead letters: {dead} (`farm dead` lists them, `farm retry JOB` runs a job again)")


def _broker_now(client: Any) -> float:
    """Now on the broker's clock (heartbeats are stamped with it), else this machine's."""
    from worker.delivery.clock import broker_now_s

    try:
        return broker_now_s(client)
    except Exception:
        return time.time()


_FRACTION = re.compile(r"(\d+)/(\d+)")


def _timing(job: dict[str, Any], now: datetime) -> dict[str, float | None]:
    """A running job's elapsed seconds, and its ETA in seconds from the last "k/n" in its progress."""
    if job["state"] != "running" or job["started_at"] is None:
        return {"elapsed_s": None, "eta_s": None}
    elapsed = (now - job["started_at"]).total_seconds()
    found = _FRACTION.findall(job["progress"] or "")
    eta = None
    if found:
        done, total = (int(x) for x in found[-1])
        if 0 < done <= total:
            eta = elapsed * (total - done) / done
    return {"elapsed_s": round(elapsed, 1), "eta_s": None if eta is None else round(eta, 1)}


def _duration(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


@click.command()
@click.option("--limit", default=50, show_default=True, type=click.IntRange(min=1, max=MAX_LIST),
              help=f"How many to show (at most {MAX_LIST:,}).")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
def dead(limit: int, fmt: str) -> None:
    """List dead letters, newest first: messages that could not be decoded, jobs refused for a payload that
    disagrees with the stored spec, and jobs delivered FARM_MAX_DELIVERIES times without finishing."""
    from datetime import UTC, datetime

    from controller import render
    from shared.dispatch import dead_letters

    settings = load_settings()
    client = check_broker(settings)
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

