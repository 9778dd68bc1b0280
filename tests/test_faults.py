"""Faults on real processes: a private redis-server that is killed and restarted, a TCP proxy in front of
Postgres that goes down, workers SIGKILLed as a whole, poison on the queue. Each counts rows: 0 lost, 0 duplicated.

The scenarios live in scripts/faultkit.py, which `scripts/fault_inject.py` runs to print the README's table.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from scripts.faultkit import SCENARIOS, run_scenario

# Seconds after which a scenario's recovery is too slow even on a loaded 2-core CI machine.
RECOVERY_LIMIT_S = {"worker-dies": 120.0, "redis-lost-queued": 120.0}


@pytest.mark.slow
@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_fault_scenario_loses_nothing_and_duplicates_nothing(scenario: str, tmp_path: Path, artifacts_dir: Path,
                                                             builtin_model: object) -> None:
    row = run_scenario(scenario, tmp_path, artifacts_dir, lease_timeout_s=6.0)
    assert row.lost == 0, row
    assert row.duplicates == 0, row
    assert row.stored_rows == row.expected_rows, row
    assert row.recover_s is not None and row.recover_s < RECOVERY_LIMIT_S.get(scenario, 90.0), row
    if scenario == "poison":
        assert row.note == "2 dead-lettered, worker alive", row
    if scenario == "pool-dies-every-time":
        assert "job failed, 1 dead letter" in row.note, row
    if scenario == "payload-disagrees":
        assert row.note.startswith("2/2 refused"), row
    if scenario == "short-visibility":
        assert "rows unchanged after done" in row.note, row
    if scenario == "worker-dies":
        assert row.note == "finished on w2@fault-host", row
    if scenario == "postgres-down-during-job":
        assert row.note == "1 outcome spooled", row
