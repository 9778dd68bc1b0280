"""The delivery side's I/O shells on the real Redis and Postgres: the reaper over a backlog, the spool's flush past
a refused outcome, the store's fence, host names in queues, and a new SQLite store opened by many processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psycopg
import pytest
import redis
from sqlmodel import Session

from shared.db import queries, writes
from shared.db.engine import get_engine
from shared.devices import Device
from shared.errors import FarmError
from shared.keys import dispatched_key, lease_key
from shared.outcome import Outcome
from shared.routing import check_hostname, escape_host, host_queue, queue_device_class, queue_for_target, queue_host
from shared.settings import Settings
from tests.conftest import run_farm


def test_host_names_cannot_collide_in_queue_names() -> None:
    """`lab.cpu` once shared `lab`'s cpu queue, `x,gpu` consumed the gpu queue, and an FQDN's host was cut at its
    first dot; escaped names keep every host its own queues."""
    assert host_queue("lab.cpu") != host_queue("lab", "cpu")
    assert queue_device_class(host_queue("lab.cpu")) is None
    for name in ("lab.cpu", "lab-3.example.com", "ŁÓDŹ-lab", "lab_1"):
        assert queue_host(host_queue(name)) == name
        assert queue_host(host_queue(name, "gpu")) == name
        assert set(escape_host(name)) <= set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_~")
    assert queue_for_target("host:lab.cpu") == host_queue("lab.cpu")
    for bad in ("x,gpu", "a:b", "two words", "tab\there", ""):
        with pytest.raises(FarmError):
            check_hostname(bad)
    with pytest.raises(FarmError, match="cannot hold ':'"):
        queue_for_target("host:a:b")


def test_a_worker_with_a_host_name_farm_cannot_route_is_refused(tmp_path: Path, redis_url: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FARM_")}
    env.update(FARM_HOSTNAME="x,gpu", FARM_BROKER_URL=redis_url, FARM_DATABASE_URL=f"sqlite:///{tmp_path / 'f.db'}")
    proc = run_farm(["worker", "--device", "cpu"], env, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert "FARM_HOSTNAME 'x,gpu' cannot name a farm host" in proc.stderr


def test_a_new_sqlite_store_opened_by_many_processes_at_once(tmp_path: Path) -> None:
    """A worker and `farm submit` creating one SQLite file at the same moment: one died on "table alembic_version
    already exists". Migrations now take turns under a lock file."""
    url = f"sqlite:///{tmp_path / 'new.db'}"
    script = ("import sys\nfrom shared.db.engine import get_engine\nget_engine(sys.argv[1])\nprint('ok')\n")
    procs = [subprocess.Popen([sys.executable, "-c", script, url], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(4)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0, 0], [e[-500:] for _, e in outs]
    assert all(o.strip() == "ok" for o, _ in outs)


def test_a_token_less_outcome_never_ends_a_running_job(pg_url: str) -> None:
    """A refusal once wrote a token-less "failed" over a job that another delivery was running."""
    with Session(get_engine(pg_url)) as s:
        job = writes.create_job(session=s, variant="baseline", spec={}, queue="cpu")
        assert writes.claim_job(session=s, job_id=job.id, token="t1", worker="w", deliveries=1)
        assert writes.apply_outcome(session=s, outcome=Outcome(str(job.id), "failed", error="x")) == "taken"
        assert queries.get_job(session=s, job_id=job.id).state == "running"
        assert writes.apply_outcome(session=s, outcome=Outcome(str(job.id), "done", token="t1")) == "written"


def test_the_store_stamps_claims_on_its_own_clock(pg_url: str) -> None:
    """started_at comes from the store's clock, so a worker whose clock is behind cannot start a job before it was
    submitted."""
    with Session(get_engine(pg_url)) as s:
        job = writes.create_job(session=s, variant="baseline", spec={}, queue="cpu")
        writes.claim_job(session=s, job_id=job.id, token="t", worker="w", deliveries=1)
        s.expire_all()
        fresh = queries.get_job(session=s, job_id=job.id)
        assert fresh.started_at is not None and fresh.started_at >= fresh.submitted_at


def _settings(pg_url: str, redis_url: str, tmp_path: Path, **kw: object) -> Settings:
    return Settings(broker_url=redis_url, database_url=pg_url, spool_dir=str(tmp_path / "spool"), **kw)  # type: ignore[arg-type]


def test_the_spool_moves_a_refused_outcome_aside_and_flushes_the_rest(fresh_pg_url: str, redis_url: str,
                                                                      tmp_path: Path) -> None:
    """An outcome the store refuses (a NULL into a NOT NULL column) sat first in the spool and held back every later
    one for ever; now it is kept in spool/dead, dead-lettered, its job failed with the reason, and the rest flush."""
    from worker.delivery.handle import WorkerContext, flush_spool
    from worker.delivery.spool import Spool

    settings = _settings(fresh_pg_url, redis_url, tmp_path)
    client = redis.Redis.from_url(redis_url)
    with Session(get_engine(fresh_pg_url)) as s:
        bad = writes.create_job(session=s, variant="baseline", spec={}, queue="cpu").id
        good = writes.create_job(session=s, variant="baseline", spec={}, queue="cpu").id
    spool = Spool(settings.spool_dir)
    poison = Outcome(str(bad), "done", epochs=[{"artifact_key": "k", "kind": "distilled", "epoch": 0,
                                                "train_loss": None, "val_top1": 0.5, "duration_s": 1.0}])
    first = spool.put(poison)
    old = time.time() - 60
    os.utime(first, (old, old))
    spool.put(Outcome(str(good), "done", progress="flushed"))
    ctx = WorkerContext(settings, Device.parse("cpu"), "w@test", client)
    assert flush_spool(ctx) == 0
    with Session(get_engine(fresh_pg_url)) as s:
        assert queries.get_job(session=s, job_id=good).state == "done"
        refused = queries.get_job(session=s, job_id=bad)
        assert refused.state == "failed" and "the store refused the job's outcome" in (refused.error or "")
    assert [p.name for p in (tmp_path / "spool" / "dead").glob("*.json")] == [f"{bad}.json"]
    dead = [json.loads(x) for x in client.lrange("farm:dead", 0, -1)]
    assert [d["job_id"] for d in dead] == [str(bad)]


def test_the_reaper_finds_a_dead_workers_job_behind_10000_parked_jobs(fresh_pg_url: str, redis_url: str,
                                                                     tmp_path: Path) -> None:
    """The reaper once read the 10,000 oldest active jobs: a dead worker's job behind a backlog was never seen. Now
    running jobs are read in full by index and queued ones a page per pass."""
    from worker.app import make_app
    from worker.delivery.handle import WorkerContext
    from worker.delivery.reaper import Reaper

    settings = _settings(fresh_pg_url, redis_url, tmp_path, lease_timeout_s=1.0)
    engine = get_engine(fresh_pg_url)
    client = redis.Redis.from_url(redis_url)
    plain = fresh_pg_url.replace("+psycopg", "")
    with psycopg.connect(plain) as conn:
        conn.execute("INSERT INTO job (id, variant, spec, queue, state, submitted_at, stage, deliveries) "
                     "SELECT gen_random_uuid(), 'baseline', '{}'::json, 'gpu', 'queued', now() - interval '1 hour', "
                     "'benchmark', 0 FROM generate_series(1, 10000)")
        parked = [r[0] for r in conn.execute("SELECT id::text FROM job").fetchall()]
    for i in range(0, len(parked), 2000):
        client.mset({dispatched_key(j): "queued" for j in parked[i:i + 2000]})
    with Session(engine) as s:
        dead = writes.create_job(session=s, variant="baseline", spec={"variant": {"name": "baseline"}}, queue="cpu").id
        assert writes.claim_job(session=s, job_id=dead, token="gone", worker="w-dead", deliveries=1)
    client.set(dispatched_key(dead), "claimed:gone")
    assert not client.exists(lease_key(dead))  # its worker died: the lease expired
    reaper = Reaper(WorkerContext(settings, Device.parse("cpu"), "reaper@test", client, app=make_app(settings)),
                    "reaper@test")
    took = []
    for _ in range(3):
        client.delete("farm:reaper")  # every pass is this reaper's turn
        t0 = time.monotonic()
        done = reaper.reap()
        took.append(time.monotonic() - t0)
        if done:
            break
        time.sleep(0.5)  # past the running grace (a third of the 1 s lease)
    assert len(done) == 1 and done[0].startswith(str(dead)), done
    with Session(engine) as s:
        assert queries.get_job(session=s, job_id=dead).state == "queued"
    assert client.get(dispatched_key(dead)) == b"queued"
    assert client.llen("cpu") == 1  # sent again, once
    assert max(took) < 10, took  # a page of queued jobs and every running one, not a query per job


def test_a_stale_identity_on_this_machine_is_taken_over_and_a_live_one_refused(redis_url: str) -> None:
    import socket

    from worker.delivery import identity

    client = redis.Redis.from_url(redis_url)
    dead_pid = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True).stdout.strip()
    client.set("farm:identity:w@h", f"old {socket.gethostname()} {dead_pid}")
    identity.claim(client, "w@h", "new", 5.0)  # its holder died without giving it back
    assert client.get("farm:identity:w@h").decode().startswith("new ")
    client.set("farm:identity:w@h", f"other {socket.gethostname()} {os.getpid()}")  # a live process
    with pytest.raises(FarmError, match="already running as w@h"):
        identity.claim(client, "w@h", "mine", 5.0)
    client.set("farm:identity:w@h", "other elsewhere 1")
    with pytest.raises(FarmError, match="machine elsewhere"):
        identity.claim(client, "w@h", "mine", 5.0)


