"""docker-compose.yml stays runnable: its services, and every `farm` command in it parsed by the real CLI."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import click
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
    assert "--appendonly" in services["redis"]["command"] and "yes" in services["redis"]["command"]
    assert any(v.endswith(":/var/lib/postgresql/data") for v in services["postgres"]["volumes"])
    for name in ("redis", "postgres", "worker-cpu", "worker-gpu"):
        assert "healthcheck" in services[name], name
    gpu = services["worker-gpu"]["deploy"]["resources"]["reservations"]["devices"][0]
    assert gpu["driver"] == "nvidia" and "gpu" in gpu["capabilities"]
    for name in ("worker-cpu", "worker-gpu"):
        assert "artifacts:/artifacts" in services[name]["volumes"]  # one artifacts volume for every worker
        env = services[name]["environment"]
        assert env["FARM_BROKER_URL"].startswith("redis://redis:") and "@postgres:" in env["FARM_DATABASE_URL"]
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
