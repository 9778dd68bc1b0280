"""`farm results --format csv` on its two roads (controller/export.py): the database driver alone and the ORM give
the same bytes for the same store and filters, on SQLite and Postgres; and the driver road imports no SQLAlchemy."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlmodel import Session

from shared.db import writes
from shared.db.engine import get_engine, make_engine, upgrade_schema
from shared.db.filters import ResultFilter
from shared.outcome import Outcome
from tests.test_store import _row

T0 = datetime(2026, 11, 1, 12, tzinfo=UTC)
JOB_A, JOB_B, JOB_C = (uuid.UUID(f"{c * 8}-0000-4000-8000-000000000000") for c in "abc")
SWEEP = uuid.UUID("5eeb0000-0000-4000-8000-000000000000")

# One row per line (its repeat_index is its number), every filter dimension varied; started_at is unique, so the
# order (started_at, repeat_index) is one order.
# job, variant, model, dataset, host, cpu_model, gpu_name, device, label, hardware_id, hardware, runtime, hours after
# T0, local hour, contended, pair_index
ROWS: list[tuple[Any, ...]] = [
    (JOB_A, "baseline", "m", "digits", "alpha", "Intel Xeon 100% turbo_x", None, "cpu", "lab_a", "aaaaaaaaaaaa",
     {"isa": ["avx2"]}, "torch", 0, 9, False, None),
    (JOB_A, "pruned", "m", "digits", "alpha", "Intel Xeon", None, "cpu", "labxa", "aaaaaaaaaaaa",
     {"isa": ["avx2"], "threads": 8}, "torch", 1.5, 16, False, None),
    (JOB_A, "pruned-int8", "m", "digits", "beta", "AMD EPYC 7763", None, "cpu", "EPYC", "bbbbbbbbbbbb",
     {"isa": ["avx512_vnni"], "note": "naïve ünïcode"}, "onnx", 24, 23, True, None),
    (JOB_B, "baseline", "m2", "digits", "beta", "AMD EPYC", "NVIDIA H100", "cuda:0", "H100 box", "cccccccccccc",
     {"gpu": "H100"}, "torch", 25, 2, False, 0),
    (JOB_B, "pruned", "m2", "cifar", "gamma", "ARM Neoverse", None, "cpu", "back\\slash", "dddddddddddd", {},
     "onnx", 48.000001, 0, False, 0),
    (JOB_C, "baseline", "m", "cifar", "gamma", "ARM Neoverse", None, "cpu", "arm", "dddddddddddd", {"isa": []},
     "torch", 72, 22, True, 1),
    (JOB_C, "pruned", "m", "digits", "alpha", "Intel Xeon", None, "cpu", "lab_a", "aaaaaaaaaaaa", {"isa": ["avx2"]},
     "torch", 73, 5, False, None),
    (JOB_C, "pruned-int8", "m", "digits", "delta", "Intel Xeon", None, "cpu", None, None, None, "torch", 96, 23,
     False, None),
]

# A filter and the rows (by number) it keeps: an oracle beside the comparison, so a filter that both roads ignored
# alike still fails.
FILTERS: list[tuple[dict[str, Any], set[int]]] = [
    ({}, set(range(9))),
    ({"variant": "pruned"}, {1, 4, 6}),
    ({"variant": "pruned, pruned-int8"}, {1, 2, 4, 6, 7}),
    ({"variant": " , "}, set()),  # names none
    ({"model_id": "m2"}, {3, 4}),
    ({"dataset_id": "cifar"}, {4, 5}),
    ({"host": "beta"}, {2, 3}),
    ({"runtime": "onnx"}, {2, 4}),
    ({"hardware": "epyc"}, {2, 3}),  # case-insensitive, CPU model and label
    ({"hardware": "100%"}, {0}),  # % is text, not a pattern
    ({"hardware": "%"}, {0}),
    ({"hardware": "_"}, {0, 2, 6}),  # _ too: "turbo_x", "lab_a", "avx512_vnni" in row 2's fingerprint
    ({"hardware": "lab_a"}, {0, 6}),  # not "labxa"
    ({"hardware": "h100"}, {3}),  # GPU name
    ({"hardware": "CUDA"}, {3}),  # device
    ({"hardware": "bbbb"}, {2}),  # a hardware_id prefix
    ({"hardware": "bbbbbbbbbbbbX"}, set()),
    ({"hardware": "avx512_vnni"}, {2}),  # any part of the fingerprint (JSON)
    ({"hardware": "\\"}, {2, 4}),  # a backslash is text too: "back\slash", and JSON's "\u00ef" in row 2
    ({"since": T0 + timedelta(hours=24)}, {2, 3, 4, 5, 6, 7, 8}),
    ({"until": T0 + timedelta(hours=24)}, {0, 1}),
    ({"since": T0 + timedelta(hours=1.5), "until": T0 + timedelta(hours=48)}, {1, 2, 3}),
    ({"since": T0 + timedelta(hours=48, microseconds=3600)}, {4, 5, 6, 7, 8}),  # microseconds count
    ({"since": T0 + timedelta(hours=48, microseconds=3601)}, {5, 6, 7, 8}),
    ({"since": datetime(2026, 11, 3, 13, tzinfo=timezone(timedelta(hours=1)))}, {4, 5, 6, 7, 8}),  # any zone
    ({"hours": (9, 17)}, {0, 1, 8}),
    ({"hours": (22, 6)}, {2, 3, 4, 5, 6, 7}),  # wraps at 24
    ({"hours": (23, 24)}, {2, 7}),
    ({"hours": (23, 1)}, {2, 4, 7}),
    ({"hours": (0, 1)}, {4}),
    ({"job_id": JOB_B}, {3, 4}),
    ({"job_id": uuid.UUID(int=1)}, set()),
    ({"job_ids": (JOB_A, JOB_C)}, {0, 1, 2, 5, 6, 7, 8}),
    ({"sweep_id": SWEEP}, {0, 1, 2, 3, 4}),
    ({"exclude_contended": True}, {0, 1, 3, 4, 6, 7, 8}),
    ({"exclude_pairs": True}, {0, 1, 2, 6, 7, 8}),
    ({"exclude_contended": True, "exclude_pairs": True}, {0, 1, 6, 7, 8}),
    ({"variant": "pruned,pruned-int8", "hours": (22, 6), "hardware": "xeon", "exclude_pairs": True}, {6, 7}),
    ({"variant": "baseline", "host": "alpha", "model_id": "m", "dataset_id": "digits", "runtime": "torch",
      "sweep_id": SWEEP, "job_id": JOB_A, "since": T0, "until": T0 + timedelta(hours=1)}, {0}),
]


def _seed(url: str) -> None:
    """ROWS in a store at `url`: jobs A and B in one sweep, C alone; and one row written by hand (JSON with its own
    spacing, a time without microseconds), as another tool might."""
    from shared.db.models import Job

    engine = make_engine(url)
    upgrade_schema(engine)
    with Session(engine) as s:
        for job, sweep in ((JOB_A, SWEEP), (JOB_B, SWEEP), (JOB_C, None)):
            s.add(Job(id=job, variant="baseline", spec={}, queue="cpu", sweep_id=sweep))
        s.commit()
        for job in (JOB_A, JOB_B, JOB_C):
            rows = [_row(host, T0 + timedelta(hours=after), hour, repeat_index=i, variant=variant, model_id=model,
                         dataset_id=dataset, cpu_model=cpu, gpu_name=gpu, device=device, hardware_label=label,
                         hardware_id=hw_id, hardware=hardware, runtime=runtime, contended=contended,
                         pair_index=pair, energy_per_device_j={"package-0": 0.1 * i, "dram-0": 1e-9},
                         energy_warnings=["a \"quoted\", warning"] if i % 2 else [],
                         weight_bytes_by_dtype={"float32": 1000 + i} if i % 3 else None,
                         foreign_gpu={"procs": i} if i == 3 else None, latency_p99_s=0.001 * i or None,
                         batch_size=8, top1=1 / 3)
                    for i, (j, variant, model, dataset, host, cpu, gpu, device, label, hw_id, hardware, runtime,
                            after, hour, contended, pair) in enumerate(ROWS) if j == job]
            writes.apply_outcome(session=s, outcome=Outcome(str(job), "done", rows=rows))
    sqlite = url.startswith("sqlite")
    with engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO result (job_id, repeat_index, variant, model_id, dataset_id, host, cpu_model, device, "
            "started_at, local_hour, timezone, samples, time_per_sample_s, total_energy_per_sample_j, energy_source, "
            "params, macs, software, runtime, hardware, contended) VALUES (:job, 8, 'hand', 'm', 'digits', 'omega', "
            "'Intel Xeon', 'cpu', :t, 12, 'UTC', 1, 0.5, 1.0, 'measured:rapl', 1, 1, :sw, 'torch', :hw, :c)"),
            {"job": JOB_C.hex if sqlite else JOB_C,
             "t": "2026-11-09 08:00:00" if sqlite else datetime(2026, 11, 9, 8, tzinfo=UTC),
             "sw": '{"torch":  "2.5",\n "x": [1,2]}', "hw": "null", "c": False})
    engine.dispose()


def _csv(fn: Any, *args: Any) -> tuple[int, bytes]:
    """What `fn(*args, out)` writes to a stdout-like text stream over bytes, and the rows it says it wrote."""
    raw = io.BytesIO()
    out = io.TextIOWrapper(raw, encoding="utf-8", newline="", write_through=True)
    n = fn(*args, out)
    out.flush()
    return n, raw.getvalue()


@pytest.mark.parametrize("store", ["sqlite", "postgres"])
def test_both_roads_export_the_same_bytes_for_every_filter(store: str, tmp_path: Path, fresh_pg_url: str,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from controller.export import orm_csv, quick_csv
    from shared.db.columns import RESULT_COLUMNS

    url = f"sqlite:///{tmp_path / 'x.db'}" if store == "sqlite" else fresh_pg_url
    _seed(url)
    monkeypatch.setenv("FARM_DATABASE_URL", url)
    for kw, keep in FILTERS:
        f = ResultFilter(**kw)
        n_quick, quick = _csv(quick_csv, url, f)
        n_orm, orm = _csv(orm_csv, f)
        assert quick == orm, kw
        header, *rows = csv.reader(io.StringIO(quick.decode()))
        assert tuple(header) == RESULT_COLUMNS
        kept = [int(row[2]) for row in rows]  # repeat_index: the row's number (8: the one written by hand)
        assert kept == sorted(keep) and n_quick == n_orm == len(keep), kw  # oldest first
    get_engine.cache_clear()
    # what the cells hold, once: JSON as JSON (a hand-written row's spacing kept only where COPY writes it), times
    rows = list(csv.DictReader(io.StringIO(_csv(quick_csv, url, ResultFilter())[1].decode())))
    assert json.loads(rows[2]["hardware"]) == {"isa": ["avx512_vnni"], "note": "naïve ünïcode"}
    assert json.loads(rows[1]["energy_warnings"]) == ['a "quoted", warning'] and rows[0]["energy_warnings"] == "[]"
    assert rows[0]["weight_bytes_by_dtype"] in ("", "null")  # JSON null: "" through Python, as stored by COPY
    assert rows[0]["latency_p99_s"] == "" and rows[0]["gpu_name"] == ""
    assert rows[0]["job_id"] == str(JOB_A) and rows[0]["contended"] in ("False", "f")
    assert rows[4]["started_at"] in ("2026-11-03T12:00:00.003600+00:00", "2026-11-03 12:00:00.0036+00")
    hand = rows[8]
    assert json.loads(hand["software"]) == {"torch": "2.5", "x": [1, 2]} and hand["hardware"] in ("", "null")
    assert hand["started_at"] in ("2026-11-09T08:00:00+00:00", "2026-11-09 08:00:00+00")


def test_the_driver_road_steps_aside_before_writing_when_the_store_needs_the_orm(tmp_path: Path,
                                                                                  monkeypatch: pytest.MonkeyPatch
                                                                                  ) -> None:
    from controller.export import quick_csv, stream_csv
    from shared.db.quick import NotQuick
    from shared.db.revision import head_revision

    old = f"sqlite:///{tmp_path / 'old.db'}"
    engine = make_engine(old)
    upgrade_schema(engine)
    with engine.begin() as conn:
        conn.exec_driver_sql("UPDATE alembic_version SET version_num = '0006'")
    engine.dispose()
    out = io.StringIO()
    with pytest.raises(NotQuick):
        quick_csv(old, ResultFilter(), out)
    assert out.getvalue() == ""  # nothing written: the ORM road writes the whole export
    absent = tmp_path / "new.db"
    monkeypatch.setenv("FARM_DATABASE_URL", f"sqlite:///{absent}")
    with pytest.raises(NotQuick):
        quick_csv(f"sqlite:///{absent}", ResultFilter(), out)
    assert stream_csv(ResultFilter(variant="x"), out) == 0  # the ORM road creates and migrates the store
    assert out.getvalue().startswith("id,job_id,") and out.getvalue().count("\n") == 1
    from shared.db.quick import check

    check(f"sqlite:///{absent}", head_revision())  # now at the newest migration: the next export is quick
    get_engine.cache_clear()


def test_a_cold_filtered_export_imports_no_sqlalchemy(tmp_path: Path) -> None:
    """The whole `results --format csv` command, --job and --sweep prefixes included, on the driver alone."""
    url = f"sqlite:///{tmp_path / 'c.db'}"
    _seed(url)
    code = ("import sys\n"
            "from controller.cli import main\n"
            "sys.argv = ['farm', 'results', '--format', 'csv', '--variant', 'pruned,baseline', '--hours', '22-6',\n"
            "            '--sweep', '5eeb', '--job', 'bbbbbbbb-00', '--hardware', 'h100', '--since', '2026-11-01']\n"
            "try:\n"
            "    main()\n"
            "except SystemExit:\n"
            "    pass\n"
            "print(sorted(m for m in ('sqlalchemy', 'sqlmodel', 'pydantic', 'alembic') if m in sys.modules),\n"
            "      file=sys.stderr)\n")
    env = {"FARM_DATABASE_URL": url, "PATH": "/usr/bin:/bin", "HOME": str(tmp_path),
           "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert done.stderr.strip().splitlines()[-1] == "[]", done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 2 and lines[1].split(",")[2] == "3", done.stdout  # row 3: job B, sweep, 2 h, H100


def test_the_light_columns_are_the_models() -> None:
    from sqlalchemy import JSON, Boolean, Uuid

    from shared.db import columns
    from shared.db.models import RESULT_COLUMNS, Result, ResultFields
    from shared.db.types import UTCDateTime

    assert columns.RESULT_COLUMNS == ("id", "job_id", *ResultFields.model_fields) == RESULT_COLUMNS
    table = {c.name: c.type for c in Result.__table__.columns}  # type: ignore[attr-defined]
    assert set(columns.RESULT_COLUMNS) == set(table)
    for kind, names in ((JSON, columns.RESULT_JSON), (Uuid, columns.RESULT_UUIDS),
                        (UTCDateTime, columns.RESULT_TIMES), (Boolean, columns.RESULT_BOOLS)):
        assert set(names) == {n for n, t in table.items() if isinstance(t, kind)}, kind
    assert set(columns.RESULT_ORDER) <= set(table)