def test_clock_skew_is_measured_against_a_reference_clock() -> None:
    from worker.delivery.clock import measure_skew_s

    assert abs(measure_skew_s(lambda: time.time() + 3600) + 3600) < 1
    assert measure_skew_s(lambda: None) is None




def test_the_spool_keeper_does_not_recreate_a_lease_that_expired_while_redis_stayed_up(redis_url: str) -> None:
    """Found by review: the spool's keep-alive re-created a lapsed lease unconditionally, so once the reaper had
    requeued the job, its new delivery found it "held" and dropped itself."""
    from worker.delivery.lease import Lease, keep_alive

    client = redis.Redis.from_url(redis_url)
    assert int(client.info("server")["uptime_in_seconds"]) > 60  # the broker did not restart just now
    job = "00000000-0000-0000-0000-0000000000aa"
    assert keep_alive(client, job, "oldtoken w1@host 1 inst", 6.0) is False
    new = Lease(client, job, "newtoken", "w2@host", 6.0)
    assert new.acquire(), client.get(lease_key(job))
    new.release()


def test_cancel_does_not_overwrite_an_outcome_written_after_its_read(tmp_path: Path) -> None:
    """Found by review: `farm cancel` read a running job, its worker then committed done, and the cancel wrote
    cancelled over it (rows stayed). The cancel is now conditional on the row as it is when it writes."""
    from sqlmodel import select

    from shared.db.engine import make_engine, upgrade_schema
    from shared.db.models import Job

    engine = make_engine(f"sqlite:///{tmp_path / 'race.db'}")
    upgrade_schema(engine)
    with Session(engine) as s:
        job_id = writes.create_job(session=s, variant="baseline", spec={}, queue="cpu").id
        assert writes.claim_job(session=s, job_id=job_id, token="t1", worker="w@h", deliveries=1)
    with Session(engine) as canceller, Session(engine) as worker:
        found = queries.find_job(session=canceller, prefix=str(job_id)[:8])
        assert found.state == "running"
        assert writes.apply_outcome(session=worker, outcome=Outcome(str(job_id), "done", token="t1")) == "written"
        assert writes.cancel_job(session=canceller, job=found, reason="cancelled by farm cancel") == []
    with Session(engine) as s:
        assert s.exec(select(Job.state).where(Job.id == job_id)).one() == "done"



