"""What a deployer measures (issue 21): batch sizes, latency percentiles, memory and size, load cost, scenarios.

The fast tests run the built-in architecture (untrained: latency and memory do not depend on the weights' values)
on one torch thread, so that a machine shared with other work still answers in seconds."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
import torch
from sqlalchemy import text
from sqlmodel import Session

from shared.db import queries
from shared.db.engine import make_engine, upgrade_schema
from shared.specs import BenchSpec, QuantSpec
from tests.conftest import run_farm
from worker.devices import open_device
from worker.latency import LatencyRecorder, percentile
from worker.memory import weight_bytes
from worker.meters.estimate import CpuTimeEstimate
from worker.runtimes import get_runtime
from worker.runtimes.base import loaded_weights
from worker.scenarios import poisson_arrivals, run_scenario
from worker.workloads.digits import load_digits_split
from worker.workloads.models import build_builtin_untrained

CPU = open_device("cpu")


@pytest.fixture()
def one_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _runner(quant: str | None = None, runtime: str = "torch"):  # noqa: ANN202
    return get_runtime(runtime).load(build_builtin_untrained().eval(), QuantSpec(quant) if quant else None, CPU,
                                     torch.randn(1, 1, 8, 8))


def test_the_recorder_keeps_a_bounded_sample_an_exact_max_and_ordered_percentiles() -> None:
    rec = LatencyRecorder(cap=100)
    for i in range(10_000):
        rec.add(i / 1000)
    s = rec.summary()
    assert s is not None and s.count == 10_000 and len(rec.sample) == 100 and not s.exact
    assert s.max_s == pytest.approx(9.999) and s.mean_s == pytest.approx(4.9995)
    assert s.p50_s <= s.p90_s <= s.p99_s <= s.max_s
    assert 3.5 < s.p50_s < 6.5  # a uniform sample of 0..10 s
    assert percentile([1.0, 2.0, 3.0, 4.0], 0.5) == 2.5 and LatencyRecorder().summary() is None


@pytest.mark.usefixtures("one_thread")
def test_batches_of_1_and_32_give_ordered_percentiles_memory_and_a_cold_first_batch() -> None:
    runner, data = _runner(), load_digits_split("test")
    weights = sum(weight_bytes(loaded_weights(runner)).values())
    for bs in (1, 32):
        spec = BenchSpec(batch_size=bs, repeats=2, limit=64, warmup_batches=3, max_warmup_s=2.0, min_window_s=0.2)
        reps = run_scenario(runner, data, spec, CPU, CpuTimeEstimate(10.0))
        assert len(reps) == 2
        for r in reps:
            lat, mem = r.latency, r.memory
            assert lat is not None and lat.count == r.passes * -(-64 // bs)  # every batch of the window
            assert 0 < lat.p50_s <= lat.p90_s <= lat.p99_s <= lat.max_s
            assert mem is not None and mem.peak_rss_bytes > 0 and mem.rss_rise_bytes >= 0
            assert mem.peak_rss_bytes >= weights  # the model lives in the process whose peak this is
            assert r.cold_latency_s is not None and r.cold_latency_s > 0


def test_int8_weights_weigh_about_a_quarter_of_fp32() -> None:
    fp32 = weight_bytes(loaded_weights(_runner()))
    assert set(fp32) == {"float32"}
    for quant, runtime in (("int8dyn", "torch"), ("ort-int8dyn", "onnxruntime")):
        int8 = weight_bytes(loaded_weights(_runner(quant, runtime)))
        assert sum(int8.values()) <= 0.35 * sum(fp32.values()), (quant, int8)
        assert int8.get("qint8", 0) + int8.get("int8", 0) > int8.get("float32", 0)  # biases, norms stay fp32


def test_poisson_arrivals_are_seeded_sorted_and_at_the_rate() -> None:
    a = poisson_arrivals(200, 2.0, seed=3)
    assert a == poisson_arrivals(200, 2.0, seed=3) != poisson_arrivals(200, 2.0, seed=4)
    assert len(a) == 400 and a == sorted(a) and 0 <= a[0] and a[-1] <= 2.0


@pytest.mark.usefixtures("one_thread")
def test_a_server_below_capacity_meets_its_qps_within_5_percent() -> None:
    runner, data = _runner(), load_digits_split("test")
    times = []
    for _ in range(20):
        t0 = time.perf_counter()
        runner(data.images[:1])
        times.append(time.perf_counter() - t0)
    # below capacity even on a busy machine: at most 30 % of what one query's median time allows
    qps = min(25.0, 0.3 / sorted(times)[10])
    # 4 s of arrivals: the last answer's latency stays well inside 5 % of the window
    spec = BenchSpec(scenario="server", qps=qps, server_s=4.0, repeats=1, warmup_batches=3, max_warmup_s=2.0)
    (rep,) = run_scenario(runner, data, spec, CPU, CpuTimeEstimate(10.0))
    s = rep.server
    n = round(qps * 4.0)
    assert s is not None and s.issued == n and s.dropped == 0, s
    assert s.achieved_qps == pytest.approx(qps, rel=0.05), s
    assert rep.latency is not None and rep.latency.count == n and rep.latency.p99_s <= rep.latency.max_s
    assert rep.energy.total_energy_j > 0 and rep.samples == n


@pytest.mark.usefixtures("one_thread")
def test_a_server_far_above_capacity_reports_late_and_dropped_queries_instead_of_hanging() -> None:
    spec = BenchSpec(scenario="server", qps=20_000, server_s=1.0, repeats=1, warmup_batches=3, max_warmup_s=2.0,
                     p99_ms=5)
    t0 = time.perf_counter()
    (rep,) = run_scenario(_runner(), load_digits_split("test"), spec, CPU, CpuTimeEstimate(10.0))
    # arrivals for 1 s, then at most 1 s to drain; warm-up and loading on top
    assert time.perf_counter() - t0 < 30
    s = rep.server
    assert s is not None and s.issued == 20_000 and s.answered + s.dropped == 20_000
    assert s.dropped > 0 and s.late > 0 and s.achieved_qps < 20_000 / 2


@pytest.mark.usefixtures("one_thread")
def test_a_dynamic_batcher_answers_several_queries_per_call() -> None:
    spec = BenchSpec(scenario="server", qps=400, server_s=1.0, repeats=1, warmup_batches=3, max_batch=8,
                     max_wait_ms=20, max_warmup_s=2.0)
    (rep,) = run_scenario(_runner(), load_digits_split("test"), spec, CPU, CpuTimeEstimate(10.0))
    assert rep.server is not None and rep.server.answered > 0 and rep.latency is not None
    assert rep.latency.count == rep.server.answered


@pytest.mark.parametrize("args, needle", [
    (["--scenario", "server"], "--qps"),
    (["--qps", "5"], "applies only to --scenario server"),
    (["--batch-sizes", "1,x"], "--batch-sizes"),
    (["--batch-size", "0"], "batch size must be at least 1"),
    (["--scenario", "single-stream", "--batch-size", "4"], "single-stream runs at batch 1"),
    (["--scenario", "server", "--qps-sweep"], "--p99-ms"),
])
def test_bad_deployer_options_are_one_line_errors(args: list[str], needle: str, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from controller.cli import main

    env = {"FARM_DATABASE_URL": f"sqlite:///{tmp_path / 'f.db'}", "FARM_ARTIFACTS": str(tmp_path / "a")}
    result = CliRunner().invoke(main, ["run", "-v", "baseline", *args], env=env)
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0] and "Traceback" not in result.output
    assert not (tmp_path / "f.db").exists()  # refused before the store was opened: nothing written


@pytest.mark.parametrize("store", ["sqlite", "postgres"])
def test_rows_stored_before_migration_0011_read_as_batch_8_offline_with_nothing_else_measured(
        store: str, tmp_path: Path, fresh_pg_url: str) -> None:
    from alembic import command
    from alembic.config import Config

    from shared.db.revision import MIGRATIONS

    url = f"sqlite:///{tmp_path / 'old.db'}" if store == "sqlite" else fresh_pg_url
    engine = make_engine(url)
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0007")
    job = uuid.uuid4()
    jid = job if store == "postgres" else job.hex
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO job (id, variant, spec, queue, state, submitted_at, stage, deliveries) "
                          "VALUES (:id, 'baseline', '{}', 'cpu', 'done', :t, 'benchmark', 1)"),
                     {"id": jid, "t": datetime(2026, 11, 2, 9, 30)})
        conn.execute(text(
            "INSERT INTO result (job_id, repeat_index, variant, model_id, dataset_id, host, cpu_model, device, "
            "started_at, local_hour, timezone, samples, top1, time_per_sample_s, total_energy_per_sample_j, "
            "energy_source, params, macs, software, runtime, hardware_id) VALUES (:job, 0, 'baseline', 'm', "
            "'digits', 'h', 'cpu', 'cpu', :t, 9, 'UTC', 10, 0.9, 0.001, 0.01, 'measured:rapl', 1, 1, '{}', "
            "'torch', 'abc')"), {"job": jid, "t": datetime(2026, 11, 2, 9, 30)})
    upgrade_schema(engine)
    with Session(engine) as s:
        (row,) = queries.query_results(session=s, filters=queries.ResultFilter(job_id=job))
        assert queries.has_baseline(session=s, host="h", model_id="m", dataset_id="digits", batch_size=8)
        assert not queries.has_baseline(session=s, host="h", model_id="m", dataset_id="digits", batch_size=1)
        with s.connection() as conn:  # the view shows the new columns too
            assert conn.execute(text("SELECT batch_size, latency_p99_s FROM result_view")).one() == (8, None)
    engine.dispose()
    assert row.batch_size == 8 and row.scenario == "offline" and row.total_energy_per_sample_j == 0.01
    assert row.latency_p50_s is None and row.peak_rss_bytes is None and row.weight_bytes is None
    assert row.load_s is None and row.target_qps is None


@pytest.mark.slow
def test_farm_run_fans_out_batch_sizes_into_rows_reports_and_exports(farm_env: dict[str, str]) -> None:
    """`farm run --batch-sizes 1,32` through the store: rows per batch size with ordered percentiles, memory at
    least the weights, the int8 variant's weights at most 0.35 of fp32's, the report grouped by batch size, and
    `report --load` and the streamed CSV carrying the new columns."""
    proc = run_farm(["run", "-v", "quant-int8dyn", "--batch-sizes", "1,32", "--limit", "64", "--repeats", "2",
                     "--threads", "1", "--format", "json"], farm_env, timeout=600)
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    assert {(r["variant"], r["batch_size"]) for r in rows} == {(v, b) for v in ("baseline", "quant-int8dyn")
                                                              for b in (1, 32)}
    for r in rows:
        assert 0 < r["latency_p50_s"] <= r["latency_p90_s"] <= r["latency_p99_s"] <= r["latency_max_s"]
        assert r["throughput_sps"] > 0 and r["scenario"] == "offline" and r["load_s"] > 0
        assert r["peak_rss_bytes"] >= r["weight_bytes"] > 0 and r["artifact_bytes"] > 0
        assert r["cold_latency_s"] > 0
    w = {r["variant"]: r["weight_bytes"] for r in rows}
    assert w["quant-int8dyn"] <= 0.35 * w["baseline"]
    report = run_farm(["report", "--format", "json"], farm_env)
    table = json.loads(report.stdout)
    assert {(t["variant"], t["batch_size"]) for t in table} == {(r["variant"], r["batch_size"]) for r in rows}
    assert all(t["energy_change_fraction"] is not None for t in table)  # each matched its batch size's baseline
    load = run_farm(["report", "--load"], farm_env)
    assert load.returncode == 0 and "cold ms" in load.stdout and "load s" in load.stdout
    csv_out = run_farm(["results", "--format", "csv"], farm_env)
    header = csv_out.stdout.splitlines()[0].split(",")
    assert "latency_p99_s" in header and len(csv_out.stdout.splitlines()) == len(rows) + 1
    empty = run_farm(["results", "--variant", "prune-r0.50"], farm_env)
    assert empty.returncode == 0 and empty.stdout.strip() == "no results match"


def _table_row(variant: str, hw: str = "abc", **extra: object) -> dict[str, object]:
    return {"variant": variant, "runtime": "torch", "hardware_id": hw, "device": "cpu", "top1": 0.9, "repeats": 3,
            "total_energy_per_sample_j": 0.001, "total_energy_per_sample_std_j": 0.0001, "energy_source": "x",
            "batch_size": 8, "scenario": "offline", **extra}


def test_figures_keep_pruning_methods_apart_dodge_points_and_give_each_host_its_own_look() -> None:
    from controller import figures

    table = [_table_row(v) for v in ("baseline", "prune-r0.10", "prune-r0.10-uint8", "prune-all-r0.10",
                                     "prune-all-r0.10-uint8", "prune-all-r0.20")]
    fig = figures.pruning_figure(table, figures.variant_colours([t["variant"] for t in table]))
    titles = [ax.get_title() for ax in fig.axes]
    assert any("MLP-only" in t for t in titles) and any("all-layer" in t for t in titles)
    for ax in fig.axes:  # two families at ratio 0.10 in one panel: their points do not sit on one x
        xs = {round(float(line.get_xdata()[0]), 6) for line in ax.lines if len(line.get_xdata()) == 1}
        assert len([x for x in xs if 0.05 < x < 0.15]) >= 2, xs
    hosts = [f"host{i}" for i in range(22)]
    hourly = [{"host": h, "device": "cpu", "variant": "baseline", "local_hour": hour, "total_energy_per_sample_j":
               0.001, "total_energy_per_sample_std_j": None} for h in hosts for hour in (3, 9)]
    fig = figures.hourly_figure(hourly, {})
    looks = {(figures.variant_colours([f"{h} cpu" for h in hosts])[f"{h} cpu"],
              figures.variant_markers([f"{h} cpu" for h in hosts])[f"{h} cpu"]) for h in hosts}
    assert len(looks) == 22  # no two hosts share colour and marker
    ax = fig.axes[0]
    legend = ax.get_legend()
    assert legend is not None and len(legend.get_texts()) == 22
    fig.canvas.draw()
    box, axes_box = legend.get_window_extent(), ax.get_window_extent()
    assert box.x0 >= axes_box.x1 - 1  # right of the plot, covering none of it


def test_the_deployer_figures_plot_latency_energy_and_memory_by_batch_size() -> None:
    from controller import figures

    table = [_table_row(v, batch_size=b, latency_p50_s=0.001 * b, latency_p99_s=0.002 * b, peak_rss_bytes=5e8,
                        weight_bytes=5e5) for v in ("baseline", "quant-int8dyn") for b in (1, 8, 32)]
    figs = figures.draw_all(table, [])
    assert set(figs) == set(figures.FIGURES)
    lat = figs["latency_by_batch.png"].axes[0]
    assert len(lat.lines) == 4 and list(lat.lines[0].get_xdata()) == [1, 8, 32]
    assert len(figs["memory.png"].axes[0].patches) == 4


def test_fake_nvml_gpu_memory_reads_used_bytes_of_the_visible_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """The GPU memory path on a machine without one: NVML's used memory of the GPU that CUDA ordinal 0 names."""
    from types import SimpleNamespace

    import worker.meters.nvml as nvml_mod
    from worker.memory import nvml_used_bytes

    asked: list[int] = []
    fake = SimpleNamespace(nvmlInit=lambda: None,
                           nvmlDeviceGetHandleByIndex=lambda i: asked.append(i) or f"gpu{i}",
                           nvmlDeviceGetMemoryInfo=lambda h: SimpleNamespace(used=3 * 2**30 if h == "gpu2" else 1))
    monkeypatch.setattr(nvml_mod, "_load_pynvml", lambda: fake)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    assert nvml_used_bytes(0) == 3 * 2**30 and asked == [2]
    monkeypatch.setattr(nvml_mod, "_load_pynvml", lambda: (_ for _ in ()).throw(nvml_mod.MeterError("no NVML")))
    assert nvml_used_bytes(0) is None  # not recorded rather than a silent 0


