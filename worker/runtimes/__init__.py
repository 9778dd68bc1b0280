"""Runtimes: one module per runtime, one line each in `RUNTIMES` (names match shared/stages.py's list)."""

from __future__ import annotations

from shared.errors import FarmError
from worker.runtimes.base import Runner, Runtime
from worker.runtimes.torch_eager import TorchRuntime

RUNTIMES: dict[str, type[Runtime]] = {TorchRuntime.name: TorchRuntime}


def get_runtime(name: str) -> Runtime:
    """The runtime called `name`; FarmError when this worker does not have it."""
    try:
        return RUNTIMES[name]()
    except KeyError:
        raise FarmError(f"runtime {name!r} is not available on this worker (it has {', '.join(RUNTIMES)})") from None


__all__ = ["RUNTIMES", "Runner", "Runtime", "get_runtime"]
