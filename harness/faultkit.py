"""Real faults on loopback for farm: a private redis-server, a TCP proxy in front of Postgres, real workers.

Used by `scripts/fault_inject.py` (prints the table for the README) and by `tests/test_faults.py`
(asserts 0 lost and 0 duplicated). Never touches the shared servers: each Lab runs its own redis-server on
a spare loopback port, creates (and drops) its own Postgres database, and puts its own proxy in front of it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psycopg

FARM = str(Path(sys.executable).with_name("farm"))
PG_ADMIN = os.environ.get("FARM_TEST_PG_ADMIN", "postgresql://postgres@127.0.0.1:5432/postgres")
PG_HOST, PG_PORT = "127.0.0.1", 5432


def spare_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LocalRedis:
    """A redis-server of our own on a spare loopback port; `restart` keeps or loses data as AOF says."""

    def __init__(self, folder: Path, *, aof: bool, password: str | None = None) -> None:
        self.folder, self.aof, self.port, self.password = folder, aof, spare_port(), password
        folder.mkdir(parents=True, exist_ok=True)
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    @property
    def url(self) -> str:
        auth = f":{quote(self.password, safe='')}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "yes" if self.aof else "no", "--appendfsync", "always", "--dir", str(self.folder),
             "--logfile", str(self.folder / "redis.log"),
             *(["--requirepass", self.password] if self.password else [])],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(64).startswith((b"+PONG", b"-NOAUTH")):
                        return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"redis-server did not start on port {self.port}")

    def pause(self, seconds: float) -> None:
        """Freeze the server (SIGSTOP) for `seconds`: clients time out, keys expire by the wall clock meanwhile."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)
        time.sleep(seconds)
        self.proc.send_signal(signal.SIGCONT)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def restart(self, down_s: float = 1.0) -> None:
        """Kill -9 (as a crash or a power cut), stay down `down_s`, start again on the same port and folder."""
        self.kill()
        time.sleep(down_s)
        self.start()

    def close(self) -> None:
        self.kill()


