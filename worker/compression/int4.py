"""`int4`: optimum-quanto qint4 weights, activations in float.

Weights are stored 4-bit (two per byte) with one float scale and zero point per group of input channels
(quanto's group size, 128, or the whole row where a layer is narrower), then frozen; every matmul dequantizes
them. It halves the weight memory of `uint8` again; like `uint8`, it is slower than fp32 on a CPU, where quanto
has no int4 kernel.

It quantizes under `torch.inference_mode`: qint4 weights frozen outside it raise "Cannot set version_counter for
inference tensor" when the benchmark (which runs under inference mode) calls the model (torch 2.13,
optimum-quanto 0.2.7). Frozen inside it, they are inference tensors: the model then runs under inference mode
or `torch.no_grad`, never with autograd, which a benchmark never needs.
"""

from __future__ import annotations

import torch
from torch import nn

from shared.specs import QuantSpec


def quanto_int4(model: nn.Module, spec: QuantSpec, device: str) -> nn.Module:
    """Quantize every Linear and Conv2d's weights to quanto's qint4 and freeze them (in place; returns `model`)."""
    from optimum.quanto import freeze, qint4, quantize

    with torch.inference_mode():
        quantize(model, weights=qint4)
        freeze(model)
    return model