@pytest.mark.parametrize("store", ["sqlite", "postgres"])
def test_cancel_says_running_for_a_job_claimed_after_its_read(tmp_path: Path, store: str,
                                                               request: pytest.FixtureRequest) -> None:
    """Found by review (issue 18): `farm cancel` read a queued job, a worker then claimed it, and the cancel reported
    it "was queued", so no cancel mark was set: the worker ran the cancelled job to its end (its rows fenced out,
    its host lock held all along). The state before is read as the cancel writes."""
    from shared.db.engine import make_engine, upgrade_schema

    url = f"sqlite:///{tmp_path / 'race.db'}" if store == "sqlite" else request.getfixturevalue("fresh_pg_url")
    engine = make_engine(url)
    upgrade_schema(engine)
    with Session(engine) as s:
        job_id = writes.create_job(session=s, variant="baseline", spec={}, queue="cpu").id
    with Session(engine) as canceller, Session(engine) as worker:
        found = queries.find_job(session=canceller, prefix=str(job_id)[:8])
        assert found.state == "queued"
        assert writes.claim_job(session=worker, job_id=job_id, token="t1", worker="w@h", deliveries=1)
        ((job, before),) = writes.cancel_job(session=canceller, job=found, reason="cancelled by farm cancel")
        assert (job.id, before, job.state) == (job_id, "running", "cancelled")
    engine.dispose()

