"""Aggregate result rows into the seed paper's tables: per variant against its baseline, and by local hour."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any

from shared.energy import is_estimate

GroupKey = tuple[str, str, str, str]  # model, dataset, host, device


def _mean(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.fmean(present) if present else None


def _std(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.stdev(present) if len(present) > 1 else (0.0 if present else None)


def variant_table(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (model, dataset, host, device, variant): means over repeats, and change vs that group's baseline.

    Energies are J per sample; `energy_change_pct` compares total energy per sample, `top1_change_pts`
    top-1 in percentage points. Both are None when the group has no baseline.
    """
    groups: dict[tuple[GroupKey, str], list[dict[str, Any]]] = {}
    for r in rows:
        key = (r["model_id"], r["dataset_id"], r["host"], r["device"])
        groups.setdefault((key, r["variant"]), []).append(r)
    table = []
    for (key, variant), rs in groups.items():
        table.append({
            "model_id": key[0], "dataset_id": key[1], "host": key[2], "device": key[3], "variant": variant,
            "repeats": len(rs),
            "top1": _mean([r["top1"] for r in rs]),
            "top5": _mean([r["top5"] for r in rs]),
            "time_per_sample_s": _mean([r["time_per_sample_s"] for r in rs]),
            "time_per_sample_std_s": _std([r["time_per_sample_s"] for r in rs]),
            "total_energy_per_sample_j": _mean([r["total_energy_per_sample_j"] for r in rs]),
            "total_energy_per_sample_std_j": _std([r["total_energy_per_sample_j"] for r in rs]),
            "active_energy_per_sample_j": _mean([r.get("active_energy_per_sample_j") for r in rs]),
            "params": rs[0]["params"],
            "macs": rs[0]["macs"],
            "energy_source": ",".join(sorted({r["energy_source"] for r in rs})),
        })
    baselines = {(t["model_id"], t["dataset_id"], t["host"], t["device"]): t for t in table
                 if t["variant"] == "baseline"}
    for t in table:
        base = baselines.get((t["model_id"], t["dataset_id"], t["host"], t["device"]))
        t["energy_change_pct"] = (
            100.0 * (t["total_energy_per_sample_j"] / base["total_energy_per_sample_j"] - 1.0)
            if base and base["total_energy_per_sample_j"] else None
        )
        t["top1_change_pts"] = (
            100.0 * (t["top1"] - base["top1"]) if base and t["top1"] is not None and base["top1"] is not None
            else None
        )
    return table


def hourly_table(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean energy and time per sample by (host, device, variant, local hour): the drift the seed saw."""
    groups: dict[tuple[str, str, str, int], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["host"], r["device"], r["variant"], r["local_hour"]), []).append(r)
    return [
        {"host": h, "device": d, "variant": v, "local_hour": hour, "repeats": len(rs),
         "total_energy_per_sample_j": _mean([r["total_energy_per_sample_j"] for r in rs]),
         "time_per_sample_s": _mean([r["time_per_sample_s"] for r in rs]),
         "cpu_temp_start_c": _mean([r.get("cpu_temp_start_c") for r in rs])}
        for (h, d, v, hour), rs in sorted(groups.items())
    ]


VARIANT_COLUMNS = ("variant", "model_id", "dataset_id", "host", "device", "repeats", "top1", "top5",
                   "time_per_sample_s", "total_energy_per_sample_j", "active_energy_per_sample_j",
                   "energy_change_pct", "top1_change_pts", "params", "macs", "energy_source")
VARIANT_HEADERS = ("variant", "model", "dataset", "host", "device", "n", "top-1", "top-5", "s/sample", "J/sample",
                   "active J/sample", "Δ energy %", "Δ top-1 pts", "params", "MACs", "energy source")
HOURLY_COLUMNS = ("host", "device", "variant", "local_hour", "repeats", "total_energy_per_sample_j",
                  "time_per_sample_s", "cpu_temp_start_c")
HOURLY_HEADERS = ("host", "device", "variant", "local hour", "n", "J/sample", "s/sample", "CPU °C at start")


def variant_colours(variants: Sequence[str]) -> dict[str, str]:
    """One colour per variant name, the same in every panel and figure (tab10, then tab20, in sorted order)."""
    from matplotlib import colormaps
    from matplotlib.colors import to_hex

    names = sorted(set(variants))
    cmap = colormaps["tab10" if len(names) <= 10 else "tab20"]
    return {name: to_hex(cmap(i % cmap.N)) for i, name in enumerate(names)}


def plot(table: Sequence[dict[str, Any]], hourly: Sequence[dict[str, Any]], path: str) -> None:
    """Energy per sample against top-1 per variant, and energy by local hour, into one PNG."""
    import matplotlib.pyplot as plt

    fig = figure(table, hourly)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def figure(table: Sequence[dict[str, Any]], hourly: Sequence[dict[str, Any]]) -> Any:
    """The report's figure: accuracy vs energy, and energy by local hour; one colour per variant in both."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        from shared.errors import FarmError

        raise FarmError("--plot needs matplotlib: pip install 'farm[worker]'") from None
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
    colour = variant_colours([t["variant"] for t in table] + [h["variant"] for h in hourly])
    for t in table:
        if t["top1"] is None:
            continue
        ax1.scatter(100 * t["top1"], 1e3 * t["total_energy_per_sample_j"], color=colour[t["variant"]],
                    label=t["variant"])
        ax1.annotate(f"{t['variant']} ({t['host']})", (100 * t["top1"], 1e3 * t["total_energy_per_sample_j"]),
                     fontsize=8, xytext=(4, 4), textcoords="offset points")
    ax1.set_xlabel("top-1 (%)")
    ax1.set_ylabel("energy per sample (mJ)")
    ax1.set_title("accuracy vs energy")
    series: dict[tuple[str, str, str], list[tuple[int, float]]] = {}
    for h in hourly:
        series.setdefault((h["host"], h["device"], h["variant"]), []).append(
            (h["local_hour"], 1e3 * h["total_energy_per_sample_j"]))
    for (host, device, variant), points in series.items():
        xs, ys = zip(*sorted(points), strict=True)
        ax2.plot(xs, ys, marker="o", color=colour[variant], label=f"{variant} {host} {device}")
    ax2.set_xlabel("local hour")
    ax2.set_ylabel("energy per sample (mJ)")
    ax2.set_xlim(-0.5, 23.5)
    ax2.set_title("energy by time of day")
    if series:
        ax2.legend(fontsize=7)
    if any(is_estimate(t["energy_source"]) for t in table):
        fig.suptitle("CPU energy ESTIMATED from CPU time on some hosts", color="darkred")
    fig.tight_layout()
    return fig
