"""`farm report`: the seed's per-variant table against the baseline, by-hour drift, and the plot."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlmodel import Session

from shared.db import writes
from shared.db.engine import make_engine, upgrade_schema
from shared.outcome import Outcome
from tests.conftest import run_farm
from tests.test_store import _row


def _env_with_stored_rows(db: Path, rows: list[dict[str, object]]) -> dict[str, str]:
    """A SQLite store at `db` holding `rows` as one done job, and a `farm` environment that reads it."""
    import os

    url = f"sqlite:///{db}"
    engine = make_engine(url)
    upgrade_schema(engine)
    with Session(engine) as s:
        job = writes.create_job(session=s, variant="baseline", spec={}, queue="cpu")
        writes.apply_outcome(session=s, outcome=Outcome(str(job.id), "done", rows=rows))
    engine.dispose()
    env = {k: v for k, v in os.environ.items() if not k.startswith("FARM_")}
    env["FARM_DATABASE_URL"] = url
    return env


@pytest.fixture()
def env_with_rows(tmp_path: Path) -> dict[str, str]:
    t0 = datetime(2026, 11, 2, 9, tzinfo=UTC)
    rows = []
    for i, (variant, energy, top1) in enumerate([("baseline", 1.0, 0.90), ("baseline", 1.2, 0.90),
                                                  ("pruned-distilled-uint8", 0.7, 0.87),
                                                  ("pruned-distilled-uint8", 0.74, 0.87)]):
        rows.append(_row("lab-1", t0 + timedelta(hours=i), 9 + i, variant=variant, repeat_index=i % 2,
                         total_energy_per_sample_j=energy, top1=top1))
    rows.append(_row("lab-2", t0, 9, variant="pruned-distilled-uint8", total_energy_per_sample_j=0.5,
                     hardware_id="bbbbbbbbbbbb", hardware_label="AMD EPYC · avx2 · 2 CPUs"))
    return _env_with_stored_rows(tmp_path / "r.db", rows)


def test_report_compares_each_variant_with_its_own_hardwares_baseline(env_with_rows: dict[str, str]) -> None:
    proc = run_farm(["report", "--format", "json"], env_with_rows)
    assert proc.returncode == 0, proc.stderr
    table = {(t["variant"], t["hardware_id"]): t for t in json.loads(proc.stdout)}
    compressed = table[("pruned-distilled-uint8", "aaaaaaaaaaaa")]
    assert compressed["total_energy_per_sample_j"] == pytest.approx(0.72)
    assert compressed["energy_change_fraction"] == pytest.approx(0.72 / 1.1 - 1)  # -34.5 %
    assert compressed["top1_change_fraction"] == pytest.approx(-0.03)
    assert table[("baseline", "aaaaaaaaaaaa")]["repeats"] == 2
    assert table[("pruned-distilled-uint8", "bbbbbbbbbbbb")]["energy_change_fraction"] is None  # no baseline there


def test_a_variant_filter_keeps_the_baseline_and_names_a_missing_one(env_with_rows: dict[str, str]) -> None:
    """Before: --variant X filtered the baseline out, so the change column was always "-", with no word why."""
    out = run_farm(["report", "--variant", "pruned-distilled-uint8"], env_with_rows)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    header = lines[0]
    assert "top-1 %" in header and "ms/sample" in header and "mJ/sample" in header and "Δ energy" in header
    compressed = next(line for line in lines if line.startswith("pruned-distilled-uint8") and "aaaaaa" in line)
    assert "−35 %" in compressed and "−3.0 pts" in compressed  # signed, in the units a person reads
    assert any(line.startswith("baseline (ref)") for line in lines)
    assert any(line.startswith("no baseline for") and "bbbbbbbbbbbb" in line for line in lines)


def test_report_by_hour_and_figures(env_with_rows: dict[str, str], tmp_path: Path) -> None:
    folder = tmp_path / "figs"
    proc = run_farm(["report", "--by", "hour", "--format", "json", "--host", "lab-1", "--plot", str(folder)],
                    env_with_rows)
    assert proc.returncode == 0, proc.stderr
    hours = [(h["variant"], h["local_hour"]) for h in json.loads(proc.stdout)]
    assert hours == [("baseline", 9), ("baseline", 10), ("pruned-distilled-uint8", 11), ("pruned-distilled-uint8", 12)]
    for name in ("pruning_ratio.png", "pareto.png", "energy_by_hour.png"):
        assert (folder / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name


def test_report_with_nothing_to_show_is_a_clear_error(env_with_rows: dict[str, str]) -> None:
    proc = run_farm(["report", "--variant", "nope"], env_with_rows)
    assert proc.returncode == 2 and "no results match" in proc.stderr


@pytest.fixture()
def env_two_models(tmp_path: Path) -> dict[str, str]:
    """One host, one variant, two models on two datasets: a summary must not average them together."""
    t0 = datetime(2026, 11, 2, 9, tzinfo=UTC)
    rows = [_row("lab-1", t0, 9, model_id="small", dataset_id="digits", total_energy_per_sample_j=1.0, params=10,
                 energy_warnings=["window short"]),
            _row("lab-1", t0, 9, model_id="big", dataset_id="cifar100:/d/c.tar.gz", repeat_index=1,
                 total_energy_per_sample_j=3.0, params=1000)]
    return _env_with_stored_rows(tmp_path / "m.db", rows)


def test_summary_keeps_models_and_datasets_apart(env_two_models: dict[str, str]) -> None:
    """Before: --summary grouped by (variant, host, device), averaging 1 J and 3 J, with the first row's params."""
    summary = {s["model_id"]: s for s in json.loads(run_farm(["results", "--summary", "--format", "json"],
                                                              env_two_models).stdout)}
    assert set(summary) == {"small", "big"}
    assert summary["small"]["total_energy_per_sample_j_mean"] == pytest.approx(1.0)
    assert summary["big"]["params_max"] == 1000
    table = run_farm(["results", "--summary"], env_two_models).stdout
    assert "small" in table and "cifar100:/d/c.tar.gz" in table and "1000.000" in table  # mJ


