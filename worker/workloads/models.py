"""Base models: the built-in ViT that farm trains on digits, or any ViT-style hub id or local folder."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from shared.errors import FarmError
from shared.inputs import model_kind, under_roots
from shared.specs import BUILTIN_MODEL
from worker.artifacts import ArtifactStore, ensure_writable, recipe_key
from worker.workloads.digits import DIGITS_FORMAT
from worker.workloads.types import ImageFormat

# The built-in model's recipe. Changing anything here changes its artifact key, so it is retrained once.
BUILTIN_RECIPE: dict[str, Any] = {
    "name": "vit-digits",
    "version": 1,
    "config": {
        "image_size": 8,
        "patch_size": 2,
        "num_channels": 1,
        "hidden_size": 64,
        "num_hidden_layers": 4,
        "num_attention_heads": 4,
        "intermediate_size": 128,
        "num_labels": 10,
        "hidden_dropout_prob": 0.0,
        "attention_probs_dropout_prob": 0.0,
    },
    "fit": {"epochs": 60, "lr": 3e-3, "weight_decay": 0.05, "batch_size": 32, "seed": 0, "warmup_fraction": 0.1},
    "data": {"dataset": "digits", "split_seed": 0},
}


@dataclass
class BaseModel:
    """A loaded fp32 model in eval mode, with the input format it expects."""

    model: torch.nn.Module
    fmt: ImageFormat
    model_id: str
    recipe: dict[str, Any]


def _vit_config(cfg: dict[str, Any]) -> Any:
    from transformers import ViTConfig

    return ViTConfig(**cfg)


def build_builtin_untrained() -> torch.nn.Module:
    from transformers import ViTForImageClassification

    torch.manual_seed(BUILTIN_RECIPE["fit"]["seed"])
    return ViTForImageClassification(_vit_config(BUILTIN_RECIPE["config"])).eval()


def load_builtin(store: ArtifactStore) -> BaseModel:
    """The built-in ViT, trained on first use and cached under the artifacts root by its recipe."""
    fmt = asdict(DIGITS_FORMAT)
    del fmt["note"]  # not part of the recipe (the key stays what it was)
    key = recipe_key({**BUILTIN_RECIPE, "format": fmt})
    model = build_builtin_untrained()
    if store.exists("base", key, "weights.pt"):
        model.load_state_dict(store.load_torch("base", key, "weights.pt"))
    else:
        ensure_writable(store)
        model = train_builtin(model)
        store.save_torch("base", key, "weights.pt", model.state_dict())
        store.write_json("base", key, "recipe.json", BUILTIN_RECIPE)
    return BaseModel(model.eval(), DIGITS_FORMAT, BUILTIN_MODEL, {"builtin": BUILTIN_RECIPE})


def train_builtin(model: torch.nn.Module) -> torch.nn.Module:
    from worker.training import FitConfig, fit
    from worker.workloads.digits import load_digits_split

    seed = BUILTIN_RECIPE["data"]["split_seed"]
    train, val = load_digits_split("train", seed=seed), load_digits_split("val", seed=seed)
    model, _ = fit(model, train, val, FitConfig(**BUILTIN_RECIPE["fit"]), desc="train built-in ViT")
    return model


PROCESSOR_FILE = "preprocessor_config.json"


def image_format_for(model_id: str, config: Any) -> ImageFormat:
    """Input format from the model's image processor, or ViT's mean/std 0.5 (with a note) when it ships none.

    A processor that exists but cannot be read is a FarmError: a wrong normalisation is a silently wrong accuracy.
    """
    size = int(getattr(config, "image_size", 224))
    channels = int(getattr(config, "num_channels", 3))
    assumed = ImageFormat(channels=channels, size=size, mean=(0.5,) * channels, std=(0.5,) * channels,
                          note=f"{model_id} has no {PROCESSOR_FILE}: normalisation assumed (ViT's mean and std 0.5)")
    if Path(model_id).is_dir() and not (Path(model_id) / PROCESSOR_FILE).exists():
        return assumed
    from transformers import AutoImageProcessor

    try:
        proc = AutoImageProcessor.from_pretrained(model_id)
    except OSError as exc:
        if PROCESSOR_FILE in str(exc) and "does not appear to have" in str(exc):
            return assumed  # a hub model without one
        raise FarmError(f"cannot read the image processor of {model_id!r}: {str(exc).splitlines()[0]}") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise FarmError(f"cannot read the image processor of {model_id!r}: {exc}") from None
    mean = tuple(float(v) for v in getattr(proc, "image_mean", assumed.mean))
    std = tuple(float(v) for v in getattr(proc, "image_std", assumed.std))
    if len(mean) != channels or len(std) != channels:
        raise FarmError(f"the image processor of {model_id!r} normalises {len(mean)} channels; the model has "
                        f"{channels}")
    return ImageFormat(channels=channels, size=size, mean=mean, std=std)


def load_pretrained(model_id: str, roots: tuple[str, ...] = ()) -> BaseModel:
    """A hub id or a local folder under `roots`. A folder holding only `config.json` gives random weights
    (enough for inspect). Remote code is never run."""
    from transformers import AutoConfig, AutoModelForImageClassification

    if model_kind(model_id) == "path":
        local = under_roots(model_id, roots, what="model folder")
        if not local.is_dir():
            raise FarmError(f"model folder not found: {local}")
        model_id = str(local)
    else:
        local = None
    try:
        if local is not None and not any(local.glob("*.safetensors")) and not any(local.glob("*.bin")):
            config = AutoConfig.from_pretrained(local)
            torch.manual_seed(0)
            model = AutoModelForImageClassification.from_config(config)
            recipe = {"config_only": config.to_dict()}
        else:
            model = AutoModelForImageClassification.from_pretrained(model_id)
            config = model.config
            recipe = {"pretrained": model_id, "commit": getattr(config, "_commit_hash", None)}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise FarmError(f"cannot load model {model_id!r}: {first}") from None
    return BaseModel(model.eval(), image_format_for(model_id, config), model_id, recipe)


def load_base_model(model_id: str, store: ArtifactStore, *, roots: tuple[str, ...] = ()) -> BaseModel:
    if model_id == BUILTIN_MODEL:
        return load_builtin(store)
    return load_pretrained(model_id, roots)
