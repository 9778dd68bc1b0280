"""docker-compose.yml stays runnable: its services, and every `farm` command in it parsed by the real CLI."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import click
import pytest
import yaml

from controller.cli import main

COMPOSE = Path(__file__).parents[1] / "docker-compose.yml"


def _services() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())["services"]


def _farm_commands(service: dict[str, Any]) -> list[list[str]]:
    """Each `farm ...` invocation in a service's command (a list, or `sh -c "a && b"`)."""
    command = service.get("command")
    text = command if isinstance(command, str) else shlex.join(command or [])
    words = shlex.split(text)
    if words[:2] == ["sh", "-c"]:
        words = shlex.split(words[2])
    found, current = [], None
    for word in [*words, "&&"]:
        if word in ("&&", "||", ";"):
            if current:
                found.append(current)
            current = None
        elif current is not None:
            current.append(word)
        elif word == "farm":
            current = []
    return found


def test_services_have_what_a_farm_needs() -> None:
    services = _services()
    assert {"redis", "postgres", "controller", "worker-cpu", "worker-gpu", "flower"} <= set(services)
    assert "--appendonly yes" in " ".join(services["redis"]["command"])
    assert any(v.endswith(":/var/lib/postgresql/data") for v in services["postgres"]["volumes"])
    for name in ("redis", "postgres", "worker-cpu", "worker-gpu"):
        assert "healthcheck" in services[name], name
    gpu = services["worker-gpu"]["deploy"]["resources"]["reservations"]["devices"][0]
    assert gpu["driver"] == "nvidia" and "gpu" in gpu["capabilities"]
    for name in ("worker-cpu", "worker-gpu"):
        assert "artifacts:/artifacts" in services[name]["volumes"]  # one artifacts volume for every worker
        env = services[name]["environment"]
        assert env["FARM_BROKER_URL"].startswith("redis://:") and "@redis:6379/" in env["FARM_BROKER_URL"]
        assert "@postgres:" in env["FARM_DATABASE_URL"]
    assert "flower" in services["flower"]["command"]


def test_every_farm_command_in_compose_parses() -> None:
    commands = {name: _farm_commands(s) for name, s in _services().items()}
    assert commands["worker-cpu"] == [["worker", "--device", "cpu"]]
    assert commands["worker-gpu"] == [["worker", "--device", "cuda:0"]]
    assert sum(len(c) for c in commands.values()) >= 3
    for name, invocations in commands.items():
        for args in invocations:
            ctx = main.make_context("farm", list(args), resilient_parsing=False)
            sub = main.get_command(ctx, args[0])
            assert isinstance(sub, click.Command), (name, args)
            sub.make_context(args[0], list(args[1:]), parent=ctx)  # raises on an unknown option or bad value


# Closed by default (issue 19, item 4).
SECRET_VAR = re.compile(r"\$\{(?P<name>[A-Z_]+)(?P<rest>[^}]*)\}")


def _secret_vars(text: str) -> list[str]:
    """The variables a value takes from .env; a `${VAR:-default}` (a literal default password) fails here."""
    found = []
    for m in SECRET_VAR.finditer(text):
        assert not m["rest"].startswith((":-", "-")), f"{m.group(0)} gives a literal default"
        found.append(m["name"])
    return found


def test_no_port_is_published_on_all_interfaces() -> None:
    published = 0
    for name, service in _services().items():
        for port in service.get("ports", []):
            spec = port if isinstance(port, str) else f"{port.get('host_ip', '')}:{port.get('published')}"
            assert spec.startswith("127.0.0.1:"), (name, port)  # "6379:6379" and "0.0.0.0:..." publish everywhere
            published += 1
    assert published == 3  # redis, postgres, flower


def test_every_service_has_credentials_restart_and_a_healthcheck() -> None:
    services = _services()
    redis = services["redis"]
    assert "requirepass" in " ".join(redis["command"]) and _secret_vars(redis["environment"]["REDIS_PASSWORD"])
    assert "REDISCLI_AUTH" in " ".join(redis["healthcheck"]["test"])
    assert _secret_vars(services["postgres"]["environment"]["POSTGRES_PASSWORD"]) == ["POSTGRES_PASSWORD"]
    assert _secret_vars(services["flower"]["environment"]["FLOWER_BASIC_AUTH"]) == ["FLOWER_PASSWORD"]
    for name, service in services.items():
        assert service.get("restart") == "unless-stopped", name
        assert "healthcheck" in service, name
        env = service.get("environment", {})
        for key in ("FARM_BROKER_URL", "FARM_DATABASE_URL"):
            if key in env:
                assert _secret_vars(env[key]), (name, key, env[key])  # a password, from .env
        text = yaml.safe_dump(service)
        assert "pip install" not in text, name  # installed once, at build
        for literal in ("farm:farm@", "POSTGRES_PASSWORD: farm"):
            assert literal not in text, name


