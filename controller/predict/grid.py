"""What `farm predict`, `farm plan` and `recommend --predicted` ask of the model: rows of predictions, each
marked `measured` (the store has the cell: its measurement beside the model's leave-one-out prediction) or
`predicted` (nobody measured it: the prediction and its interval only)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from controller.predict.conformal import Calibration, Held, calibrate, leave_one_cell_out, leave_one_variant_out
from controller.predict.features import Cell, Config, cost_of
from controller.predict.model import Predictor, fit
from shared.errors import FarmError
from shared.specs import parse_variant


@dataclass(frozen=True)
class Query:
    """Which cells to predict: variants (None: every stored one), hardware (an id prefix or a label substring),
    runtime, batch size, model."""

    variants: tuple[str, ...] | None = None
    hardware: str | None = None
    runtime: str | None = None
    batch_size: int | None = None
    model_id: str | None = None


@dataclass
class Fitted:
    """A predictor with its calibration and its leave-one-out predictions of the measured cells."""

    predictor: Predictor
    calibration: Calibration
    held_cells: list[Held]
    held_variants: list[Held]


def fit_and_calibrate(cells: Sequence[Cell], level: float) -> Fitted:
    p = fit(cells)
    held_cells, held_variants = leave_one_cell_out(p), leave_one_variant_out(p)
    return Fitted(p, calibrate(p, level, held=(held_cells, held_variants)), held_cells, held_variants)


def _config_matches(cfg: Config, label: str | None, q: Query, by_label: bool) -> bool:
    if q.runtime is not None and cfg.runtime != q.runtime:
        return False
    if q.batch_size is not None and cfg.batch_size != q.batch_size:
        return False
    if q.hardware is None:
        return True
    return q.hardware in (label or "") if by_label else cfg.hardware_id.startswith(q.hardware)


def grid_configs(cells: Sequence[Cell], q: Query) -> list[Config]:
    """The stored configurations the query names; a runtime or batch size asked for but never measured on a
    machine becomes a configuration of its own there (predicted through that machine's anchors, if any)."""
    labels = {c.config.hardware_id: c.hardware_label for c in cells}
    stored = list(dict.fromkeys(c.config for c in cells))
    if q.batch_size is not None:  # a batch size not measured on a machine and runtime: predicted from another
        stored += [replace(k, batch_size=q.batch_size) for k in stored]
    # --hardware is a hardware_id prefix; only when no id starts with it, a piece of a label ("2" would otherwise
    # match every label that says "2 CPUs").
    by_label = q.hardware is not None and not any(k.hardware_id.startswith(q.hardware) for k in stored)
    configs = [k for k in dict.fromkeys(stored) if _config_matches(k, labels[k.hardware_id], q, by_label)]
    if not configs:
        raise FarmError("no measured configuration matches --hardware/--runtime "
                        f"(measured: {', '.join(sorted({c.config.key() for c in cells}))})")
    return configs


def _bounds(interval: tuple[float, float] | None) -> tuple[float | None, float | None]:
    """An interval for output: (None, None) when it is unknown (too few held-out cells, or nothing calibrates
    this kind of extrapolation, or no prediction)."""
    import math

    return interval if interval is not None and math.isfinite(interval[1]) else (None, None)


def check_query(cells: Sequence[Cell], q: Query) -> None:
    """FarmError, before any fitting, for a query that names no stored configuration or a variant whose params
    and MACs nothing stored tells."""
    grid_configs(cells, q)
    for variant in q.variants or ():
        cost_of(cells, q.model_id or cells[0].model_id, variant)


def predict_rows(f: Fitted, q: Query) -> list[dict[str, Any]]:
    """One row per (model, variant, configuration) the query names, measured cells marked so."""
    p, cal = f.predictor, f.calibration
    cells = p.cells
    models = [q.model_id] if q.model_id else sorted({c.model_id for c in cells})
    held = {(h.cell.model_id, h.cell.variant, h.cell.config): h for h in f.held_cells}
    labels = {c.config.hardware_id: c.hardware_label for c in cells}
    measured = {(c.model_id, c.variant, c.config): c for c in cells}
    rows = []
    for model_id in models:
        variants = list(q.variants) if q.variants else sorted({c.variant for c in cells if c.model_id == model_id})
        for variant in variants:
            spec = parse_variant(variant, model=model_id)
            cost = cost_of(cells, model_id, variant)
            for cfg in grid_configs(cells, q):
                if spec.supports("gpu" if cfg.device.startswith("cuda") else "cpu", cfg.runtime) is not None:
                    continue
                cell = measured.get((model_id, variant, cfg))
                if cell is not None and (model_id, variant, cfg) in held:
                    h = held[model_id, variant, cfg]
                    point, basis = h.predicted, h.basis
                elif cell is not None:  # without it, its configuration has too few cells to fit its rates on
                    point, basis = {"time": None, "energy": None}, \
                        "none: too few other cells of this machine and runtime to predict it without it"
                else:
                    point, basis = p.point(model_id, variant, cfg, cost), p.basis(model_id, variant, cfg)
                t_lo, t_hi = _bounds(cal.interval("time", basis, point["time"]))
                e_lo, e_hi = _bounds(cal.interval("energy", basis, point["energy"]))
                rows.append({
                    "model_id": model_id, "variant": variant, "hardware_id": cfg.hardware_id,
                    "hardware_label": labels[cfg.hardware_id], "device": cfg.device, "runtime": cfg.runtime,
                    "batch_size": cfg.batch_size, "status": "measured" if cell is not None else "predicted",
                    "basis": basis, "level": cal.level,
                    "predicted_time_per_sample_s": point["time"], "time_low_s": t_lo, "time_high_s": t_hi,
                    "measured_time_per_sample_s": cell.time_s if cell else None,
                    "predicted_energy_per_sample_j": point["energy"], "energy_low_j": e_lo, "energy_high_j": e_hi,
                    "measured_energy_per_sample_j": cell.energy_j if cell else None,
                    "repeats": cell.repeats if cell else 0, "params": cost[0], "macs": cost[1],
                })
    return rows


def plan_rows(f: Fitted, q: Query, budget: int) -> list[dict[str, Any]]:
    """The `budget` cells to measure next for the query's predictions (plan.py), as rows with the command. The
    candidates are every unmeasured cell of the grid and of the query (a variant nobody measured yet included);
    an empty list when every cell asked about is measured."""
    from controller.predict.plan import design
    from shared.specs import BUILTIN_MODEL

    p = f.predictor
    model_id = q.model_id or p.cells[0].model_id
    asked_rows = predict_rows(f, q)
    everything = Query(model_id=model_id, batch_size=q.batch_size)
    rows_all = {(_config(r).key(), r["variant"]): r for r in [*predict_rows(f, everything), *asked_rows]}
    configs = {k[0]: _config(r) for k, r in rows_all.items()}
    measured = [k for k, r in rows_all.items() if r["status"] == "measured"]
    candidates = [k for k, r in rows_all.items() if r["status"] == "predicted"]
    asked = {(_config(r).key(), r["variant"]) for r in asked_rows}
    targets = [c for c in candidates if c in asked]
    if not targets:
        return []
    picks = design(p, f.held_cells, f.held_variants, measured, candidates, targets, budget)
    hosts: dict[tuple[str, str], str | None] = {}  # a batch size nobody measured runs on the machine's host
    for c in p.cells:
        if c.host:
            hosts.setdefault((c.config.hardware_id, c.config.device), c.host)
    rows = []
    for pick in picks:
        cfg = configs[str(pick.config)]
        host = hosts.get((cfg.hardware_id, cfg.device))
        where = f"host:{host or '?'}:{'gpu' if cfg.device.startswith('cuda') else 'cpu'}"
        model = f" -m {model_id}" if model_id != BUILTIN_MODEL else ""
        rows.append({"variant": pick.variant, "hardware_id": cfg.hardware_id, "device": cfg.device,
                     "runtime": cfg.runtime, "batch_size": cfg.batch_size, "host": host,
                     "gain": pick.gain, "remaining_var": pick.remaining_var,
                     "command": f"farm submit -v {pick.variant}{model} --runtime {cfg.runtime} "
                                f"--batch-size {cfg.batch_size} --on {where}"})
    return rows


def _config(row: dict[str, Any]) -> Config:
    return Config(row["hardware_id"], row["device"], row["runtime"], row["batch_size"])


def predicted_alternatives(f: Fitted, answers: Sequence[dict[str, Any]], max_drop: float | None,
                           min_top1: float | None) -> dict[tuple[str, str, str, str], list[dict[str, Any]]]:
    """For each recommend answer's place: variants NOT measured there whose predicted energy per sample is
    below the measured choice's (or the baseline's), with top-1 measured elsewhere meeting the criterion.
    Each is marked `predicted` with its interval; none is ever merged into the measured answer."""
    cells = f.predictor.cells
    top1: dict[tuple[str, str], list[float]] = {}
    for c in cells:
        if c.top1 is not None:
            top1.setdefault((c.model_id, c.variant), []).append(c.top1)
    out: dict[tuple[str, str, str, str], list[dict[str, Any]]] = {}
    for a in answers:
        place = (a["model_id"], a["dataset_id"], a["hardware_id"], a["device"])
        ref = a["choice"] or a["baseline"]
        base = a["baseline"]
        if ref is None:
            continue
        try:
            rows = predict_rows(f, Query(hardware=a["hardware_id"], model_id=a["model_id"]))
        except FarmError:
            continue
        found = []
        for r in rows:
            if r["status"] != "predicted" or r["device"] != a["device"] or r["hardware_id"] != a["hardware_id"]:
                continue
            acc = top1.get((r["model_id"], r["variant"]))
            if not acc:
                continue
            acc_value = sorted(acc)[len(acc) // 2]
            if min_top1 is not None:
                ok = acc_value >= min_top1
            else:
                ok = base is not None and base["top1"] is not None and acc_value >= base["top1"] - (max_drop or 0.0)
            if ok and r["energy_high_j"] is not None and r["predicted_energy_per_sample_j"] < ref[
                    "total_energy_per_sample_j"]:
                found.append({**r, "top1_elsewhere": acc_value})
        found.sort(key=lambda r: r["predicted_energy_per_sample_j"])
        out[place] = found
    return out
