"""Quantization applied when a model is loaded on the benchmarking device, one function per scheme.

Which function applies which scheme on which runtime, and on which devices, is declared in shared/stages.py.

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

from shared.specs import QuantSpec


def quanto_weights(model: nn.Module, spec: QuantSpec, device: str) -> nn.Module:
    """Quantize the weights with optimum-quanto (qint8 for `uint8`, qfloat8 for `float8`) and freeze them."""
    from optimum.quanto import freeze, qfloat8, qint8, quantize

    quantize(model, weights=qint8 if spec.scheme == "uint8" else qfloat8)
    freeze(model)
    return model


def dynamic_int8(model: nn.Module, spec: QuantSpec, device: str) -> nn.Module:
    """int8 Linear layers with dynamic activation scales (torch's fbgemm/oneDNN CPU kernels)."""
    with warnings.catch_warnings():
        # torch.ao eager quantization is deprecated in favour of torchao; it still ships, and is the
        # fastest int8 CPU path we measured (docs/benchmarks.md, "CPU speed").
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.filterwarnings("ignore", message=".*quantized tensor creation functions.*")
        from torch.ao.quantization import quantize_dynamic

        return quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8)
