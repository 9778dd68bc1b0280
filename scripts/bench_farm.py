"""How fast the farm answers and drains: CLI wall time, jobs per minute, and submit-to-start latency.

Everything runs for real on loopback, measured side by side in one run on this machine:
- `farm submit` and `farm status` wall time as cold processes (median of --runs);
- with 1 and then 2 workers (two hosts, so they do not share a host lock), a burst of --burst cheap built-in
  jobs queued at once (in-process, so the CLI's start-up is not what is measured): jobs per minute from first
  submit to last finish, and submit-to-start latency p50/p95 from farm's own timestamps (job.submitted_at,
  job.started_at), which in a burst is mostly time spent waiting in the queue;
- submit-to-start latency for jobs sent one at a time to an idle worker.

Each part gets its own redis-server and Postgres database (harness/faultkit.py). The built-in model is trained
once into --artifacts. Usage:

    python scripts/bench_farm.py [--runs 5] [--burst 30] [--artifacts DIR] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness.faultkit import FARM, Lab  # noqa: E402

CHEAP = ("--variant", "baseline", "--repeats", "1", "--limit", "8")


def cpu_line() -> str:
    from worker.hardware import cpu_model

    flags = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                have = set(line.split(":", 1)[1].split())
                flags = " ".join(f for f in ("avx2", "avx512f", "avx512_vnni", "amx_tile") if f in have)
                break
    except OSError:
        pass
    import os

    return f"{cpu_model()}, {os.cpu_count()} CPUs, ISA: {flags or 'unknown'}"


def timed(args: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run([FARM, *args], env=env, capture_output=True, text=True, timeout=120)
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"farm {' '.join(args)} failed: {proc.stderr}")
    return elapsed


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def latencies(lab: Lab, ids: list[str]) -> tuple[list[float], float, float]:
    """(submit-to-start seconds per job, first submit, last finish) from the store's timestamps."""
    rows = lab._query("SELECT extract(epoch FROM submitted_at), extract(epoch FROM started_at), "
                      "extract(epoch FROM finished_at), state FROM job WHERE id::text = ANY(%s)", ids)
    bad = [r for r in rows if r[3] != "done"]
    if bad:
        raise RuntimeError(f"{len(bad)} jobs did not finish: {bad[:3]}")
    return [float(r[1]) - float(r[0]) for r in rows], min(float(r[0]) for r in rows), max(float(r[2]) for r in rows)


def pickup_gaps(lab: Lab, ids: list[str]) -> list[float]:
    """Seconds from a worker's finishing one job to its starting the next: the farm's own overhead per job while a
    burst drains (submit-to-start is mostly queue wait then)."""
    rows = lab._query("SELECT worker, extract(epoch FROM started_at), extract(epoch FROM finished_at) FROM job "
                      "WHERE id::text = ANY(%s) ORDER BY worker, started_at", ids)
    gaps = []
    for (w1, _, end), (w2, start, _) in zip(rows, rows[1:], strict=False):
        if w1 == w2:
            gaps.append(float(start) - float(end))
    return gaps


