"""TLS across machines (issue 19, item 5): a job runs through a `rediss://` broker and a Postgres with
`sslmode=verify-full`, both our own servers on spare loopback ports with a self-signed CA, while plain
connections to them are refused."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.faultkit import spare_port
from shared.errors import FarmError
from shared.tls import broker_url_with_tls, database_url_with_tls
from tests.conftest import run_farm

PASSWORD = "tls-S3cret-pw"
INITDB = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb")) or [shutil.which("initdb") or ""]
BIN = Path(INITDB[-1]).parent if INITDB[-1] else None


def _run(args: list[str], **kw: object) -> None:
    subprocess.run(args, check=True, capture_output=True, **kw)  # type: ignore[call-overload]


def test_tls_options_travel_in_the_urls(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    url = broker_url_with_tls("rediss://:pw@h:6380/0", str(ca))
    assert url == f"rediss://:pw@h:6380/0?ssl_cert_reqs=required&ssl_ca_certs={ca}"
    assert broker_url_with_tls("rediss://h/0?ssl_cert_reqs=required") == "rediss://h/0?ssl_cert_reqs=required"
    with pytest.raises(FarmError, match="rediss"):
        broker_url_with_tls("redis://h/0", str(ca))
    with pytest.raises(FarmError, match="not a readable file"):
        broker_url_with_tls("rediss://h/0", str(tmp_path / "missing.pem"))
    with pytest.raises(FarmError, match="go together"):
        broker_url_with_tls("rediss://h/0", str(ca), cert=str(ca))
    db = database_url_with_tls("postgresql+psycopg://farm:pw@db:5432/farm", str(ca))
    assert db == f"postgresql+psycopg://farm:pw@db:5432/farm?sslrootcert={ca}&sslmode=verify-full"
    assert database_url_with_tls("postgresql://db/f?sslmode=verify-ca", str(ca)) == \
        f"postgresql://db/f?sslmode=verify-ca&sslrootcert={ca}"  # a verifying mode the URL names is kept
    for weak in ("disable", "allow", "prefer", "require"):
        with pytest.raises(FarmError, match="verify-ca or verify-full"):
            database_url_with_tls(f"postgresql://db/f?sslmode={weak}", str(ca))
    for reqs in ("none", "optional", "CERT_NONE", "CERT_OPTIONAL"):
        with pytest.raises(FarmError, match="ssl_cert_reqs"):
            broker_url_with_tls(f"rediss://h/0?ssl_cert_reqs={reqs}")
    with pytest.raises(FarmError, match="Postgres"):
        database_url_with_tls("sqlite:///x.db", str(ca))


@pytest.fixture()
def pki() -> Iterator[Path]:
    """A CA and a server certificate for 127.0.0.1 and localhost, in a folder the postgres user can read."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    folder = Path(tempfile.mkdtemp(prefix="farm-tls-"))
    os.chmod(folder, 0o755)
    _run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
          "-days", "2", "-subj", "/CN=farm-test-ca"], cwd=folder)
    (folder / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    _run(["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr",
          "-subj", "/CN=localhost"], cwd=folder)
    _run(["openssl", "x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
          "-out", "server.pem", "-days", "2", "-extfile", "san.ext"], cwd=folder)
    for name in ("ca.pem", "server.pem", "server.key"):
        os.chmod(folder / name, 0o644 if name.endswith(".pem") else 0o600)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture()
def tls_redis(pki: Path) -> Iterator[str]:
    """Our own redis-server speaking TLS only, with a password; its rediss:// URL."""
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    port = spare_port()
    proc = subprocess.Popen(
        ["redis-server", "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1",
         "--tls-cert-file", str(pki / "server.pem"), "--tls-key-file", str(pki / "server.key"),
         "--tls-ca-cert-file", str(pki / "ca.pem"), "--tls-auth-clients", "no", "--requirepass", PASSWORD,
         "--save", "", "--appendonly", "no", "--dir", str(pki)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    time.sleep(0.5)
    if proc.poll() is not None:
        out = proc.stdout.read().decode() if proc.stdout else ""
        pytest.skip(f"this redis-server was built without TLS: {out[-300:]}")
    yield f"rediss://:{PASSWORD}@127.0.0.1:{port}/0"
    proc.terminate()
    proc.wait(10)


@pytest.fixture()
def tls_postgres(pki: Path) -> Iterator[str]:
    """Our own Postgres cluster (initdb, ssl=on, hostssl only, scram passwords) on a spare loopback port."""
    if BIN is None or not (BIN / "initdb").exists():
        pytest.skip("initdb is not installed")
    as_user: list[str] = []
    if os.geteuid() == 0:  # postgres refuses to run as root
        if shutil.which("runuser") is None:
            pytest.skip("running as root without runuser to start postgres as another user")
        as_user = ["runuser", "-u", "postgres", "--"]
        for name in ("server.pem", "server.key", "ca.pem"):
            shutil.chown(pki / name, "postgres")
    data, port = pki / "pgdata", spare_port()
    (pki / "pw").write_text(PASSWORD)
    if as_user:
        shutil.chown(pki / "pw", "postgres")
        os.chmod(pki, 0o777)
    _run([*as_user, str(BIN / "initdb"), "-D", str(data), "-U", "farm", f"--pwfile={pki / 'pw'}",
          "--auth=scram-sha-256"])
    (data / "pg_hba.conf").write_text("hostssl all farm 127.0.0.1/32 scram-sha-256\n")  # no plain TCP at all
    options = (f"-p {port} -k {pki} -c listen_addresses=127.0.0.1 -c ssl=on -c ssl_cert_file={pki / 'server.pem'} "
               f"-c ssl_key_file={pki / 'server.key'}")
    # the server inherits pg_ctl's stdout: no pipe there, or waiting for pg_ctl would wait for the server
    subprocess.run([*as_user, str(BIN / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(pki / "pg.log"), "-w",
                    "start"], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield f"postgresql+psycopg://farm:{PASSWORD}@localhost:{port}/postgres"
    finally:
        subprocess.run([*as_user, str(BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"],
                       capture_output=True)


@pytest.mark.slow
def test_a_job_runs_through_a_tls_broker_and_a_verify_full_postgres(farm_env: dict[str, str], pki: Path,
                                                                     tls_redis: str, tls_postgres: str,
                                                                     start_worker) -> None:  # noqa: ANN001
    import psycopg
    import redis

    ca = str(pki / "ca.pem")
    env = {**farm_env, "FARM_BROKER_URL": tls_redis, "FARM_BROKER_CA": ca, "FARM_DATABASE_URL": tls_postgres,
           "FARM_DATABASE_CA": ca}
    # plain connections are refused: Redis speaks TLS only, Postgres has no non-SSL entry
    plain = tls_redis.replace("rediss://", "redis://")
    with pytest.raises(redis.RedisError):
        redis.Redis.from_url(plain, socket_timeout=2, socket_connect_timeout=2).ping()
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(tls_postgres.replace("+psycopg", "") + "?sslmode=disable", connect_timeout=5)
    # a client that does not trust our CA refuses the server
    # (`farm dead` needs the broker; `farm status` shows the store's jobs and says the broker failed, exit 0)
    unverified = run_farm(["dead"], {**env, "FARM_BROKER_CA": "", "FARM_BROKER_TIMEOUT_S": "3"}, timeout=60)
    assert unverified.returncode == 2 and "certificate verify failed" in unverified.stderr, unverified.stderr
    worker = start_worker(env, "cpu")
    sub = run_farm(["submit", "--variant", "baseline", "--repeats", "1", "--limit", "16", "--queue-anyway", "--wait",
                    "--timeout", "300", "--format", "json"], env, timeout=400)
    assert sub.returncode == 0, sub.stderr[-2000:] + worker.log_path.read_text()[-3000:]
    with psycopg.connect(tls_postgres.replace("+psycopg", "") + f"?sslmode=verify-full&sslrootcert={ca}") as conn:
        assert conn.info.pgconn.ssl_in_use
        done = conn.execute("SELECT count(*) FROM job WHERE state = 'done'").fetchone()
        rows = conn.execute("SELECT count(*) FROM result").fetchone()
    assert done == (1,) and rows == (1,)
    assert PASSWORD not in sub.stdout + sub.stderr + worker.log_path.read_text()