class PgProxy:
    """A TCP proxy on loopback in front of Postgres that can go down (refuse, and cut every connection)."""

    def __init__(self, target: tuple[str, int] = (PG_HOST, PG_PORT)) -> None:
        self.target, self.port = target, spare_port()
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self.up()

    def up(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def down(self) -> None:
        """Stop listening and reset every open connection, as a database restart does."""
        listener, self._listener = self._listener, None
        if listener is not None:
            try:  # wakes the thread blocked in accept(); close() alone leaves the port accepting on Linux
                listener.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            listener.close()
        with self._lock:
            conns, self._conns = self._conns, []
        for c in conns:
            try:
                c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                c.close()
            except OSError:
                pass

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.close()
                except OSError:
                    pass

    def close(self) -> None:
        self.down()


@dataclass
class Row:
    """One line of the fault table."""

    scenario: str
    submitted: int
    expected_rows: int
    stored_rows: int
    duplicates: int
    recover_s: float | None
    note: str = ""

    @property
    def lost(self) -> int:
        return self.expected_rows - (self.stored_rows - self.duplicates)


class Worker:
    """A real `farm worker` subprocess in its own process group."""

    def __init__(self, env: dict[str, str], name: str | None, log: Path, device: str = "cpu") -> None:
        self.name, self.log_path, self.env = name, log, env
        self.log = log.open("w")
        named = ["--name", name] if name else []
        self.proc = subprocess.Popen([FARM, "worker", "--device", device, "--loglevel", "info", *named], env=env,
                                     stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)

    def kill_group(self) -> None:
        """SIGKILL the whole process group: a machine losing power."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def pool_pids(self) -> list[int]:
        out = subprocess.run(["pgrep", "-P", str(self.proc.pid)], capture_output=True, text=True).stdout
        return [int(p) for p in out.split()]

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill_group()
        self.log.close()


class Lab:
    """One scenario's world: its own redis-server, its own Postgres database behind a proxy, real workers."""

    def __init__(self, folder: Path, artifacts: Path, *, aof: bool = False, lease_timeout_s: float = 6.0,
                 extra_env: dict[str, str] | None = None) -> None:
        self.folder, self.lease_timeout_s = folder, lease_timeout_s
        folder.mkdir(parents=True, exist_ok=True)
        self.redis = LocalRedis(folder / "redis", aof=aof)
        self.db = f"farm_fault_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{self.db}"')
        self.proxy = PgProxy()
        self.direct_db = f"postgresql+psycopg://postgres@{PG_HOST}:{PG_PORT}/{self.db}"
        self.proxied_db = f"postgresql+psycopg://postgres@127.0.0.1:{self.proxy.port}/{self.db}"
        base = {k: v for k, v in os.environ.items() if not k.startswith("FARM_")}
        base.update(FARM_ARTIFACTS=str(artifacts), FARM_BROKER_URL=self.redis.url, FARM_HOSTNAME="fault-host",
                     FARM_IDLE_S="0", FARM_LOCK_TTL_S="3", FARM_LEASE_TIMEOUT_S=f"{lease_timeout_s:g}",
                     FARM_DB_WAIT_S="120", FARM_DATA_ROOTS=str(folder), PYTHONUNBUFFERED="1",
                     # faults are about delivery, not measurement: a busy machine must not make every window wait
                     # for quiet (FARM_CONTENTION's default); contention is still measured and flagged
                     FARM_CONTENTION="flag", FARM_CONTENTION_CORES="64",
                     **(extra_env or {}))
        self.base_env = base
        self.controller_env = {**base, "FARM_DATABASE_URL": self.direct_db}
        self.workers: list[Worker] = []
        self.settled_at: float | None = None  # when the last wait_state was satisfied (monotonic seconds)

    def worker_env(self, **extra: str) -> dict[str, str]:
        return {**self.base_env, "FARM_DATABASE_URL": self.proxied_db,
                "FARM_SPOOL": str(self.folder / "spool"), **extra}

    def start_worker(self, name: str, **extra: str) -> Worker:
        log = self.folder / f"{name.split('@')[0]}.log"
        if log.exists():  # a second worker of the same name keeps its own log
            log = log.with_name(f"{log.stem}-{len(self.workers)}.log")
        w = Worker(self.worker_env(**extra), name, log)
        self.workers.append(w)
        return w

    def wait_worker(self, w: Worker, timeout_s: float = 90) -> None:
        """Until the worker's heartbeat is on the broker (its maintenance thread runs after it is ready)."""
        import redis

        client = redis.Redis.from_url(self.redis.url)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if w.proc.poll() is not None:
                raise RuntimeError(f"worker {w.name} exited: {w.log_path.read_text()[-3000:]}")
            try:
                if client.exists(f"farm:worker:{w.name}"):
                    return
            except redis.RedisError:
                pass
            time.sleep(0.2)
        raise TimeoutError(f"worker {w.name} did not start: {w.log_path.read_text()[-3000:]}")

    def farm(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run([FARM, *args], env=self.controller_env, capture_output=True, text=True,
                              timeout=timeout)

    def submit(self, *args: str) -> str:
        # --queue-anyway: scenarios queue jobs before their workers start, or for a host that never comes.
        proc = self.farm("submit", "--format", "json", "--queue-anyway", *args)
        if proc.returncode != 0:
            raise RuntimeError(f"submit failed: {proc.stderr}")
        return str(json.loads(proc.stdout)["job_id"])

    def _query(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        with psycopg.connect(f"postgresql://postgres@{PG_HOST}:{PG_PORT}/{self.db}") as conn:
            return list(conn.execute(sql, params).fetchall())

    def jobs(self, ids: list[str]) -> dict[str, dict[str, Any]]:
        rows = self._query("SELECT id::text, state, worker, error, deliveries FROM job WHERE id::text = ANY(%s)",
                           ids)
        return {r[0]: {"state": r[1], "worker": r[2], "error": r[3], "deliveries": r[4]} for r in rows}

    def wait_state(self, ids: list[str], states: tuple[str, ...], timeout_s: float) -> dict[str, dict[str, Any]]:
        deadline = time.monotonic() + timeout_s
        jobs: dict[str, dict[str, Any]] = {}
        while time.monotonic() < deadline:
            jobs = self.jobs(ids)
            if len(jobs) == len(ids) and all(j["state"] in states for j in jobs.values()):
                self.settled_at = time.monotonic()
                return jobs
            time.sleep(0.25)
        raise TimeoutError(f"jobs not {states} after {timeout_s:g} s: {jobs}\n" + self.logs())

    def result_counts(self, ids: list[str]) -> tuple[int, int, list[int]]:
        """(rows stored, duplicated rows, result ids) for these jobs."""
        rows = self._query("SELECT job_id::text, repeat_index, id FROM result WHERE job_id::text = ANY(%s)", ids)
        seen: dict[tuple[str, int], int] = {}
        for job_id, rep, _ in rows:
            seen[(job_id, rep)] = seen.get((job_id, rep), 0) + 1
        return len(rows), sum(n - 1 for n in seen.values()), sorted(r[2] for r in rows)

    def dead_letters(self) -> list[dict[str, Any]]:
        import redis

        return [json.loads(x) for x in redis.Redis.from_url(self.redis.url).lrange("farm:dead", 0, -1)]

    def logs(self) -> str:
        return "\n".join(f"--- {w.name}\n{w.log_path.read_text()[-2500:]}" for w in self.workers)

    def close(self) -> None:
        for w in self.workers:
            w.stop()
        self.proxy.close()
        self.redis.close()
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.db}" WITH (FORCE)')


JOB = ("--variant", "baseline", "--repeats", "3", "--limit", "64")


def _row(lab: Lab, name: str, ids: list[str], per_job: int, t_fault: float, note: str = "") -> Row:
    """The table's line; "done after" runs from `t_fault` to when the jobs reached their final state."""
    stored, dups, _ = lab.result_counts(ids)
    settled = lab.settled_at if lab.settled_at is not None and lab.settled_at >= t_fault else time.monotonic()
    return Row(name, len(ids), per_job * len(ids), stored, dups, round(settled - t_fault, 1), note)


def redis_restart_mid_job(lab: Lab) -> Row:
    """The broker crashes and comes back while a job measures (locks, lease and ack all lose Redis)."""
    w = lab.start_worker("w1@fault-host", FARM_IDLE_S="4")
    lab.wait_worker(w)
    job = lab.submit(*JOB)
    lab.wait_state([job], ("running",), 60)
    time.sleep(1.0)
    t = time.monotonic()
    lab.redis.restart(down_s=2.0)
    lab.wait_state([job], ("done",), 120)
    return _row(lab, f"Redis killed and restarted mid-job ({'AOF' if lab.redis.aof else 'no persistence'})",
                [job], 3, t)


def redis_unreachable_longer_than_the_lease(lab: Lab) -> Row:
    """The broker freezes for longer than the lease while a job runs: the job finishes once, nothing reruns."""
    pause_s = lab.lease_timeout_s + 5
    w = lab.start_worker("w1@fault-host", FARM_IDLE_S="3")
    lab.wait_worker(w)
    job = lab.submit(*JOB)
    lab.wait_state([job], ("running",), 60)
    lab.redis.pause(pause_s)
    t = time.monotonic()
    jobs = lab.wait_state([job], ("done",), 180)
    reran = w.log_path.read_text().count("] received") - 1
    return _row(lab, f"Redis unreachable {pause_s:g} s mid-job (longer than the lease)", [job], 3, t,
                note=f"deliveries {jobs[job]['deliveries']}, reruns {reran}")


def postgres_down_during_job(lab: Lab) -> Row:
    """The store is away when the job finishes: the outcome goes to the spool, then to the store."""
    w = lab.start_worker("w1@fault-host", FARM_IDLE_S="1")
    lab.wait_worker(w)
    job = lab.submit(*JOB)
    lab.wait_state([job], ("running",), 60)
    lab.proxy.down()
    t_down = time.monotonic()
    deadline = t_down + 120  # stay down until the job has finished into the spool, however slow the machine
    while not list((lab.folder / "spool").glob("*.json")) and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(max(0.0, 6.0 - (time.monotonic() - t_down)))  # and at least 6 s in all
    spooled = len(list((lab.folder / "spool").glob("*.json")))
    time.sleep(2.5)  # a heartbeat publishes the backlog
    status = json.loads(lab.farm("status", "--format", "json").stdout)  # the controller reaches Postgres directly
    backlog = sum(w.get("spool") or 0 for w in status["workers"])
    down_s = time.monotonic() - t_down
    t = time.monotonic()
    lab.proxy.up()
    lab.wait_state([job], ("done",), 120)
    return _row(lab, f"Postgres down {down_s:.0f} s as the job finishes", [job], 3, t,
                note=f"{spooled} outcome spooled, status showed {backlog}")


def postgres_down_at_pickup(lab: Lab) -> Row:
    """The store is away when a worker takes the job: it waits, then runs it."""
    w = lab.start_worker("w1@fault-host")
    lab.wait_worker(w)
    lab.proxy.down()
    job = lab.submit(*JOB)  # the controller reaches Postgres directly
    time.sleep(5.0)
    t = time.monotonic()
    lab.proxy.up()
    lab.wait_state([job], ("done",), 120)
    return _row(lab, "Postgres down 5 s when a worker picks the job up", [job], 3, t)


def redis_lost_queued_jobs(lab: Lab) -> Row:
    """Redis restarts without persistence while 3 jobs wait: the reaper sends them again from the store."""
    jobs = [lab.submit(*JOB) for _ in range(3)]
    lab.redis.restart(down_s=0.5)
    t = time.monotonic()
    w = lab.start_worker("w1@fault-host")
    lab.wait_worker(w)
    lab.wait_state(jobs, ("done",), 180)
    return _row(lab, "Redis restarted without persistence, 3 jobs queued", jobs, 3, t)


def worker_machine_dies(lab: Lab) -> Row:
    """A worker's whole process group is SIGKILLed mid-job (power loss); another worker takes the job."""
    return _kill_a_worker_mid_job(lab, "worker machine dies mid-job (SIGKILL of its group)")


def _kill_a_worker_mid_job(lab: Lab, title: str) -> Row:
    """Start a worker, SIGKILL its whole group while it measures a job, and time a second worker finishing it."""
    first = lab.start_worker("w1@fault-host", FARM_IDLE_S="20")  # still measuring when it dies, however slow
    lab.wait_worker(first)
    job = lab.submit(*JOB)
    lab.wait_state([job], ("running",), 60)
    second = lab.start_worker("w2@fault-host", FARM_IDLE_S="0")
    lab.wait_worker(second)
    t = time.monotonic()
    first.kill_group()
    jobs = lab.wait_state([job], ("done",), 240)
    return _row(lab, title, [job], 3, t, note=f"finished on {jobs[job]['worker']}")


def worker_stalls_and_returns(lab: Lab) -> Row:
    """A worker freezes (SIGSTOP) past its lease, another takes the job over; the first comes back and writes
    nothing."""
    first = lab.start_worker("w1@fault-host", FARM_IDLE_S="20")  # still measuring when it freezes
    lab.wait_worker(first)
    job = lab.submit(*JOB)
    lab.wait_state([job], ("running",), 60)
    second = lab.start_worker("w2@fault-host", FARM_IDLE_S="0")
    lab.wait_worker(second)
    os.killpg(first.proc.pid, signal.SIGSTOP)
    t = time.monotonic()
    jobs = lab.wait_state([job], ("done",), 240)
    _, _, ids_done = lab.result_counts([job])
    os.killpg(first.proc.pid, signal.SIGCONT)
    deadline = time.monotonic() + 60
    while "stopping without writing" not in first.log_path.read_text() and time.monotonic() < deadline:
        time.sleep(0.5)
    _, _, ids_later = lab.result_counts([job])
    stopped = "stopping without writing" in first.log_path.read_text()
    row = _row(lab, "worker frozen past its lease, then resumes", [job], 3, t,
               note=f"finished on {jobs[job]['worker']}; the frozen one "
                    + ("stopped without writing" if stopped and ids_done == ids_later else "WROTE or went on"))
    if ids_done != ids_later:
        row.duplicates += len(ids_later)
    return row


def short_visibility_timeout(lab: Lab) -> Row:
    """A job longer than Redis's visibility timeout: the redelivery finds it leased and does not run it."""
    w1 = lab.start_worker("w1@fault-host", FARM_IDLE_S="8", FARM_VISIBILITY_TIMEOUT_S="3")
    w2 = lab.start_worker("w2@fault-host", FARM_IDLE_S="8", FARM_VISIBILITY_TIMEOUT_S="3")
    lab.wait_worker(w1)
    lab.wait_worker(w2)
    job = lab.submit(*JOB)
    t = time.monotonic()
    lab.wait_state([job], ("done",), 120)
    _, _, ids_at_done = lab.result_counts([job])
    time.sleep(8.0)  # past two more visibility timeouts: a second run would replace the rows
    _, _, ids_later = lab.result_counts([job])
    row = _row(lab, "job longer than the visibility timeout (3 s), 2 workers", [job], 3, t)
    logs = lab.logs()
    dropped = logs.count("held by another live delivery") + logs.count("duplicate delivery ignored")
    row.note = (f"{dropped} redeliveries dropped; rows "
                + ("unchanged after done" if ids_at_done == ids_later else "REPLACED after done"))
    if ids_at_done != ids_later:
        row.duplicates += len(ids_later)
    return row


def poison_message(lab: Lab) -> Row:
    """A non-JSON item and a JSON non-message on the queue: dead-lettered; the worker keeps serving."""
    import redis

    w = lab.start_worker("w1@fault-host")
    lab.wait_worker(w)
    client = redis.Redis.from_url(lab.redis.url)
    client.lpush("cpu", b"\x80not json")
    client.lpush("cpu", b'{"hello": "world"}')
    t = time.monotonic()
    job = lab.submit(*JOB)
    lab.wait_state([job], ("done",), 120)
    dead = len(lab.dead_letters())
    alive = w.proc.poll() is None
    return _row(lab, "2 poison items on the queue, then a job", [job], 3, t,
                note=f"{dead} dead-lettered, worker {'alive' if alive else 'DEAD'}")


def pool_dies_every_delivery(lab: Lab) -> Row:
    """A job whose pool process dies at every delivery (OOM): failed after FARM_MAX_DELIVERIES, dead-lettered."""
    w = lab.start_worker("w1@fault-host", FARM_IDLE_S="30", FARM_MAX_DELIVERIES="2")
    lab.wait_worker(w)
    job = lab.submit(*JOB)
    t = time.monotonic()
    kills = 0
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        state = lab.jobs([job])[job]
        if state["state"] == "failed":
            lab.settled_at = time.monotonic()
            break
        if state["state"] == "running" and state["deliveries"] > kills:
            for pid in w.pool_pids():
                os.kill(pid, signal.SIGKILL)
            kills += 1
        time.sleep(0.2)
    final = lab.jobs([job])[job]
    dead = [d for d in lab.dead_letters() if d.get("job_id") == job]
    row = _row(lab, "pool process killed at every delivery (max 2)", [job], 0, t,
               note=f"{kills} kills, job {final['state']}, {len(dead)} dead letter")
    if final["state"] != "failed" or not dead:
        row.expected_rows += 1  # the failure itself was lost
    return row


def payload_disagrees(lab: Lab) -> Row:
    """A message whose payload differs from the stored spec (an unexpected key; a pruning stage on a baseline)."""
    from shared.dispatch import dispatch, redis_client
    from shared.settings import Settings
    from worker.app import make_app

    w = lab.start_worker("w1@fault-host")
    lab.wait_worker(w)
    app = make_app(Settings(broker_url=lab.redis.url))
    client = redis_client(lab.redis.url)
    jobs = []
    for tamper in (lambda s: {**s, "extra": 1},
                   lambda s: {**s, "variant": {**s["variant"], "prune": {"method": "all", "ratio": 0.5,
                                                                          "round_to": 4}}}):
        job = lab.submit(*JOB, "--on", "host:nobody")  # parked on a queue no worker reads
        spec = lab._query("SELECT spec FROM job WHERE id::text = %s", job)[0][0]
        dispatch(app, client, job_id=job, stage="benchmark", queue="cpu", spec=tamper(spec))
        jobs.append(job)
    t = time.monotonic()
    final = lab.wait_state(jobs, ("failed",), 60)
    refused = sum("disagrees with the stored spec" in (j["error"] or "") for j in final.values())
    return _row(lab, "payload disagrees with the stored spec (2 kinds)", jobs, 0, t,
                note=f"{refused}/2 refused, failed with the reason")


def redis_blip_at_pickup(lab: Lab) -> Row:
    """Redis freezes for 12 s while a worker takes the lease at pickup (the store was slow, so the lease comes
    late). Once, this read the broker error as "held by another live delivery", acked the message, and the job
    stayed queued for ever."""
    import threading

    w = lab.start_worker("w1@fault-host")
    lab.wait_worker(w)
    lab.proxy.down()  # the worker's store read waits, so its lease is taken while Redis is frozen
    job = lab.submit(*JOB)
    _wait_log(w, "the store did not answer", 60)
    freezer = threading.Thread(target=lab.redis.pause, args=(12.0,))
    freezer.start()
    time.sleep(1.0)
    t = time.monotonic()
    lab.proxy.up()
    freezer.join()
    jobs = lab.wait_state([job], ("done",), 180)
    return _row(lab, "Redis frozen 12 s while a worker takes the lease at pickup", [job], 3, t,
                note=f"deliveries {jobs[job]['deliveries']}")


def backlog_then_worker_dies(lab: Lab) -> Row:
    """10,000 jobs parked for GPU workers (older than everything else), then a CPU worker dies mid-job: its job is
    still requeued within the lease bound (once, the reaper read the oldest 10,000 active jobs and never saw it)."""
    import redis

    parked = 10_000
    lab.farm("status")  # creates the store's schema
    with psycopg.connect(f"postgresql://postgres@{PG_HOST}:{PG_PORT}/{lab.db}") as conn:
        spec = json.dumps({"variant": {"name": "baseline"}})
        conn.execute("INSERT INTO job (id, variant, spec, queue, state, submitted_at, stage, deliveries) "
                     "SELECT gen_random_uuid(), 'baseline', %s::json, 'gpu', 'queued', now() - interval '1 hour', "
                     "'benchmark', 0 FROM generate_series(1, %s)", (spec, parked))
        ids = [r[0] for r in conn.execute("SELECT id::text FROM job").fetchall()]
    from shared.keys import dispatched_key

    client = redis.Redis.from_url(lab.redis.url)
    for i in range(0, len(ids), 1000):  # their messages wait on the gpu queue, which no worker here reads
        client.mset({dispatched_key(j): "queued" for j in ids[i:i + 1000]})
    return _kill_a_worker_mid_job(lab, f"{parked:,} jobs parked for GPU workers, then a CPU worker dies mid-job")


def skewed_clock_lost_queue(lab: Lab) -> Row:
    """The only worker's clock is an hour behind (a FAKE wall clock, harness/fake_clock), Redis restarts without
    persistence with 3 jobs queued: the reaper times its suspicion on the broker's clock and sends them again; each
    row records the skew, and `farm status` shows it."""
    jobs = [lab.submit(*JOB) for _ in range(3)]
    lab.redis.restart(down_s=0.5)
    t = time.monotonic()
    fake = str(Path(__file__).with_name("fake_clock"))  # a FAKE wall clock an hour behind (sitecustomize)
    w = lab.start_worker("w1@fault-host", FARM_FAKE_CLOCK_OFFSET_S="-3600",
                         PYTHONPATH=os.pathsep.join(p for p in (fake, os.environ.get("PYTHONPATH")) if p))
    lab.wait_worker(w)
    lab.wait_state(jobs, ("done",), 180)
    time.sleep(2.5)  # a heartbeat with the measured skew
    status = json.loads(lab.farm("status", "--format", "json").stdout)
    shown = [w.get("clock_skew_s") for w in status["workers"]]
    skews = [r[0] for r in lab._query("SELECT DISTINCT round(clock_skew_s) FROM result WHERE job_id::text = ANY(%s)",
                                      jobs)]
    order = lab._query("SELECT count(*) FROM job WHERE id::text = ANY(%s) AND started_at < submitted_at", jobs)[0][0]
    return _row(lab, "worker clock 1 h behind, Redis restarted without persistence, 3 jobs queued", jobs, 3, t,
                note=f"rows' skew {skews} s, status showed {shown}, {order} started before submitted")


def refused_outcome_in_spool(lab: Lab) -> Row:
    """A spooled outcome that the store refuses (a NULL into a NOT NULL column) sits first in the spool while another
    job's outcome waits behind it: the refused one is moved aside, its job failed with the reason and
    dead-lettered; the other flushes (once, the flush stopped at the first failing file for ever)."""
    from shared.outcome import Outcome

    w = lab.start_worker("w1@fault-host", FARM_IDLE_S="1")
    lab.wait_worker(w)
    bad = lab.submit(*JOB, "--on", "host:nobody")  # parked: never runs, its refused outcome is planted
    job = lab.submit(*JOB)
    lab.wait_state([job], ("running",), 60)
    lab.proxy.down()
    poison = Outcome(bad, "done", epochs=[{"artifact_key": "k", "kind": "distilled", "epoch": 0, "train_loss": None,
                                           "val_top1": 0.5, "duration_s": 1.0}])
    spool = lab.folder / "spool"
    spool.mkdir(parents=True, exist_ok=True)
    (spool / f"{bad}.json").write_text(poison.to_json())
    os.utime(spool / f"{bad}.json", (time.time() - 3600, time.time() - 3600))  # oldest: flushed first
    deadline = time.monotonic() + 120
    while not (spool / f"{job}.json").exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    t = time.monotonic()
    lab.proxy.up()
    final = lab.wait_state([job, bad], ("done", "failed"), 120)
    dead = [d for d in lab.dead_letters() if d.get("job_id") == bad]
    row = _row(lab, "a spooled outcome the store refuses, ahead of another", [job], 3, t,
               note=f"refused one {final[bad]['state']}, {len(dead)} dead letter, "
                    f"{len(list((spool / 'dead').glob('*.json')))} kept aside")
    if final[job]["state"] != "done":
        row.expected_rows += 1
    return row


def same_name_workers(lab: Lab) -> Row:
    """A second worker with the same node name is refused at start, naming the first; a worker stopped cleanly
    leaves `farm status` at once (once, it stayed listed as live for a lease period)."""
    first = lab.start_worker("w1@fault-host")
    lab.wait_worker(first)
    second = lab.start_worker("w1@fault-host")
    second.proc.wait(timeout=60)
    said = second.log_path.read_text()
    refused = second.proc.returncode == 2 and "already running as w1@fault-host" in said
    job = lab.submit(*JOB)
    t = time.monotonic()
    lab.wait_state([job], ("done",), 120)
    first.stop()
    listed = json.loads(lab.farm("status", "--format", "json").stdout)["workers"]
    return _row(lab, "a second worker with the same name; the first stops cleanly", [job], 3, t,
                note=f"second {'refused' if refused else 'STARTED'}, "
                     f"{len(listed)} listed right after the clean stop")


def redelivered_past_max_while_running(lab: Lab) -> Row:
    """Redis redelivers a running job's message (visibility 3 s) to a second worker, past FARM_MAX_DELIVERIES=1:
    the redelivery sees the live lease and drops itself (once, it failed the healthy job first)."""
    extra = {"FARM_IDLE_S": "8", "FARM_VISIBILITY_TIMEOUT_S": "3", "FARM_MAX_DELIVERIES": "1"}
    w1 = lab.start_worker("w1@fault-host", **extra)
    w2 = lab.start_worker("w2@fault-host", **extra)
    lab.wait_worker(w1)
    lab.wait_worker(w2)
    job = lab.submit(*JOB)
    t = time.monotonic()
    jobs = lab.wait_state([job], ("done", "failed"), 120)
    held = lab.logs().count("held by another live delivery")
    row = _row(lab, "redelivered past FARM_MAX_DELIVERIES=1 while it runs", [job], 3, t,
               note=f"job {jobs[job]['state']}, {held} redeliveries dropped")
    if jobs[job]["state"] != "done":
        row.expected_rows += 1
    return row


def worker_dies_at_pickup(lab: Lab) -> Row:
    """Found by review: the store is away when a worker takes a job's message, and the worker's machine dies while it
    waits for the store. The message sat in Redis's unacked set for the visibility timeout (12 h) and the job's
    marker said "queued", which the reaper trusts. Now the delivery marks its claim as it counts itself, so the
    reaper sees a claim without a lease and sends the job again."""
    first = lab.start_worker("w1@fault-host")
    lab.wait_worker(first)
    lab.proxy.down()
    job = lab.submit(*JOB)
    _wait_log(first, "the store did not answer", 60)
    first.kill_group()
    t = time.monotonic()
    lab.proxy.up()
    second = lab.start_worker("w2@fault-host")
    lab.wait_worker(second)
    jobs = lab.wait_state([job], ("done",), 180)
    return _row(lab, "the store away at pickup, then the worker's machine dies while it waits", [job], 3, t,
                note=f"finished on {jobs[job]['worker']}")


def _wait_log(w: Worker, text: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while text not in w.log_path.read_text() and time.monotonic() < deadline:
        time.sleep(0.1)


SCENARIOS: dict[str, Callable[[Lab], Row]] = {
    "redis-restart-aof": redis_restart_mid_job,
    "redis-restart": redis_restart_mid_job,
    "redis-frozen": redis_unreachable_longer_than_the_lease,
    "postgres-down-during-job": postgres_down_during_job,
    "postgres-down-at-pickup": postgres_down_at_pickup,
    "redis-lost-queued": redis_lost_queued_jobs,
    "worker-dies": worker_machine_dies,
    "worker-stalls": worker_stalls_and_returns,
    "short-visibility": short_visibility_timeout,
    "poison": poison_message,
    "pool-dies-every-time": pool_dies_every_delivery,
    "payload-disagrees": payload_disagrees,
    "redis-blip-at-pickup": redis_blip_at_pickup,
    "backlog-worker-dies": backlog_then_worker_dies,
    "skewed-clock": skewed_clock_lost_queue,
    "refused-outcome-in-spool": refused_outcome_in_spool,
    "same-name-workers": same_name_workers,
    "redelivered-past-max": redelivered_past_max_while_running,
    "worker-dies-at-pickup": worker_dies_at_pickup,
}
AOF = {"redis-restart-aof"}


def run_scenario(name: str, folder: Path, artifacts: Path, lease_timeout_s: float = 6.0) -> Row:
    lab = Lab(folder / name, artifacts, aof=name in AOF, lease_timeout_s=lease_timeout_s)
    try:
        return SCENARIOS[name](lab)
    finally:
        lab.close()
        shutil.rmtree(folder / name, ignore_errors=True)
