"""Typed, frozen job specs that travel as JSON. The variant grammar that names them, and the spec class of each
kind of stage (PruneSpec, TrainSpec, QuantSpec, re-exported here), live in shared/stages.py."""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal

from shared.errors import FarmError
from shared.inputs import BUILTIN_MODEL
from shared.stages import (
    DEFAULT_RUNTIME,
    RUNTIMES,
    SLOTS,
    PruneSpec,
    QuantSpec,
    Stage,
    TrainSpec,
    spec_class,
    stages_in,
)

if TYPE_CHECKING:
    from shared.devices import DeviceClass

# MLPerf Inference's names: offline (a closed loop over batches), single-stream (batch 1, one query at a time),
# server (Poisson arrivals at a target QPS into a queue). worker/scenarios.py runs them.
Scenario = Literal["offline", "single-stream", "server"]
SCENARIOS: tuple[str, ...] = ("offline", "single-stream", "server")
DEFAULT_DATASET = "digits"
# Training defaults of a base model, where they differ from TrainSpec's (the seed's recipe for ViT-B/16). The
# built-in model trains in about 4 s on 2 CPU cores with these: a higher lr and batch than the seed's, and a
# softer distillation (alpha 0.5, T 2). Over 3 training seeds this gave pruned-distilled 96.8 % mean test
# top-1 against 96.6 % for alpha 0.25, T 4 and 96.6 % for pruned-retrained: within noise on 360 images.
MODEL_TRAIN_DEFAULTS: dict[str, dict[str, Any]] = {
    BUILTIN_MODEL: {"epochs": 10, "lr": 1e-3, "batch_size": 32, "alpha": 0.5, "temperature": 2.0},
}


@dataclass(frozen=True)
class VariantSpec:
    """A parsed variant name: optional prune, train and quantize stages, in that order."""

    name: str
    prune: PruneSpec | None = None
    train: TrainSpec | None = None
    quant: QuantSpec | None = None

    def stages(self) -> list[tuple[Stage, str, Any]]:
        """(registered stage, its text in the name, its spec) for each stage, in the order they run."""
        return [(stage, text, getattr(self, stage.slot)) for stage, text in _split(self.name)]

    def stage_names(self) -> list[str]:
        """The variants this one passes through: baseline, then the name up to each stage (`farm run`'s rows)."""
        names, parts = ["baseline"], []
        for stage, text, _spec in self.stages():
            parts.append(text)
            names.append(("quant-" if stage.slot == "quant" and len(parts) == 1 else "") + "-".join(parts))
        return list(dict.fromkeys(names))

    def supports(self, device_class: DeviceClass | None, runtime: str) -> str | None:
        """Why this variant cannot run on that device class or runtime (None if it can; None class: unknown)."""
        from shared.stages import RUNTIME_DEVICES

        if device_class is not None and device_class not in RUNTIME_DEVICES.get(runtime, (device_class,)):
            return f"the {runtime} runtime runs on {' and '.join(RUNTIME_DEVICES[runtime])} only"
        for stage, text, _spec in self.stages():
            if device_class is not None and device_class not in stage.devices:
                return f"{text} runs on {' and '.join(stage.devices)} only"
            if runtime not in stage.runtimes:
                return f"{text} is not available on the {runtime} runtime (it runs on {', '.join(stage.runtimes)})"
        return None


@dataclass(frozen=True)
class BenchSpec:
    """The measurement protocol (the seed's: batch 8, 5 repeats). Warm-up runs `warmup_batches` batches, then
    goes on until the last 3 batches' times agree within `warmup_cv` (at most `max_warmup_batches` batches or
    `max_warmup_s` seconds in all)."""

    batch_size: int = 8
    warmup_batches: int = 5
    warmup_cv: float = 0.05
    max_warmup_batches: int = 60
    max_warmup_s: float = 30.0
    repeats: int = 5
    limit: int | None = None
    # Repeat until the coefficient of variation of time per sample is at most this (None: fixed repeats).
    until_cv: float | None = None
    max_repeats: int = 20
    idle_s: float | None = None  # None: take Settings.idle_s on the worker
    # Each repeat passes over the data until its window lasts this long, in s (None: what the meter needs).
    min_window_s: float | None = None
    # The deployer's axes (docs/deployer-metrics.md): the scenario, and for `server` the target queries per
    # second, the dynamic batcher's largest batch and longest wait (ms), each repeat's window (s), and the
    # latency bound (ms) past which a query counts as late. `qps_sweep` searches the highest QPS whose p99
    # stays under `p99_ms` (one row per QPS tried).
    scenario: Scenario = "offline"
    qps: float | None = None
    max_batch: int = 1
    max_wait_ms: float = 0.0
    server_s: float = 10.0
    p99_ms: float | None = None
    qps_sweep: bool = False
    seed: int = 0  # the server scenario's arrival generator

    @property
    def planned_repeats(self) -> int:
        """Repeats to run at most: `repeats`, or `max_repeats` when repeating until a CV is reached."""
        return self.max_repeats if self.until_cv is not None else self.repeats


