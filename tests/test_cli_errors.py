"""Bad input: one line on stderr, exit code 2, no traceback, nothing written."""

from __future__ import annotations

import json
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
    # The broker timeout is 3 s; a hang would run to the 30 s limit. Starting the process takes 1-3 s on a
    # loaded 2-core machine (tests run in parallel), hence the margin.
    assert elapsed < 8.0
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
     (["--hours", "9to5"], "--hours"), (["--hours", "25-3"], "--hours"),
     (["--job", "xyz"], "--job"), (["--sweep", "not-hex!"], "--sweep")],
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
    from controller.cli import main

    commands = ["run", "submit", "worker", "status", "results", "report", "inspect", "variants", "dead", "retry",
                "cancel", "wait", "logs", "recommend", "compare", "predict", "plan"]
    ctx = main.make_context("farm", ["--help"], resilient_parsing=True)
    assert sorted(commands) == sorted(main.list_commands(ctx))  # a new command joins this list
    for command in commands:  # each lazily loaded entry is the click command of that name
        assert main.get_command(ctx, command).name == command
    for command in commands:
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
        "for args in (['results'], ['status'], ['variants'], ['report'],\n"
        "             ['submit', '--variant', 'pruned', '--queue-anyway']):\n"
        "    r = CliRunner().invoke(main, args)\n"
        "    print(args[0], r.exit_code, type(r.exception).__name__)\n"
        "print('torch' in sys.modules, 'transformers' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    lines = out.stdout.strip().splitlines()
    assert lines[-1] == "False False", out.stdout + out.stderr
    # Each command really ran: it finished (0), or refused in one line (2: report has no rows), never crashed.
    assert lines[:-1] == ["results 0 NoneType", "status 0 NoneType", "variants 0 NoneType",
                          "report 2 SystemExit", "submit 0 NoneType"], out.stdout + out.stderr


def _job_rows(db: Path) -> tuple[int, int]:
    """(jobs, results) stored in a SQLite store, (0, 0) when there is none."""
    if not db.exists():
        return 0, 0
    with sqlite3.connect(db) as conn:
        try:
            return (conn.execute("select count(*) from job").fetchone()[0],
                    conn.execute("select count(*) from result").fetchone()[0])
        except sqlite3.OperationalError:
            return 0, 0


def _bad_model_folders(root: Path) -> dict[str, Path]:
    from transformers import ViTConfig

    corrupt, unknown = root / "corrupt", root / "unknown"
    corrupt.mkdir(parents=True)
    (corrupt / "config.json").write_text('{"model_type": "vit", "image_size": ')
    unknown.mkdir()
    ViTConfig().save_pretrained(unknown)
    cfg = json.loads((unknown / "config.json").read_text())
    (unknown / "config.json").write_text(json.dumps({**cfg, "model_type": "no-such-architecture"}))
    return {"corrupt": corrupt, "unknown": unknown, "missing": root / "missing"}


def _bad_archives(root: Path) -> dict[str, Path]:
    import io
    import pickle
    import tarfile

    from tests.test_workloads import write_cifar100

    archive, _ = write_cifar100(root / "good")
    out = {"truncated": root / "truncated.tar.gz"}
    out["truncated"].write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    for name, blob in (("notpickle", b"plain text, not a pickle"), ("wrongshape", pickle.dumps({"x": 1}))):
        path = root / f"{name}.tar.gz"
        with tarfile.open(path, "w:gz") as tar:
            info = tarfile.TarInfo("cifar-100-python/test")
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
        out[name] = path
    return out


