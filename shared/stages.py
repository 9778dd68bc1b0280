"""The variant stages, in one registry: each kind of stage says how its token is written, what spec it makes
(the spec classes live here too; shared/specs.py re-exports them), what applies it on the worker, on which
devices and runtimes it can run, and, for a quantization scheme, how it computes (the predictor's work model).

A variant name is `baseline`, `quant-SCHEME`, or `PRUNE[-TRAIN][-SCHEME]` (stages run in that order). The
grammar that `farm variants` prints, the parser, the name of each intermediate stage (`farm run` benchmarks
them all) and the submit-time check of device and runtime are all derived from `STAGES`. To add a quantization
scheme, add one `Stage` here and its apply function in a module of its own (docs/extending.md).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from shared.devices import DEVICE_CLASSES, DeviceClass
from shared.errors import FarmError
from shared.runtimes import DEFAULT_RUNTIME, RUNTIME_DEVICES, RUNTIMES

__all__ = ["ANY_RUNTIME", "DEFAULT_RUNTIME", "RUNTIMES", "RUNTIME_DEVICES", "SLOTS", "STAGES", "Numerics",
           "PruneSpec", "QuantSpec", "Stage", "TrainSpec", "grammar", "quant_stage", "quant_schemes",
           "runtime_of_schemes", "spec_class", "stages_in"]

Slot = Literal["prune", "train", "quant"]
PruneMethod = Literal["mlp", "all", "unstructured"]
TrainKind = Literal["retrained", "distilled"]
# A quantization scheme: the token of one quant stage (`quant_schemes()`), checked when a QuantSpec is made; not a
# Literal, so that a new scheme is one Stage, not a second list to keep in step.
QuantScheme = str
SLOTS: tuple[Slot, ...] = ("prune", "train", "quant")
# Pruning and training build the fp32 model (in torch) that every runtime then loads: one function for all.
ANY_RUNTIME = "*"
RATIO = r"(?P<ratio>[0-9]*\.?[0-9]+)"


@dataclass(frozen=True)
class PruneSpec:
    """Structural or unstructured pruning with L1 magnitude importance."""

    method: PruneMethod
    ratio: float
    round_to: int = 4


@dataclass(frozen=True)
class TrainSpec:
    """Fine-tuning after pruning: cross-entropy (retrained) or distillation from the unpruned model.

    The loss for `distilled` is alpha * T^2 * KL(teacher_T || student_T) + (1 - alpha) * CE.
    """

    kind: TrainKind
    epochs: int = 10
    lr: float = 3e-5
    weight_decay: float = 0.01
    batch_size: int = 16
    alpha: float = 0.25
    temperature: float = 4.0
    seed: int = 0


@dataclass(frozen=True)
class QuantSpec:
    """Quantization applied when the model is loaded on the benchmarking device."""

    scheme: QuantScheme

    def __post_init__(self) -> None:
        quant_stage(self.scheme)  # FarmError naming an unknown scheme


@dataclass(frozen=True)
class Numerics:
    """How a quantization scheme computes, for the predictor's work model (controller/predict/features.py):
    bytes per stored weight, whether its GEMMs run on int8 activations, and whether each batch dequantizes
    every weight to float first (weight-only schemes). The default is fp32's."""

    weight_bytes: float = 4.0
    int8_gemm: bool = False
    dequant: bool = False


