"""Quantization applied when a model is loaded on the benchmarking device.

- `uint8`: optimum-quanto qint8 weights (the seed's name; the weights are signed int8), then freeze.
  On CPU quanto dequantizes to float for every matmul, so it is slower than fp32 there.
- `float8`: optimum-quanto qfloat8 (e4m3) weights, then freeze.
- `int8dyn`: int8 weights and int8 activations with per-batch dynamic scales
  (`torch.ao.quantization.quantize_dynamic` on fbgemm/x86/oneDNN). CPU only; the fast CPU path.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

from shared.errors import FarmError
from shared.specs import QuantSpec


def quantize_model(model: nn.Module, spec: QuantSpec, device: str) -> nn.Module:
    """Quantize an eval-mode fp32 model that is already on `device`; returns the model to run."""
    if spec.scheme in ("uint8", "float8"):
        from optimum.quanto import freeze, qfloat8, qint8, quantize

        quantize(model, weights=qint8 if spec.scheme == "uint8" else qfloat8)
        freeze(model)
        return model
    if spec.scheme == "int8dyn":
        if not device.startswith("cpu"):
            raise FarmError("int8dyn is a CPU scheme (fbgemm/oneDNN kernels); use uint8 or float8 on a GPU")
        with warnings.catch_warnings():
            # torch.ao eager quantization is deprecated in favour of torchao; it still ships, and is the
            # fastest int8 CPU path we measured (README, "CPU speed").
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.filterwarnings("ignore", message=".*quantized tensor creation functions.*")
            from torch.ao.quantization import quantize_dynamic

            return quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8)
    raise FarmError(f"unknown quantization scheme {spec.scheme!r}")
