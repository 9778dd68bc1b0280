"""The cost model of a network: parameters and multiply-accumulates for one sample."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ModelCost:
    """Parameter count and multiply-accumulates for one sample (torch-pruning's count_ops_and_params)."""

    params: int
    macs: int


def model_cost(model: Any, example: Any) -> ModelCost:
    """Count `model`'s params and the MACs of one forward pass on `example` (one sample)."""
    import torch_pruning as tp

    macs, params = tp.utils.count_ops_and_params(model, example)
    return ModelCost(params=int(params), macs=int(macs))