@dataclass(frozen=True)
class Stage:
    """One kind of stage.

    `token` is how the grammar shows it, `pattern` the regex its part of a variant name must match, `spec` the
    class of the spec it makes (one per slot) and `build(groups)` turns that match into its arguments. `apply`
    names the worker function that applies it, as "module:function" (resolved only on the worker, so the
    controller stays free of torch), by runtime: a quantization stage has one per runtime it supports, pruning
    and training one for all ("*").
    `devices` and `runtimes` are where it can run; `numerics`, how a quantization scheme computes.
    """

    slot: Slot
    token: str
    pattern: str
    summary: str
    spec: type
    build: Callable[[dict[str, str]], dict[str, Any]]
    apply: dict[str, str]
    devices: tuple[DeviceClass, ...] = DEVICE_CLASSES
    numerics: Numerics = Numerics()

    @property
    def runtimes(self) -> tuple[str, ...]:
        return RUNTIMES if ANY_RUNTIME in self.apply else tuple(r for r in RUNTIMES if r in self.apply)

    def function(self, runtime: str = ANY_RUNTIME) -> str:
        """The "module:function" that applies this stage on `runtime`."""
        return self.apply.get(runtime) or self.apply[ANY_RUNTIME]

    def matches(self, text: str) -> dict[str, str] | None:
        m = re.fullmatch(self.pattern, text)
        return None if m is None else {k: v for k, v in m.groupdict().items() if v is not None}


def _ratio(groups: dict[str, str]) -> float:
    ratio = float(groups["ratio"])
    if not 0.0 < ratio < 1.0:
        raise FarmError(f"a pruning ratio must be in (0, 1), got {ratio:g}")
    return ratio


_PRUNE = {ANY_RUNTIME: "worker.compression.prune:prune_model"}
_TRAIN = {ANY_RUNTIME: "worker.compression.finetune:finetune"}

# int8/fp8 weights, float activations: each batch dequantizes every weight before its float GEMM.
_8BIT_WEIGHTS = Numerics(weight_bytes=1.0, dequant=True)
# int8 weights and activations: GEMMs in int8, activations quantized per batch.
_INT8_GEMM = Numerics(weight_bytes=1.0, int8_gemm=True)

STAGES: tuple[Stage, ...] = (
    Stage("prune", "prune-rX", rf"prune-r{RATIO}",
          "structural, MLP intermediate channels only (seed's Table II)",
          PruneSpec, lambda g: {"method": "mlp", "ratio": _ratio(g)}, _PRUNE),
    Stage("prune", "prune-all-rX", rf"prune-all-r{RATIO}",
          "structural, all layers but the classifier; head dims, not heads (Table III)",
          PruneSpec, lambda g: {"method": "all", "ratio": _ratio(g)}, _PRUNE),
    Stage("prune", "prune-unstructured-rX", rf"prune-unstructured-r{RATIO}",
          "L1 masks on the MLP layers; params and MACs do not change",
          PruneSpec, lambda g: {"method": "unstructured", "ratio": _ratio(g)}, _PRUNE),
    Stage("prune", "pruned", "pruned", "alias of prune-all-r0.10, the seed's pipeline",
          PruneSpec, lambda g: {"method": "all", "ratio": 0.10}, _PRUNE),
    Stage("train", "retrained", "retrained", "fine-tuned with cross-entropy after pruning",
          TrainSpec, lambda g: {"kind": "retrained"}, _TRAIN),
    Stage("train", "distilled", "distilled",
          "distilled from the unpruned model: alpha * T^2 * KL + (1 - alpha) * CE",
          TrainSpec, lambda g: {"kind": "distilled"}, _TRAIN),
    Stage("quant", "uint8", "uint8",
          "optimum-quanto qint8 weights (signed int8; the seed calls it uint8), activations in float",
          QuantSpec, lambda g: {"scheme": "uint8"}, {"torch": "worker.compression.quantize:quanto_weights"},
          numerics=_8BIT_WEIGHTS),
    Stage("quant", "float8", "float8", "optimum-quanto qfloat8 (e4m3) weights, activations in float",
          QuantSpec, lambda g: {"scheme": "float8"}, {"torch": "worker.compression.quantize:quanto_weights"},
          numerics=_8BIT_WEIGHTS),
    Stage("quant", "int8dyn", "int8dyn",
          "int8 weights and int8 activations with dynamic per-batch scales (torch fbgemm/oneDNN)",
          QuantSpec, lambda g: {"scheme": "int8dyn"}, {"torch": "worker.compression.quantize:dynamic_int8"},
          devices=("cpu",), numerics=_INT8_GEMM),
    Stage("quant", "ort-int8dyn", "ort-int8dyn",
          "ONNX Runtime dynamic int8: int8 weights per channel, activations quantized per batch (MatMulInteger)",
          QuantSpec, lambda g: {"scheme": "ort-int8dyn"},
          {"onnxruntime": "worker.runtimes.onnx_quant:ort_dynamic_int8"}, devices=("cpu",), numerics=_INT8_GEMM),
    Stage("quant", "ort-int8", "ort-int8",
          "ONNX Runtime static int8 (QDQ), activation ranges calibrated on the training split",
          QuantSpec, lambda g: {"scheme": "ort-int8"}, {"onnxruntime": "worker.runtimes.onnx_quant:ort_static_int8"},
          devices=("cpu",), numerics=_INT8_GEMM),
    Stage("quant", "ov-int8", "ov-int8",
          "OpenVINO int8 through NNCF post-training quantization, calibrated on the training split",
          QuantSpec, lambda g: {"scheme": "ov-int8"}, {"openvino": "worker.runtimes.onnx_quant:nncf_int8"},
          devices=("cpu",), numerics=_INT8_GEMM),
    # GPU untested (quanto's 4-bit CUDA kernels take fp16/bf16 activations): CPU only until measured there.
    Stage("quant", "int4", "int4", "optimum-quanto qint4 weights (4-bit, a scale per group), activations in float",
          QuantSpec, lambda g: {"scheme": "int4"}, {"torch": "worker.compression.int4:quanto_int4"},
          devices=("cpu",), numerics=Numerics(weight_bytes=0.5, dequant=True)),
    Stage("quant", "bf16", "bf16", "bfloat16 weights and activations, fp32 in and out (AMX/AVX512-BF16 on a CPU)",
          QuantSpec, lambda g: {"scheme": "bf16"}, {"torch": "worker.compression.bf16:bfloat16"},
          numerics=Numerics(weight_bytes=2.0)),
)


