"""Answers, not rows: hardware identity, `farm compare` on a real worker, `farm recommend` against numbers
computed here, carbon, the HTML page, and the store as SQL users see it."""

from __future__ import annotations

import base64
import json
import math
import re
import shutil
import statistics
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import text
from sqlmodel import create_engine

from shared.stats import t_quantile
from tests.conftest import run_farm
from tests.test_report import _env_with_stored_rows
from tests.test_store import _row


def test_the_fingerprint_tells_two_cpus_of_one_name_apart() -> None:
    """"AMD EPYC" with AVX-512 VNNI and "AMD EPYC" with AVX2 only (the issue's 3.5x and 1.9x machines) get
    different hardware ids; the same machine and threads get the same id whatever the runtime."""
    from worker.hardware import cpu_facts, fingerprint, hardware_id, hardware_label

    vnni = cpu_facts("processor : 0\nphysical id : 0\nflags : fpu avx2 avx512f avx512_vnni\n"
                     "processor : 1\nphysical id : 0\nflags : fpu avx2 avx512f avx512_vnni\n", "MemTotal: 24000000 kB")
    avx2 = cpu_facts("processor : 0\nphysical id : 0\nflags : fpu avx2\nprocessor : 1\nphysical id : 0\n"
                     "flags : fpu avx2\n", "MemTotal: 24000000 kB")
    assert vnni == {"isa": ["avx2", "avx512f", "avx512_vnni"], "sockets": 1, "cpus": 2, "memory_gb": 24.0}
    a = fingerprint("AMD EPYC", 2, "torch", "2.13.0", facts=vnni)
    b = fingerprint("AMD EPYC", 2, "torch", "2.13.0", facts=avx2)
    assert hardware_id(a) != hardware_id(b) and re.fullmatch(r"[0-9a-f]{12}", hardware_id(a))
    assert hardware_id(a) == hardware_id(fingerprint("AMD EPYC", 2, "onnxruntime", "1.2", facts=vnni))
    assert hardware_id(a) != hardware_id(fingerprint("AMD EPYC", 1, "torch", "2.13.0", facts=vnni))
    assert "avx512_vnni" in hardware_label(a) and "avx2" in hardware_label(b)
    gpu = fingerprint("Intel Xeon", 8, "torch", "2.11", {"gpu_name": "NVIDIA H200", "gpu_power_limit_w": 700.0},
                      facts=vnni)
    assert hardware_label(gpu).startswith("NVIDIA H200 (700 W)")


@pytest.fixture()
def two_epycs(tmp_path: Path) -> dict[str, str]:
    """Two machines named "AMD EPYC": baseline and int8 on each, the int8 3.5x faster on one and 1.9x on the other."""
    t0 = datetime(2026, 11, 2, 9, tzinfo=UTC)
    rows = []
    for hw, isa, speedup in (("111111111111", "avx512_vnni", 3.5), ("222222222222", "avx2", 1.9)):
        for variant, factor in (("baseline", 1.0), ("quant-int8dyn", 1 / speedup)):
            for i in range(3):
                rows.append(_row("lab", t0 + timedelta(minutes=i), 9, variant=variant, repeat_index=i,
                                 cpu_model="AMD EPYC", hardware_id=hw, hardware_label=f"AMD EPYC · {isa} · 2 CPUs",
                                 hardware={"cpu_model": "AMD EPYC", "isa": ["avx2"] + ([isa] if isa != "avx2" else [])},
                                 time_per_sample_s=0.01 * factor * (1 + 0.01 * i),
                                 total_energy_per_sample_j=0.1 * factor * (1 + 0.01 * i)))
    return _env_with_stored_rows(tmp_path / "epyc.db", rows)


def test_reports_keep_two_machines_of_one_cpu_name_apart(two_epycs: dict[str, str]) -> None:
    table = json.loads(run_farm(["report", "--format", "json"], two_epycs).stdout)
    speedups = {t["hardware_id"]: 1 / (1 + t["time_change_fraction"]) for t in table if t["variant"] != "baseline"}
    assert speedups == {"111111111111": pytest.approx(3.5), "222222222222": pytest.approx(1.9)}
    only_vnni = json.loads(run_farm(["results", "--format", "json", "--hardware", "avx512_vnni"], two_epycs).stdout)
    assert {r["hardware_id"] for r in only_vnni} == {"111111111111"}
    by_prefix = json.loads(run_farm(["results", "--format", "json", "--hardware", "22222"], two_epycs).stdout)
    assert {r["hardware_id"] for r in by_prefix} == {"222222222222"} and len(by_prefix) == 6


