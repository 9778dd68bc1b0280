"""A corpus of odd passwords and URL forms thrown at every command's failure path, a worker's log, the store's job
errors and the dead letters: no secret, nor the distinctive core of one, may show anywhere (issue 19, item 1)."""

from __future__ import annotations

import json
import os
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import quote

import pytest

from harness.faultkit import LocalRedis, spare_port
from shared import redact as redact_module
from shared.redact import redact, remember_env_secrets, remember_secrets, url_secrets
from tests.conftest import run_farm

# Each password holds a unique core (S3cret + a letter): a driver that quotes a fragment of the password back
# would show the core even where the whole password is not there.
PASSWORDS = [
    "S3cretRedisQa", "pa)ss-S3cretParen", "(paren)S3cretA", "[brack]S3cretB", "{brace}S3cretC", "quo'te'S3cretD",
    'dq"uote"S3cretE', "sp ace S3cretF", "at@sign@S3cretG", "hash#S3cretH", "sl/ash/S3cretI", "col:on:S3cretJ",
    "q?mark=S3cretK", "amp&S3cretL=1", "pct%20S3cretM", "semi;S3cretN", "back\\slashS3cretO", "ünï©ødéS3cretP",
    "tab\tS3cretQ", "<angle>S3cretR", "comma,S3cretS", "all@#/:?()[]{}'\" S3cretT", "dollar$S3cretU",
    "plus+tilde~S3cretV",
]


def _core(password: str) -> str:
    return "S3cret" + password.split("S3cret", 1)[1][:1]


def _q(password: str) -> str:
    return quote(password, safe="")


# URL forms: raw userinfo (as users paste it), percent-encoded userinfo, and secret query parameters (always
# percent-encoded: there a raw '&' would end the value by the URL's own rules).
BROKER_FORMS = [
    lambda pw, port: f"redis://:{pw}@127.0.0.1:{port}/0",
    lambda pw, port: f"redis://farm:{pw}@127.0.0.1:{port}/0",
    lambda pw, port: f"redis://127.0.0.1:{port}/0?password={_q(pw)}",
    lambda pw, port: f"rediss://:{pw}@127.0.0.1:{port}/0",
    lambda pw, port: f"redis://:{_q(pw)}@127.0.0.1:{port}/0",
]
DATABASE_FORMS = [
    lambda pw, port: f"postgresql+psycopg://farm:{pw}@127.0.0.1:{port}/farm",
    lambda pw, port: f"postgresql://farm@127.0.0.1:{port}/farm?password={_q(pw)}",
    lambda pw, port: f"postgresql+psycopg://farm@127.0.0.1:{port}/farm?sslmode=require&sslpassword={_q(pw)}",
    lambda pw, port: f"postgresql+psycopg://farm:{_q(pw)}@127.0.0.1:{port}/farm?application_name=x",
    lambda pw, port: f"mysql://root:{pw}@127.0.0.1:{port}/farm",
]


def corpus(port: int) -> list[tuple[str, str, str]]:
    """(kind, url, password): each password once as a broker URL and once as a store URL, forms rotating."""
    out = []
    for i, pw in enumerate(PASSWORDS):
        out.append(("broker", BROKER_FORMS[i % len(BROKER_FORMS)](pw, port), pw))
        out.append(("database", DATABASE_FORMS[(i + 2) % len(DATABASE_FORMS)](pw, port), pw))
    return out


def _leaks(text: str, password: str) -> list[str]:
    return [s for s in (password, _core(password)) if s in text]


def test_corpus_is_large_and_varied() -> None:
    urls = corpus(1)
    assert len(urls) >= 40 and len({u for _, u, _ in urls}) == len(urls)
    assert {u.split("://")[0] for _, u, _ in urls} >= {"redis", "rediss", "postgresql", "postgresql+psycopg", "mysql"}


