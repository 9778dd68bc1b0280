"""Runtimes: one module per runtime, each declared once in shared/runtimes.py, which this registry is built from.
Importing it fails when a class's `name` is not its descriptor's (the two sides cannot drift apart)."""

from __future__ import annotations

from shared.errors import FarmError
from shared.refs import resolve
from shared.runtimes import RUNTIME_INFOS
from worker.installed import NEEDS, available_runtimes
from worker.runtimes.base import Runner, Runtime


def _registry() -> dict[str, type[Runtime]]:
    registry: dict[str, type[Runtime]] = {}
    for info in RUNTIME_INFOS:
        cls = resolve(info.implementation)
        if not (isinstance(cls, type) and issubclass(cls, Runtime)) or cls.name != info.name:
            raise ImportError(f"{info.implementation} is not the Runtime named {info.name!r} that "
                              "shared/runtimes.py declares")
        registry[info.name] = cls
    return registry


RUNTIMES: dict[str, type[Runtime]] = _registry()


def get_runtime(name: str, allowed: tuple[str, ...] | None = None) -> Runtime:
    """The runtime called `name`; FarmError when this worker does not have it (or lacks its packages)."""
    if name not in RUNTIMES:
        raise FarmError(f"runtime {name!r} is not available on this worker (it has {', '.join(RUNTIMES)})")
    if allowed is not None and name not in allowed:
        raise FarmError(f"runtime {name!r} is switched off on this worker (FARM_RUNTIMES={','.join(allowed)})")
    if name not in available_runtimes():
        raise FarmError(f"runtime {name!r} needs {', '.join(NEEDS[name])} on this worker: "
                        "pip install 'farm[runtimes]'")
    return RUNTIMES[name]()


__all__ = ["RUNTIMES", "Runner", "Runtime", "available_runtimes", "get_runtime"]