@pytest.fixture()
def known_saving(tmp_path: Path) -> tuple[dict[str, str], dict[str, list[float]]]:
    """Baseline and a variant with a true 30 % energy saving and 4 % noise, 6 repeats each; a second variant with
    a 1.5-point top-1 drop and a 50 % saving; a third with no saving."""
    rng = np.random.default_rng(21)
    t0 = datetime(2026, 11, 2, 9, tzinfo=UTC)
    truth = {"baseline": (1.0, 0.95), "pruned-distilled-uint8": (0.7, 0.945), "prune-all-r0.30": (0.5, 0.935),
             "quant-uint8": (1.0, 0.95)}
    rows, energies = [], {}
    for variant, (energy, top1) in truth.items():
        values = list(energy * np.exp(rng.normal(0, 0.04, 6)))
        energies[variant] = values
        for i, e in enumerate(values):
            rows.append(_row("lab", t0 + timedelta(minutes=i), 9, variant=variant, repeat_index=i,
                             total_energy_per_sample_j=float(e), top1=top1))
    return _env_with_stored_rows(tmp_path / "known.db", rows), energies


def test_recommend_finds_a_known_saving_with_an_interval_that_covers_it(known_saving) -> None:  # noqa: ANN001
    env, energies = known_saving
    out = run_farm(["recommend", "--max-drop", "1", "--format", "json"], env)
    assert out.returncode == 0, out.stderr
    (answer,) = json.loads(out.stdout)
    choice = answer["choice"]
    assert choice["variant"] == "pruned-distilled-uint8"  # prune-all-r0.30 saves more but drops 1.5 points
    assert answer["runner_up"]["variant"] == "quant-uint8"
    # the interval, computed here independently: Welch t on the log of the means' ratio
    a, b = energies["baseline"], energies["pruned-distilled-uint8"]
    ma, mb = statistics.fmean(a), statistics.fmean(b)
    va, vb = (statistics.stdev(a) / ma) ** 2 / 6, (statistics.stdev(b) / mb) ** 2 / 6
    df = (va + vb) ** 2 / (va**2 / 5 + vb**2 / 5)
    half = t_quantile(0.975, df) * math.sqrt(va + vb)
    assert choice["energy_change_fraction"] == pytest.approx(mb / ma - 1)
    assert choice["energy_change_low"] == pytest.approx(mb / ma * math.exp(-half) - 1)
    assert choice["energy_change_high"] == pytest.approx(mb / ma * math.exp(half) - 1)
    assert choice["energy_change_low"] <= -0.30 <= choice["energy_change_high"]  # covers the truth
    loose = json.loads(run_farm(["recommend", "--max-drop", "2", "--format", "json"], env).stdout)
    assert loose[0]["choice"]["variant"] == "prune-all-r0.30"
    text_out = run_farm(["recommend"], env).stdout
    assert "pruned-distilled-uint8: \u2212" in text_out and "95 % CI" in text_out


def test_recommend_says_what_is_missing(tmp_path: Path) -> None:
    t0 = datetime(2026, 11, 2, 9, tzinfo=UTC)
    env = _env_with_stored_rows(tmp_path / "missing.db", [_row("lab", t0, 9, variant="quant-int8dyn")])
    out = run_farm(["recommend"], env)
    assert out.returncode == 0, out.stderr
    assert "no recommendation" in out.stdout and "no baseline here" in out.stdout
    assert "one repeat only" not in out.stdout  # nothing chosen, so nothing to doubt
    by_floor = run_farm(["recommend", "--min-top1", "80"], env).stdout
    assert "quant-int8dyn" in by_floor and "one repeat only" in by_floor


def test_carbon_per_thousand_inferences_from_a_flat_figure_and_by_hour(tmp_path: Path) -> None:
    t0 = datetime(2026, 11, 2, 9, tzinfo=UTC)
    rows = [_row("lab", t0, 9, total_energy_per_sample_j=1.0, repeat_index=0),
            _row("lab", t0 + timedelta(hours=10), 19, total_energy_per_sample_j=1.0, repeat_index=1)]
    env = _env_with_stored_rows(tmp_path / "c.db", rows)
    flat = json.loads(run_farm(["report", "--format", "json", "--grid-intensity", "360"], env).stdout)
    assert flat[0]["gco2e_per_1000"] == pytest.approx(1000 * 1.0 / 3.6e6 * 360)  # 0.1 g
    csv = tmp_path / "grid.csv"
    csv.write_text("hour,g_per_kwh\n" + "\n".join(f"{h},{100 if h < 12 else 500}" for h in range(24)))
    hourly = json.loads(run_farm(["report", "--format", "json", "--grid-csv", str(csv)], env).stdout)
    assert hourly[0]["gco2e_per_1000"] == pytest.approx(1000 / 3.6e6 * (100 + 500) / 2)
    bad = tmp_path / "bad.csv"
    bad.write_text("hour,g\n25,100\n")
    proc = run_farm(["report", "--grid-csv", str(bad)], env)
    assert proc.returncode == 2 and "hour must be 0-23" in proc.stderr


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.images: list[str] = []
        self.tables = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "img":
            self.images.append(dict(attrs)["src"] or "")
        self.tables += tag == "table"


