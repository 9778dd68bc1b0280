"""`int4`: optimum-quanto qint4 weights, activations in float.

Weights are stored 4-bit (two per byte) with one float scale and zero point per group of input channels
(quanto's group size, 128, or the whole row where a layer is narrower), then frozen; every matmul dequantizes
them. It halves the weight memory of `uint8` again; like `uint8`, it is slower than fp32 on a CPU, where quanto
has no int4 kernel. Meant for shared/stages.py (a stage `int4`): this module and that one line are all it
took (docs/extending.md); not registered: qint4 fails under torch.inference_mode on the CPU.
"""

from __future__ import annotations

from torch import nn

from shared.specs import QuantSpec


def quanto_int4(model: nn.Module, spec: QuantSpec, device: str) -> nn.Module:
    """Quantize every Linear and Conv2d's weights to quanto's qint4 and freeze them (in place; returns `model`)."""
    from optimum.quanto import freeze, qint4, quantize

    quantize(model, weights=qint4)
    freeze(model)
    return model
