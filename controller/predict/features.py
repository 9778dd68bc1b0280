"""Measured cells and the work a variant does.

A *cell* is one (model, variant) on one *configuration* (hardware_id, device, runtime, batch size): the median
time and energy per sample over its stored repeats. A variant's *work* splits what it computes by kind, per
sample, from what the store keeps (params, MACs) and what its name says (pruning method and ratio, the int8
scheme): the predictor fits one rate per kind and configuration (model.py)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

from controller.predict.linalg import median
from shared.errors import FarmError
from shared.specs import parse_variant
from shared.stages import Numerics, quant_stage

DEFAULT_BATCH = 8  # BenchSpec.batch_size: rows stored without a batch_size column were measured at 8
WORK_KINDS = ("gemm_fp32_macs", "gemm_int8_macs", "nongemm_macs", "act_quant_macs", "dequant_weights",
              "weight_bytes", "batches")


@dataclass(frozen=True)
class Config:
    """Where a cell ran: one hardware fingerprint, device, runtime and batch size (one rate vector each)."""

    hardware_id: str
    device: str
    runtime: str
    batch_size: int

    def key(self) -> str:
        return f"{self.hardware_id}/{self.device}/{self.runtime}/b{self.batch_size}"


@dataclass(frozen=True)
class Cell:
    """Median time (s) and energy (J) per sample of `variant` of `model_id` on `config`, over `repeats` rows."""

    model_id: str
    variant: str
    config: Config
    time_s: float
    energy_j: float
    repeats: int
    params: int
    macs: int
    top1: float | None = None
    hardware_label: str | None = None
    estimated_energy: bool = False
    host: str | None = None
    noise_log_var: float = 0.0  # variance of log time over the repeats (measurement noise)
    # Medians of the cell's even and odd repeats (in row order), (time s, energy J) each: how well the store
    # reproduces its own measurement, the floor under any prediction's error. None with fewer than 2 repeats.
    halves: tuple[tuple[float, float], tuple[float, float]] | None = None


@dataclass(frozen=True)
class Work:
    """What one sample costs, by kind (all per sample): float and int8 GEMM MACs (the MACs the store counted),
    the non-GEMM work the MAC count leaves out (attention products, softmax, norms, GELU: proportional to the
    baseline's MACs and, under prune-all, to the kept width), int8 activation quantization (as much again, for
    int8 schemes), weights dequantized per batch (weight-only int8/fp8: params / batch), weight bytes read per
    batch (params x bytes per weight / batch) and the batch's fixed cost (1 / batch). How a scheme computes is
    its stage's `numerics` (shared/stages.py); bf16 GEMMs count as float GEMMs, so a per-variant effect absorbs
    their speed."""

    gemm_fp32_macs: float
    gemm_int8_macs: float
    nongemm_macs: float
    act_quant_macs: float
    dequant_weights: float
    weight_bytes: float
    batches: float

    def vector(self) -> list[float]:
        return [getattr(self, k) for k in WORK_KINDS]


@cache
def work(variant: str, *, model_id: str, params: int, macs: int, base_macs: int, batch_size: int) -> Work:
    """The work of one sample of `variant` (params and MACs as stored; base_macs: the model's unpruned MACs)."""
    spec = parse_variant(variant, model=model_id)
    numerics = quant_stage(spec.quant.scheme).numerics if spec.quant else Numerics()
    kept = 1.0 - spec.prune.ratio if spec.prune is not None and spec.prune.method == "all" else 1.0
    nongemm = base_macs * kept
    int8 = numerics.int8_gemm
    return Work(gemm_fp32_macs=0.0 if int8 else float(macs), gemm_int8_macs=float(macs) if int8 else 0.0,
                nongemm_macs=nongemm, act_quant_macs=nongemm if int8 else 0.0,
                dequant_weights=params / batch_size if numerics.dequant else 0.0,
                weight_bytes=params * numerics.weight_bytes / batch_size, batches=1.0 / batch_size)


def _usable(value: Any) -> float | None:
    """A stored time or energy as a float, or None when it is missing, not positive or not finite."""
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) and x > 0 else None


