"""The `torch` runtime: the eager nn.Module on the device, quantized in place (quanto or torch.ao)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from shared.specs import QuantSpec
from worker.devices.base import DeviceHandle
from worker.runtimes.base import Runner, Runtime, quantizer


class TorchRuntime(Runtime):
    """Runs the Hugging Face model as it is; its output's `.logits` (or the tensor itself) are the logits."""

    name = "torch"

    def load(self, model: nn.Module, quant: QuantSpec | None, device: DeviceHandle, example: torch.Tensor, *,
             export: Any = None, calibration: Any = None) -> Runner:
        target = device.torch_device
        model = quantize(model.eval().to(target), quant, device)

        def run(batch: torch.Tensor) -> torch.Tensor:
            out = model(batch.to(target, non_blocking=True))
            return out if isinstance(out, torch.Tensor) else out.logits

        run.weights = model  # type: ignore[attr-defined]  # what worker/memory.py counts
        return run


def quantize(model: nn.Module, quant: QuantSpec | None, device: DeviceHandle) -> nn.Module:
    """`model` (already on `device`) quantized by `quant`'s torch function; FarmError where it cannot run."""
    if quant is None:
        return model
    return quantizer(quant, TorchRuntime.name, device)(model, quant, device.torch_device)  # type: ignore[no-any-return]
