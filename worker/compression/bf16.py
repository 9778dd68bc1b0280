"""`bf16`: the whole model in bfloat16, weights and activations, with float32 in and out.

Weights are cast to bfloat16 (2 bytes each, fp32's exponent range, 8 bits of mantissa); a forward pre-hook casts
float inputs to bfloat16 and a forward hook casts the outputs' float tensors back to float32, so runners,
`top1` and the benchmark see an fp32 model. On a CPU with AMX or AVX512-BF16, oneDNN runs its GEMMs in bf16;
without them torch still runs, emulated and slower than fp32. On a GPU, bf16 tensor cores do.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from shared.specs import QuantSpec


def bfloat16(model: nn.Module, spec: QuantSpec, device: str) -> nn.Module:
    """Cast `model` (already on `device`) to bfloat16 in place, with float32 in and out; returns it."""
    model.to(torch.bfloat16)
    model.register_forward_pre_hook(_inputs_to_bf16, with_kwargs=True)
    model.register_forward_hook(_outputs_to_fp32)
    return model


def _cast(value: Any, dtype: torch.dtype) -> Any:
    """`value` with every floating-point tensor in it (also in tuples, lists and dicts) cast to `dtype`."""
    if isinstance(value, torch.Tensor):
        return value.to(dtype) if value.is_floating_point() else value
    if isinstance(value, (tuple, list)):
        return type(value)(_cast(v, dtype) for v in value)
    if isinstance(value, dict):  # also Hugging Face ModelOutput, which keeps its class
        for key in list(value):
            value[key] = _cast(value[key], dtype)
    return value


def _inputs_to_bf16(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]
                    ) -> tuple[tuple[Any, ...], dict[str, Any]]:
    return _cast(args, torch.bfloat16), _cast(kwargs, torch.bfloat16)


def _outputs_to_fp32(module: nn.Module, args: tuple[Any, ...], output: Any) -> Any:
    return _cast(output, torch.float32)
