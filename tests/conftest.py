"""Fixtures on real services: a throwaway Postgres database, a private Redis database number, SQLite files.

Nothing here touches a user's data: each session creates and drops its own Postgres database and flushes
only the Redis database number it owns.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import redis

from harness.faultkit import Worker

PG_ADMIN = os.environ.get("FARM_TEST_PG_ADMIN", "postgresql://postgres@127.0.0.1:5432/postgres")
PG_BASE = os.environ.get("FARM_TEST_PG_BASE", "postgresql+psycopg://postgres@127.0.0.1:5432")
REDIS_BASE = os.environ.get("FARM_TEST_REDIS", "redis://127.0.0.1:6379")
# Under pytest-xdist each worker process (gw0, gw1, ...) owns the next lower database number: 13, 12, 11...
_XDIST = os.environ.get("PYTEST_XDIST_WORKER", "")
REDIS_DB = int(os.environ.get("FARM_TEST_REDIS_DB", "13")) - (int(_XDIST[2:]) if _XDIST[2:].isdigit() else 0)
FARM = str(Path(sys.executable).with_name("farm"))


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A fresh Postgres database for this test session, dropped at the end."""
    name = f"farm_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield f"{PG_BASE}/{name}"
    from shared.db.engine import get_engine

    get_engine.cache_clear()
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture()
def fresh_pg_url(pg_url: str) -> Iterator[str]:
    """A Postgres database of its own for one test."""
    name = f"farm_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield f"{PG_BASE}/{name}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture()
def redis_url() -> Iterator[str]:
    """A Redis database number that only the tests use, empty before and after each test."""
    client = redis.Redis.from_url(f"{REDIS_BASE}/{REDIS_DB}")
    client.flushdb()
    yield f"{REDIS_BASE}/{REDIS_DB}"
    client.flushdb()


@pytest.fixture(scope="session")
def artifacts_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One artifacts root for the session, so the built-in model is trained once."""
    return tmp_path_factory.mktemp("artifacts")


@pytest.fixture(scope="session")
def builtin_model(artifacts_dir: Path, tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    """The built-in ViT, trained (20-80 s on 2 cores) and cached in the session's artifacts root.

    Parallel test processes (pytest-xdist) train it once between them, under a file lock, and each copies it.
    """
    import fcntl

    from worker.artifacts import ArtifactStore
    from worker.workloads.models import load_builtin

    seed = os.environ.get("FARM_TEST_BASE_FROM")  # an artifacts root holding a trained base/ (saves a training)
    if seed and (Path(seed) / "base").is_dir():
        shutil.copytree(Path(seed) / "base", artifacts_dir / "base", dirs_exist_ok=True)  # verified on load
    if not _XDIST:
        return load_builtin(ArtifactStore(str(artifacts_dir)))
    common = tmp_path_factory.getbasetemp().parent / "builtin-artifacts"
    common.mkdir(exist_ok=True)
    with (common.parent / "builtin.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        load_builtin(ArtifactStore(str(common)))
    shutil.copytree(common / "base", artifacts_dir / "base", dirs_exist_ok=True)
    return load_builtin(ArtifactStore(str(artifacts_dir)))


@pytest.fixture()
def farm_env(tmp_path: Path, artifacts_dir: Path, builtin_model: object) -> dict[str, str]:
    """Environment for `farm` subprocesses: a private SQLite file, the session's artifacts, no idle wait."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FARM_")}
    env.update(
        FARM_DATABASE_URL=f"sqlite:///{tmp_path / 'farm.db'}",
        FARM_ARTIFACTS=str(artifacts_dir),
        FARM_BROKER_URL=f"{REDIS_BASE}/{REDIS_DB}",
        FARM_HOSTNAME="test-host",
        FARM_IDLE_S="0",
        FARM_LOCK_TTL_S="3",  # a killed worker's locks expire quickly
        FARM_DATA_ROOTS=str(tmp_path),  # datasets and model folders that tests write live here
        FARM_SPOOL=str(tmp_path / "spool"),
        # CI runs 3 test processes on 2 cores: the machine is never quiet, so contention is recorded, never acted
        # on, unless a test sets a policy and threshold of its own (tests/test_contention.py).
        FARM_CONTENTION="flag",
        FARM_CONTENTION_CORES="64",
        PYTHONUNBUFFERED="1",
    )
    return env


def run_farm(args: list[str], env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([FARM, *args], env=env, capture_output=True, text=True, timeout=timeout)


class WorkerProcess(Worker):
    """A real `farm worker` subprocess (harness/faultkit.py), stopped (and its children killed) on exit."""

    def __init__(self, env: dict[str, str], device: str, log_path: Path, name: str | None = None) -> None:
        super().__init__(env, name, log_path, device=device)

    def wait_ready(self, timeout: float = 60) -> str:
        """Block until the worker answers a Celery ping; return its node name."""
        from shared.settings import Settings
        from worker.app import make_app

        saved = dict(os.environ)
        os.environ.update({k: v for k, v in self.env.items() if k.startswith("FARM_")})
        try:
            app = make_app(Settings.from_env())
        finally:
            os.environ.clear()
            os.environ.update(saved)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker exited: {self.log_path.read_text()[-3000:]}")
            replies = app.control.ping(timeout=1.0)
            for reply in replies:
                for name in reply:
                    if name == self.name or (self.name is None and name.endswith("@" + self.env["FARM_HOSTNAME"])):
                        self._wait_heartbeat(name, deadline)  # what `farm submit` reads to see who serves
                        return name
        raise TimeoutError(f"worker did not answer a ping: {self.log_path.read_text()[-3000:]}")

    def _wait_heartbeat(self, name: str, deadline: float) -> None:
        import redis

        client = redis.Redis.from_url(self.env["FARM_BROKER_URL"])
        while time.monotonic() < deadline:
            if client.exists(f"farm:worker:{name}"):
                return
            time.sleep(0.1)
        raise TimeoutError(f"worker {name} answered a ping but published no heartbeat")


@pytest.fixture()
def start_worker(tmp_path: Path) -> Iterator[object]:
    workers: list[WorkerProcess] = []

    def start(env: dict[str, str], device: str = "cpu", name: str | None = None) -> WorkerProcess:
        w = WorkerProcess(env, device, tmp_path / f"worker-{len(workers)}.log", name)
        workers.append(w)
        return w

    yield start
    for w in workers:
        w.stop()


def have(cmd: str) -> bool:
    return shutil.which(cmd) is not None


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    """With FARM_TEST_CPU_LOG=FILE, append each test's CPU seconds (this process and the subprocesses it waited
    for) to FILE: on a 2-core CI machine the suite's wall time is its CPU time over 2, so this says what to trim."""
    log = os.environ.get("FARM_TEST_CPU_LOG")
    if not log:
        yield
        return
    import resource

    def cpu_s() -> float:
        own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime

    start_cpu, start_wall = cpu_s(), time.monotonic()
    yield
    with open(log, "a") as out:
        out.write(f"{cpu_s() - start_cpu:.1f}\t{time.monotonic() - start_wall:.1f}\t{item.nodeid}\n")
