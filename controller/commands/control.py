"""`farm cancel` and `farm wait`: steer jobs that are queued or running. JOB is an id or a unique prefix."""

from __future__ import annotations

import json
import sys
import time
import uuid
from typing import Any

import click

from controller.options import finite
from controller.services import load_settings, open_engine
from shared.errors import FarmError
from shared.settings import Settings

CANCEL_MARK_TTL_S = 24 * 3600  # the running delivery sees the mark within one lease beat; a day is plenty


def wait_for(settings: Settings, job_id: uuid.UUID, timeout: float | None, label: str = "job") -> Any:
    """Poll the store until the job finishes, printing each change of state or progress; exit 1 on timeout."""
    from sqlmodel import Session

    from shared.db import queries
    from shared.db.models import FINISHED_STATES

    deadline = None if timeout is None else time.monotonic() + timeout
    last = None
    while True:
        with Session(open_engine(settings)) as session:
            job = queries.get_job(session=session, job_id=job_id)
            session.expunge(job)
        shown = (job.state, job.progress)
        if shown != last:
            where = f" on {job.worker}" if job.worker else ""
            progress = f" ({job.progress})" if job.progress else ""
            click.echo(f"{label} {str(job_id)[:8]}: {job.state}{where}{progress}", err=True)
            last = shown
        if job.state in FINISHED_STATES:
            return job
        if deadline is not None and time.monotonic() > deadline:
            click.echo(f"timed out after {timeout:g} s; the job is still {job.state} (farm status)", err=True)
            sys.exit(1)
        time.sleep(0.5)


@click.command()
@click.argument("jobs", nargs=-1, required=True)
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
def cancel(jobs: tuple[str, ...], fmt: str) -> None:
    """Cancel jobs (each JOB an id or a unique prefix), with the other unfinished stages of their chains.

    A queued job never starts. A running one stops at its next batch or epoch, once its worker sees the
    cancellation (within a few seconds); its partial results are not stored. `farm retry` runs it again.
    """
    from sqlmodel import Session

    from shared.db import queries, writes
    from shared.dispatch import redis_client
    from shared.keys import cancel_key, dispatched_key

    settings = load_settings()
    client, broker_error = None, None
    try:
        client = redis_client(settings.broker_url, settings.broker_timeout_s)
    except Exception as exc:  # the store decides; the broker only speeds up a running job's stop
        broker_error = str(exc)
    done: list[dict[str, Any]] = []
    with Session(open_engine(settings)) as session:
        found = [queries.find_job(session=session, prefix=p) for p in jobs]  # every prefix checked before any cancel
        for job in found:
            for j, before in writes.cancel_job(session=session, job=job, reason="cancelled by farm cancel"):
                done.append({"job_id": str(j.id), "stage": j.stage, "variant": j.variant, "was": before,
                             "worker": j.worker})
    marked = True
    for d in done:
        try:
            if client is not None:
                client.delete(dispatched_key(d["job_id"]))  # the reaper must not send it again
                if d["was"] == "running":
                    client.set(cancel_key(d["job_id"]), "1", ex=CANCEL_MARK_TTL_S)
        except Exception as exc:
            marked, broker_error = False, str(exc)
    if fmt == "json":
        click.echo(json.dumps({"cancelled": done, "broker_error": broker_error}))
    else:
        for d in done:
            tail = f" on {d['worker']}; it stops at its next batch or epoch" if d["was"] == "running" else ""
            click.echo(f"cancelled {d['job_id'][:8]} ({d['stage']} {d['variant']}, was {d['was']}{tail})")
        if not done:
            click.echo("nothing to cancel: every job named has finished")
    if broker_error and any(d["was"] == "running" for d in done) and (client is None or not marked):
        click.echo("warning: the broker is unreachable, so a running job finishes its work, but its results are "
                   "not stored (the store says cancelled)", err=True)


@click.command()
@click.argument("job")
@click.option("--timeout", type=finite(), default=None, help="Give up after this many seconds (exit 1).")
def wait(job: str, timeout: float | None) -> None:
    """Wait until JOB (an id or a unique prefix) finishes, showing its progress; exit 0 when done, 1 otherwise."""
    from sqlmodel import Session

    from shared.db import queries

    if timeout is not None and not timeout > 0:
        raise FarmError(f"--timeout must be a positive number of seconds, got {timeout:g}")
    settings = load_settings()
    with Session(open_engine(settings)) as session:
        job_id = queries.find_job(session=session, prefix=job).id
    final = wait_for(settings, job_id, timeout)
    if final.state != "done":
        click.echo(f"job {job_id} {final.state}: {final.error}", err=True)
        sys.exit(1)
    click.echo(str(job_id))


@click.command()
@click.argument("job")
@click.option("--follow", "-f", is_flag=True, help="Keep printing new lines until the job finishes.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
def logs(job: str, follow: bool, fmt: str) -> None:
    """Print JOB's own log (an id or a unique prefix): which worker claimed each delivery, its progress lines
    (epochs, benchmark repeats), and how it ended. Kept on the broker for 7 days, 500 lines per job."""
    from datetime import datetime

    from sqlmodel import Session

    from controller.services import check_broker
    from shared.db import queries
    from shared.db.models import FINISHED_STATES
    from shared.keys import job_log_key

    settings = load_settings()
    with Session(open_engine(settings)) as session:
        found = queries.find_job(session=session, prefix=job)
        job_id, state = found.id, found.state
    client = check_broker(settings)
    if client is None:
        raise FarmError("job logs live on a Redis broker; FARM_BROKER_URL is not Redis")
    shown = 0
    while True:
        for raw in client.lrange(job_log_key(job_id), shown, -1):
            shown += 1
            entry = json.loads(raw)
            if fmt == "json":
                click.echo(json.dumps(entry))
            else:
                at = datetime.fromtimestamp(entry["at"]).strftime("%Y-%m-%d %H:%M:%S")
                click.echo(f"{at}  {entry['worker']}  {entry['text']}")
        if not follow or state in FINISHED_STATES:
            break
        time.sleep(0.5)
        with Session(open_engine(settings)) as session:
            state = queries.get_job(session=session, job_id=job_id).state
    if shown == 0 and fmt == "text":
        click.echo(f"job {job_id} is {state}; no log lines yet", err=True)