def test_a_failed_send_never_leaves_a_queued_marker(redis_url: str) -> None:
    """Found by review: dispatch marked a job "queued" before sending; a send that failed with a cleanup that failed
    too left a "queued" marker without a message, which the reaper trusts for ever."""
    from shared.dispatch import dispatch

    class Broken:
        def send_task(self, *a: object, **k: object) -> None:
            raise ConnectionError("broker went away mid-send")

    client = redis.Redis.from_url(redis_url)
    job = uuid.uuid4()
    with pytest.raises(ConnectionError):
        dispatch(Broken(), client, job_id=job, stage="benchmark", queue="cpu", spec={})
    assert client.get(dispatched_key(job)) is None  # no marker: the reaper sends it again
    client.set(dispatched_key(job), "sending", px=30_000)
    assert 0 < client.pttl(dispatched_key(job)) <= 30_000  # and a stuck "sending" expires by itself


def test_a_lost_message_is_resent_while_many_workers_take_the_reaper_turn_in_turn(tmp_path: Path,
                                                                                   fresh_pg_url: str) -> None:
    """Found by review (issue 18): the reaper's turn lasted 5 s and each worker tried for it every ~6 s, so with
    workers whose tries fell less than ~1 s apart around that cycle (8 here; any large fleet drifts into it) the
    turn passed from one to the next at every pass. Each reaper then saw a lost job once every ~40 s, forgot what it
    had timed (its last pass was too long ago) and never resent it. Eight real maintenance loops on a real
    redis-server and Postgres, started 0.75 s apart; a queued job without a message must be sent within 40 s."""
    import threading

    from harness.faultkit import LocalRedis
    from shared.celery_app import make_app
    from shared.dispatch import redis_client
    from worker.delivery import maintenance
    from worker.delivery.handle import WorkerContext

    broker = LocalRedis(tmp_path / "redis", aof=False)
    settings = Settings(broker_url=broker.url, database_url=fresh_pg_url, spool_dir=str(tmp_path / "spool"))
    with Session(get_engine(fresh_pg_url)) as s:  # stored, but its message never made it to the broker
        job_id = writes.create_job(session=s, variant="baseline", spec={}, queue="cpu").id
    client = redis_client(broker.url)
    threads = []
    try:
        for i in range(8):
            ctx = WorkerContext(settings, Device.parse("cpu"), f"w{i}@h", redis_client(broker.url),
                                app=make_app(settings))
            t = threading.Thread(target=maintenance._loop, args=(ctx, f"w{i}@h"), daemon=True)
            t.start()
            threads.append(t)
            time.sleep(0.75)
        deadline = time.monotonic() + 40
        while client.get(dispatched_key(job_id)) != b"queued" and time.monotonic() < deadline:
            time.sleep(0.25)
        assert client.get(dispatched_key(job_id)) == b"queued"
        assert client.llen("cpu") == 1  # sent once
    finally:
        maintenance._stop.set()
        for t in threads:
            t.join(timeout=10)
        maintenance._stop.clear()
        broker.close()