@pytest.mark.usefixtures("one_thread")
def test_a_qps_sweep_doubles_while_p99_holds_and_bisects_once_it_breaks() -> None:
    spec = BenchSpec(scenario="server", qps=20, server_s=0.5, repeats=4, warmup_batches=3, max_warmup_s=2.0,
                     p99_ms=50, qps_sweep=True)
    reps = run_scenario(_runner(), load_digits_split("test"), spec, CPU, CpuTimeEstimate(10.0))
    rates = [r.server.target_qps for r in reps if r.server is not None]
    assert len(rates) == 4 and rates[0] == 20
    lo, hi = 0.0, None
    for r, rate in zip(reps, rates, strict=True):  # each next rate follows from whether this one met the bound
        assert r.server is not None and r.latency is not None
        met = r.server.dropped == 0 and r.latency.p99_s <= 0.05
        lo, hi = (rate, hi) if met else (lo, rate)
        expected = (lo * 2 if hi is None else (lo + hi) / 2) if met else ((lo + hi) / 2 if lo else rate / 2)
        if r is not reps[-1]:
            assert rates[rates.index(rate) + 1] == pytest.approx(expected)


def test_single_stream_runs_at_batch_1_and_the_server_batches_with_max_batch() -> None:
    from controller.deployer import bench_fields

    assert bench_fields(scenario="single-stream")["batch_size"] == 1
    server = bench_fields(scenario="server", qps=10, max_batch=4, max_wait_ms=2)
    assert server["batch_size"] == 4 and server["max_batch"] == 4 and server["qps"] == 10
    assert bench_fields(batch_size=32) == {"scenario": "offline", "batch_size": 32}