@pytest.mark.parametrize("kind,url,password", corpus(6499))
def test_redact_masks_every_corpus_url(kind: str, url: str, password: str) -> None:
    """The parser alone (no remembered secrets) hides each URL's password, and what a driver quotes back."""
    saved = set(redact_module._KNOWN)
    redact_module._KNOWN.clear()
    try:
        assert not _leaks(redact(f"cannot reach {kind} {url}: refused"), password)
        remember_secrets(url)
        assert password in url_secrets(url) or _q(password) in url_secrets(url)
        # a driver that decodes the URL and quotes the password, or a piece of it, back
        for echo in (password, f"host 'ss{password}@127.0.0.1'", f"password={password}"):
            assert not _leaks(redact(echo), password), echo
    finally:
        redact_module._KNOWN.clear()
        redact_module._KNOWN.update(saved)


def test_redact_hides_keyword_strings_and_secret_env(tmp_path: Path) -> None:
    assert "hunter2x" not in redact("connect: host=db password=hunter2x dbname=farm")
    assert "hunter2y" not in redact("dsn='host=db password=\"hunter2y\"'")
    passfile = tmp_path / "pgpass"
    passfile.write_text("db:5432:farm:farm:pw\\:fromFileZ9\n")
    remember_env_secrets({"PGPASSFILE": str(passfile), "FLOWER_BASIC_AUTH": "farm:flowerPwZ8",
                          "REDIS_PASSWORD": "redisPwZ7", "FARM_BROKER_KEY_PASSWORD": "keyPwZ6"})
    shown = redact("pw:fromFileZ9 flowerPwZ8 redisPwZ7 keyPwZ6")
    assert not any(s in shown for s in ("fromFileZ9", "flowerPwZ8", "redisPwZ7", "keyPwZ6")), shown
    assert redact("a lock key=farm:lock:x and token counts") == "a lock key=farm:lock:x and token counts"


COMMANDS = {
    "broker": [["status"], ["submit", "--variant", "baseline"], ["dead"], ["retry", "abc"]],
    "database": [["status"], ["submit", "--variant", "baseline"], ["results"], ["report"], ["retry", "abc"]],
}


