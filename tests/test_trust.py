"""What reports and compare verdicts may claim (issue 20): contended and pair rows left out and counted, the
reference named, robust noise notes, verdicts only within the precision target, A/A runs, the noise floor."""

from __future__ import annotations

import json
import math
import random
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import Session

from shared.db import queries
from shared.db.engine import make_engine
from shared.db.models import NoiseFloor
from tests.conftest import run_farm
from tests.test_report import _env_with_stored_rows
from tests.test_store import _row


@pytest.fixture()
def env_mixed(tmp_path: Path) -> dict[str, str]:
    """Baseline 1.0 J twice, a contended baseline repeat at 5 J, compare pair rows at 9 J, int8 at 0.5 J."""
    t0 = datetime(2026, 11, 2, 9, tzinfo=UTC)
    rows = [_row("lab-1", t0, 9, variant="baseline", repeat_index=0, total_energy_per_sample_j=1.0),
            _row("lab-1", t0 + timedelta(minutes=1), 9, variant="baseline", repeat_index=1,
                 total_energy_per_sample_j=1.0),
            _row("lab-1", t0 + timedelta(minutes=2), 9, variant="baseline", repeat_index=2,
                 total_energy_per_sample_j=5.0, contended=True, foreign_cpu_cores=1.7,
                 noise="contended: 1.70 cores busy elsewhere > 0.5 (FARM_CONTENTION_CORES)"),
            _row("lab-1", t0 + timedelta(minutes=3), 9, variant="baseline", repeat_index=0, pair_index=0,
                 total_energy_per_sample_j=9.0),
            _row("lab-1", t0 + timedelta(minutes=4), 10, variant="quant-int8dyn", repeat_index=0,
                 total_energy_per_sample_j=0.5, runtime="onnxruntime"),
            _row("lab-1", t0 + timedelta(minutes=5), 10, variant="quant-int8dyn", repeat_index=1,
                 total_energy_per_sample_j=0.5, runtime="onnxruntime")]
    return _env_with_stored_rows(tmp_path / "t.db", rows)


def test_report_leaves_out_contended_and_pair_rows_says_how_many_and_names_the_reference(
        env_mixed: dict[str, str]) -> None:
    proc = run_farm(["report"], env_mixed)
    assert proc.returncode == 0, proc.stderr
    assert "left out: 1 contended rows" in proc.stdout and "--include-contended" in proc.stdout
    assert "left out: 1 `farm compare` pair rows" in proc.stdout
    assert re.search(r"Δ against baseline \(torch\) of \S+ on \S+, .*\[aaaaaa\] cpu", proc.stdout), proc.stdout
    table = {t["variant"]: t for t in json.loads(run_farm(["report", "--format", "json"], env_mixed).stdout)}
    assert table["baseline"]["repeats"] == 2 and table["baseline"]["total_energy_per_sample_j"] == pytest.approx(1.0)
    assert table["quant-int8dyn"]["energy_change_fraction"] == pytest.approx(-0.5)
    assert table["quant-int8dyn"]["reference"].startswith("baseline (torch)")
    wide = {t["variant"]: t for t in json.loads(run_farm(
        ["report", "--format", "json", "--include-contended", "--include-pairs"], env_mixed).stdout)}
    assert wide["baseline"]["repeats"] == 4
    hourly = run_farm(["report", "--by", "hour"], env_mixed).stdout
    assert "runtime" in hourly.splitlines()[0] and "onnxruntime" in hourly


def test_recommend_leaves_out_contended_rows_too(env_mixed: dict[str, str]) -> None:
    proc = run_farm(["recommend"], env_mixed)
    assert proc.returncode == 0, proc.stderr
    assert "left out: 1 contended rows" in proc.stdout


def test_report_and_compare_quote_the_noise_floor(env_mixed: dict[str, str]) -> None:
    engine = make_engine(env_mixed["FARM_DATABASE_URL"])
    with Session(engine) as s:
        job = queries.list_jobs(session=s, limit=1)[0]
        s.add(NoiseFloor(job_id=job.id, hardware_id="aaaaaaaaaaaa", device="cpu", runtime="torch",
                         variant="baseline", pairs=10, time_cv=0.02, energy_cv=0.03, time_resolvable_fraction=0.015,
                         energy_resolvable_fraction=0.6))
        s.commit()
    engine.dispose()
    out = run_farm(["report"], env_mixed).stdout
    assert "noise floor of [aaaaaa] cpu (farm calibrate, 10 A/A pairs): time ±1.5 %, energy ±60.0 %" in out
    assert "quant-int8dyn (onnxruntime): Δ energy -50.0 % is below this machine's noise floor of 60.0 %" in out


def _pairs(a: list[float], b: list[float], names: tuple[str, str] = ("A", "B")) -> list[dict[str, Any]]:
    return [{"variant": v, "pair_index": i, "time_per_sample_s": x, "total_energy_per_sample_j": x, "top1": 0.9}
            for i, (xa, xb) in enumerate(zip(a, b, strict=True)) for v, x in ((names[0], xa), (names[1], xb))]