def wait_done(lab: Lab, ids: list[str], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        states = {r[0] for r in lab._query("SELECT state FROM job WHERE id::text = ANY(%s)", ids)}
        if states <= {"done", "failed"} and len(ids) > 0:
            return
        time.sleep(0.2)
    raise TimeoutError(f"jobs not done after {timeout_s:g} s")


def cli_times(lab: Lab, runs: int) -> dict[str, float]:
    env = lab.controller_env
    timed(["status"], env)  # migrates the new database once
    submit = [timed(["submit", *CHEAP, "--queue-anyway"], env) for _ in range(runs)]
    status = [timed(["status"], env) for _ in range(runs)]
    return {"submit_median_s": statistics.median(submit), "submit_min_s": min(submit),
            "status_median_s": statistics.median(status), "status_min_s": min(status)}


def enqueue_burst(lab: Lab, jobs: int) -> list[str]:
    """Queue `jobs` cheap jobs in this process, as fast as the store and broker take them (what `farm submit`
    does, minus starting a process per job), so the burst measures draining, not the CLI."""
    from controller.enqueue import Enqueuer
    from shared.celery_app import make_app
    from shared.dispatch import redis_client
    from shared.settings import Settings
    from shared.specs import BenchSpec, JobSpec, parse_variant

    settings = Settings(broker_url=lab.redis.url, database_url=lab.direct_db)
    enqueuer = Enqueuer(settings, redis_client(settings.broker_url), make_app(settings))
    spec = JobSpec(variant=parse_variant("baseline"), bench=BenchSpec(repeats=1, limit=8))
    return [enqueuer.enqueue(spec, ["cpu"])[0]["job_id"] for _ in range(jobs)]


def burst(lab: Lab, workers: int, jobs: int) -> dict[str, float]:
    for i in range(workers):
        lab.wait_worker(lab.start_worker(f"w{i}@bench", FARM_HOSTNAME=f"bench-host-{i}"))
    ids = enqueue_burst(lab, jobs)
    wait_done(lab, ids, timeout_s=60 * jobs)
    lat, first, last = latencies(lab, ids)
    gaps = pickup_gaps(lab, ids)
    return {"jobs": jobs, "workers": workers, "jobs_per_min": 60 * jobs / (last - first),
            "latency_p50_ms": 1e3 * percentile(lat, 0.5), "latency_p95_ms": 1e3 * percentile(lat, 0.95),
            "pickup_p50_ms": 1e3 * percentile(gaps, 0.5), "pickup_p95_ms": 1e3 * percentile(gaps, 0.95)}


def one_at_a_time(lab: Lab, jobs: int) -> dict[str, float]:
    lab.wait_worker(lab.start_worker("idle@bench", FARM_HOSTNAME="bench-idle"))
    ids = []
    for _ in range(jobs):
        ids.append(lab.submit(*CHEAP))
        wait_done(lab, ids[-1:], timeout_s=120)
        time.sleep(0.5)  # the worker is idle again, waiting on its queue
    lat, _, _ = latencies(lab, ids)
    return {"jobs": jobs, "latency_p50_ms": 1e3 * percentile(lat, 0.5), "latency_p95_ms": 1e3 * percentile(lat, 0.95)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="cold CLI runs per command")
    parser.add_argument("--burst", type=int, default=30, help="jobs in each burst")
    parser.add_argument("--artifacts", default=None, help="artifacts root holding (or to hold) the built-in model")
    parser.add_argument("--json", default=None)
    parser.add_argument("--only", default=None, help="comma-separated parts: cli, burst_1_worker, burst_2_workers, "
                        "idle_worker")
    args = parser.parse_args()

    from worker.artifacts import ArtifactStore
    from worker.workloads.models import load_builtin

    work = Path(tempfile.mkdtemp(prefix="farm-bench-"))
    artifacts = Path(args.artifacts) if args.artifacts else work / "artifacts"
    load_builtin(ArtifactStore(str(artifacts)))  # trained once, outside every timing
    out: dict[str, Any] = {"machine": cpu_line()}
    only = set(args.only.split(",")) if args.only else None
    parts = [("cli", lambda lab: cli_times(lab, args.runs)),
             ("burst_1_worker", lambda lab: burst(lab, 1, args.burst)),
             ("burst_2_workers", lambda lab: burst(lab, 2, args.burst)),
             ("idle_worker", lambda lab: one_at_a_time(lab, max(5, args.runs * 2)))]
    for name, part in parts:
        if only is not None and name not in only:
            continue
        lab = Lab(work / name, artifacts)
        try:
            out[name] = part(lab)
        finally:
            lab.close()
        print(f"{name}: {json.dumps(out[name])}", flush=True)
    print(f"\nmachine: {out['machine']}")
    if "cli" in out:
        cli = out["cli"]
        print(f"farm submit: {cli['submit_median_s']:.2f} s median (min {cli['submit_min_s']:.2f}); "
              f"farm status: {cli['status_median_s']:.2f} s median (min {cli['status_min_s']:.2f}); goal <= 0.5 s")
    for name in ("burst_1_worker", "burst_2_workers"):
        if name not in out:
            continue
        b = out[name]
        print(f"{b['workers']} worker(s), burst of {b['jobs']}: {b['jobs_per_min']:.1f} jobs/min, submit-to-start "
              f"p50 {b['latency_p50_ms']:.0f} ms, p95 {b['latency_p95_ms']:.0f} ms (queue wait); finish-to-next-start "
              f"p50 {b['pickup_p50_ms']:.0f} ms, p95 {b['pickup_p95_ms']:.0f} ms")
    idle = out.get("idle_worker")
    if idle:
        print(f"idle worker, one job at a time: submit-to-start p50 {idle['latency_p50_ms']:.0f} ms, "
              f"p95 {idle['latency_p95_ms']:.0f} ms (goal p50 <= 50 ms)")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
