"""The seed paper's tables from groups that the database aggregated (queries.aggregate_results): each variant against
its baseline on the same hardware, model and data, and energy by local hour. Figures: controller/figures.py."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from shared.energy import is_estimate
from shared.stages import DEFAULT_RUNTIME
from shared.stats import welch_log_ratio

# A variant's group: one model on one dataset, on one machine (hardware_id: CPU, ISA, GPU, threads) and device,
# with one runtime. Its baseline: the same but variant "baseline" on the default runtime (torch eager fp32), or on
# its own runtime where the place has no torch baseline.
# The protocol (inference batch size, MLPerf scenario, a server's target QPS) is part of both: a baseline is matched
# at the same batch size and scenario (docs/deployer-metrics.md).
PROTOCOL = ("batch_size", "scenario", "target_qps")
VARIANT_GROUP = ("model_id", "dataset_id", "hardware_id", "device", *PROTOCOL, "runtime", "variant")
PLACE = ("model_id", "dataset_id", "hardware_id", "device", *PROTOCOL)
HOURLY_GROUP = ("host", "device", "hardware_id", "runtime", "variant", "local_hour")
JOULES_PER_KWH = 3.6e6


@dataclass(frozen=True)
class Carbon:
    """Grid carbon intensity in gCO2e/kWh: one figure, or one per local hour (0-23) from a CSV."""

    flat_g_per_kwh: float | None = None
    by_hour_g_per_kwh: dict[int, float] | None = None

    def intensity(self, hour: int | None = None) -> float | None:
        if self.by_hour_g_per_kwh is not None and hour is not None:
            return self.by_hour_g_per_kwh.get(hour)
        return self.flat_g_per_kwh


def read_intensity_csv(text: str) -> dict[int, float]:
    """`hour,g_per_kwh` lines (a header line is skipped) into {hour: gCO2e/kWh}; ValueError names a bad line."""
    import csv
    import io

    out: dict[int, float] = {}
    for number, row in enumerate(csv.reader(io.StringIO(text)), start=1):
        if not row or row[0].strip().startswith("#"):
            continue
        try:
            hour, value = int(row[0]), float(row[1])
        except (ValueError, IndexError):
            if number == 1:
                continue  # a header
            raise ValueError(f"line {number}: expected hour,g_per_kwh, got {','.join(row)!r}") from None
        if not 0 <= hour <= 23 or value < 0:
            raise ValueError(f"line {number}: hour must be 0-23 and intensity >= 0, got {hour},{value}")
        out[hour] = value
    if not out:
        raise ValueError("no hour,g_per_kwh lines")
    return out


def g_per_1000(energy_per_sample_j: float | None, intensity_g_per_kwh: float | None) -> float | None:
    """gCO2e per 1,000 inferences from joules per sample and a grid intensity."""
    if energy_per_sample_j is None or intensity_g_per_kwh is None:
        return None
    return 1000 * energy_per_sample_j / JOULES_PER_KWH * intensity_g_per_kwh


def variant_table(groups: Sequence[dict[str, Any]], carbon: Carbon | None = None,
                  hourly_energy: Sequence[dict[str, Any]] = ()) -> tuple[list[dict[str, Any]], list[str]]:
    """Rows in SI units (fractions, seconds, joules per sample) for groups of VARIANT_GROUP, each with its change
    against the baseline of its place (energy and time as fractions with a 95 % interval, top-1 as a difference
    of fractions), and the notes a reader needs: which places have no baseline, which rows are noisy.

    `hourly_energy` (groups of VARIANT_GROUP + local_hour) weights an hourly carbon intensity by when each
    variant actually ran."""
    table = []
    for g in groups:
        table.append({
            **{k: g.get(k) for k in VARIANT_GROUP}, "hardware_label": g.get("hardware_label"),
            "repeats": g["n"], "top1": g["top1_mean"], "top5": g["top5_mean"],
            "time_per_sample_s": g["time_per_sample_s_mean"], "time_per_sample_std_s": g["time_per_sample_s_std"],
            "total_energy_per_sample_j": g["total_energy_per_sample_j_mean"],
            "total_energy_per_sample_std_j": g["total_energy_per_sample_j_std"],
            "active_energy_per_sample_j": g["active_energy_per_sample_j_mean"],
            "params": g["params_max"], "macs": g["macs_max"], "energy_source": g["energy_source"],
            "noisy_repeats": g["noisy"], "noise": g["noise_example"], **deployer_fields(g),
        })
    # The reference is the torch baseline of the place; where it has none, the baseline on the row's own runtime.
    baselines = {(*(t[k] for k in PLACE), t["runtime"]): t for t in table if t["variant"] == "baseline"}
    notes: list[str] = []
    missing: set[tuple[Any, ...]] = set()
    for t in table:
        place = tuple(t[k] for k in PLACE)
        base = baselines.get((*place, DEFAULT_RUNTIME)) or baselines.get((*place, t["runtime"]))
        t["is_baseline"] = base is t
        t["reference"] = None if base is None else _reference(base)
        t.update(_change(t, base))
        if base is None and place not in missing:
            missing.add(place)
            notes.append(f"no baseline for {t['model_id']} on {t['dataset_id']} on {t['hardware_label'] or '?'} "
                         f"[{t['hardware_id']}] {t['device']}: its rows show no change; run `farm submit --variant "
                         f"baseline --model {t['model_id']} --dataset {t['dataset_id']}` on that machine")
        t["gco2e_per_1000"] = None
    if carbon is not None:
        _add_carbon(table, carbon, hourly_energy)
    references = dict.fromkeys(t["reference"] for t in table if t["reference"] and not t["is_baseline"])
    notes.extend(f"Δ against {r}" for r in references)
    noisy = [t for t in table if t["noisy_repeats"]]
    if noisy:
        notes.append("! noisy: " + "; ".join(f"{t['variant']} on {t['hardware_id']} ({t['noise']})" for t in noisy))
    if any(is_estimate(t["energy_source"]) for t in table):
        notes.append("est.: CPU energy ESTIMATED from process CPU time on these rows (no RAPL there)")
    return table, notes


def _reference(base: dict[str, Any]) -> str:
    """What a Δ is computed against, as the screen names it: variant, runtime, model, data, hardware, device."""
    return (f"{base['variant']} ({base['runtime']}) of {base['model_id']} on {base['dataset_id']}, "
            f"{base['hardware_label'] or '?'} [{(base['hardware_id'] or '?')[:6]}] {base['device']}")


def left_out_notes(left_out: dict[str, int]) -> list[str]:
    """"left out: ..." lines for what queries.count_left_out counted."""
    notes = []
    if left_out.get("contended"):
        notes.append(f"left out: {left_out['contended']} contended rows (measured while other work used the "
                     "machine; --include-contended keeps them)")
    if left_out.get("pairs"):
        notes.append(f"left out: {left_out['pairs']} `farm compare` pair rows (--include-pairs counts them)")
    return notes


def noise_floor_notes(table: list[dict[str, Any]], floors: dict[tuple[str, str], dict[str, Any]]) -> list[str]:
    """For each machine with a `farm calibrate` noise floor: quote it, and name the Δs below it. Marks those rows
    (`below_noise_floor`)."""
    notes = []
    for (hw, device), floor in floors.items():
        limit = floor["energy_resolvable_fraction"]
        notes.append(f"noise floor of [{hw[:6]}] {device} (farm calibrate, {floor['pairs']} A/A pairs): time "
                     f"±{100 * floor['time_resolvable_fraction']:.1f} %, energy ±{100 * limit:.1f} % "
                     f"(CV {100 * floor['time_cv']:.1f} % and {100 * floor['energy_cv']:.1f} %)")
        for t in table:
            change = t.get("energy_change_fraction")
            if t["hardware_id"] == hw and t["device"] == device and change is not None and not t["is_baseline"]:
                t["below_noise_floor"] = abs(change) < limit
                if t["below_noise_floor"]:
                    notes.append(f"{t['variant']} ({t['runtime']}): Δ energy {100 * change:+.1f} % is below this "
                                 f"machine's noise floor of {100 * limit:.1f} %")
    return notes


def _change(t: dict[str, Any], base: dict[str, Any] | None) -> dict[str, Any]:
    none = {"energy_change_fraction": None, "energy_change_low": None, "energy_change_high": None,
            "time_change_fraction": None, "top1_change_fraction": None}
    if base is None or not base["total_energy_per_sample_j"]:
        return none
    out = dict(none)
    out["energy_change_fraction"] = t["total_energy_per_sample_j"] / base["total_energy_per_sample_j"] - 1
    out["time_change_fraction"] = t["time_per_sample_s"] / base["time_per_sample_s"] - 1
    if t["top1"] is not None and base["top1"] is not None:
        out["top1_change_fraction"] = t["top1"] - base["top1"]
    if base is not t:
        ci = welch_log_ratio(base["total_energy_per_sample_j"], base["total_energy_per_sample_std_j"] or 0.0,
                             base["repeats"], t["total_energy_per_sample_j"], t["total_energy_per_sample_std_j"] or 0.0,
                             t["repeats"])
        if ci is not None:
            out["energy_change_low"], out["energy_change_high"] = ci.low - 1, ci.high - 1
    return out


def _add_carbon(table: list[dict[str, Any]], carbon: Carbon, hourly: Sequence[dict[str, Any]]) -> None:
    if carbon.by_hour_g_per_kwh is None:
        for t in table:
            t["gco2e_per_1000"] = g_per_1000(t["total_energy_per_sample_j"], carbon.flat_g_per_kwh)
        return
    by_group: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for h in hourly:
        by_group.setdefault(tuple(h[k] for k in VARIANT_GROUP), []).append(h)
    for t in table:
        hours = by_group.get(tuple(t[k] for k in VARIANT_GROUP), [])
        covered = [(h["n"], g_per_1000(h["total_energy_per_sample_j_mean"], carbon.intensity(h["local_hour"])))
                   for h in hours]
        if covered and all(g is not None for _, g in covered):
            t["gco2e_per_1000"] = sum(n * g for n, g in covered) / sum(n for n, _ in covered)  # type: ignore[misc]


def hourly_table(groups: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean energy and time per sample by (host, device, hardware, variant, local hour): the drift the seed saw."""
    return [{"host": g["host"], "device": g["device"], "hardware_id": g["hardware_id"], "runtime": g.get("runtime"),
             "variant": g["variant"],
             "local_hour": g["local_hour"], "repeats": g["n"],
             "total_energy_per_sample_j": g["total_energy_per_sample_j_mean"],
             "total_energy_per_sample_std_j": g["total_energy_per_sample_j_std"],
             "time_per_sample_s": g["time_per_sample_s_mean"], "cpu_temp_start_c": g.get("cpu_temp_start_c_mean")}
            for g in groups]


