"""Params and MACs of a variant without training or benchmarking: shapes do not depend on weights."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from shared.errors import FarmError
from shared.specs import BUILTIN_MODEL, VariantSpec
from worker.compression.prune import prune_model
from worker.cost import ModelCost, model_cost
from worker.workloads.types import ImageFormat


@dataclass(frozen=True)
class Inspection:
    variant: str
    model: str
    params: int
    macs: int
    base_params: int
    base_macs: int
    image_size: int


def architecture(model_id: str) -> tuple[nn.Module, ImageFormat]:
    """The model's architecture with random weights: from its config alone (hub id or folder), no weights."""
    if model_id == BUILTIN_MODEL:
        from worker.workloads.digits import DIGITS_FORMAT
        from worker.workloads.models import build_builtin_untrained

        return build_builtin_untrained(), DIGITS_FORMAT
    from transformers import AutoConfig, AutoModelForImageClassification

    from shared.inputs import model_kind
    from worker.workloads.models import hub_snapshot, image_format_for

    hub = model_kind(model_id) == "hub"
    if not hub and not Path(model_id).expanduser().is_dir():
        raise FarmError(f"model folder not found: {model_id}")
    source = hub_snapshot(model_id, ["*.json"]) if hub else Path(model_id).expanduser()  # never ./org/name
    try:
        config = AutoConfig.from_pretrained(source)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise FarmError(f"cannot load a config for model {model_id!r}: {str(exc).splitlines()[0]}") from None
    torch.manual_seed(0)
    try:
        model = AutoModelForImageClassification.from_config(config).eval()
    except ValueError as exc:
        raise FarmError(f"{model_id!r} is not an image classifier: {str(exc).splitlines()[0]}") from None
    return model, image_format_for(model_id, config, source)


def inspect_variant(variant: VariantSpec, model_id: str) -> Inspection:
    """Prune the architecture as the variant says and count. Quantization and training change neither count."""
    model, fmt = architecture(model_id)
    example = torch.randn(1, fmt.channels, fmt.size, fmt.size)
    base: ModelCost = model_cost(model, example)
    cost = base
    if variant.prune is not None:
        model = prune_model(model, variant.prune, example)
        with torch.inference_mode():
            model(example)  # pruned models must run forward
        cost = model_cost(model, example)
    return Inspection(variant.name, model_id, cost.params, cost.macs, base.params, base.macs, fmt.size)
