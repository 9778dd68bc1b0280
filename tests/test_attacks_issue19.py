"""Red-team reproductions for issue 19 (found on branch rt19, fixed on fix19). Each test names the hole it closes.

Real processes, the real Redis test database and the real shared Postgres; nothing of the broker or store is mocked.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.conftest import PG_ADMIN, PG_BASE, run_farm


@pytest.fixture()
def env(tmp_path: Path, redis_url: str) -> dict[str, str]:
    e = {k: v for k, v in os.environ.items() if not k.startswith("FARM_")}
    e.update(FARM_DATABASE_URL=f"sqlite:///{tmp_path / 'f.db'}", FARM_BROKER_URL=redis_url, FARM_HOSTNAME="h",
             FARM_DATA_ROOTS=str(tmp_path), FARM_ARTIFACTS=str(tmp_path / "a"), FARM_BROKER_TIMEOUT_S="2")
    return e


# --- 1. passwords in Unix-socket URLs print verbatim ---------------------------------------------------------------
# shared/redact.py's _HOST_AFTER_AT needs a host after the '@'; a socket URL has none ('@/path'), so neither the
# URL parser nor url_secrets (hence the remembered set) sees the password.
SOCKET_URLS = [
    ("FARM_DATABASE_URL", "postgresql+psycopg://farm:S3cretPgSock@/farm?host=/tmp/rt19_no_such_dir", ["status"]),
    ("FARM_BROKER_URL", "redis+socket://:S3cretRedisSock@/tmp/rt19_no_such.sock",
     ["submit", "-v", "baseline", "--queue-anyway"]),
    ("FARM_BROKER_URL", "unix://:S3cretUnixSock@/tmp/rt19_no_such.sock?db=0",
     ["submit", "-v", "baseline", "--queue-anyway"]),
]


@pytest.mark.parametrize("var,url,args", SOCKET_URLS, ids=[u.split(":", 1)[0] for _, u, _ in SOCKET_URLS])
def test_socket_url_password_never_prints(env: dict[str, str], var: str, url: str, args: list[str]) -> None:
    secret = next(p for p in url.replace("@", ":").split(":") if p.startswith("S3cret"))
    proc = run_farm(args, {**env, var: url}, timeout=60)
    assert proc.returncode != 0
    assert secret not in proc.stdout + proc.stderr, proc.stderr


@pytest.mark.parametrize("text,secret", [
    ("cannot reach postgresql://u:S3cretA@/db?host=/var/run/postgresql", "S3cretA"),
    ("cannot reach redis+socket://:S3cretB@/run/redis.sock", "S3cretB"),
    ("cannot reach redis://u:S3cretC@[FE80::1%25ETH0]:6379/0", "S3cretC"),  # upper-case zone id
])
def test_redact_parses_socket_and_upper_case_zone_urls(text: str, secret: str) -> None:
    from shared.redact import redact, url_secrets

    assert secret not in redact(text)
    assert secret in url_secrets(text.split(" ")[-1])


# --- 2. an ONNX sparse initializer with external data slips past refuse_external_data ------------------------------
def _sparse_external_model(location: str) -> bytes:
    from onnx import TensorProto, helper

    values = TensorProto(name="W", data_type=TensorProto.UINT8, dims=[16], data_location=TensorProto.EXTERNAL)
    for k, v in (("location", location), ("offset", "0"), ("length", "16")):
        entry = values.external_data.add()
        entry.key, entry.value = k, v
    sparse = helper.make_sparse_tensor(values, helper.make_tensor("W_idx", TensorProto.INT64, [16], list(range(16))),
                                       [16])
    graph = helper.make_graph([helper.make_node("Add", ["x", "W"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.UINT8, [16])],
                              [helper.make_tensor_value_info("y", TensorProto.UINT8, [16])],
                              sparse_initializer=[sparse])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


def test_sparse_initializer_external_data_is_refused(tmp_path: Path) -> None:
    """ONNX Runtime, given model bytes, reads a sparse initializer's relative `location` from the worker's current
    directory (in the compose image: /home/farm; a checkout's .env elsewhere). Shown in a subprocess, then the check."""
    pytest.importorskip("onnxruntime")
    from shared.errors import FarmError
    from worker.runtimes.onnx_export import refuse_external_data

    (tmp_path / "secret.txt").write_text("SECRETFILEBYTES!")
    data = _sparse_external_model("secret.txt")
    (tmp_path / "m.onnx").write_bytes(data)
    leak = subprocess.run([sys.executable, "-c", "import numpy as np, onnxruntime as ort; s = ort.InferenceSession("
                           "open('m.onnx','rb').read(), providers=['CPUExecutionProvider']); "
                           "print(bytes(s.run(None, {'x': np.zeros(16, np.uint8)})[0]))"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert "SECRETFILEBYTES!" in leak.stdout, leak.stderr[-500:]  # the impact: the file's bytes come out as logits
    with pytest.raises(FarmError, match="external data"):
        refuse_external_data(data, "a planted export")


# --- 3. numbers without a bound ------------------------------------------------------------------------------------
@pytest.mark.parametrize("args,message", [
    (["calibrate", "--pairs", "1000000000", "--queue-anyway", "--timeout", "1"], "--pairs must be at most"),
    (["compare", "baseline", "quant-uint8", "--until-conclusive", "--max-pairs", "1000000000", "--queue-anyway",
      "--timeout", "1"], "--max-pairs must be at most"),
])
def test_pair_counts_are_bounded_before_queueing(env: dict[str, str], redis_url: str, args: list[str],
                                                 message: str) -> None:
    proc = run_farm(args, env, timeout=60)
    queued = redis.Redis.from_url(redis_url).llen("cpu")
    assert (proc.returncode, queued) == (2, 0), (proc.stdout, proc.stderr, queued)
    assert message in proc.stderr


@pytest.mark.parametrize("args", [["status", "--limit", str(2**70)], ["dead", "--limit", str(2**70)]])
def test_huge_list_limits_are_one_line_errors(env: dict[str, str], args: list[str]) -> None:
    proc = run_farm(args, env, timeout=60)
    assert proc.returncode == 2, proc.stderr[-400:]
    assert "Traceback" not in proc.stderr


# --- 4. TLS that silently falls back to plain text -----------------------------------------------------------------
@pytest.fixture()
def rt_pg_url() -> Iterator[str]:
    """A Postgres database of this test's own (named *_rt), dropped at the end."""
    import psycopg

    name = f"farm_{uuid.uuid4().hex[:8]}_rt"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield f"{PG_BASE}/{name}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.mark.parametrize("mode", ["disable", "allow", "prefer"])
def test_a_database_ca_with_a_plaintext_sslmode_is_refused(env: dict[str, str], tmp_path: Path, mode: str,
                                                           rt_pg_url: str) -> None:
    """FARM_DATABASE_CA says "verify the store"; a URL's own sslmode=disable/allow/prefer is kept, and the shared
    Postgres (ssl=off) is then reached in clear text with rc 0."""
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
    url = f"{rt_pg_url}?sslmode={mode}"
    proc = run_farm(["status", "--limit", "1"], {**env, "FARM_DATABASE_URL": url, "FARM_DATABASE_CA": str(ca)},
                    timeout=60)
    assert proc.returncode == 2, (proc.returncode, proc.stdout[-300:], proc.stderr[-300:])
    assert "sslmode" in proc.stderr


def test_rediss_with_verification_off_is_refused(env: dict[str, str]) -> None:
    from shared.errors import FarmError
    from shared.tls import broker_url_with_tls

    with pytest.raises(FarmError):
        broker_url_with_tls("rediss://:pw@broker.example:6380/0?ssl_cert_reqs=none")


# --- 5. a symlinked folder in the artifact store: reads are refused, writes go through it -------------------------
def test_writes_never_land_outside_the_artifact_root(tmp_path: Path, rt_pg_url: str) -> None:
    """A planted `<root>/onnx -> /elsewhere` is refused on read, but write_bytes makes `<key>/` and writes
    model.onnx and its sidecar in /elsewhere (then every later read refuses it, so it is re-exported every job)."""
    from worker.artifacts import ArtifactMismatch, ArtifactStore, store_ledger

    root, elsewhere = tmp_path / "root", tmp_path / "elsewhere"
    root.mkdir()
    elsewhere.mkdir()
    (root / "onnx").symlink_to(elsewhere)
    store = ArtifactStore(str(root), store_ledger(rt_pg_url))
    try:
        store.write_bytes("onnx", "k", "model.onnx", b"export")
    except (ArtifactMismatch, OSError):
        pass
    assert list(elsewhere.rglob("*")) == []


# --- 6. over-masking: every 4+ character piece of a password is masked in all output ------------------------------
def test_a_password_with_a_slash_does_not_mask_ordinary_words() -> None:
    """A password `farm/2024` (pieces `farm`, `2024`) turns every "farm" and "2024" in stored job errors, dead
    letters and logs into *** for good (host `farm-cpu` -> `***-cpu`, dates 2024-... -> ***-...)."""
    from shared import redact as r

    saved = set(r._KNOWN)
    try:
        r.remember_secrets("postgresql+psycopg://farm:farm/2024@db:5432/farm")
        out = r.redact("job failed on host farm-cpu at 2024-05-01: out of memory")
    finally:
        r._KNOWN.clear()
        r._KNOWN.update(saved)
    assert "farm/2024" not in out
    assert "farm-cpu" in out and "2024-05-01" in out, out


# --- 7. hub ids with a trailing newline; farm plan's budget ----------------------------------------------------------
def test_a_hub_id_with_a_trailing_newline_is_not_a_hub_id() -> None:
    from shared.inputs import _HUB_ID

    assert _HUB_ID.match("org/model")
    assert _HUB_ID.match("org/model\n") is None  # `$` matched before a final newline


def test_plan_budget_is_bounded(env: dict[str, str]) -> None:
    proc = run_farm(["plan", "--budget", str(2**70)], env, timeout=60)
    assert proc.returncode == 2, proc.stderr[-400:]
    assert "Traceback" not in proc.stderr and "10000" in proc.stderr


def test_plan_submit_goes_through_the_confirm_threshold(monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    from controller.commands.predict import _confirm_plan
    from shared.errors import FarmError

    monkeypatch.setenv("FARM_CONFIRM_JOBS", "2")
    rows = [{"variant": v, "command": f"farm submit -v {v} --runtime {r}"}
            for v, r in (("baseline", "torch"), ("baseline", "onnxruntime"), ("quant-uint8", "torch"))]
    with pytest.raises(FarmError, match="FARM_CONFIRM_JOBS=2; nothing was queued"):
        _confirm_plan(rows, yes=False)
    assert "farm submit -v quant-uint8 --runtime torch" in capsys.readouterr().out
    _confirm_plan(rows, yes=True)
    _confirm_plan(rows[:2], yes=False)
    # Counted in jobs, as `farm submit` counts them: a pruned variant is a compress job and a benchmark job.
    with pytest.raises(FarmError, match="would queue 3 jobs for 2 measurements"):
        _confirm_plan([rows[0], {"variant": "pruned", "command": "farm submit -v pruned"}], yes=False)


def test_long_password_pieces_are_masked_but_not_the_urls_own_host() -> None:
    from shared import redact as r

    saved = set(r._KNOWN)
    try:
        r.remember_secrets("postgresql://u:Longpiece1/dbserver01@dbserver01:5432/farm")
        out = r.redact("libpq: host 'Longpiece1' unknown; connected to dbserver01 instead")
    finally:
        r._KNOWN.clear()
        r._KNOWN.update(saved)
    assert "Longpiece1" not in out  # an 8+ piece of a password with '/' is what a splitting driver quotes back
    assert "dbserver01" in out, out  # ...but the URL's own host is not a secret