def test_the_html_page_embeds_its_tables_and_figures(known_saving, tmp_path: Path) -> None:  # noqa: ANN001
    env, _ = known_saving
    page = tmp_path / "report.html"
    proc = run_farm(["report", "--html", str(page)], env)
    assert proc.returncode == 0, proc.stderr
    parser = _Page()
    parser.feed(page.read_text())
    from controller.figures import FIGURES

    assert parser.tables == 2 and len(parser.images) == len(FIGURES)
    for src in parser.images:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    assert "http://" not in page.read_text() and "https://" not in page.read_text()  # self-contained


@pytest.fixture()
def pg_env(farm_env: dict[str, str], fresh_pg_url: str, redis_url: str) -> dict[str, str]:
    return {**farm_env, "FARM_DATABASE_URL": fresh_pg_url, "FARM_BROKER_URL": redis_url}


@pytest.mark.slow
def test_compare_runs_both_variants_interleaved_on_one_worker(pg_env: dict[str, str], start_worker) -> None:  # noqa: ANN001
    start_worker(pg_env, "cpu").wait_ready()
    out = run_farm(["compare", "baseline", "quant-int8dyn", "--pairs", "4", "--limit", "96", "--format", "json",
                    "--timeout", "240"], pg_env, timeout=300)
    assert out.returncode == 0, out.stderr
    answer = json.loads(out.stdout)
    assert answer["pairs"] == 4
    for name in ("time", "energy"):
        assert answer[name]["low"] <= answer[name]["ratio"] <= answer[name]["high"]
        assert answer[f"{name}_verdict"]
    engine = create_engine(pg_env["FARM_DATABASE_URL"])
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT variant, pair_index, started_at, sweep_id, job_state, hardware_id, "
                                 "runtime FROM result_view WHERE job_id = :j ORDER BY started_at"),
                            {"j": answer["job_id"]}).all()
        kind = conn.execute(text("SELECT data_type FROM information_schema.columns WHERE table_name = 'result' "
                                 "AND column_name = 'started_at'")).scalar_one()
        comment = conn.execute(text("SELECT col_description('result'::regclass, attnum) FROM pg_attribute WHERE "
                                    "attrelid = 'result'::regclass AND attname = 'energy_per_device_j'")).scalar_one()
    engine.dispose()
    assert kind == "timestamp with time zone" and "PER SAMPLE" in comment
    assert len(rows) == 8 and {r.job_state for r in rows} == {"done"} and {r.runtime for r in rows} == {"torch"}
    assert len({r.hardware_id for r in rows}) == 1
    order = [(r.pair_index, r.variant) for r in rows]  # A B, B A, A B, B A: drift hits both alike
    assert order == [(0, "baseline"), (0, "quant-int8dyn"), (1, "quant-int8dyn"), (1, "baseline"),
                     (2, "baseline"), (2, "quant-int8dyn"), (3, "quant-int8dyn"), (3, "baseline")]
    # the verdict's interval, recomputed here from the stored pairs
    from controller.comparison import summarise

    stored = json.loads(run_farm(["results", "--job", answer["job_id"][:8], "--format", "json"], pg_env).stdout)
    again = summarise(stored, "baseline", "quant-int8dyn")
    assert again["energy"]["ratio"] == pytest.approx(answer["energy"]["ratio"])
    logs = [math.log(b["total_energy_per_sample_j"] / a["total_energy_per_sample_j"]) for a, b in zip(
        sorted((r for r in stored if r["variant"] == "baseline"), key=lambda r: r["pair_index"]),
        sorted((r for r in stored if r["variant"] == "quant-int8dyn"), key=lambda r: r["pair_index"]),
        strict=True)]
    assert answer["energy"]["ratio"] == pytest.approx(math.exp(statistics.fmean(logs)))


@pytest.mark.skipif(not shutil.which("chromium"), reason="needs Debian's chromium (apt-get install chromium)")
def test_the_html_page_renders_in_headless_chromium(known_saving, tmp_path: Path) -> None:  # noqa: ANN001
    """The page loads in a real browser with no network, and the browser decodes every embedded figure."""
    import subprocess

    env, _ = known_saving
    page = tmp_path / "report.html"
    assert run_farm(["report", "--html", str(page)], env).returncode == 0
    probe = tmp_path / "probe.html"  # the page, plus a line that reports what the browser made of its images
    probe.write_text(page.read_text().replace("</body>", "<script>document.body.setAttribute('data-images', "
                     "[...document.images].map(i => i.complete && i.naturalWidth > 0).join());</script></body>"))
    out = subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                          "--disable-background-networking", "--disable-component-update", "--disable-sync",
                          f"--user-data-dir={tmp_path / 'chromium'}", "--dump-dom", probe.as_uri()],
                         capture_output=True, text=True, timeout=60)
    assert 'data-images="true,true,true"' in out.stdout, out.stderr[-2000:]
    assert out.stdout.count("<table>") == 2 and "pruned-distilled-uint8" in out.stdout