@pytest.mark.slow
def test_run_with_bad_models_and_datasets_is_one_line_and_writes_nothing(env: dict[str, str], tmp_path: Path) -> None:
    env["FARM_DATA_ROOTS"] = str(tmp_path)
    models, archives = _bad_model_folders(tmp_path / "m"), _bad_archives(tmp_path / "d")
    cases = [
        (["--model", str(models["missing"])], "model folder not found"),
        (["--model", str(models["corrupt"])], "cannot load model"),
        (["--model", str(models["unknown"])], "cannot load model"),
        (["--model", "not//a hub id"], "--model must be"),
        (["--dataset", "synthetic:0"], "synthetic dataset needs a count"),
        (["--dataset", "synthetic:-5"], "synthetic dataset needs a count"),
        (["--dataset", "cifar100:/nope"], "outside FARM_DATA_ROOTS"),
        (["--dataset", "imagenet"], "unknown dataset"),
        (["--dataset", f"cifar100:{archives['truncated']}"], "cannot read CIFAR-100 archive"),
        (["--dataset", f"cifar100:{archives['notpickle']}"], "not a readable CIFAR-100 pickle"),
        (["--dataset", f"cifar100:{archives['wrongshape']}"], "not a CIFAR-100 file"),
    ]
    for args, needle in cases:
        proc = run_farm(["run", "--variant", "baseline", "--repeats", "1", "--limit", "8", *args], env)
        _assert_one_line_error(proc, needle)
        assert _job_rows(tmp_path / "f.db") == (0, 0), args


def test_read_only_artifacts_fail_before_any_training(env: dict[str, str], tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    env["FARM_ARTIFACTS"] = str(blocker / "artifacts")  # under a file: no folder can be made there, even as root
    t0 = time.monotonic()
    proc = run_farm(["run", "--variant", "baseline", "--repeats", "1"], env)
    _assert_one_line_error(proc, "cannot write to FARM_ARTIFACTS")
    assert time.monotonic() - t0 < 20  # the built-in model (25 s to train) was not trained first
    assert _job_rows(tmp_path / "f.db") == (0, 0)


@pytest.mark.parametrize(
    ("args", "needle"),
    [(["results", "--since", "99999999d"], "--since"),
     (["results", "--until", "99999999w"], "--until"),
     (["status", "--limit", "-1"], "--limit"),
     (["submit", "--variant", "baseline", "--wait", "--timeout", "-1"], "--timeout"),
     (["submit", "--variant", "baseline", "--dataset", "synthetic:0"], "synthetic"),
     (["submit", "--variant", "baseline", "--dataset", "mnist"], "unknown dataset"),
     (["submit", "--variant", "baseline", "--model", "/no/such/model"], "outside FARM_DATA_ROOTS"),
     (["submit", "--variant", "quant-int8dyn", "--on", "gpu"], "int8dyn runs on cpu only"),
     (["submit", "--variant", "pruned-distilled-int8dyn", "--on", "host:lab:gpu"], "int8dyn runs on cpu only"),
     (["run", "--variant", "quant-int8dyn", "--device", "cuda:0"], "int8dyn runs on cpu only")],
)
def test_bad_input_is_refused_before_anything_is_queued(env: dict[str, str], tmp_path: Path, args: list[str],
                                                       needle: str) -> None:
    import redis

    proc = run_farm(args, env)
    assert proc.returncode == 2, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and needle in proc.stderr, proc.stderr
    assert _job_rows(tmp_path / "f.db") == (0, 0)
    assert redis.Redis.from_url(env["FARM_BROKER_URL"]).dbsize() == 0  # nothing queued


@pytest.mark.parametrize(
    ("url", "needle"),
    [("postgresql+psycopg://postgres@127.0.0.1:notaport/farm", "bad database URL"),
     ("sqlite:///", "in-memory SQLite"), ("sqlite://", "in-memory SQLite"), ("sqlite:///:memory:", "in-memory")],
)
def test_database_urls_that_cannot_keep_results(env: dict[str, str], url: str, needle: str) -> None:
    env["FARM_DATABASE_URL"] = url
    _assert_one_line_error(run_farm(["results"], env), needle)


def test_a_blackholed_database_stops_a_worker_in_seconds(env: dict[str, str]) -> None:
    """A server that accepts the connection and never answers: the worker says so instead of hanging."""
    import socket
    import threading

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    held: list[socket.socket] = []
    threading.Thread(target=lambda: [held.append(server.accept()[0]) for _ in range(8)], daemon=True).start()
    env["FARM_DATABASE_URL"] = f"postgresql+psycopg://postgres@127.0.0.1:{server.getsockname()[1]}/farm"
    t0 = time.monotonic()
    proc = run_farm(["worker", "--device", "cpu"], env, timeout=60)
    elapsed = time.monotonic() - t0
    server.close()
    _assert_one_line_error(proc, "cannot reach database")
    assert elapsed < 20, elapsed
