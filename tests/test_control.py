"""Steering jobs on real processes: cancel (queued, running, a chain), wait, and refusing unserved targets."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import redis
from sqlalchemy import text
from sqlmodel import create_engine

from tests.conftest import run_farm


@pytest.fixture()
def pg_env(farm_env: dict[str, str], fresh_pg_url: str, redis_url: str) -> dict[str, str]:
    # A short lease: the running job's delivery sees a cancellation within one renewal (lease / 6 = 1 s).
    return {**farm_env, "FARM_DATABASE_URL": fresh_pg_url, "FARM_BROKER_URL": redis_url,
            "FARM_LEASE_TIMEOUT_S": "6"}


def _jobs(env: dict[str, str]) -> dict[str, dict[str, object]]:
    engine = create_engine(env["FARM_DATABASE_URL"].replace("postgresql://", "postgresql+psycopg://"))
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT j.id::text, j.state, j.stage, j.error, "
                                 "(SELECT count(*) FROM result r WHERE r.job_id = j.id) FROM job j")).all()
    engine.dispose()
    return {r[0]: {"state": r[1], "stage": r[2], "error": r[3], "rows": r[4]} for r in rows}


def _until(predicate, timeout_s: float, what: str) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what}")


def test_submit_refuses_a_target_no_live_worker_serves(pg_env: dict[str, str]) -> None:
    proc = run_farm(["submit", "--variant", "baseline", "--on", "host:host-c"], pg_env)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "no live worker serves --on host:host-c" in lines[0] and "--queue-anyway" in lines[0]
    assert _jobs(pg_env) == {}
    assert redis.Redis.from_url(pg_env["FARM_BROKER_URL"]).llen("host.host-c") == 0
    queued = run_farm(["submit", "--variant", "baseline", "--on", "host:host-c", "--queue-anyway"], pg_env)
    assert queued.returncode == 0, queued.stderr
    assert [j["state"] for j in _jobs(pg_env).values()] == ["queued"]


def test_a_cancelled_queued_job_and_chain_never_start(pg_env: dict[str, str], start_worker) -> None:  # noqa: ANN001
    single = json.loads(run_farm(["submit", "--variant", "baseline", "--queue-anyway", "--format", "json"],
                                 pg_env).stdout)["job_id"]
    chain = json.loads(run_farm(["submit", "--variant", "pruned-retrained", "--queue-anyway", "--train-on", "cpu",
                                 "--format", "json"], pg_env).stdout)
    out = run_farm(["cancel", single[:8], chain["job_id"][:10], "--format", "json"], pg_env)  # prefixes, as git
    assert out.returncode == 0, out.stderr
    cancelled = {c["job_id"]: c["was"] for c in json.loads(out.stdout)["cancelled"]}
    assert cancelled == {single: "queued", chain["job_id"]: "queued", chain["compress_job_id"]: "queued"}

    client = redis.Redis.from_url(pg_env["FARM_BROKER_URL"])
    assert client.llen("cpu") == 2  # the messages are still queued...
    start_worker(pg_env, "cpu").wait_ready()
    _until(lambda: client.llen("cpu") == 0, 60, "the worker to take both messages")
    time.sleep(2)
    jobs = _jobs(pg_env)
    assert {j["state"] for j in jobs.values()} == {"cancelled"}  # ...but nothing ran
    assert sum(j["rows"] for j in jobs.values()) == 0  # type: ignore[misc]
    wait = run_farm(["wait", single[:8]], pg_env)
    assert wait.returncode == 1 and "cancelled" in wait.stderr


def test_a_cancelled_running_job_stops_soon_and_stores_nothing(pg_env: dict[str, str],
                                                               start_worker) -> None:  # noqa: ANN001
    worker = start_worker(pg_env, "cpu")
    worker.wait_ready()
    long = json.loads(run_farm(["submit", "--variant", "baseline", "--dataset", "synthetic:4000", "--repeats", "200",
                                "--format", "json"], pg_env).stdout)["job_id"]
    _until(lambda: _jobs(pg_env)[long]["state"] == "running", 120, "the job to start")
    time.sleep(1.0)
    out = run_farm(["cancel", long], pg_env)
    assert out.returncode == 0 and "was running" in out.stdout, out.stdout + out.stderr
    t0 = time.monotonic()  # the cancel mark is set: from here the worker sees it at its next lease renewal (5 s)
    client = redis.Redis.from_url(pg_env["FARM_BROKER_URL"])

    def idle() -> bool:
        beat = client.get(f"farm:worker:{worker.name or 'farm-cpu@test-host'}")
        return beat is not None and json.loads(beat)["jobs"] == []

    _until(idle, 40, "the worker to drop the cancelled job")
    stopped_after = time.monotonic() - t0
    job = _jobs(pg_env)[long]
    assert job["state"] == "cancelled" and job["rows"] == 0, job
    # Sooner than a dead worker's job would be requeued (the 30 s lease timeout): one renewal period (5 s), the
    # current batch and a 2 s heartbeat when quiet; up to 3x that beside three other test processes on 2 cores.
    assert stopped_after < 30, stopped_after
    assert not client.exists(f"farm:lease:{long}", f"farm:cancel:{long}")  # it let go of the job's keys
    log = run_farm(["logs", long[:8]], pg_env)
    assert "claimed by farm-cpu@test-host" in log.stdout and "cancelled" in log.stdout, log.stdout + log.stderr
    # The worker is healthy: the next job runs to the end.
    nxt = run_farm(["submit", "--variant", "baseline", "--repeats", "1", "--limit", "16", "--wait",
                    "--timeout", "120"], pg_env)
    assert nxt.returncode == 0, nxt.stderr
    retried = run_farm(["retry", long[:8]], pg_env)
    assert retried.returncode == 0, retried.stderr
    assert _jobs(pg_env)[long]["state"] in ("queued", "running")
    assert run_farm(["cancel", long[:8]], pg_env).returncode == 0  # and stop it again, to free the worker


def test_default_threads_share_the_cpus_with_the_workers_on_this_machine() -> None:
    import socket

    from controller.commands.fleet import default_threads

    here = socket.gethostname()
    workers = [{"worker": "a@x", "machine": here}, {"worker": "b@y", "machine": "elsewhere"},
               {"worker": "me@x", "machine": here}]  # "me": this worker's own earlier heartbeat (a restart)
    assert default_threads(workers, "me@x", cpus=8) == 4
    assert default_threads([], "me@x", cpus=8) == 8
    assert default_threads(workers * 20, "me@x", cpus=2) == 1


def test_a_gpu_worker_takes_its_gpus_numa_node_cpus_FAKE_sysfs_and_nvml(tmp_path: Path) -> None:
    """A fake sysfs tree (two nodes) and a fake NVML: cuda:0 sits on node 1, so its worker's threads default to
    node 1's CPUs that this process may use; a CPU worker, or a GPU on no node (-1), takes every allowed CPU."""
    from harness.fakes import fake_pynvml
    from shared.devices import Device
    from worker.devices.numa import allowed_cpus, device_cpus, parse_cpulist

    assert parse_cpulist("0-3,8,10-11\n") == {0, 1, 2, 3, 8, 10, 11}
    allowed = allowed_cpus()
    mine = sorted(allowed)
    half = mine[len(mine) // 2:] or mine
    (tmp_path / "devices/system/node/node0").mkdir(parents=True)
    (tmp_path / "devices/system/node/node1").mkdir(parents=True)
    (tmp_path / "devices/system/node/node0/cpulist").write_text(",".join(map(str, sorted(allowed - set(half)))))
    (tmp_path / "devices/system/node/node1/cpulist").write_text(",".join(map(str, half)) + ",4096-4099")
    gpu = tmp_path / "bus/pci/devices/0000:3b:00.0"
    gpu.mkdir(parents=True)
    (gpu / "numa_node").write_text("1\n")
    nvml = fake_pynvml(has_counter=True, bus_ids=("00000000:3B:00.0",))
    assert device_cpus(Device.parse("cuda:0"), "nvidia", sysfs=tmp_path, nvml=nvml) == set(half)  # 4096+ are not ours
    assert device_cpus(Device.parse("cpu"), "cpu", sysfs=tmp_path, nvml=nvml) == allowed
    (gpu / "numa_node").write_text("-1\n")
    assert device_cpus(Device.parse("cuda:0"), "nvidia", sysfs=tmp_path, nvml=nvml) == allowed
    assert device_cpus(Device.parse("cuda:0"), "nvidia", sysfs=tmp_path / "absent", nvml=nvml) == allowed


def test_sigterm_finishes_the_job_and_a_second_one_requeues_it(pg_env: dict[str, str],
                                                               start_worker) -> None:  # noqa: ANN001
    """A busy worker told to stop: the first SIGTERM keeps the job running (it says so in its log), the second
    stops it at the next batch and puts it back; another worker then finishes it: 0 rows lost, 0 duplicated."""
    import signal

    first = start_worker(pg_env, "cpu", name="first@test-host")
    first.wait_ready()
    job = json.loads(run_farm(["submit", "--variant", "baseline", "--dataset", "synthetic:4000", "--repeats", "10",
                               "--format", "json"], pg_env).stdout)["job_id"]
    _until(lambda: _jobs(pg_env)[job]["state"] == "running", 120, "the job to start")
    first.proc.send_signal(signal.SIGTERM)
    time.sleep(3)
    assert _jobs(pg_env)[job]["state"] == "running"  # the first SIGTERM lets it finish
    assert "finishing" in first.log_path.read_text()
    first.proc.send_signal(signal.SIGTERM)
    _until(lambda: first.proc.poll() is not None, 60, "the worker to stop")
    assert _jobs(pg_env)[job]["state"] == "queued" and _jobs(pg_env)[job]["rows"] == 0
    assert "requeue" in first.log_path.read_text()
    second = start_worker(pg_env, "cpu", name="second@test-host")
    second.wait_ready()
    _until(lambda: _jobs(pg_env)[job]["state"] == "done", 180, "the requeued job to finish elsewhere")
    assert _jobs(pg_env)[job]["rows"] == 10  # every repeat once


def test_a_fan_out_sweep_adds_baselines_where_missing_and_filters_by_sweep(pg_env: dict[str, str],
                                                                          start_worker) -> None:  # noqa: ANN001
    a = start_worker({**pg_env, "FARM_HOSTNAME": "host-a"}, "cpu", name="w@host-a")
    b = start_worker({**pg_env, "FARM_HOSTNAME": "host-b"}, "cpu", name="w@host-b")
    a.wait_ready()
    b.wait_ready()
    cheap = ["--repeats", "1", "--limit", "16", "--format", "json"]
    first = json.loads(run_farm(["submit", "--variant", "quant-int8dyn", "--on", "all", *cheap], pg_env).stdout)
    assert sorted((j["variant"], j["queue"]) for j in first["jobs"]) == [
        ("baseline", "host.host-a"), ("baseline", "host.host-b"),
        ("quant-int8dyn", "host.host-a"), ("quant-int8dyn", "host.host-b")]
    ids = [j["job_id"] for j in first["jobs"]]
    _until(lambda: all(_jobs(pg_env)[i]["state"] == "done" for i in ids), 240, "the sweep to finish")
    rows = json.loads(run_farm(["results", "--sweep", first["sweep_id"][:8], "--format", "json"], pg_env).stdout)
    assert sorted((r["host"], r["variant"]) for r in rows) == [
        ("host-a", "baseline"), ("host-a", "quant-int8dyn"), ("host-b", "baseline"), ("host-b", "quant-int8dyn")]
    status = json.loads(run_farm(["status", "--sweep", first["sweep_id"], "--format", "json"], pg_env).stdout)
    assert sorted(j["id"] for j in status["jobs"]) == sorted(ids)
    second = json.loads(run_farm(["submit", "--variants", "quant-uint8", "--on", "all:cpu", *cheap],
                                 pg_env).stdout)
    assert sorted(j["variant"] for j in second["jobs"]) == ["quant-uint8", "quant-uint8"]  # baselines exist now
    assert second["sweep_id"] != first["sweep_id"]
