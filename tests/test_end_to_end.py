"""submit -> Redis -> a real `farm worker` subprocess -> Postgres -> `farm results`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import run_farm


@pytest.fixture()
def pg_env(farm_env: dict[str, str], fresh_pg_url: str, redis_url: str) -> dict[str, str]:
    return {**farm_env, "FARM_DATABASE_URL": fresh_pg_url, "FARM_BROKER_URL": redis_url}


def test_submit_runs_on_a_worker_and_lands_in_postgres(pg_env: dict[str, str], start_worker) -> None:  # noqa: ANN001
    worker = start_worker(pg_env, "cpu")
    node = worker.wait_ready()
    assert node == "farm-cpu@test-host"

    # `celery -A worker inspect ping` sees it too.
    celery = str(Path(sys.executable).with_name("celery"))
    ping = subprocess.run([celery, "-A", "worker", "inspect", "ping", "--timeout", "5"], env=pg_env,
                          capture_output=True, text=True, timeout=60)
    assert "farm-cpu@test-host" in ping.stdout, ping.stdout + ping.stderr

    status = run_farm(["status", "--format", "json"], pg_env)
    workers = json.loads(status.stdout)["workers"]
    assert [w["worker"] for w in workers] == ["farm-cpu@test-host"]
    assert set(workers[0]["queues"].split(",")) == {"cpu", "host.test-host", "host.test-host.cpu"}

    sub = run_farm(["submit", "--variant", "baseline", "--repeats", "2", "--limit", "64", "--wait",
                    "--timeout", "240", "--on", "host:test-host:cpu"], pg_env)
    assert sub.returncode == 0, sub.stderr
    assert "baseline" in sub.stdout

    res = run_farm(["results", "--format", "json", "--host", "test-host"], pg_env)
    assert res.returncode == 0, res.stderr
    rows = json.loads(res.stdout)
    assert [r["repeat_index"] for r in rows] == [0, 1]
    for r in rows:
        assert r["variant"] == "baseline" and r["host"] == "test-host" and r["device"] == "cpu"
        assert r["samples"] == 64 and r["top1"] >= 0.9 and r["top5"] >= r["top1"]
        assert r["energy_source"] == "estimated:cpu-time"
        assert r["total_energy_per_sample_j"] > 0 and r["time_per_sample_s"] > 0
        assert r["params"] > 100_000 and r["macs"] > r["params"]
        assert 0 <= r["local_hour"] <= 23 and r["timezone"]
        assert "torch" in r["software"]

    jobs = json.loads(run_farm(["status", "--format", "json"], pg_env).stdout)["jobs"]
    assert jobs[0]["state"] == "done" and jobs[0]["worker"] == "farm-cpu@test-host"

    csv_out = run_farm(["results", "--format", "csv"], pg_env).stdout.splitlines()
    assert csv_out[0].startswith("id,job_id,repeat_index") and len(csv_out) == 3


def test_failed_job_is_marked_failed_with_its_error(pg_env: dict[str, str], start_worker) -> None:  # noqa: ANN001
    start_worker(pg_env, "cpu").wait_ready()
    junk = Path(pg_env["FARM_DATA_ROOTS"]) / "junk.tar.gz"
    junk.write_bytes(b"not an archive")  # exists, so submit takes it; only the worker finds it unreadable
    sub = run_farm(["submit", "--variant", "baseline", "--dataset", f"cifar100:{junk}", "--wait", "--timeout", "120"],
                   pg_env)
    assert sub.returncode == 1
    assert "neither a folder nor a tar archive" in sub.stderr
    jobs = json.loads(run_farm(["status", "--format", "json"], pg_env).stdout)["jobs"]
    assert jobs[0]["state"] == "failed" and "neither a folder nor a tar archive" in jobs[0]["error"]


def test_run_in_process_stores_in_embedded_sqlite(farm_env: dict[str, str], tmp_path: Path) -> None:
    proc = run_farm(["run", "--variant", "baseline", "--repeats", "2", "--limit", "40", "--format", "json"], farm_env)
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    assert len(rows) == 2 and all(r["samples"] == 40 for r in rows)
    assert (tmp_path / "farm.db").exists()
    stored = json.loads(run_farm(["results", "--format", "json", "--variant", "baseline"], farm_env).stdout)
    assert [r["id"] for r in stored] == [r["id"] for r in rows]


def test_job_survives_its_worker_process_being_killed(pg_env: dict[str, str], start_worker) -> None:  # noqa: ANN001
    """acks_late + reject_on_worker_lost: a pool process killed mid-job (as by the OOM killer) loses nothing."""
    import signal
    import time

    env = {**pg_env, "FARM_IDLE_S": "3"}  # the job sits in its idle measurement long enough to be killed
    worker = start_worker(env, "cpu")
    worker.wait_ready()
    sub = run_farm(["submit", "--variant", "baseline", "--repeats", "2", "--limit", "16", "--format", "json"], env)
    job_id = json.loads(sub.stdout)["job_id"]

    def state() -> str:
        jobs = json.loads(run_farm(["status", "--format", "json"], env).stdout)["jobs"]
        return next(j["state"] for j in jobs if j["id"] == job_id)

    deadline = time.monotonic() + 120
    while state() != "running":
        assert time.monotonic() < deadline
        time.sleep(0.2)
    children = subprocess.run(["pgrep", "-P", str(worker.proc.pid)], capture_output=True, text=True).stdout.split()
    assert children, "the prefork pool has no child process"
    for pid in children:
        os.kill(int(pid), signal.SIGKILL)

    while state() not in ("done", "failed"):
        assert time.monotonic() < deadline, worker.log_path.read_text()[-2000:]
        time.sleep(0.5)
    assert state() == "done"
    rows = json.loads(run_farm(["results", "--format", "json", "--job", job_id], env).stdout)
    assert [r["repeat_index"] for r in rows] == [0, 1]


def test_two_workers_on_one_host_measure_one_at_a_time(pg_env: dict[str, str], start_worker) -> None:  # noqa: ANN001
    """RAPL counts the whole package: a host lock keeps two workers of one machine from overlapping."""
    from datetime import datetime, timedelta

    env = {**pg_env, "FARM_IDLE_S": "1.5"}
    first, second = start_worker(env, "cpu", name="one@test-host"), start_worker(env, "cpu", name="two@test-host")
    assert first.wait_ready() == "one@test-host"
    assert second.wait_ready() == "two@test-host"
    ids = []
    for _ in range(2):
        sub = run_farm(["submit", "--variant", "baseline", "--repeats", "3", "--limit", "64", "--format", "json"], env)
        ids.append(json.loads(sub.stdout)["job_id"])
    import time

    deadline = time.monotonic() + 180
    while True:
        jobs = {j["id"]: j for j in json.loads(run_farm(["status", "--format", "json"], env).stdout)["jobs"]}
        if all(jobs[i]["state"] in ("done", "failed") for i in ids):
            break
        assert time.monotonic() < deadline
        time.sleep(0.5)
    assert {jobs[i]["worker"] for i in ids} == {"one@test-host", "two@test-host"}  # both took a job
    spans = []
    for job_id in ids:
        assert jobs[job_id]["state"] == "done"
        rows = json.loads(run_farm(["results", "--format", "json", "--job", job_id], env).stdout)
        start = datetime.fromisoformat(rows[0]["started_at"]) - timedelta(seconds=1.5)  # idle baseline first
        end = datetime.fromisoformat(rows[-1]["started_at"]) + timedelta(
            seconds=rows[-1]["time_per_sample_s"] * rows[-1]["samples"])
        spans.append((start, end))
    (s1, e1), (s2, e2) = sorted(spans)
    assert e1 <= s2, f"measurements overlapped: {spans}"
