"""Which runtimes this machine can run: their packages are installed (checked without importing them, so the
worker's heartbeat can say so at once)."""

from __future__ import annotations

import importlib.util

from shared.runtimes import RUNTIME_INFOS

# What each runtime needs installed beyond the worker extra (pip install 'farm[runtimes]'), from shared/runtimes.py.
NEEDS: dict[str, tuple[str, ...]] = {r.name: r.packages for r in RUNTIME_INFOS}


def available_runtimes(allowed: tuple[str, ...] | None = None) -> list[str]:
    """The runtimes whose packages are installed here (and that `allowed`, FARM_RUNTIMES, lets through): what a
    worker advertises in its heartbeat and runs."""
    return [name for name, packages in NEEDS.items() if (allowed is None or name in allowed)
            and all(importlib.util.find_spec(p) is not None for p in packages)]
