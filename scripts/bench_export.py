"""How fast `farm results --format csv` answers over a large store (issue 21: a 1,000,000-row store answers a
filtered export in at most 1 s; it streams): seed N rows into a fresh Postgres database (scripts/bench_reports.py's
seed: 10 variants, 20 hosts, 8 machines), then time cold `farm` processes as a user waits for them:

- a filtered CSV export (one variant on one host), and the same filter as JSON (which still builds every row);
- one variant on every host as CSV;
- the first line of an unfiltered CSV export (time to first byte: the stream starts before the query finishes
  being read), and with --full the whole unfiltered export.

    python scripts/bench_export.py [--rows 1000000] [--runs 3] [--full]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from scripts.bench_farm import FARM, timed  # noqa: E402
from scripts.bench_reports import isa, seed  # noqa: E402


def first_line_s(args: list[str], env: dict[str, str]) -> float:
    """Seconds until a cold `farm` process prints its first two lines (the header and a row)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen([FARM, *args], env=env, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    proc.stdout.readline()
    proc.stdout.readline()
    elapsed = time.perf_counter() - t0
    proc.kill()
    proc.wait()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--full", action="store_true", help="also time the whole unfiltered export")
    parser.add_argument("--url", default=None,
                        help="time against this already seeded store instead (no seeding, nothing dropped)")
    parser.add_argument("--pg", default=os.environ.get("FARM_TEST_PG_BASE",
                                                       "postgresql+psycopg://postgres@127.0.0.1:5432"))
    args = parser.parse_args()
    if args.url:
        measure(args, args.url)
        return
    name = f"farm_bench_{uuid.uuid4().hex[:8]}"
    admin = args.pg.replace("+psycopg", "") + "/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = f"{args.pg}/{name}"
    try:
        t0 = time.perf_counter()
        seed(url, args.rows)
        print(f"seeded {args.rows} rows in {time.perf_counter() - t0:.1f} s")
        measure(args, url)
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def measure(args: argparse.Namespace, url: str) -> None:
    """The timings of the module's docstring against the store at `url`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FARM_")}
    env["FARM_DATABASE_URL"] = url
    print(f"ISA: {isa()} | cores: {os.cpu_count()} | Python {platform.python_version()} | load average "
          f"{os.getloadavg()[0]:.1f} (measured while other work ran unless that is near 0)")
    print(f"{'command':68s} {'median s':>9s} {'min s':>7s}  (cold process, {args.runs} runs)")
    one = ["--variant", "pruned-distilled-uint8"]
    cases = [["results", "--format", "csv", *one, "--host", "host-3"],
             ["results", "--format", "json", *one, "--host", "host-3"],
             ["results", "--format", "csv", *one]]
    if args.full:
        cases.append(["results", "--format", "csv"])
    for cmd in cases:
        times = [timed(cmd, env) for _ in range(args.runs)]
        print(f"{'farm ' + ' '.join(cmd):68s} {statistics.median(times):9.2f} {min(times):7.2f}")
    first = [first_line_s(["results", "--format", "csv"], env) for _ in range(args.runs)]
    print(f"{'farm results --format csv: first row (time to first byte)':68s} {statistics.median(first):9.2f} "
          f"{min(first):7.2f}")
    print(f"{'farm --version (start-up, no store)':68s} {timed(['--version'], env):9.2f}")


if __name__ == "__main__":
    main()