@dataclass(frozen=True)
class CompareSpec:
    """`farm compare`: benchmark `versus` beside the job's variant on one worker, in `pairs` back-to-back pairs
    whose order alternates (A B, B A, A B, ...), so that drift over the run hits both alike."""

    versus: VariantSpec
    pairs: int = 5
    runtime: str | None = None  # versus's runtime (None: the job's): compares runtimes too
    # --until-conclusive: add pairs until both intervals are within ±precision (a fraction), at most max_pairs.
    max_pairs: int | None = None
    precision: float = 0.10


@dataclass(frozen=True)
class JobSpec:
    """Everything a worker needs to run one job; goes on the queue as JSON."""

    variant: VariantSpec
    model: str = BUILTIN_MODEL
    dataset: str = DEFAULT_DATASET
    bench: BenchSpec = field(default_factory=BenchSpec)
    seed: int = 0
    runtime: str = DEFAULT_RUNTIME
    compare: CompareSpec | None = None

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> JobSpec:
        compare = data.get("compare")
        return cls(
            variant=_variant_from_dict(data["variant"]),
            model=data.get("model", BUILTIN_MODEL),
            dataset=data.get("dataset", DEFAULT_DATASET),
            bench=BenchSpec(**data.get("bench", {})),
            seed=data.get("seed", 0),
            runtime=data.get("runtime", DEFAULT_RUNTIME),
            compare=CompareSpec(_variant_from_dict(compare["versus"]), int(compare.get("pairs", 5)),
                                compare.get("runtime"), compare.get("max_pairs"),
                                float(compare.get("precision", 0.10))) if compare else None,
        )

    @classmethod
    def from_json(cls, text: str) -> JobSpec:
        return cls.from_dict(json.loads(text))


def _variant_from_dict(v: dict[str, Any]) -> VariantSpec:
    return VariantSpec(name=v["name"], **{slot: spec_class(slot)(**v[slot]) for slot in SLOTS if v.get(slot)})


def _bare(pattern: str) -> str:
    return re.sub(r"\(\?P<\w+>", "(?:", pattern)


def _alternatives(slot: str) -> str:
    return "|".join(_bare(s.pattern) for s in stages_in(slot))  # type: ignore[arg-type]


_COMPOSED = re.compile(
    rf"^(?P<prune>{_alternatives('prune')})(?:-(?P<train>{_alternatives('train')}))?"
    rf"(?:-(?P<quant>{_alternatives('quant')}))?$"
)
_QUANT_ONLY = re.compile(rf"^quant-(?P<quant>{_alternatives('quant')})$")


def _split(name: str) -> list[tuple[Stage, str]]:
    """The registered stages of a variant name with their text, in order; FarmError for a bad name."""
    if name == "baseline":
        return []
    m = _QUANT_ONLY.match(name) or _COMPOSED.match(name)
    if m is None:
        raise FarmError(f"unknown variant {name!r}; valid: {', '.join(example_variants())} (see `farm variants`)")
    parts = []
    for slot in SLOTS:
        text = m.groupdict().get(slot)
        if text:
            parts.append((next(s for s in stages_in(slot) if s.matches(text) is not None), text))
    return parts


def parse_variant(name: str, *, model: str = BUILTIN_MODEL) -> VariantSpec:
    """Parse a variant name; raises FarmError naming the grammar for a bad one. Training defaults are `model`'s."""
    name = name.strip()
    specs: dict[str, Any] = {}
    for stage, text in _split(name):
        args = stage.build(stage.matches(text) or {})
        defaults = MODEL_TRAIN_DEFAULTS.get(model, {}) if stage.spec is TrainSpec else {}
        specs[stage.slot] = stage.spec(**{**defaults, **args})
    return VariantSpec(name=name, **specs)


def with_train_overrides(variant: VariantSpec, **overrides: Any) -> VariantSpec:
    """Return the variant with some training hyper-parameters replaced (None values are ignored)."""
    given = {k: v for k, v in overrides.items() if v is not None}
    if not given or variant.train is None:
        return variant
    return replace(variant, train=replace(variant.train, **given))


def example_variants() -> list[str]:
    """A representative list of valid variant names (the grammar admits any ratio)."""
    schemes = [s.token for s in stages_in("quant")]
    return [
        "baseline",
        *(f"quant-{q}" for q in schemes),
        "prune-r0.10",
        "prune-all-r0.10",
        "prune-unstructured-r0.10",
        "pruned",
        "pruned-retrained",
        "pruned-distilled",
        "pruned-distilled-uint8",
        "pruned-distilled-int8dyn",
        "prune-all-r0.10-uint8",
    ]


def runtime_for(variant: VariantSpec, runtime: str | None) -> str:
    """The runtime a job runs on: the one given, else the one its quantization scheme belongs to (ov-int8:
    openvino), else the default."""
    from shared.stages import runtime_of_schemes

    if runtime is not None:
        return check_runtime(runtime)
    return runtime_of_schemes([variant.quant.scheme] if variant.quant else []) or DEFAULT_RUNTIME


def check_runtime(runtime: str) -> str:
    """FarmError unless farm knows the runtime (shared/runtimes.py)."""
    if runtime not in RUNTIMES:
        raise FarmError(f"unknown runtime {runtime!r}; farm has {', '.join(RUNTIMES)}")
    return runtime

