"""Run every fault scenario against real Redis, Postgres and worker processes on loopback; print a table.

    python scripts/fault_inject.py [--lease-timeout 30] [--only NAME ...] [--format table|json]

Each scenario gets its own redis-server on a spare port, its own Postgres database behind a TCP proxy that it
takes down, and real `farm worker` subprocesses. Needs Postgres on 127.0.0.1:5432 (FARM_TEST_PG_ADMIN) and
trains the built-in model once into --artifacts. Not a test: it measures, and prints what it saw.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness.faultkit import SCENARIOS, Row, run_scenario  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lease-timeout", type=float, default=30.0, help="FARM_LEASE_TIMEOUT_S for the workers")
    parser.add_argument("--only", nargs="*", choices=sorted(SCENARIOS), help="run only these scenarios")
    parser.add_argument("--artifacts", default=str(Path(tempfile.gettempdir()) / "farm-fault-artifacts"))
    parser.add_argument("--format", choices=["table", "json"], default="table")
    args = parser.parse_args()

    from worker.artifacts import ArtifactStore
    from worker.workloads.models import load_builtin

    load_builtin(ArtifactStore(args.artifacts))  # trained once, then cached
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="farm-faults-") as tmp:
        for name in args.only or list(SCENARIOS):
            t0 = time.monotonic()
            row = run_scenario(name, Path(tmp), Path(args.artifacts), lease_timeout_s=args.lease_timeout)
            rows.append(row)
            print(f"{name}: done in {time.monotonic() - t0:.0f} s", file=sys.stderr, flush=True)
    if args.format == "json":
        print(json.dumps([{**asdict(r), "lost": r.lost} for r in rows], indent=2))
    else:
        print(f"machine: {platform.node()} ({platform.machine()}), lease timeout {args.lease_timeout:g} s\n")
        print("| scenario | jobs | rows expected | rows stored | lost | duplicates | done after (s) | note |")
        print("|---|---|---|---|---|---|---|---|")
        for r in rows:
            print(f"| {r.scenario} | {r.submitted} | {r.expected_rows} | {r.stored_rows} | {r.lost} | "
                  f"{r.duplicates} | {r.recover_s} | {r.note} |")
    return 0 if all(r.lost == 0 and r.duplicates == 0 for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
