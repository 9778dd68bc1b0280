"""Runtimes: one module per runtime, one line each in `RUNTIMES` (names match shared/stages.py's list)."""

from __future__ import annotations

from shared.errors import FarmError
from worker.installed import NEEDS, available_runtimes
from worker.runtimes.base import Runner, Runtime
from worker.runtimes.onnxruntime_rt import OnnxRuntime
from worker.runtimes.openvino_rt import OpenVinoRuntime
from worker.runtimes.torch_eager import TorchRuntime

RUNTIMES: dict[str, type[Runtime]] = {TorchRuntime.name: TorchRuntime, OnnxRuntime.name: OnnxRuntime,
                                      OpenVinoRuntime.name: OpenVinoRuntime}
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
