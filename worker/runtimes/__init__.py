"""Runtimes: one module per runtime, one line each in `RUNTIMES` (names match shared/stages.py's list)."""

from __future__ import annotations

import importlib.util

from shared.errors import FarmError
from worker.runtimes.base import Runner, Runtime
from worker.runtimes.onnxruntime_rt import OnnxRuntime
from worker.runtimes.openvino_rt import OpenVinoRuntime
from worker.runtimes.torch_eager import TorchRuntime

RUNTIMES: dict[str, type[Runtime]] = {TorchRuntime.name: TorchRuntime, OnnxRuntime.name: OnnxRuntime,
                                      OpenVinoRuntime.name: OpenVinoRuntime}
# What each runtime needs installed beyond the worker extra (pip install 'farm[runtimes]').
NEEDS: dict[str, tuple[str, ...]] = {"torch": ("torch",), "onnxruntime": ("onnxruntime", "onnx"),
                                     "openvino": ("openvino", "onnx", "nncf")}


def available_runtimes(allowed: tuple[str, ...] | None = None) -> list[str]:
    """The runtimes whose packages are installed here (and that `allowed`, FARM_RUNTIMES, lets through): what a
    worker advertises in its heartbeat and runs."""
    return [name for name in RUNTIMES if (allowed is None or name in allowed)
            and all(importlib.util.find_spec(p) is not None for p in NEEDS[name])]


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