def runtime_of_schemes(schemes: list[str]) -> str | None:
    """The one runtime that every scheme in `schemes` needs, when they name one (ort-int8dyn: onnxruntime); None
    when the default runtime serves them or they leave the choice open."""
    needed = {r for scheme in schemes for r in quant_stage(scheme).apply if r != ANY_RUNTIME}
    return next(iter(needed)) if len(needed) == 1 and DEFAULT_RUNTIME not in needed else None


def stages_in(slot: Slot) -> tuple[Stage, ...]:
    return tuple(s for s in STAGES if s.slot == slot)


def spec_class(slot: Slot) -> type:
    """The spec class the stages of `slot` make (VariantSpec's field of that name holds one)."""
    return next(s.spec for s in STAGES if s.slot == slot)


def quant_schemes() -> tuple[str, ...]:
    """The quantization schemes farm has: the tokens of the registered quant stages (QuantSpec checks by them)."""
    return tuple(s.token for s in stages_in("quant"))


def quant_stage(scheme: str) -> Stage:
    """The registered quantization stage called `scheme`."""
    for stage in stages_in("quant"):
        if stage.token == scheme:
            return stage
    raise FarmError(f"unknown quantization scheme {scheme!r}")


def grammar() -> str:
    """The variant grammar, as `farm variants` prints it."""
    width = max(len(s.token) for s in STAGES) + 2
    lines = [
        "baseline                        the model as it is",
        "quant-SCHEME                    the model, quantized on load",
        "PRUNE[-TRAIN][-SCHEME]          pruned, optionally retrained or distilled, optionally quantized",
        "",
    ]
    for slot, label in (("prune", "PRUNE"), ("train", "TRAIN"), ("quant", "SCHEME")):
        for i, stage in enumerate(stages_in(slot)):
            lead = f"{label:<6} := " if i == 0 else " " * 8 + "| "
            lines.append(f"{lead}{stage.token:{width}s}{stage.summary}"
                         + ("" if stage.devices == DEVICE_CLASSES else f" ({', '.join(stage.devices)} only)"))
    lines.append("X      := a ratio in (0, 1), e.g. 0.10")
    return "\n".join(lines)