def test_one_image_built_from_the_dockerfile_non_root_with_pinned_torch() -> None:
    services = _services()
    farm = [n for n in services if n not in ("redis", "postgres")]
    for name in farm:
        assert services[name]["build"]["dockerfile"] == "Dockerfile", name
    dockerfile = (COMPOSE.parent / "Dockerfile").read_text()
    assert re.search(r"^USER farm$", dockerfile, re.M)
    assert "ARG TORCH_VERSION=2.13.0" in dockerfile and "whl/cpu" in dockerfile
    # int4 on a CPU: a compiler in the image and quanto's extension built as root, before the image drops to `farm`
    # (a worker could not write into site-packages). Checked by reading the file: docker is not run here.
    build = dockerfile.index("load_cpu_unpack_kernel")
    assert "install -y --no-install-recommends g++" in dockerfile[:build]
    assert build < dockerfile.index("USER farm") and dockerfile.index("rm -rf /src") > build
    gpu = services["worker-gpu"]["build"]["args"]
    assert "cu1" in gpu["TORCH_INDEX"]  # the same torch version, a CUDA build: pip keeps it


def test_workers_see_the_hosts_powercap_read_only() -> None:
    for name in ("worker-cpu", "worker-gpu"):
        service = _services()[name]
        mounts = [v for v in service["volumes"] if "powercap" in v]
        assert mounts and all(v.endswith(":ro") for v in mounts), name
        assert service["environment"]["FARM_POWERCAP_ROOT"] in {v.split(":")[1] for v in mounts}


def test_the_open_override_replaces_ports_with_a_chosen_address() -> None:
    class Loader(yaml.SafeLoader):
        pass

    Loader.add_constructor("!override", lambda loader, node: loader.construct_sequence(node))
    override = yaml.load((COMPOSE.parent / "docker-compose.open.yml").read_text(), Loader=Loader)  # noqa: S506
    for name, service in override["services"].items():
        for port in service["ports"]:
            assert port.startswith("${FARM_PUBLISH_ADDR:?"), (name, port)  # no default: the user names it


def test_compose_env_writes_random_secrets_once(tmp_path: Path) -> None:
    import subprocess
    import sys

    target = tmp_path / ".env"
    script = COMPOSE.parent / "scripts" / "compose_env.py"
    subprocess.run([sys.executable, str(script), str(target)], check=True, capture_output=True)
    first = target.read_text()
    assert oct(target.stat().st_mode & 0o777) == "0o600"
    values = dict(line.split("=", 1) for line in first.splitlines() if "=" in line and not line.startswith("#"))
    assert set(values) == {"REDIS_PASSWORD", "POSTGRES_PASSWORD", "FLOWER_PASSWORD"}
    assert all(re.fullmatch(r"[0-9a-f]{32}", v) for v in values.values()) and len(set(values.values())) == 3
    subprocess.run([sys.executable, str(script), str(target)], check=True, capture_output=True)
    assert target.read_text() == first  # never overwritten
    compose_vars = set(SECRET_VAR.findall(COMPOSE.read_text()))
    assert {name for name, _ in compose_vars} <= set(values) | {"FARM_PUBLISH_ADDR"}


def test_docs_farm_urls_match_the_compose_file() -> None:
    root = COMPOSE.parent
    texts = [root / "README.md", *sorted((root / "docs").glob("*.md"))]
    urls = [u for p in texts for u in re.findall(r"FARM_(?:BROKER|DATABASE)_URL=(\S+)", p.read_text())]
    assert urls
    for url in urls:
        if url.startswith(("redis://", "rediss://")):
            assert "$REDIS_PASSWORD@" in url or "${REDIS_PASSWORD}@" in url, url
        elif url.startswith("postgresql"):
            assert "farm:$POSTGRES_PASSWORD@" in url or "farm:${POSTGRES_PASSWORD}@" in url, url


def test_docker_compose_config_accepts_the_file_where_docker_exists(tmp_path: Path) -> None:
    import shutil
    import subprocess

    docker = shutil.which("docker")
    if docker is None or subprocess.run([docker, "compose", "version"], capture_output=True).returncode != 0:
        pytest.skip("docker compose is not installed here; the file is checked by parsing only")
    env = {"PATH": "/usr/bin:/bin", "REDIS_PASSWORD": "x", "POSTGRES_PASSWORD": "y", "FLOWER_PASSWORD": "z"}
    proc = subprocess.run([docker, "compose", "-f", str(COMPOSE), "config", "--quiet"], env=env,
                          capture_output=True, text=True, cwd=COMPOSE.parent)
    assert proc.returncode == 0, proc.stderr
    missing = subprocess.run([docker, "compose", "-f", str(COMPOSE), "config", "--quiet"], env={"PATH": "/usr/bin"},
                             capture_output=True, text=True, cwd=COMPOSE.parent)
    assert missing.returncode != 0 and "make compose-env" in missing.stderr  # no .env: refused, not defaulted