@pytest.mark.parametrize("store", ["sqlite", "postgres"])
def test_the_csv_export_streams_every_column_and_honours_filters(store: str, tmp_path: Path, fresh_pg_url: str,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """SQLite goes through Python in chunks; Postgres writes the CSV itself (COPY): same header, same rows."""
    import csv
    import io

    from controller.export import stream_csv
    from shared.db.models import RESULT_COLUMNS

    url = f"sqlite:///{tmp_path / 'e.db'}" if store == "sqlite" else fresh_pg_url
    engine = make_engine(url)
    upgrade_schema(engine)
    job = uuid.uuid4()
    jid = job if store == "postgres" else job.hex
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO job (id, variant, spec, queue, state, submitted_at, stage, deliveries) "
                          "VALUES (:id, 'baseline', '{}', 'cpu', 'done', :t, 'benchmark', 1)"),
                     {"id": jid, "t": datetime(2026, 11, 2, 9, 30)})
        for i, (variant, host) in enumerate([("baseline", "a"), ("baseline", "b"), ("pruned", "a")]):
            conn.execute(text(
                "INSERT INTO result (job_id, repeat_index, variant, model_id, dataset_id, host, cpu_model, device, "
                "started_at, local_hour, timezone, samples, top1, time_per_sample_s, total_energy_per_sample_j, "
                "energy_source, params, macs, software, runtime, hardware_id, batch_size, weight_bytes_by_dtype) "
                "VALUES (:job, :i, :v, 'm', 'digits', :h, 'cpu, \"quoted\"', 'cpu', :t, 9, 'UTC', 10, 0.9, 0.001, "
                "0.01, 'measured:rapl', 1, 1, '{}', 'torch', 'abc', 8, :w)"),
                {"job": jid, "i": i, "v": variant, "h": host, "t": datetime(2026, 11, 2, 9, 30 + i),
                 "w": json.dumps({"float32": 100 + i})})
    engine.dispose()
    monkeypatch.setenv("FARM_DATABASE_URL", url)
    out = io.StringIO()
    assert stream_csv(queries.ResultFilter(variant="baseline", host="a"), out) == 1
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert list(rows[0]) == list(RESULT_COLUMNS) and len(rows) == 1
    assert rows[0]["host"] == "a" and rows[0]["cpu_model"] == 'cpu, "quoted"' and rows[0]["latency_p99_s"] == ""
    assert json.loads(rows[0]["weight_bytes_by_dtype"]) == {"float32": 100}
    assert rows[0]["started_at"].startswith("2026-11-02") and "09:30:00" in rows[0]["started_at"]
    out = io.StringIO()
    assert stream_csv(queries.ResultFilter(), out) == 3
