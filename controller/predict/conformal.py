"""Split-conformal intervals on log scale, calibrated on leave-one-out residuals, and the validation that
measures their real coverage.

A residual is |log(measured / predicted)| of a cell predicted by a model fitted without it. The interval of
level L around a prediction p is [p / e^q, p * e^q], q the ceil((n + 1) L)-th smallest of n calibration
residuals (infinite when n is too small for L): for exchangeable cells its coverage is at least L."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from controller.predict.features import Cell
from controller.predict.linalg import median, quantile
from controller.predict.model import TARGETS, Predictor, _value
from shared.errors import FarmError

LEVEL = 0.90


def conformal_q(residuals: Sequence[float], level: float = LEVEL) -> float:
    """The split-conformal half-width (log scale) from calibration residuals; inf if there are too few."""
    n = len(residuals)
    k = math.ceil((n + 1) * level)
    return math.inf if k > n or n == 0 else sorted(residuals)[k - 1]


@dataclass(frozen=True)
class Held:
    """One held-out cell: its measurement, the prediction made without it, and what the prediction leaned on."""

    cell: Cell
    predicted: dict[str, float]
    basis: str

    def log_error(self, target: str) -> float:
        return abs(math.log(_value(self.cell, target) / self.predicted[target]))

    def ape(self, target: str) -> float:
        """Absolute percentage error, in % of the measurement."""
        return 100 * abs(self.predicted[target] - _value(self.cell, target)) / _value(self.cell, target)


def _held(p: Predictor, groups: Sequence[Sequence[Cell]]) -> list[Held]:
    out = []
    for group in groups:
        rest = [c for c in p.cells if c not in group]
        if not rest:
            continue
        try:
            q = p.without(group)
        except FarmError:  # its removal leaves no configuration with enough cells to fit rates on
            continue
        for c in group:
            if c.config not in q.configs:
                continue  # its whole configuration was held out: nothing to anchor it
            out.append(Held(c, q.point(c.model_id, c.variant, c.config, (c.params, c.macs)),
                            q.basis(c.model_id, c.variant, c.config)))
    return out


def leave_one_cell_out(p: Predictor) -> list[Held]:
    """Each cell predicted by a model fitted on every other cell (its variant stays measured elsewhere)."""
    return _held(p, [[c] for c in p.cells])


def leave_one_variant_out(p: Predictor) -> list[Held]:
    """Each variant's cells predicted by a model that never saw that variant on any configuration."""
    by_variant: dict[tuple[str, str], list[Cell]] = {}
    for c in p.cells:
        by_variant.setdefault((c.model_id, c.variant), []).append(c)
    return _held(p, list(by_variant.values()))


def leave_all_but_an_anchor_out(p: Predictor) -> list[Held]:
    """A new machine simulated: for each configuration with 3 or more cells, all but one anchor (its baseline
    where it has one) held out and predicted from that anchor and the other configurations. These residuals
    calibrate predictions for configurations that have only a few cells of their own."""
    by_config: dict[object, list[Cell]] = {}
    for c in p.cells:
        by_config.setdefault(c.config, []).append(c)
    groups = []
    for cells in by_config.values():
        if len(cells) >= 3:
            anchor = next((c for c in cells if c.variant == "baseline"), cells[0])
            groups.append([c for c in cells if c is not anchor])
    return [Held(h.cell, h.predicted, h.basis if "+anchor" in h.basis else h.basis + "+anchor")
            for h in _held(p, groups)]


def summary(held: Sequence[Held], level: float = LEVEL,
            same_group: Callable[[Held, Held], bool] | None = None) -> dict[str, float | int]:
    """Median and p90 absolute % error per target, and the real coverage of the level-L interval: each held-out
    cell's q is calibrated on the OTHER held-out residuals (and none of its own group: `same_group`)."""
    out: dict[str, float | int] = {"cells": len(held), "level": level}
    for t in TARGETS:
        apes = [h.ape(t) for h in held]
        out[f"{t}_median_ape_pct"] = median(apes) if apes else math.nan
        out[f"{t}_p90_ape_pct"] = quantile(apes, 0.9) if apes else math.nan
        covered = 0
        widths = []
        for i, h in enumerate(held):
            calib = [g.log_error(t) for j, g in enumerate(held)
                     if j != i and not (same_group is not None and same_group(g, h))]
            q = conformal_q(calib, level)
            widths.append(q)
            covered += h.log_error(t) <= q
        out[f"{t}_coverage"] = covered / len(held) if held else math.nan
        finite = [w for w in widths if math.isfinite(w)]
        # The interval's full width relative to the prediction, e^q - e^-q, at the median q.
        out[f"{t}_median_width_pct"] = 100 * (math.exp(median(finite)) - math.exp(-median(finite))) \
            if finite else math.inf
    return out


def same_variant(a: Held, b: Held) -> bool:
    return (a.cell.model_id, a.cell.variant) == (b.cell.model_id, b.cell.variant)


@dataclass(frozen=True)
class Calibration:
    """Half-widths (log scale) per target and basis ('cell': variant measured elsewhere; 'variant': never)."""

    q: dict[tuple[str, str], float]
    n: dict[str, int]
    level: float = LEVEL

    def interval(self, target: str, basis: str, value: float | None) -> tuple[float, float] | None:
        if value is None:
            return None
        if "+batch" in basis:
            return (0.0, math.inf)  # no stored cell at another batch size has calibrated this extrapolation
        q = self.q.get((target, basis.split("+")[0]), math.inf)
        if "+anchor" in basis:
            q = max(q, self.q.get((target, "anchor"), q))
        return (value / math.exp(q), value * math.exp(q)) if math.isfinite(q) else (0.0, math.inf)


def calibrate(p: Predictor, level: float = LEVEL,
              held: tuple[Sequence[Held], Sequence[Held]] | None = None) -> Calibration:
    """Calibrate on the store itself: leave-one-cell-out residuals for predictions of cells whose variant is
    measured elsewhere, leave-one-variant-out residuals for variants never measured; configurations with few
    cells take the larger of the cell residuals and those of simulated new machines (one anchor each)."""
    cells, variants = held if held is not None else (leave_one_cell_out(p), leave_one_variant_out(p))
    q, n = {}, {"cell": len(cells), "variant": len(variants)}
    anchors = leave_all_but_an_anchor_out(p)
    n["anchor"] = len(anchors)
    for t in TARGETS:
        q[t, "cell"] = conformal_q([h.log_error(t) for h in cells], level)
        q[t, "variant"] = max(conformal_q([h.log_error(t) for h in variants], level), q[t, "cell"])
        if anchors:
            q[t, "anchor"] = conformal_q([h.log_error(t) for h in anchors], level)
    return Calibration(q, n, level)


def noise_floor(cells: Sequence[Cell]) -> dict[str, float | int]:
    """How far the store's own measurement of a cell moves between halves of its repeats (even vs odd rows):
    median and p90 absolute % difference of the two halves' medians, per target. No model can be checked to a
    finer error than this."""
    out: dict[str, float | int] = {"cells": sum(c.halves is not None for c in cells)}
    for i, t in enumerate(TARGETS):
        diffs = [100 * abs(a[i] - b[i]) / ((a[i] + b[i]) / 2) for c in cells if c.halves is not None
                 for a, b in [c.halves] if a[i] + b[i] > 0]
        out[f"{t}_median_ape_pct"] = median(diffs) if diffs else math.nan
        out[f"{t}_p90_ape_pct"] = quantile(diffs, 0.9) if diffs else math.nan
    return out