def variant_view(table: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The table as a person reads it: %, ms, mJ, signed changes, the hardware's label, flags."""
    from controller import render

    view = []
    for t in table:
        ref = t["is_baseline"]
        flags = ("!" if t["noisy_repeats"] else "") + (" est." if is_estimate(t["energy_source"]) else "")
        view.append({
            "variant": t["variant"] + (" (ref)" if t["is_baseline"] else ""),
            "runtime": t["runtime"], "model": t["model_id"], "dataset": t["dataset_id"],
            "hardware": f"{t['hardware_label'] or '?'} [{(t['hardware_id'] or '?')[:6]}]", "device": t["device"],
            "n": t["repeats"], "top-1 %": render.pct(t["top1"]),
            "ms/sample": render.scaled(t["time_per_sample_s"], 1e3, 3, t["time_per_sample_std_s"]),
            "mJ/sample": render.scaled(t["total_energy_per_sample_j"], 1e3, 2, t["total_energy_per_sample_std_j"]),
            "Δ energy": "ref" if ref else render.signed_pct(t["energy_change_fraction"]),
            "95 % CI": render.change_interval(
                None if t["energy_change_low"] is None else 1 + t["energy_change_low"],
                None if t["energy_change_high"] is None else 1 + t["energy_change_high"]),
            "Δ time": "ref" if ref else render.signed_pct(t["time_change_fraction"]),
            "Δ top-1": "ref" if ref else render.signed_pts(t["top1_change_fraction"]),
            "gCO2e/1k": "-" if t["gco2e_per_1000"] is None else f"{t['gco2e_per_1000']:.3g}",
            "params (M)": f"{t['params'] / 1e6:.3f}", "MACs (M)": f"{t['macs'] / 1e6:.1f}",
            **deployer_view(t),
            "flags": flags.strip() or "",
        })
    return view


def deployer_fields(g: dict[str, Any]) -> dict[str, Any]:
    """A group's deployer measures in SI units (seconds, bytes, samples/s): means, and maxima for worst cases
    (latency_max_s, memory peaks, late and dropped queries)."""
    mean = ("latency_p50_s", "latency_p90_s", "latency_p99_s", "throughput_sps", "load_s", "load_energy_j",
            "cold_latency_s", "achieved_qps", "energy_per_query_j")
    peak = ("latency_max_s", "peak_rss_bytes", "rss_rise_bytes", "gpu_max_allocated_bytes", "gpu_max_reserved_bytes",
            "weight_bytes", "artifact_bytes", "late_queries", "dropped_queries")
    return {**{m: g.get(f"{m}_mean") for m in mean}, **{m: g.get(f"{m}_max") for m in peak}}


def deployer_view(t: dict[str, Any]) -> dict[str, str]:
    """The deployer's columns as a person reads them: batch, scenario, ms, samples/s, MB."""
    from controller import render

    mb = 1 / 2**20
    scenario = t.get("scenario") or "offline"
    if t.get("target_qps") is not None:
        scenario += f" @{t['target_qps']:g} QPS"
    return {"batch": "-" if t.get("batch_size") is None else str(t["batch_size"]), "scenario": scenario,
            "p50 ms": render.scaled(t.get("latency_p50_s"), 1e3, 3),
            "p99 ms": render.scaled(t.get("latency_p99_s"), 1e3, 3),
            "samples/s": render.scaled(t.get("throughput_sps"), 1, 1),
            "peak MB": render.scaled(t.get("peak_rss_bytes"), mb, 1),
            "weights MB": render.scaled(t.get("weight_bytes"), mb, 3)}


def load_view(table: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """`farm report --load`: per variant, what loading it costs (s, J where a meter measured), its first batch
    (cold) against the steady median, and its size in memory and as shipped."""
    from controller import render

    mb = 1 / 2**20
    out = []
    for t in table:
        cold, steady = t.get("cold_latency_s"), t.get("latency_p50_s")
        out.append({
            "variant": t["variant"], "runtime": t["runtime"], "device": t["device"],
            "hardware": (t["hardware_id"] or "?")[:6], "batch": "-" if t.get("batch_size") is None else t["batch_size"],
            "n": t["repeats"], "load s": render.scaled(t.get("load_s"), 1, 3),
            "load J": render.scaled(t.get("load_energy_j"), 1, 3),
            "cold ms": render.scaled(cold, 1e3, 3), "steady p50 ms": render.scaled(steady, 1e3, 3),
            "cold/steady": "-" if not cold or not steady else f"{cold / steady:.3g}x",
            "weights MB": render.scaled(t.get("weight_bytes"), mb, 3),
            "artifact MB": render.scaled(t.get("artifact_bytes"), mb, 3),
        })
    return out


def view_columns(view: Sequence[dict[str, Any]], carbon: bool) -> list[str]:
    if not view:
        return []
    return [c for c in view[0] if carbon or c != "gCO2e/1k"]


def hourly_view(hourly: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    from controller import render

    return [{"host": h["host"], "device": h["device"], "hardware": (h["hardware_id"] or "?")[:6],
             "runtime": h.get("runtime") or "-", "variant": h["variant"], "local hour": h["local_hour"],
             "n": h["repeats"],
             "mJ/sample": render.scaled(h["total_energy_per_sample_j"], 1e3, 2, h["total_energy_per_sample_std_j"]),
             "ms/sample": render.scaled(h["time_per_sample_s"], 1e3, 3),
             "CPU °C at start": "-" if h["cpu_temp_start_c"] is None else f"{h['cpu_temp_start_c']:.0f}"}
            for h in hourly]
