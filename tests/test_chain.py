"""The pipeline as a chain across two workers posing as two hosts, on real Redis, Postgres and Celery."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

from sqlmodel import Session

from shared.db import queries, writes
from shared.db.engine import make_engine
from tests.conftest import run_farm


def _wait_done(env: dict[str, str], job_ids: set[str], timeout_s: float = 300) -> list[dict]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        jobs = json.loads(run_farm(["status", "--format", "json", "--limit", "50"], env).stdout)["jobs"]
        mine = [j for j in jobs if j["id"] in job_ids]
        if len(mine) == len(job_ids) and all(j["state"] in ("done", "failed") for j in mine):
            return jobs
        time.sleep(1)
    raise TimeoutError(f"jobs not finished: {mine}")


def test_chain_trains_once_and_benchmarks_on_two_hosts(
    farm_env: dict[str, str], fresh_pg_url: str, redis_url: str, artifacts_dir: Path, tmp_path: Path,
    start_worker,  # noqa: ANN001
) -> None:
    shared_artifacts = tmp_path / "shared-artifacts"
    shutil.copytree(artifacts_dir / "base", shared_artifacts / "base")  # the teacher, trained once per session
    common = {**farm_env, "FARM_DATABASE_URL": fresh_pg_url, "FARM_BROKER_URL": redis_url,
              "FARM_ARTIFACTS": str(shared_artifacts)}
    env_a, env_b = {**common, "FARM_HOSTNAME": "host-a"}, {**common, "FARM_HOSTNAME": "host-b"}
    worker_a, worker_b = start_worker(env_a), start_worker(env_b)
    assert worker_a.wait_ready() == "farm-cpu@host-a"
    assert worker_b.wait_ready() == "farm-cpu@host-b"

    submitted = []
    for host in ("host-a", "host-b"):
        proc = run_farm(["submit", "--variant", "pruned-distilled", "--on", f"host:{host}", "--train-on", "cpu",
                         "--epochs", "2", "--repeats", "1", "--limit", "32", "--format", "json"], env_a)
        assert proc.returncode == 0, proc.stderr
        submitted.append(json.loads(proc.stdout))
    assert all(s["train_queue"] == "cpu" and s["queue"].startswith("host.") for s in submitted)
    ids = {s["job_id"] for s in submitted} | {s["compress_job_id"] for s in submitted}
    jobs = {j["id"]: j for j in _wait_done(env_a, ids)}

    compress = [jobs[s["compress_job_id"]] for s in submitted]
    bench = [jobs[s["job_id"]] for s in submitted]
    assert all(j["state"] == "done" and j["stage"] == "compress" for j in compress), compress
    assert all(j["state"] == "done" and j["stage"] == "benchmark" for j in bench), bench
    assert sorted(j["trained"] for j in compress) == [False, True]  # trained once, found once
    assert compress[0]["artifact_key"] == compress[1]["artifact_key"]
    assert {j["worker"] for j in bench} == {"farm-cpu@host-a", "farm-cpu@host-b"}

    engine = make_engine(fresh_pg_url)
    with Session(engine) as session:
        epochs = queries.list_epochs(session=session, artifact_key=compress[0]["artifact_key"])
    engine.dispose()
    assert [(e.kind, e.epoch) for e in epochs] == [("distilled", 0), ("distilled", 1)]

    rows = json.loads(run_farm(["results", "--format", "json", "--variant", "pruned-distilled"], env_a).stdout)
    assert sorted(r["host"] for r in rows) == ["host-a", "host-b"]
    assert len({r["params"] for r in rows}) == 1


def test_failed_compress_stage_fails_its_benchmark_stage(
    farm_env: dict[str, str], fresh_pg_url: str, redis_url: str, start_worker,  # noqa: ANN001
) -> None:
    env = {**farm_env, "FARM_DATABASE_URL": fresh_pg_url, "FARM_BROKER_URL": redis_url}
    start_worker(env).wait_ready()
    junk = Path(env["FARM_DATA_ROOTS"]) / "cifar-100-python.tar.gz"
    junk.write_bytes(b"\x1f\x8b" + b"not really gzip" * 10)  # exists, so submit takes it; the worker cannot read it
    proc = run_farm(["submit", "--variant", "pruned-retrained", "--dataset", f"cifar100:{junk}",
                     "--train-on", "cpu", "--wait", "--timeout", "120"], env)
    assert proc.returncode == 1, proc.stderr
    assert "cannot read CIFAR-100 archive" in proc.stderr or "neither a folder nor a tar" in proc.stderr
    jobs = json.loads(run_farm(["status", "--format", "json"], env).stdout)["jobs"]
    assert {(j["stage"], j["state"]) for j in jobs} == {("compress", "failed"), ("benchmark", "failed")}
    assert all(str(junk) in j["error"] for j in jobs)


def test_one_compress_job_per_recipe_is_planned_for_every_host() -> None:
    from controller.enqueue import chain_per_recipe
    from shared.specs import JobSpec, parse_variant

    pruned, base = JobSpec(variant=parse_variant("pruned")), JobSpec(variant=parse_variant("baseline"))
    plan = [(base, "host.a"), (pruned, "host.a"), (base, "host.b"), (pruned, "host.b")]
    assert chain_per_recipe(plan) == [(base, ["host.a"]), (pruned, ["host.a", "host.b"]), (base, ["host.b"])]


def test_on_all_builds_once_and_benchmarks_on_each_host(
    farm_env: dict[str, str], fresh_pg_url: str, redis_url: str, artifacts_dir: Path, tmp_path: Path,
    start_worker,  # noqa: ANN001
) -> None:
    shared_artifacts = tmp_path / "shared-artifacts"
    shutil.copytree(artifacts_dir / "base", shared_artifacts / "base")
    common = {**farm_env, "FARM_DATABASE_URL": fresh_pg_url, "FARM_BROKER_URL": redis_url,
              "FARM_ARTIFACTS": str(shared_artifacts)}
    env_a, env_b = {**common, "FARM_HOSTNAME": "host-a"}, {**common, "FARM_HOSTNAME": "host-b"}
    worker_a, worker_b = start_worker(env_a), start_worker(env_b)
    assert worker_a.wait_ready() == "farm-cpu@host-a"
    assert worker_b.wait_ready() == "farm-cpu@host-b"
    proc = run_farm(["submit", "--variant", "pruned", "--on", "all", "--train-on", "cpu", "--repeats", "1",
                     "--limit", "16", "--format", "json"], env_a)
    assert proc.returncode == 0, proc.stderr
    pruned = [j for j in json.loads(proc.stdout)["jobs"] if j["variant"] == "pruned"]
    assert sorted(j["queue"] for j in pruned) == ["host.host-a", "host.host-b"]
    assert len({j["compress_job_id"] for j in pruned}) == 1 and len({j["chain_id"] for j in pruned}) == 1
    ids = {j["job_id"] for j in pruned} | {pruned[0]["compress_job_id"]}
    jobs = {j["id"]: j for j in _wait_done(env_a, ids)}
    assert all(jobs[i]["state"] == "done" for i in ids), [jobs[i] for i in ids]
    assert {jobs[j["job_id"]]["worker"] for j in pruned} == {"farm-cpu@host-a", "farm-cpu@host-b"}
    assert jobs[pruned[0]["compress_job_id"]]["trained"] is True


def test_cancelling_one_hosts_benchmark_stage_leaves_the_other_hosts(tmp_path: Path) -> None:
    import uuid

    from shared.db.engine import get_engine

    engine = get_engine(f"sqlite:///{tmp_path / 'farm.db'}")
    chain = uuid.uuid4()
    with Session(engine) as session:
        compress = writes.create_job(session=session, variant="pruned", spec={}, queue="cpu", stage="compress",
                                   chain_id=chain)
        a, b = (writes.create_job(session=session, variant="pruned", spec={}, queue=q, chain_id=chain)
                for q in ("host.a", "host.b"))
        assert [j.id for j, _ in writes.cancel_job(session=session, job=a)] == [a.id]
        assert {queries.get_job(session=session, job_id=i).state for i in (compress.id, b.id)} == {"queued"}
        assert {j.id for j, _ in writes.cancel_job(session=session, job=b)} == {compress.id, b.id}


def test_every_benchmark_stage_of_an_on_all_chain_waits_for_its_compress_stage(tmp_path: Path) -> None:
    import uuid

    from shared.db.engine import get_engine

    engine = get_engine(f"sqlite:///{tmp_path / 'farm.db'}")
    chain = uuid.uuid4()
    with Session(engine) as session:
        writes.create_job(session=session, variant="pruned", spec={}, queue="cpu", stage="compress", chain_id=chain)
        bench = [writes.create_job(session=session, variant="pruned", spec={}, queue=q, chain_id=chain)
                 for q in ("host.a", "host.b", "host.c")]
        assert queries.chains_waiting(session=session, jobs=bench) == {j.id for j in bench}  # none sent early
