"""The docs cover what exists: every `farm` command and every FARM_* setting is documented under docs/, and every
relative link in README.md and docs/*.md leads to a file that exists."""

from __future__ import annotations

import inspect
import re
import textwrap
from pathlib import Path

import click

ROOT = Path(__file__).resolve().parents[1]
DOCS = sorted((ROOT / "docs").glob("*.md"))
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def _docs_text() -> str:
    return "\n".join(p.read_text() for p in DOCS)


def test_every_farm_command_is_documented() -> None:
    from controller.cli import main

    commands = main.list_commands(click.Context(main))
    assert len(commands) >= 10
    text = _docs_text()
    missing = [c for c in commands if f"`farm {c}" not in text]
    assert not missing, f"commands with no `farm NAME` in docs/: {missing}"


def test_every_command_reference_resolves() -> None:
    from controller.cli import COMMANDS
    from shared.refs import resolve

    for name, ref in COMMANDS.items():
        assert isinstance(resolve(ref), click.Command), name


def test_every_setting_is_documented() -> None:
    import shared.settings

    names = set(re.findall(r"\"(FARM_[A-Z0-9_]+)\"", inspect.getsource(shared.settings)))
    assert {"FARM_BROKER_URL", "FARM_DATABASE_URL", "FARM_RUNTIMES"} <= names
    text = _docs_text()
    missing = sorted(n for n in names if f"`{n}`" not in text)
    assert not missing, f"settings not documented in docs/: {missing}"


def test_every_relative_link_resolves() -> None:
    broken = []
    for page in [ROOT / "README.md", *DOCS]:
        for target in LINK.findall(page.read_text()):
            if re.match(r"^[a-z]+:", target) or target.startswith("#"):
                continue  # a URL, or an anchor on the same page
            path = (page.parent / target.split("#", 1)[0]).resolve()
            if not path.exists():
                broken.append(f"{page.relative_to(ROOT)}: {target}")
    assert not broken, broken
    assert len(DOCS) >= 7


def test_the_readme_stays_short() -> None:
    assert len((ROOT / "README.md").read_text().splitlines()) <= 200


def test_the_worked_scheme_example_is_the_code() -> None:
    """docs/extending.md's `bf16` example quotes its module and its Stage as they are (indentation aside)."""
    page = (ROOT / "docs" / "extending.md").read_text()
    section = page.split("## A quantization scheme: `bf16`", 1)[1].split("\n## ", 1)[0]
    blocks = [textwrap.dedent(b) for b in re.findall(r"```python\n(.*?)```", section, re.S)]
    assert len(blocks) == 2
    code = [(ROOT / "worker/compression/bf16.py").read_text(), (ROOT / "shared/stages.py").read_text()]
    for block, source in zip(blocks, code, strict=True):
        lines = [line.strip() for line in block.splitlines() if line.strip()]
        assert "\n".join(lines) in "\n".join(line.strip() for line in source.splitlines() if line.strip()), block
