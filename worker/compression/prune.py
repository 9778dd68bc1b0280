"""Structural (torch-pruning, DepGraph) and unstructured pruning of ViT-style classifiers.

Attention after `prune-all`: head dims are pruned, heads are kept, so each attention module's
`head_dim` is updated, and its precomputed `scaling` is recomputed as 1/sqrt(new head_dim), the value a
model built from the pruned config would have. We measured the alternative (keeping the trained
1/sqrt(old head_dim)) on the built-in model: recomputing tracked the unpruned logits better at every ratio
tried (val MSE 1.61 vs 1.93 at r=0.10, 3.55 vs 4.24 at r=0.25) and kept more val top-1 before any
fine-tuning (90.8 % vs 90.0 % at r=0.10). L1 pruning drops the small q/k channels, so dot products shrink;
the larger factor compensates. A test checks the choice.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from shared.specs import PruneSpec

_QKV_NAMES = (("q_proj", "k_proj", "v_proj"), ("query", "key", "value"))


def attention_modules(model: nn.Module) -> Iterator[tuple[nn.Module, tuple[nn.Linear, nn.Linear, nn.Linear]]]:
    """Yield (attention module, (q, k, v) projections) for transformers 5 and 4 naming."""
    for module in model.modules():
        for names in _QKV_NAMES:
            if all(isinstance(getattr(module, n, None), nn.Linear) for n in names):
                yield module, tuple(getattr(module, n) for n in names)  # type: ignore[misc]


def mlp_input_layers(model: nn.Module) -> list[nn.Linear]:
    """The first Linear of every transformer MLP (`fc1` in transformers 5, `intermediate.dense` in 4)."""
    layers: list[nn.Linear] = []
    for module in model.modules():
        fc1 = getattr(module, "fc1", None)
        if isinstance(fc1, nn.Linear) and isinstance(getattr(module, "fc2", None), nn.Linear):
            layers.append(fc1)
        dense = getattr(getattr(module, "intermediate", None), "dense", None)
        if isinstance(dense, nn.Linear):
            layers.append(dense)
    if not layers:
        raise ValueError("found no transformer MLP layers to prune")
    return layers


def _mlp_output_layers(model: nn.Module) -> list[nn.Linear]:
    out = []
    for module in model.modules():
        if isinstance(getattr(module, "fc2", None), nn.Linear) and isinstance(getattr(module, "fc1", None), nn.Linear):
            out.append(module.fc2)
        dense = getattr(getattr(module, "output", None), "dense", None)
        if isinstance(dense, nn.Linear) and hasattr(module, "intermediate"):
            out.append(dense)
    return out


def classifier_layer(model: nn.Module) -> nn.Module:
    head = getattr(model, "classifier", None) or getattr(model, "head", None)
    if head is None:
        raise ValueError("model has no `classifier` (or `head`) layer")
    return head


def max_structural_ratio(model: nn.Module, method: str, round_to: int) -> float:
    """The largest ratio that keeps at least `round_to` channels in every pruned width (per head for head dims).

    Past it torch-pruning silently skips the layers it would empty, so params would rise again with the ratio
    (prune-all-r0.99 of the built-in model had as many params as the base): such ratios are refused.
    """
    widths = [layer.out_features for layer in mlp_input_layers(model)]
    if method == "all":
        head = classifier_layer(model)
        if isinstance(head, nn.Linear):
            widths.append(head.in_features)
        widths += [q.out_features // _num_heads(attn) for attn, (q, _k, _v) in attention_modules(model)]
    return min((w - round_to) / w for w in widths)


def prune_model(model: nn.Module, spec: PruneSpec, example_inputs: torch.Tensor) -> nn.Module:
    """Prune `model` in place per `spec` and return it (eval mode, forward-ready).

    FarmError for a structural ratio above what the model's widths allow (see `max_structural_ratio`).
    """
    model.eval()
    if spec.method == "unstructured":
        return _prune_unstructured(model, spec.ratio)
    import torch_pruning as tp

    limit = max_structural_ratio(model, spec.method, spec.round_to)
    if spec.ratio > limit + 1e-9:
        from shared.errors import FarmError

        largest = math.floor(limit * 100) / 100
        raise FarmError(f"pruning ratio {spec.ratio:g} leaves fewer than {spec.round_to} channels in some layer of "
                        f"this model; the largest it allows for {spec.method!r} pruning is {largest:.2f}")

    if spec.method == "mlp":
        keep = set(mlp_input_layers(model))
        ignored = [m for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d)) and m not in keep]
        extra: dict[str, object] = {}
    else:
        ignored = [classifier_layer(model)]
        num_heads = {}
        for attn, projections in attention_modules(model):
            for proj in projections:
                num_heads[proj] = _num_heads(attn)
        extra = {"num_heads": num_heads, "prune_head_dims": True, "prune_num_heads": False}
    # DepGraph traces with autograd, so pruning works even when called under no_grad/inference_mode.
    with warnings.catch_warnings(), torch.inference_mode(False), torch.enable_grad():
        # cls_token and position_embeddings are pruned on their last (hidden) dim, which is what we want.
        warnings.filterwarnings("ignore", message="Unwrapped parameters detected")
        pruner = _pruner(tp, model, spec, example_inputs, ignored, extra)
        pruner.step()
    _sync_shapes(model)
    return model


def _pruner(tp: Any, model: nn.Module, spec: PruneSpec, example_inputs: torch.Tensor, ignored: list[nn.Module],
            extra: dict[str, object]) -> Any:
    return tp.pruner.BasePruner(
        model,
        example_inputs,
        importance=tp.importance.GroupMagnitudeImportance(p=1),
        pruning_ratio=spec.ratio,
        global_pruning=False,
        ignored_layers=ignored,
        round_to=spec.round_to,
        output_transform=lambda out: out.logits.sum(),
        **extra,
    )


def _num_heads(attn: nn.Module) -> int:
    for name in ("num_attention_heads", "num_heads"):
        if isinstance(getattr(attn, name, None), int):
            return int(getattr(attn, name))
    config = getattr(attn, "config", None)
    return int(config.num_attention_heads)


def _sync_shapes(model: nn.Module) -> None:
    """Record pruned widths on the modules and the config, and recompute `scaling` (see the module doc)."""
    for attn, (q, _k, _v) in attention_modules(model):
        heads = _num_heads(attn)
        if hasattr(attn, "head_dim"):
            attn.head_dim = q.out_features // heads
            if hasattr(attn, "scaling"):
                attn.scaling = attn.head_dim**-0.5
        if hasattr(attn, "attention_head_size"):  # transformers 4
            attn.attention_head_size = q.out_features // heads
            attn.all_head_size = q.out_features
    config = getattr(model, "config", None)
    if config is None:
        return
    head = classifier_layer(model)
    if isinstance(head, nn.Linear):
        config.hidden_size = head.in_features
    widths = {layer.out_features for layer in mlp_input_layers(model)}
    if len(widths) == 1:
        config.intermediate_size = widths.pop()


def _prune_unstructured(model: nn.Module, ratio: float) -> nn.Module:
    """L1 masks on the MLP layers, made permanent: weights become zeros, shapes stay."""
    from torch.nn.utils import prune

    for layer in [*mlp_input_layers(model), *_mlp_output_layers(model)]:
        prune.l1_unstructured(layer, name="weight", amount=ratio)
        prune.remove(layer, "weight")
    return model
