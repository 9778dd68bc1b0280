"""How fast the answers come with many rows: seed N result rows into a fresh Postgres database, then time
`farm results --summary`, `farm report` and `farm recommend` as a user waits for them (cold processes).

Goal (issue "Answers, not rows"): each at most 1 s wall with 100,000 rows. The database aggregates (GROUP BY);
Python sees only the groups. Usage:

    python scripts/bench_reports.py [--rows 100000] [--runs 3] [--pg postgresql+psycopg://postgres@127.0.0.1:5432]
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from scripts.bench_farm import timed  # noqa: E402  (a cold `farm` process, timed)

VARIANTS = ("baseline", "quant-uint8", "quant-float8", "quant-int8dyn", "prune-all-r0.10", "prune-all-r0.20",
            "pruned", "pruned-distilled", "pruned-distilled-uint8", "pruned-distilled-int8dyn")


def isa() -> str:
    from worker.hardware import cpu_facts

    return ",".join(cpu_facts()["isa"]) or "none of avx2/avx512"


def seed(url: str, n_rows: int) -> None:
    """`n_rows` rows over 10 variants, 8 machines (hardware ids), 2 models, 20 hosts and every hour."""
    from sqlalchemy import insert
    from sqlmodel import Session

    from shared.db.engine import make_engine, upgrade_schema
    from shared.db.models import Job, Result

    engine = make_engine(url)
    upgrade_schema(engine)
    rng = random.Random(0)
    t0 = datetime(2026, 11, 1, tzinfo=UTC)
    machines = [(f"{i:012x}", f"AMD EPYC · {'avx512_vnni' if i % 2 else 'avx2'} · {2 ** (i % 4 + 1)} CPUs")
                for i in range(1, 9)]
    with Session(engine) as session:
        jobs = [Job(variant=v, spec={}, queue="cpu", state="done") for v in VARIANTS for _ in range(10)]
        session.add_all(jobs)
        session.commit()
        job_ids = [(j.id, j.variant) for j in jobs]
        batch: list[dict[str, object]] = []
        for i in range(n_rows):
            job_id, variant = job_ids[i % len(job_ids)]
            hw, label = machines[(i // len(job_ids)) % len(machines)]
            factor = 1.0 - 0.05 * VARIANTS.index(variant)
            started = t0 + timedelta(seconds=37 * i)
            batch.append({
                "job_id": job_id, "repeat_index": i % 5, "variant": variant, "model_id": f"model-{i % 2}",
                "dataset_id": "digits", "host": f"host-{i % 20}", "cpu_model": "AMD EPYC", "gpu_name": None,
                "device": "cpu", "started_at": started, "local_hour": started.hour, "timezone": "UTC",
                "samples": 360, "top1": 0.95 - 0.002 * VARIANTS.index(variant), "top5": 1.0,
                "time_per_sample_s": 1e-3 * factor * rng.uniform(0.95, 1.05),
                "total_energy_per_sample_j": 1e-2 * factor * rng.uniform(0.95, 1.05),
                "cpu_energy_per_sample_j": 1e-2 * factor, "energy_source": "measured:rapl",
                "energy_per_device_j": {"package-0": 1e-2 * factor}, "energy_warnings": [],
                "params": 136_000, "macs": 2_255_000, "software": {"torch": "2.13.0"}, "threads": 2,
                "hardware_id": hw, "hardware_label": label, "hardware": {"cpu_model": "AMD EPYC"}, "runtime": "torch",
                "noise": None,
            })
            if len(batch) == 5000:
                session.execute(insert(Result), batch)
                batch.clear()
        if batch:
            session.execute(insert(Result), batch)
        session.commit()
    engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--pg", default=os.environ.get("FARM_TEST_PG_BASE",
                                                       "postgresql+psycopg://postgres@127.0.0.1:5432"))
    args = parser.parse_args()
    name = f"farm_bench_{uuid.uuid4().hex[:8]}"
    admin = args.pg.replace("+psycopg", "") + "/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = f"{args.pg}/{name}"
    try:
        t0 = time.perf_counter()
        seed(url, args.rows)
        print(f"seeded {args.rows} rows in {time.perf_counter() - t0:.1f} s")
        env = {k: v for k, v in os.environ.items() if not k.startswith("FARM_")}
        env["FARM_DATABASE_URL"] = url
        from worker.hardware import cpu_model

        print(f"CPU: {cpu_model()} | ISA: {isa()} | cores: {os.cpu_count()} | Python {platform.python_version()}")
        print(f"{'command':40s} {'median s':>9s} {'min s':>7s}  (cold process, {args.runs} runs)")
        for cmd in (["results", "--summary"], ["report"], ["report", "--variant", "pruned-distilled-uint8"],
                    ["recommend"], ["report", "--by", "hour", "--host", "host-3"]):
            times = [timed(cmd, env) for _ in range(args.runs)]
            print(f"{'farm ' + ' '.join(cmd):40s} {statistics.median(times):9.2f} {min(times):7.2f}")
        start_up = timed(["--version"], env)
        print(f"{'farm --version (start-up, no store)':40s} {start_up:9.2f}")
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
