"""Bad input: one line on stderr, exit code 2, no traceback, nothing written."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from tests.conftest import run_farm


def _job_count(db: Path) -> int:
    if not db.exists():
        return 0
    with sqlite3.connect(db) as conn:
        try:
            return conn.execute("select count(*) from job").fetchone()[0]
        except sqlite3.OperationalError:
            return 0


def _assert_one_line_error(proc, *needles: str) -> None:  # noqa: ANN001
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    for needle in needles:
        assert needle in lines[0]


@pytest.fixture()
def env(tmp_path: Path, redis_url: str) -> dict[str, str]:
    import os

    e = {k: v for k, v in os.environ.items() if not k.startswith("FARM_")}
    e.update(FARM_DATABASE_URL=f"sqlite:///{tmp_path / 'f.db'}", FARM_ARTIFACTS=str(tmp_path / "a"),
             FARM_BROKER_URL=redis_url, FARM_HOSTNAME="h")
    return e


@pytest.mark.parametrize("command", ["run", "submit"])
def test_unknown_variant_lists_valid_ones_and_writes_nothing(env: dict[str, str], tmp_path: Path, command: str) -> None:
    proc = run_farm([command, "--variant", "turbo"], env)
    _assert_one_line_error(proc, "unknown variant 'turbo'", "baseline", "pruned-distilled-uint8")
    assert _job_count(tmp_path / "f.db") == 0


def test_ratio_outside_unit_interval_is_rejected(env: dict[str, str]) -> None:
    _assert_one_line_error(run_farm(["submit", "--variant", "prune-all-r1.5"], env), "(0, 1)")


def test_unreachable_broker_names_the_url_and_fails_fast(env: dict[str, str], tmp_path: Path) -> None:
    env["FARM_BROKER_URL"] = "redis://127.0.0.1:1/0"
    t0 = time.monotonic()
    proc = run_farm(["submit", "--variant", "baseline"], env, timeout=30)
    elapsed = time.monotonic() - t0
    _assert_one_line_error(proc, "redis://127.0.0.1:1/0")
    assert elapsed < 5.0
    assert _job_count(tmp_path / "f.db") == 0


def test_unreachable_broker_stops_a_worker_from_starting(env: dict[str, str]) -> None:
    env["FARM_BROKER_URL"] = "redis://127.0.0.1:1/0"
    _assert_one_line_error(run_farm(["worker", "--device", "cpu"], env, timeout=30), "cannot reach broker")


@pytest.mark.parametrize(
    ("url", "needle"),
    [("nosuchdb://x/y", "unsupported database"), ("not a url", "bad database URL"),
     ("postgresql+psycopg://postgres@127.0.0.1:1/farm", "cannot reach database")],
)
def test_bad_database_url(env: dict[str, str], url: str, needle: str) -> None:
    env["FARM_DATABASE_URL"] = url
    _assert_one_line_error(run_farm(["results"], env), needle)
    _assert_one_line_error(run_farm(["submit", "--variant", "baseline"], env), needle)


@pytest.mark.parametrize(
    ("args", "needle"),
    [(["--since", "yesterday-ish"], "--since"), (["--until", "13/45/2026"], "--until"),
     (["--hours", "9to5"], "--hours"), (["--hours", "25-3"], "--hours"), (["--job", "abc"], "--job")],
)
def test_bad_result_filters(env: dict[str, str], tmp_path: Path, args: list[str], needle: str) -> None:
    _assert_one_line_error(run_farm(["results", *args], env), needle)
    assert not (tmp_path / "f.db").exists()


def test_bad_device(env: dict[str, str]) -> None:
    _assert_one_line_error(run_farm(["worker", "--device", "tpu:0"], env), "--device")


def test_gpu_device_on_a_machine_without_cuda(env: dict[str, str]) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    _assert_one_line_error(run_farm(["worker", "--device", "cuda:0"], env), "CUDA is not available")
    _assert_one_line_error(run_farm(["run", "--variant", "baseline", "--device", "cuda:0"], env), "CUDA")


def test_training_options_need_a_trained_variant(env: dict[str, str]) -> None:
    _assert_one_line_error(run_farm(["submit", "--variant", "pruned", "--epochs", "3"], env), "--epochs")
    _assert_one_line_error(run_farm(["submit", "--variant", "pruned-distilled", "--alpha", "2"], env), "--alpha")


def test_help_explains_every_command(env: dict[str, str]) -> None:
    for command in ["run", "submit", "worker", "status", "results", "variants"]:
        proc = run_farm([command, "--help"], env)
        assert proc.returncode == 0 and proc.stdout.startswith(f"Usage: farm {command}")
        description = proc.stdout.splitlines()[2].strip()
        assert len(description) > 20, f"`farm {command} --help` has no description"


def test_controller_commands_do_not_import_torch(env: dict[str, str]) -> None:
    """The controller is the light install: results, status, variants and submit never load torch."""
    import subprocess
    import sys

    script = (
        "import sys\n"
        "from click.testing import CliRunner\n"
        "from controller.cli import main\n"
        "for args in (['results'], ['status'], ['variants'], ['report'], ['submit', '--variant', 'pruned']):\n"
        "    CliRunner().invoke(main, args)\n"
        "print('torch' in sys.modules, 'transformers' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert out.stdout.strip().splitlines()[-1] == "False False", out.stdout + out.stderr