@pytest.mark.slow
def test_no_command_prints_a_corpus_secret(tmp_path: Path, redis_url: str) -> None:
    """Light commands against every corpus URL (an unreachable broker or store on loopback): their output holds
    no secret. Each URL goes through two of its kind's commands, rotating, so each command meets 9-12 URLs of
    every form and many passwords: 48 URLs, 96 runs, 6 at a time (every command × every URL was 216 runs, 340 s
    of the suite's CPU on 2 cores; each run starts a Python that imports SQLAlchemy)."""
    port = spare_port()  # nothing listens there
    base = {k: v for k, v in os.environ.items() if not k.startswith("FARM_")}
    base.update(FARM_DATABASE_URL=f"sqlite:///{tmp_path / 'f.db'}", FARM_BROKER_URL=redis_url,
                FARM_HOSTNAME="h", FARM_BROKER_TIMEOUT_S="1", FARM_DATA_ROOTS=str(tmp_path))
    runs = []
    for i, (kind, url, pw) in enumerate(corpus(port)):
        commands = COMMANDS[kind]
        runs += [(kind, url, pw, commands[(i // 2 + k) % len(commands)]) for k in (0, 1)]
    assert {" ".join(r[3]) for r in runs} == {" ".join(a) for c in COMMANDS.values() for a in c}

    def one(run: tuple[str, str, str, list[str]]) -> tuple[str, str, list[str], int, str]:
        kind, url, pw, args = run
        env = {**base, "FARM_BROKER_URL" if kind == "broker" else "FARM_DATABASE_URL": url}
        proc = run_farm(args, env, timeout=60)
        out = proc.stdout + proc.stderr
        return url, " ".join(args), _leaks(out, pw), proc.returncode, out

    with ThreadPoolExecutor(6) as pool:
        results = list(pool.map(one, runs))
    leaked = [(url, args, found, out[-400:]) for url, args, found, _, out in results if found]
    assert not leaked, leaked[:5]
    failed = sum(rc != 0 or "cannot reach" in out for _, _, _, rc, out in results)
    assert failed >= len(runs) * 0.9, [(u, a, out[-200:]) for u, a, _, rc, out in results if rc == 0][:5]
    print(f"corpus: {len(corpus(port))} URLs, {len(runs)} command runs, no secret shown")


def _store_errors(db: Path) -> list[str]:
    with sqlite3.connect(db) as conn:
        return [e or "" for (e,) in conn.execute("SELECT error FROM job")]


@pytest.mark.slow
def test_worker_log_store_and_dead_letters_hold_no_secret(farm_env: dict[str, str], tmp_path: Path,
                                                          start_worker) -> None:  # noqa: ANN001
    """A worker on a Redis whose password is the corpus's worst: a job that fails with the secret in its error
    (a dataset folder named after it), and a poison message holding the secret, which the worker dead-letters.
    The worker's log, the CLI's output, the store's job errors and the dead letters are grepped. Then `farm
    worker` and `farm run` against unreachable broker and store URLs of the corpus."""
    password = "all@#:?()[]{}'\" S3cretT"
    broker = LocalRedis(tmp_path / "redis", aof=False, password=password)
    try:
        env = {**farm_env, "FARM_BROKER_URL": broker.url}
        worker = start_worker(env, "cpu", name="secrets@test-host")
        worker.wait_ready(90)
        folder = tmp_path / f"data {password}"
        folder.mkdir()
        (folder / "not-cifar.txt").write_text("this is no dataset")
        sub = run_farm(["submit", "--variant", "baseline", "--dataset", f"cifar100:{folder}", "--repeats", "1",
                        "--wait", "--timeout", "120"], env)
        import redis

        client = redis.Redis(host="127.0.0.1", port=broker.port, password=password)
        client.lpush("cpu", f"not json at all; the broker password is {password}")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not client.llen("farm:dead"):
            time.sleep(0.5)
        dead_letters = [x.decode() for x in client.lrange("farm:dead", 0, -1)]
        outputs = [run_farm(args, env) for args in (["status"], ["dead"], ["results"])]
        worker.stop()
        texts = {"submit": sub.stdout + sub.stderr, "log": worker.log_path.read_text(),
                 **{f"cli{i}": p.stdout + p.stderr for i, p in enumerate(outputs)},
                 "store": "\n".join(_store_errors(Path(env["FARM_DATABASE_URL"].split(":///", 1)[1]))),
                 "dead": "\n".join(dead_letters)}
        assert sub.returncode != 0, sub.stdout + sub.stderr  # the job failed, on the folder named by the secret
        assert "***" in texts["store"], texts["store"]  # its stored error named the folder, masked
        assert dead_letters and json.loads(dead_letters[0])["payload"], dead_letters
        assert "***" in texts["dead"]
        leaked = {name: _leaks(text, password) for name, text in texts.items() if _leaks(text, password)}
        assert not leaked, {name: texts[name][-1500:] for name in leaked}
    finally:
        broker.close()
    port = spare_port()
    heavy = [("broker", BROKER_FORMS[0](PASSWORDS[1], port), PASSWORDS[1]),
             ("broker", BROKER_FORMS[3](PASSWORDS[21], port), PASSWORDS[21]),
             ("database", DATABASE_FORMS[0](PASSWORDS[7], port), PASSWORDS[7]),
             ("database", DATABASE_FORMS[1](PASSWORDS[13], port), PASSWORDS[13])]
    for kind, url, pw in heavy:
        for args in (["worker", "--device", "cpu"], ["run", "--variant", "baseline", "--limit", "8"]):
            env = {**farm_env, "FARM_BROKER_TIMEOUT_S": "1",
                   "FARM_BROKER_URL" if kind == "broker" else "FARM_DATABASE_URL": url}
            proc = run_farm(args, env, timeout=120)
            if kind == "broker" and args[0] == "run":
                continue  # `farm run` needs no broker: nothing failed, nothing to grep
            assert proc.returncode != 0, (url, args, proc.stdout[-500:])
            assert not _leaks(proc.stdout + proc.stderr, pw), (url, args, proc.stderr[-800:])

