"""Faults on real processes: a private redis-server that is killed and restarted, a TCP proxy in front of
Postgres that goes down, workers SIGKILLed as a whole, poison on the queue. Each counts rows: 0 lost, 0 duplicated.

The scenarios live in harness/faultkit.py, which `scripts/fault_inject.py` runs for docs/reliability.md's table.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from harness.faultkit import SCENARIOS, run_scenario

# Seconds after which a scenario's recovery is too slow even on a loaded 2-core CI machine. A recovery that waits on a
# long timeout (Redis's 12 h visibility, a reaper that never re-sends) never finishes, and fails wait_state first; the
# bounds only catch a slow path. One job's three stages take 20-30 s quiet and 96 s once in CI beside three other test
# processes (redelivered-past-max, whose "recovery" is the whole job), hence 120 s. The two "3 jobs queued" scenarios
# count a worker's start (torch import) and three jobs run one after another: 23-25 s quiet, 148 s once in CI, so
# their bound is wider; a job never re-sent still fails wait_state at 180 s.
RECOVERY_LIMIT_S = {"redis-lost-queued": 240.0, "skewed-clock": 240.0}
DEFAULT_RECOVERY_LIMIT_S = 120.0


@pytest.mark.slow
@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_fault_scenario_loses_nothing_and_duplicates_nothing(scenario: str, tmp_path: Path, artifacts_dir: Path,
                                                             builtin_model: object) -> None:
    row = run_scenario(scenario, tmp_path, artifacts_dir, lease_timeout_s=6.0)
    assert row.lost == 0, row
    assert row.duplicates == 0, row
    assert row.stored_rows == row.expected_rows, row
    assert row.recover_s is not None and row.recover_s < RECOVERY_LIMIT_S.get(scenario, DEFAULT_RECOVERY_LIMIT_S), row
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
    if scenario == "worker-stalls":
        assert row.note == "finished on w2@fault-host; the frozen one stopped without writing", row
    if scenario == "redis-frozen":
        assert row.note == "deliveries 1, reruns 0", row
    if scenario == "postgres-down-during-job":
        assert row.note == "1 outcome spooled, status showed 1", row
    if scenario == "redis-blip-at-pickup":
        assert row.note.startswith("deliveries "), row  # a redelivery after the freeze finds the lease held
    if scenario == "backlog-worker-dies":
        assert row.note == "finished on w2@fault-host", row
    if scenario == "skewed-clock":
        assert "[-3600" in row.note and ", 0 started before submitted" in row.note, row
        shown = [float(x) for x in re.findall(r"-?\d+\.?\d*", row.note.split("status showed [", 1)[1].split("]")[0])]
        assert shown and all(abs(s + 3600) < 5 for s in shown), row  # -3599.997 is an hour behind too
    if scenario == "refused-outcome-in-spool":
        assert row.note == "refused one failed, 1 dead letter, 1 kept aside", row
    if scenario == "same-name-workers":
        assert row.note == "second refused, 0 listed right after the clean stop", row
    if scenario == "worker-dies-at-pickup":
        assert row.note == "finished on w2@fault-host", row
    if scenario == "redelivered-past-max":
        assert row.note.startswith("job done,"), row


@pytest.mark.slow
def test_a_dead_lettered_job_is_retried_by_its_id_prefix(tmp_path: Path, artifacts_dir: Path,
                                                         builtin_model: object) -> None:
    from harness.faultkit import Lab, pool_dies_every_delivery

    lab = Lab(tmp_path / "lab", artifacts_dir)
    try:
        row = pool_dies_every_delivery(lab)
        assert "job failed, 1 dead letter" in row.note, row
        (dead,) = lab.dead_letters()
        listed = lab.farm("dead", "--format", "json")
        assert listed.returncode == 0 and dead["job_id"] in listed.stdout
        for w in lab.workers:
            w.stop()
        lab.start_worker("calm@fault-host")
        retried = lab.farm("retry", dead["job_id"][:8])
        assert retried.returncode == 0, retried.stderr
        assert retried.stdout.strip() == dead["job_id"]
        job = lab.wait_state([dead["job_id"]], ("done",), 120)[dead["job_id"]]
        assert job["deliveries"] == 1  # the count started again
        assert lab.result_counts([dead["job_id"]])[:2] == (3, 0)
        assert lab.dead_letters() == []
        again = lab.farm("retry", dead["job_id"][:8])
        assert again.returncode == 2 and "only a failed or cancelled job can be retried" in again.stderr
    finally:
        lab.close()


@pytest.mark.slow
def test_farm_run_beside_a_live_worker_keeps_its_results(tmp_path: Path, artifacts_dir: Path,
                                                         builtin_model: object) -> None:
    """Found by review (issue 18): `farm run` (and `compare --here`) runs its job in its own process, with no broker
    and so no lease, in the farm's store. A live worker's reaper took it for a job whose worker had died: it
    requeued it to queue `local`, which no worker reads, so the run's rows were fenced out ("taken over by another
    delivery"; `farm run` printed none and exited 0) and the job stayed queued for ever."""
    import json
    import subprocess

    import redis

    from harness.faultkit import FARM, Lab

    lab = Lab(tmp_path / "lab", artifacts_dir)
    try:
        w = lab.start_worker("w1@fault-host")
        lab.wait_worker(w)
        env = {**lab.controller_env, "FARM_IDLE_S": "12"}  # the run outlasts the reaper's grace (6 s lease: 2 s)
        run = subprocess.run([FARM, "run", "--variant", "baseline", "--only", "--repeats", "3", "--limit", "64",
                              "--format", "json"], env=env, capture_output=True, text=True, timeout=300)
        assert run.returncode == 0, run.stderr
        printed = json.loads(run.stdout)
        assert len(printed) == 3, run.stderr[-2000:]
        ((job_id, state, queue),) = lab._query("SELECT id::text, state, queue FROM job")
        assert (state, queue) == ("done", "local")
        assert lab.result_counts([job_id])[:2] == (3, 0)
        assert redis.Redis.from_url(lab.redis.url).llen("local") == 0
        assert "requeued" not in w.log_path.read_text()
    finally:
        lab.close()