def test_a_wide_interval_is_inconclusive_and_says_how_many_more_pairs() -> None:
    from controller.comparison import summarise

    rng = random.Random(1)
    a = [math.exp(rng.gauss(0, 0.3)) for _ in range(5)]
    b = [5 * x * math.exp(rng.gauss(0, 0.8)) for x in a]  # about 5x, but very noisy: an interval like 22-1965 %
    answer = summarise(_pairs(a, b), "A", "B")
    verdict = answer["energy_verdict"]
    assert re.fullmatch(r"energy per sample: inconclusive after 5 pairs \(\+\d+\.\d…\+\d+\.\d %\); about \d+ more "
                        r"pairs would reach ±10 %", verdict), verdict
    assert answer["energy_more_pairs"] > 10


def test_a_precise_interval_with_no_change_says_no_difference_and_a_b_a_a_run_says_so_by_construction() -> None:
    from controller.comparison import sides_of_same, summarise

    rng = random.Random(2)
    a = [math.exp(rng.gauss(0, 0.02)) for _ in range(8)]
    b = [x * math.exp(rng.gauss(0, 0.01)) for x in a]
    assert summarise(_pairs(a, b), "A", "B")["energy_verdict"].startswith("no difference in energy per sample")
    t0 = datetime(2026, 11, 2, tzinfo=UTC)
    rows = [{**r, "variant": "baseline", "started_at": t0 + timedelta(seconds=k)}
            for k, r in enumerate(_pairs(a, b))]
    sided, first, second = sides_of_same(rows, "baseline")
    # pair 0 runs A then B, pair 1 B then A: the first row of pair 1 is side #2
    assert [r["variant"] for r in sided[:4]] == [first, second, second, first]
    same = summarise(sided, first, second, same=True)
    assert same["energy_verdict"].startswith("no difference: baseline #2 and baseline #1 are the same variant")


def test_an_a_a_run_with_a_hog_toggled_at_random_claims_no_difference() -> None:
    """Synthetic A/A pairs where a hog, on or off at random, slows single runs 2-6x: never a stated difference."""
    from controller.comparison import summarise

    for seed in range(40):
        rng = random.Random(seed)

        def run(rng: random.Random = rng) -> float:
            return math.exp(rng.gauss(0, 0.02)) * (rng.uniform(2, 6) if rng.random() < 0.3 else 1.0)

        a, b = [run() for _ in range(6)], [run() for _ in range(6)]
        verdict = summarise(_pairs(a, b, ("A", "A'")), "A", "A'")["time_verdict"]
        assert "inconclusive" in verdict or verdict.startswith("no difference"), (seed, verdict)


def test_until_conclusive_intervals_name_their_method_and_keep_coverage_under_optional_stopping() -> None:
    """Simulated --until-conclusive runs with a true ratio of 1.05: the first look whose interval is within ±10 %
    stops; the stated intervals must miss 1.05 no more often than 5 % (plus simulation slack)."""
    from shared.stats import log_half_width, paired_log_ratio, sequential_level

    level, looks = sequential_level(3, 30)
    assert looks == 28 and level == pytest.approx(1 - 0.05 / 28)
    misses, runs = 0, 150
    rng = random.Random(7)
    for _ in range(runs):
        a, b = [], []
        while True:
            x = math.exp(rng.gauss(0, 0.05))
            a.append(x)
            b.append(1.05 * x * math.exp(rng.gauss(0, 0.08)))
            if len(a) < 3:
                continue
            ci = paired_log_ratio(a, b, level)
            assert ci is not None
            if log_half_width(ci) <= math.log1p(0.10) or len(a) == 30:
                break
        misses += not ci.low <= 1.05 <= ci.high
    assert misses / runs <= 0.08, misses
    from controller.comparison import summarise

    answer = summarise(_pairs(a, b), "A", "B", max_pairs=30, min_pairs=3)
    assert "Bonferroni alpha spending over 28 looks" in answer["energy"]["method"]


def test_the_noise_floor_of_an_a_a_campaign_is_its_cv_and_its_paired_half_width() -> None:
    from controller.calibration import noise_floor_of
    from shared.stats import paired_log_ratio

    rng = random.Random(3)
    a = [math.exp(rng.gauss(0, 0.03)) for _ in range(10)]
    b = [math.exp(rng.gauss(0, 0.03)) for _ in range(10)]
    rows = [{**r, "samples": 100, "foreign_cpu_cores": 0.1 * i} for i, r in enumerate(_pairs(a, b, ("V #1", "V #2")))]
    floor = noise_floor_of(rows, "V #1", "V #2")
    ci = paired_log_ratio(a, b)
    assert ci is not None
    assert floor["pairs"] == 10 and floor["foreign_cpu_cores_max"] == pytest.approx(1.9)
    assert floor["time_resolvable_fraction"] == pytest.approx(math.sqrt(ci.high / ci.low) - 1)
    assert 0.01 < floor["energy_cv"] < 0.06  # the simulated 3 %
    with pytest.raises(ValueError, match="at least 2"):
        noise_floor_of(rows[:2], "V #1", "V #2")