def test_results_and_report_filter_by_model_and_dataset(env_two_models: dict[str, str]) -> None:
    by_model = json.loads(run_farm(["results", "--format", "json", "--model", "big"], env_two_models).stdout)
    assert [r["model_id"] for r in by_model] == ["big"]
    by_data = json.loads(run_farm(["report", "--format", "json", "--dataset", "digits"], env_two_models).stdout)
    assert [(t["model_id"], t["dataset_id"]) for t in by_data] == [("small", "digits")]
    shown = run_farm(["report"], env_two_models).stdout
    assert shown.splitlines()[0].split()[:4] == ["variant", "runtime", "model", "dataset"]


def test_csv_writes_lists_as_json_not_python_reprs(env_two_models: dict[str, str]) -> None:
    import csv
    import io

    out = run_farm(["results", "--format", "csv", "--model", "small"], env_two_models).stdout
    (row,) = list(csv.DictReader(io.StringIO(out)))
    assert json.loads(row["energy_warnings"]) == ["window short"]  # before: "['window short']"
    assert json.loads(row["software"]) == {"torch": "x"}


def test_one_variant_has_one_colour_in_every_figure(env_with_rows: dict[str, str]) -> None:
    """Before: matplotlib's colour cycle gave a variant one colour per panel, by drawing order."""
    from matplotlib.colors import to_hex

    from controller import figures
    from controller.report import hourly_table, variant_table
    from tests.test_stats import groups_of

    rows = json.loads(run_farm(["results", "--format", "json"], env_with_rows).stdout)
    table, _ = variant_table(groups_of(rows, ("model_id", "dataset_id", "hardware_id", "device", "runtime",
                                              "variant")))
    hourly = hourly_table(groups_of(rows, ("host", "device", "hardware_id", "variant", "local_hour")))
    colours: dict[str, set[str]] = {}
    for fig in figures.draw_all(table, hourly).values():
        for ax in fig.axes:
            for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
                name = label.split()[0]
                line = handle[0] if isinstance(handle, tuple) or hasattr(handle, "lines") else handle
                if name in ("baseline", "pruned-distilled-uint8"):
                    colours.setdefault(name, set()).add(to_hex(line.get_color()))
    assert set(colours) == {"baseline", "pruned-distilled-uint8"}
    assert all(len(c) == 1 for c in colours.values()), colours
    assert colours["baseline"] != colours["pruned-distilled-uint8"]


def test_report_by_hour_has_readable_headers(env_with_rows: dict[str, str]) -> None:
    header = run_farm(["report", "--by", "hour"], env_with_rows).stdout.splitlines()[0]
    assert "local hour" in header and "mJ/sample" in header and "total_energy_per_sample_j" not in header
