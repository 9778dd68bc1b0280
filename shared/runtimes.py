"""The inference runtimes, one descriptor each: name, device classes, the packages a worker needs for it, and
the worker class that implements it. `farm variants`, the --runtime help, submit-time checks and the worker's
availability check (worker/installed.py) all read this list; the worker's registry (worker/runtimes/) is built
from it and refuses to import when a class's `name` differs from its descriptor's.
"""

from __future__ import annotations

from dataclasses import dataclass

from shared.devices import DeviceClass


@dataclass(frozen=True)
class RuntimeInfo:
    """One runtime. `packages` are the modules it needs beyond the worker extra (pip install 'farm[runtimes]')."""

    name: str
    devices: tuple[DeviceClass, ...]
    packages: tuple[str, ...]
    implementation: str
    summary: str


# ONNX Runtime and OpenVINO run here on the CPU; their GPU providers are not wired.
RUNTIME_INFOS: tuple[RuntimeInfo, ...] = (
    RuntimeInfo("torch", ("cpu", "gpu"), ("torch",), "worker.runtimes.torch_eager:TorchRuntime",
                "the eager nn.Module, quantized in place (quanto, torch.ao)"),
    RuntimeInfo("onnxruntime", ("cpu",), ("onnxruntime", "onnx"), "worker.runtimes.onnxruntime_rt:OnnxRuntime",
                "the model exported to ONNX, run by ONNX Runtime's CPU provider"),
    RuntimeInfo("openvino", ("cpu",), ("openvino", "onnx", "nncf"), "worker.runtimes.openvino_rt:OpenVinoRuntime",
                "the ONNX export compiled by OpenVINO for the CPU"),
)
RUNTIMES: tuple[str, ...] = tuple(r.name for r in RUNTIME_INFOS)
RUNTIME_DEVICES: dict[str, tuple[DeviceClass, ...]] = {r.name: r.devices for r in RUNTIME_INFOS}
DEFAULT_RUNTIME = "torch"


def runtime_choices() -> str:
    """"torch, onnxruntime or openvino": the runtimes as help texts list them."""
    return ", ".join(RUNTIMES[:-1]) + f" or {RUNTIMES[-1]}" if len(RUNTIMES) > 1 else RUNTIMES[0]
