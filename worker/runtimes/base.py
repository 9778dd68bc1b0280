"""What a runtime is: it loads a compressed fp32 model for a device and returns a runner.

A runner takes a batch of images (N, C, H, W, float32, on the CPU) and returns logits (N, classes) on any
device; the benchmark times and meters nothing but runner calls. Quantization is part of loading, because
each runtime quantizes its own way (shared/stages.py names, per scheme, the function for each runtime).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from shared.errors import FarmError
from shared.refs import resolve
from shared.specs import QuantSpec
from shared.stages import quant_stage
from worker.devices.base import DeviceHandle

Runner = Callable[[torch.Tensor], torch.Tensor]


class Runtime(ABC):
    """One inference runtime. `name` is what jobs say (JobSpec.runtime) and what shared/stages.py lists."""

    name: str = "runtime"
    package: str = "torch"  # the distribution whose version results record

    def version(self) -> str | None:
        """The installed version of `package` (None when it cannot be read)."""
        from importlib import metadata

        try:
            return metadata.version(self.package)
        except metadata.PackageNotFoundError:
            return None

    @abstractmethod
    def load(self, model: nn.Module, quant: QuantSpec | None, device: DeviceHandle, example: torch.Tensor, *,
             export: Any = None, calibration: Callable[[], list[torch.Tensor]] | None = None) -> Runner:
        """Prepare `model` (eval mode, fp32, on the CPU; `example` is one input batch) to run on `device`.
        `export` (an onnx_export.ExportCache) caches what a runtime converts the model to; `calibration()` gives
        batches of the training split for schemes that calibrate. Runtimes that need neither ignore them."""


def loaded_weights(runner: Runner) -> Any:
    """What a runtime's runner holds its weights in (an nn.Module, ONNX bytes, an OpenVINO Model), or None for a
    runner that does not say (worker/memory.py counts them)."""
    return getattr(runner, "weights", None)


def quantizer(quant: QuantSpec, runtime: str, device: DeviceHandle) -> Callable[..., Any]:
    """The function that applies `quant` on `runtime`; FarmError where the scheme does not run there."""
    stage = quant_stage(quant.scheme)
    if device.device.device_class not in stage.devices:
        raise FarmError(f"{quant.scheme} runs on {' and '.join(stage.devices)} only, not on {device}")
    if runtime not in stage.apply:
        raise FarmError(f"{quant.scheme} is not available on the {runtime} runtime")
    return resolve(stage.apply[runtime])
