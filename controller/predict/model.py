"""The predictor: per-configuration rates on each cell's work (a roofline in spirit), then a low-rank model of
the configuration x variant matrix of log residuals that borrows strength across hardware. Time and energy are
two separate targets with the same shape.

    log y[c, v] = log(rates_c . work_v) + b_v + u_c w_v

The configuration with the most cells of each runtime (and at least MIN_OWN) leads: its rates >= 0 are fitted
by non-negative least squares on its own cells. Every other configuration (another machine, or thread count)
borrows the leader's rates, scaled by the mean log ratio of its own cells to the leader's predictions and then
shrunk kind by kind toward them (ridge SHRINK): one anchor measurement gives a plain rescaling, many let the
rates follow the machine. b_v, u_c and w_v are fitted by alternating ridge least squares on the log residuals
of every measured cell."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from controller.predict.features import Cell, Config, Work, base_macs, work
from controller.predict.linalg import nnls, solve
from shared.errors import FarmError

TARGETS = ("time", "energy")
MIN_OWN = 4  # cells a configuration needs to get rates of its own
RIDGE = 1e-3  # on unit-norm work columns: keeps rates of kinds a configuration barely exercises near 0
LOWRANK_RIDGE = 1.0  # shrinks variant and interaction effects seen in one cell toward 0
ALS_SWEEPS = 25
HUBER_K = 0.15  # log-scale residual beyond which a cell's weight falls as 1/|residual| (about 16 %)
HUBER_ROUNDS = 3
SHRINK = 0.5  # ridge on a borrowing configuration's per-kind deviations: noise variance / prior variance


def _value(cell: Cell, target: str) -> float:
    return cell.time_s if target == "time" else cell.energy_j


@dataclass
class Predictor:
    """Fitted on `cells`; `point` predicts any (model, variant) on any configuration that has cells."""

    cells: Sequence[Cell]
    rank: int = 1
    _rates: dict[tuple[str, Config], list[float]] = field(default_factory=dict, repr=False)
    _donor: dict[Config, Config] = field(default_factory=dict, repr=False)
    _b: dict[tuple[str, tuple[str, str]], float] = field(default_factory=dict, repr=False)
    _u: dict[tuple[str, Config], float] = field(default_factory=dict, repr=False)
    _w: dict[tuple[str, tuple[str, str]], float] = field(default_factory=dict, repr=False)
    _cache: dict[tuple[object, ...], list[float]] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if not self.cells:
            raise FarmError("no measured cells to fit on: `farm run` or `farm submit` some variants first")
        self._base = {m: base_macs(self.cells, m) for m in {c.model_id for c in self.cells}}
        by_config: dict[Config, list[Cell]] = {}
        for c in self.cells:
            by_config.setdefault(c.config, []).append(c)
        self.configs = by_config
        # The configuration with the most cells of each runtime and device leads: its rates are its own. Every
        # other borrows the leader's, scaled by its own cells and shrunk toward them kind by kind.
        leaders: dict[tuple[str, str], Config] = {}
        for k, cs in by_config.items():
            grp = (k.runtime, k.device)
            if grp not in leaders or (len(cs), k.key()) > (len(by_config[leaders[grp]]), leaders[grp].key()):
                leaders[grp] = k
        own = {k for k in leaders.values() if len(by_config[k]) >= MIN_OWN}
        if not own:
            raise FarmError(f"no configuration has {MIN_OWN} measured cells to fit rates on")
        for k in by_config:
            if k not in own:
                donors = [d for d in own if (d.runtime, d.device) == (k.runtime, k.device)] or list(own)
                self._donor[k] = max(donors, key=lambda d: (len(by_config[d]), d.key()))
        for target in TARGETS:
            for k in own:
                self._rates[target, k] = self._fit_rates(target, by_config[k])
            for k, d in self._donor.items():
                self._rates[target, k] = self._borrow_rates(target, d, by_config[k])
            self._fit_lowrank(target)

    def work_of(self, cell_or_model: Cell | str, variant: str | None = None, config: Config | None = None,
                cost: tuple[int, int] | None = None) -> Work:
        if isinstance(cell_or_model, Cell):
            c = cell_or_model
            return work(c.variant, model_id=c.model_id, params=c.params, macs=c.macs, base_macs=self._base[c.model_id],
                        batch_size=c.config.batch_size)
        assert variant is not None and config is not None and cost is not None
        return work(variant, model_id=cell_or_model, params=cost[0], macs=cost[1],
                    base_macs=self._base[cell_or_model], batch_size=config.batch_size)

    def _fit_rates(self, target: str, cells: Sequence[Cell]) -> list[float]:
        """Rates >= 0 per work kind, by least squares on relative error (rows divided by the measured value, so
        small variants count as much as large ones), made robust by Huber reweighting: a cell that a contended
        machine measured far off its neighbours pulls the rates less."""
        key = (target, tuple(sorted((c.model_id, c.variant, c.config.key(), _value(c, target)) for c in cells)))
        if self._cache is not None and key in self._cache:
            return self._cache[key]
        base = [[x / _value(c, target) for x in self.work_of(c).vector()] for c in cells]
        weights = [1.0] * len(cells)
        for _ in range(HUBER_ROUNDS + 1):
            a = [[w ** 0.5 * x for x in row] for w, row in zip(weights, base, strict=True)]
            rates = nnls(a, [w ** 0.5 for w in weights], ridge=RIDGE)
            fitted = [max(sum(r * x for r, x in zip(rates, row, strict=True)), 1e-12) for row in base]
            weights = [min(1.0, HUBER_K / max(abs(math.log(f)), 1e-12)) for f in fitted]
        if self._cache is not None:
            self._cache[key] = rates
        return rates

    def _physics(self, target: str, config: Config, cell: Cell | Work) -> float:
        w = cell if isinstance(cell, Work) else self.work_of(cell)
        rates = self._rates[target, config]
        y = sum(r * x for r, x in zip(rates, w.vector(), strict=True))
        return max(y, 1e-30)

    def _base_log(self, target: str, config: Config, w: Work) -> float:
        return math.log(self._physics(target, config, w))

    def _borrow_rates(self, target: str, donor: Config, cells: Sequence[Cell]) -> list[float]:
        """The donor's rates times exp(a) (the mean log ratio of `cells` to the donor's predictions) times
        (1 + d_k) per kind, d fitted by ridge regression of the cells' relative residuals on each kind's share of
        their predicted cost: with few cells d stays near 0 (a plain rescaling), with many it follows them."""
        drates = self._rates[target, donor]
        key = (target, "borrow", tuple(drates),
               tuple(sorted((c.model_id, c.variant, c.config.key(), _value(c, target)) for c in cells)))
        if self._cache is not None and key in self._cache:
            return self._cache[key]
        works = [self.work_of(c).vector() for c in cells]
        preds = [max(sum(r * x for r, x in zip(drates, w, strict=True)), 1e-30) for w in works]
        scale = math.exp(sum(math.log(_value(c, target) / f) for c, f in zip(cells, preds, strict=True)) / len(cells))
        kinds = [k for k, r in enumerate(drates) if r > 0]
        shares = [[drates[k] * w[k] / f for k in kinds] for w, f in zip(works, preds, strict=True)]
        resid = [_value(c, target) / (scale * f) - 1 for c, f in zip(cells, preds, strict=True)]
        gram = [[sum(s[i] * s[j] for s in shares) + (SHRINK if i == j else 0.0) for j in range(len(kinds))]
                for i in range(len(kinds))]
        d = solve(gram, [sum(s[i] * e for s, e in zip(shares, resid, strict=True)) for i in range(len(kinds))])
        rates = [0.0] * len(drates)
        for i, k in enumerate(kinds):
            rates[k] = scale * drates[k] * max(1 + d[i], 0.1)
        if self._cache is not None:
            self._cache[key] = rates
        return rates

    def _fit_lowrank(self, target: str) -> None:
        resid = [(c.config, (c.model_id, c.variant), math.log(_value(c, target))
                  - self._base_log(target, c.config, self.work_of(c))) for c in self.cells]
        rows = list(dict.fromkeys(k for k, _, _ in resid))
        cols = list(dict.fromkeys(v for _, v, _ in resid))
        ri = {k: i for i, k in enumerate(rows)}
        ci = {v: i for i, v in enumerate(cols)}
        by_col: list[list[tuple[int, float]]] = [[] for _ in cols]
        by_row: list[list[tuple[int, float]]] = [[] for _ in rows]
        for k, v, e in resid:
            by_col[ci[v]].append((ri[k], e))
            by_row[ri[k]].append((ci[v], e))
        b = [0.0] * len(cols)
        u = [0.1] * len(rows)
        w = [0.0] * len(cols)
        for _ in range(ALS_SWEEPS):
            for j, obs in enumerate(by_col):
                b[j] = sum(e - u[i] * w[j] for i, e in obs) / (len(obs) + LOWRANK_RIDGE)
                if self.rank:
                    w[j] = sum(u[i] * (e - b[j]) for i, e in obs) / (sum(u[i] ** 2 for i, _ in obs) + LOWRANK_RIDGE)
            if self.rank:
                for i, obs in enumerate(by_row):
                    u[i] = sum(w[j] * (e - b[j]) for j, e in obs) / (sum(w[j] ** 2 for j, _ in obs) + LOWRANK_RIDGE)
        for v, j in ci.items():
            self._b[target, v] = b[j]
            self._w[target, v] = w[j]
        for k, i in ri.items():
            self._u[target, k] = u[i]

    def point(self, model_id: str, variant: str, config: Config, cost: tuple[int, int]) -> dict[str, float]:
        """Predicted time (s) and energy (J) per sample of `variant` (params, MACs = `cost`) on `config`."""
        rated = self.rated(config)
        w = self.work_of(model_id, variant, config, cost)  # at config's own batch size
        out = {}
        for target in TARGETS:
            v = (model_id, variant)
            log = self._base_log(target, rated, w) + self._b.get((target, v), 0.0) \
                + self._u.get((target, rated), 0.0) * self._w.get((target, v), 0.0)
            out[target] = math.exp(log)
        return out

    def rated(self, config: Config) -> Config:
        """The configuration whose rates predict `config`: itself, or for a batch size nobody measured on that
        machine and runtime, the measured batch size there (its rates, with the work at the new batch size)."""
        if config in self.configs:
            return config
        same = [k for k in self.configs if (k.hardware_id, k.device, k.runtime)
                == (config.hardware_id, config.device, config.runtime)]
        if not same:
            raise FarmError(f"nothing measured on {config.key()}: measure one anchor variant there first")
        return min(same, key=lambda k: abs(k.batch_size - config.batch_size))

    def basis(self, model_id: str, variant: str, config: Config) -> str:
        """What the prediction leans on: 'cell' (the variant is measured elsewhere), 'variant' (never measured:
        its work alone), with '+anchor' when the configuration has under MIN_OWN cells and borrows rates, and
        '+batch' when its batch size was never measured there (no calibration: the interval is unknown)."""
        seen = any((c.model_id, c.variant) == (model_id, variant) and c.config != config for c in self.cells)
        rated = self.rated(config)
        return (("cell" if seen else "variant") + ("+anchor" if len(self.configs[rated]) < MIN_OWN else "")
                + ("" if rated == config else "+batch"))

    def without(self, drop: Sequence[Cell]) -> Predictor:
        """The predictor refitted without `drop` (sharing the rate cache: refits only what changed)."""
        gone = set(map(id, drop))
        p = Predictor([c for c in self.cells if id(c) not in gone], rank=self.rank, _cache=self._cache)
        return p


def fit(cells: Sequence[Cell], rank: int = 1) -> Predictor:
    """A predictor with a rate cache, for the many refits of leave-one-out."""
    return Predictor(list(cells), rank=rank, _cache={})
