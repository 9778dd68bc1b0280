"""The `farm` command: one click command per user action (controller/commands/). Parse, call, print."""

from __future__ import annotations

import sys
from typing import Any

import click

from shared.errors import FarmError
from shared.redact import redact

# Each command's module is imported only when that command runs (or `farm --help` lists them): a cold
# `farm status` need not import what `farm submit` or `farm report` use.
COMMANDS: dict[str, str] = {
    "run": "controller.commands.run:run",
    "submit": "controller.commands.submit:submit",
    "status": "controller.commands.fleet:status",
    "cancel": "controller.commands.control:cancel",
    "wait": "controller.commands.control:wait",
    "logs": "controller.commands.control:logs",
    "retry": "controller.commands.submit:retry",
    "worker": "controller.commands.fleet:worker",
    "dead": "controller.commands.fleet:dead",
    "results": "controller.commands.results:results",
    "report": "controller.commands.results:report",
    "recommend": "controller.commands.results:recommend",
    "compare": "controller.commands.compare:compare",
    "calibrate": "controller.commands.calibrate:calibrate",
    "variants": "controller.commands.catalog:variants",
    "inspect": "controller.commands.catalog:inspect",
    "predict": "controller.commands.predict:predict",
    "plan": "controller.commands.predict:plan",
}


class FarmGroup(click.Group):
    """Turns FarmError (bad input, unreachable services) and usage errors into one line on stderr, exit code 2.
    Loads each command from `COMMANDS` on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS:
            return None
        import importlib

        module, _, attr = COMMANDS[cmd_name].partition(":")
        command: click.Command = getattr(importlib.import_module(module), attr)
        return command

    def main(self, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        kwargs["standalone_mode"] = False
        try:
            code = super().main(*args, **kwargs)
        except click.UsageError as exc:
            where = f" (see `{exc.ctx.command_path} --help`)" if exc.ctx is not None else ""
            click.echo(f"farm: error: {redact(exc.format_message())}{where}", err=True)
            sys.exit(2)
        except click.Abort:
            click.echo("farm: aborted", err=True)
            sys.exit(130)
        except click.ClickException as exc:
            click.echo(f"farm: error: {redact(exc.format_message())}", err=True)
            sys.exit(exc.exit_code)
        sys.exit(code if isinstance(code, int) else 0)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except FarmError as exc:
            click.echo(f"farm: error: {redact(exc)}", err=True)
            ctx.exit(2)


def _redacting_excepthook(kind: type[BaseException], exc: BaseException, tb: Any) -> None:
    """A bug keeps its traceback, but never shows a password that an URL in it carried."""
    import traceback

    sys.stderr.write(redact("".join(traceback.format_exception(kind, exc, tb))))


sys.excepthook = _redacting_excepthook


@click.group(cls=FarmGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="farm")
def main() -> None:
    """farm: measure how much energy and time model compression saves at inference.

    Settings come from FARM_BROKER_URL, FARM_DATABASE_URL, FARM_ARTIFACTS and FARM_HOSTNAME
    (see docs/settings.md). `farm run` needs no broker; `farm submit` sends jobs to `farm worker`s.
    """