def cells_from_rows(rows: Iterable[Mapping[str, Any]]) -> list[Cell]:
    """Group result rows (dicts with the Result columns used here; batch_size optional, else 8) into cells."""
    groups: dict[tuple[Any, ...], list[Mapping[str, Any]]] = {}
    for r in rows:
        # A row without a usable time or energy (0, negative, NaN, infinite: a store written before ResultCreate
        # refused them) is left out; one such cell once made every prediction of its machine NaN.
        if not r.get("hardware_id") or _usable(r.get("time_per_sample_s")) is None \
                or _usable(r.get("total_energy_per_sample_j")) is None:
            continue
        config = Config(str(r["hardware_id"]), str(r.get("device") or "cpu"), str(r.get("runtime") or "torch"),
                        int(r.get("batch_size") or DEFAULT_BATCH))
        groups.setdefault((r["model_id"], r["variant"], config), []).append(r)
    cells = []
    for (model_id, variant, config), rs in groups.items():
        energies = [float(r["total_energy_per_sample_j"]) for r in rs]
        top1 = [float(r["top1"]) for r in rs if r.get("top1") is not None]
        logs = [math.log(float(r["time_per_sample_s"])) for r in rs]
        mean = sum(logs) / len(logs)
        hosts = [str(r["host"]) for r in rs if r.get("host")]
        halves = tuple((median([float(r["time_per_sample_s"]) for r in half]),
                        median([float(r["total_energy_per_sample_j"]) for r in half]))
                       for half in (rs[0::2], rs[1::2])) if len(rs) >= 2 else None
        cells.append(Cell(model_id=model_id, variant=variant, config=config,
                          time_s=median([float(r["time_per_sample_s"]) for r in rs]), energy_j=median(energies),
                          repeats=len(rs), params=int(rs[-1]["params"]), macs=int(rs[-1]["macs"]),
                          top1=median(top1) if top1 else None, hardware_label=rs[-1].get("hardware_label"),
                          estimated_energy=str(rs[-1].get("energy_source") or "").startswith("estimated"),
                          host=max(set(hosts), key=hosts.count) if hosts else None,
                          noise_log_var=sum((x - mean) ** 2 for x in logs) / (len(logs) - 1) if len(logs) > 1 else 0.0,
                          halves=halves))  # type: ignore[arg-type]
    return sorted(cells, key=lambda c: (c.config.key(), c.model_id, c.variant))


def load_cells(session: Any, *, model_id: str | None = None, batch_size: int | None = None) -> list[Cell]:
    """The store's cells (optionally one model's, one batch size's). Reads batch_size where the Result table
    has that column; rows without it count as batch 8."""
    from sqlmodel import select

    from shared.db.models import Result

    names = ("model_id", "variant", "device", "runtime", "hardware_id", "hardware_label", "time_per_sample_s",
             "total_energy_per_sample_j", "energy_source", "params", "macs", "top1", "host", "batch_size")
    columns = [getattr(Result, n) for n in names if hasattr(Result, n)]
    stmt = select(*columns)
    if model_id is not None:
        stmt = stmt.where(Result.model_id == model_id)
    rows = [dict(zip([c.key for c in columns], r, strict=True)) for r in session.exec(stmt).all()]
    cells = cells_from_rows(rows)
    if batch_size is not None:
        cells = [c for c in cells if c.config.batch_size == batch_size]
    return cells


def base_macs(cells: Iterable[Cell], model_id: str) -> int:
    """The model's unpruned MACs: a stored row of a variant with no structural pruning, else the largest seen."""
    seen = [c for c in cells if c.model_id == model_id]
    if not seen:
        raise FarmError(f"no stored results of model {model_id}")
    unpruned = [c.macs for c in seen if (p := parse_variant(c.variant, model=model_id).prune) is None
                or p.method == "unstructured"]
    return max(unpruned or [c.macs for c in seen])


def cost_of(cells: Iterable[Cell], model_id: str, variant: str) -> tuple[int, int]:
    """(params, MACs) of `variant`: as stored for it, or for the same pruning with other training or int8 scheme
    (neither changes the shape), or interpolated linearly in the ratio between stored variants pruned the same
    way. FarmError when nothing stored says."""
    cells = [c for c in cells if c.model_id == model_id]
    for c in cells:
        if c.variant == variant:
            return c.params, c.macs
    spec = parse_variant(variant, model=model_id)
    same_float = [c for c in cells if _prune_key(c.variant, model_id) == _prune_key(variant, model_id)
                  and _scheme(c.variant, model_id) is None]
    if same_float:
        return same_float[0].params, same_float[0].macs
    if spec.prune is not None and spec.prune.method != "unstructured":
        points = sorted({(0.0, c.params, c.macs) for c in cells if parse_variant(c.variant, model=model_id).prune
                         is None and _scheme(c.variant, model_id) is None}
                        | {(p.ratio, c.params, c.macs) for c in cells
                           if (p := parse_variant(c.variant, model=model_id).prune) is not None
                           and p.method == spec.prune.method and _scheme(c.variant, model_id) is None})
        if len(points) >= 2:
            (r0, p0, m0), (r1, p1, m1) = points[0], points[-1]
            f = (spec.prune.ratio - r0) / (r1 - r0)
            return round(p0 + f * (p1 - p0)), round(m0 + f * (m1 - m0))
    raise FarmError(f"no stored params and MACs for {variant} of {model_id}: measure it once, or run "
                    f"`farm inspect -v {variant}` and a stage pruned the same way")


def _prune_key(variant: str, model_id: str) -> tuple[str, float] | None:
    p = parse_variant(variant, model=model_id).prune
    return None if p is None else (p.method, p.ratio)


def _scheme(variant: str, model_id: str) -> str | None:
    q = parse_variant(variant, model=model_id).quant
    return None if q is None else q.scheme
