"""Base models: the built-in ViT that farm trains on digits, or any ViT-style hub id or local folder."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from shared.errors import FarmError
from shared.inputs import model_kind, under_roots
from shared.specs import BUILTIN_MODEL
from worker.artifacts import ArtifactMismatch, ArtifactStore, ensure_writable, recipe_key
from worker.workloads.digits import DIGITS_FORMAT
from worker.workloads.types import ImageFormat

if TYPE_CHECKING:
    from worker.training import EpochMetrics

log = logging.getLogger(__name__)
BuildLock = Callable[[str], AbstractContextManager[Any]]  # artifact key -> lock held while building it
TrainLock = Callable[[], AbstractContextManager[Any]]  # held while training (the host lock: no measurement meanwhile)
# What a hub id may fetch into the hub cache: configs and weights (no code is ever run).
HUB_FILES = ["*.json", "*.safetensors", "pytorch_model*.bin"]

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


def builtin_key() -> str:
    """The built-in model's artifact key (and build lock): its recipe and input format."""
    fmt = asdict(DIGITS_FORMAT)
    del fmt["note"]  # not part of the recipe (the key stays what it was)
    return recipe_key({**BUILTIN_RECIPE, "format": fmt})


def load_builtin(store: ArtifactStore, *, build_lock: BuildLock | None = None, train_lock: TrainLock | None = None,
                 on_epoch: Callable[[EpochMetrics], None] | None = None,
                 note: Callable[[str], None] | None = None) -> BaseModel:
    """The built-in ViT, trained on first use and cached under the artifacts root by its recipe.

    `build_lock(key)` is held from the cache check to the stored weights, so that workers anywhere train it once;
    `train_lock()` (the host lock) only while it trains. A stored copy that fails verification (truncated,
    corrupt, tampered) is rebuilt, once, and `note` says so. `on_epoch` gets each training epoch's metrics.
    """
    key = builtin_key()
    with (build_lock or _no_lock)(key):
        if store.exists("base", key, "weights.pt"):
            model = build_builtin_untrained()
            try:
                model.load_state_dict(store.load_torch("base", key, "weights.pt"))
                return BaseModel(model.eval(), DIGITS_FORMAT, BUILTIN_MODEL, {"builtin": BUILTIN_RECIPE})
            except ArtifactMismatch as exc:
                (note or log.warning)(f"{exc}: rebuilding the built-in model")
        ensure_writable(store)
        with (train_lock or nullcontext)():
            model = train_builtin(build_builtin_untrained(), on_epoch=on_epoch)
        store.save_torch("base", key, "weights.pt", model.state_dict())
        store.write_json("base", key, "recipe.json", BUILTIN_RECIPE)
    return BaseModel(model.eval(), DIGITS_FORMAT, BUILTIN_MODEL, {"builtin": BUILTIN_RECIPE})


def _no_lock(_key: str) -> AbstractContextManager[Any]:
    return nullcontext()


def train_builtin(model: torch.nn.Module, *, on_epoch: Callable[[EpochMetrics], None] | None = None
                  ) -> torch.nn.Module:
    from worker.training import FitConfig, fit
    from worker.workloads.digits import load_digits_split

    seed = BUILTIN_RECIPE["data"]["split_seed"]
    train, val = load_digits_split("train", seed=seed), load_digits_split("val", seed=seed)
    model, _ = fit(model, train, val, FitConfig(**BUILTIN_RECIPE["fit"]), desc="train built-in ViT",
                   on_epoch=on_epoch)
    return model


PROCESSOR_FILE = "preprocessor_config.json"


def image_format_for(model_id: str, config: Any, folder: Path | None = None) -> ImageFormat:
    """Input format from the model's image processor, or ViT's mean/std 0.5 (with a note) when it ships none.

    A processor that exists but cannot be read is a FarmError: a wrong normalisation is a silently wrong accuracy.
    """
    size = int(getattr(config, "image_size", 224))
    channels = int(getattr(config, "num_channels", 3))
    assumed = ImageFormat(channels=channels, size=size, mean=(0.5,) * channels, std=(0.5,) * channels,
                          note=f"{model_id} has no {PROCESSOR_FILE}: normalisation assumed (ViT's mean and std 0.5)")
    source = folder if folder is not None else Path(model_id)
    if source.is_dir() and not (source / PROCESSOR_FILE).exists():
        return assumed
    from transformers import AutoImageProcessor

    try:
        proc = AutoImageProcessor.from_pretrained(str(source))
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


def hub_offline() -> bool:
    """Whether the hub may not be asked (HF_HUB_OFFLINE or TRANSFORMERS_OFFLINE): then only its cache is read."""
    from huggingface_hub import constants

    flags = (os.environ.get("HF_HUB_OFFLINE", ""), os.environ.get("TRANSFORMERS_OFFLINE", ""))
    return bool(constants.HF_HUB_OFFLINE) or any(f.strip().upper() in {"1", "ON", "YES", "TRUE"} for f in flags)


def hub_snapshot(model_id: str, patterns: list[str] | None = None) -> Path:
    """The folder of hub id `model_id` in the Hugging Face hub cache, downloaded there first unless offline.

    Never a folder of the worker's current directory that happens to share the id's name (transformers'
    from_pretrained would take `./org/name` first). `patterns`: the files wanted (default: configs and weights).
    """
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(model_id, allow_patterns=patterns or HUB_FILES,
                                      local_files_only=hub_offline()))
    except Exception as exc:  # not cached while offline, unknown repo, no network: one line, the job fails
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise FarmError(f"cannot load model {model_id!r} from the Hugging Face hub or its cache: {first}") from None


def load_pretrained(model_id: str, roots: tuple[str, ...] = ()) -> BaseModel:
    """A hub id (through the hub cache only) or a local folder under `roots`. A folder holding only
    `config.json` gives random weights (enough for inspect). Remote code is never run."""
    from transformers import AutoConfig, AutoModelForImageClassification

    hub = model_kind(model_id) == "hub"
    if hub:
        local = hub_snapshot(model_id)
    else:
        local = under_roots(model_id, roots, what="model folder")
        if not local.is_dir():
            raise FarmError(f"model folder not found: {local}")
        model_id = str(local)
    try:
        if not hub and not any(local.glob("*.safetensors")) and not any(local.glob("*.bin")):
            config = AutoConfig.from_pretrained(local)
            torch.manual_seed(0)
            model = AutoModelForImageClassification.from_config(config)
            recipe = {"config_only": config.to_dict()}
        else:
            model = AutoModelForImageClassification.from_pretrained(str(local), trust_remote_code=False)
            config = model.config
            commit = local.name if hub else getattr(config, "_commit_hash", None)  # a snapshot folder is its commit
            recipe = {"pretrained": model_id, "commit": commit}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise FarmError(f"cannot load model {model_id!r}: {first}") from None
    return BaseModel(model.eval(), image_format_for(model_id, config, local), model_id, recipe)


def load_base_model(model_id: str, store: ArtifactStore, *, roots: tuple[str, ...] = (),
                    build_lock: BuildLock | None = None, train_lock: TrainLock | None = None,
                    on_epoch: Callable[[EpochMetrics], None] | None = None,
                    note: Callable[[str], None] | None = None) -> BaseModel:
    """The base model a variant starts from; the built-in one is built (once, under `build_lock`) when missing."""
    if model_id == BUILTIN_MODEL:
        return load_builtin(store, build_lock=build_lock, train_lock=train_lock, on_epoch=on_epoch, note=note)
    return load_pretrained(model_id, roots)
