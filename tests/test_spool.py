"""Outcomes kept on local disk while the store is away: durable, readable back exactly, and written once."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlmodel import Session

from shared.db import queries, writes
from shared.db.engine import make_engine, upgrade_schema
from shared.outcome import Outcome
from tests.test_store import _row
from worker.delivery.spool import Spool


def _outcome(job_id: str, token: str) -> Outcome:
    t = datetime(2026, 11, 25, 9, 30, tzinfo=UTC)
    epoch = {"artifact_key": "k", "kind": "distilled", "epoch": 0, "train_loss": 0.5, "val_top1": 0.9,
             "duration_s": 1.0, "recorded_at": t}
    return Outcome(job_id, "done", token, rows=[_row("h", t, 9), _row("h", t, 9, repeat_index=1)], epochs=[epoch],
                   lease_value=f"{token} w@h 1")


def test_outcome_round_trips_through_json_with_aware_datetimes() -> None:
    out = _outcome("00000000-0000-4000-8000-000000000001", "t")
    back = Outcome.from_json(out.to_json())
    assert back == out
    assert back.rows[0]["started_at"].tzinfo is not None
    assert back.epochs[0]["recorded_at"] == out.epochs[0]["recorded_at"]


def test_spool_writes_atomically_and_sets_unreadable_files_aside(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    assert spool.pending() == [] and spool.count() == 0
    path = spool.put(_outcome("00000000-0000-4000-8000-000000000002", "t"))
    assert not list((tmp_path / "spool").glob("*.partial"))
    (tmp_path / "spool" / "broken.json").write_text("{not json")
    pending = spool.pending()
    assert [p for p, _ in pending] == [path]
    assert (tmp_path / "spool" / "broken.bad").exists() and spool.count() == 1


def test_a_full_disk_leaves_no_half_written_outcome(tmp_path: Path) -> None:
    """/dev/full answers every write with ENOSPC, as a full disk does: put raises, and no .partial is left behind
    (the flush and `farm status` would otherwise trip over it for ever)."""
    job = "00000000-0000-4000-8000-000000000003"
    folder = tmp_path / "spool"
    folder.mkdir()
    (folder / f"{job}.partial").symlink_to("/dev/full")
    with pytest.raises(OSError):
        Spool(folder).put(_outcome(job, "t"))
    assert list(folder.iterdir()) == [] and Spool(folder).count() == 0


def test_a_spooled_outcome_is_written_once_even_if_flushed_twice(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 's.db'}")
    upgrade_schema(engine)
    with Session(engine) as s:
        job = writes.create_job(session=s, variant="baseline", spec={}, queue="cpu")
        writes.claim_job(session=s, job_id=job.id, token="t", worker="w@h", deliveries=1)
        out = Outcome.from_json(_outcome(str(job.id), "t").to_json())
        assert writes.apply_outcome(session=s, outcome=out) == "written"
        assert writes.apply_outcome(session=s, outcome=out) == "written"  # the first commit's reply was lost
        assert len(queries.query_results(session=s, filters=queries.ResultFilter(job_id=job.id))) == 2
        assert len(queries.list_epochs(session=s, job_id=job.id)) == 1
        assert queries.get_job(session=s, job_id=job.id).state == "done"
    engine.dispose()
