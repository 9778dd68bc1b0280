"""The report's figures, from the tables of controller/report.py: energy and top-1 against pruning ratio (the
seed's Fig. 3, one row of panels per pruning method), top-1 against energy with the Pareto front, energy by local
hour (one panel per variant, one colour and marker per host), and the deployer's (docs/deployer-metrics.md):
latency p50/p99 and energy per sample against batch size per variant, and memory per variant.

One variant has one colour and marker in every figure (`variant_colours`, `variant_markers`); energy axes start
at zero; error bars are one standard deviation over repeats; estimated energy is said in the title; legends sit
outside the plot.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from shared.energy import is_estimate
from shared.errors import FarmError

FIGURES = ("pruning_ratio.png", "pareto.png", "energy_by_hour.png", "latency_by_batch.png", "energy_by_batch.png",
           "memory.png")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
# Ten well separated hues (tab10 without its neighbours' ambiguity): past ten, the marker changes as well, never a
# lighter shade of a colour already used (tab20's paired oranges were hard to tell apart).
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
           "#17becf")


def _pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise FarmError("figures need matplotlib: pip install matplotlib (or 'farm[worker]')") from None
    return plt


def variant_colours(variants: Sequence[str]) -> dict[str, str]:
    """One colour per name, the same in every figure (PALETTE in sorted order; with `variant_markers`, every
    name up to 80 has its own colour and marker pair)."""
    names = sorted(set(variants))
    return {name: PALETTE[i % len(PALETTE)] for i, name in enumerate(names)}


def variant_markers(variants: Sequence[str]) -> dict[str, str]:
    """One marker per name: the first ten circles, the next ten squares, and so on (see PALETTE)."""
    names = sorted(set(variants))
    return {name: MARKERS[(i // len(PALETTE)) % len(MARKERS)] for i, name in enumerate(names)}


def _legend_outside(ax: Any, handles: Sequence[Any] | None = None, labels: Sequence[str] | None = None) -> None:
    """A legend right of the axes, in columns of at most 18 entries, so that it never covers data."""
    if handles is None or labels is None:
        handles, labels = ax.get_legend_handles_labels()
    seen: dict[str, Any] = {}
    for h, label in zip(handles, labels, strict=True):
        seen.setdefault(label, h)
    if seen:
        ax.legend(seen.values(), seen.keys(), fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0),
                  borderaxespad=0, ncol=max(1, -(-len(seen) // 18)))


def _estimated_title(fig: Any, table: Sequence[dict[str, Any]]) -> None:
    if any(is_estimate(t["energy_source"]) for t in table):
        fig.suptitle("CPU energy ESTIMATED from CPU time on some rows", color="darkred")


def _ratio_of(variant: str) -> tuple[str, float, str] | None:
    """(the variant's name with its pruning ratio masked, the ratio, the pruning method) for a pruned variant;
    the baseline is ratio 0 of every method."""
    from shared.specs import parse_variant

    if variant == "baseline":
        return "baseline", 0.0, "*"
    try:
        spec = parse_variant(variant)
    except FarmError:
        return None
    if spec.prune is None:
        return None
    return variant.replace(f"r{spec.prune.ratio:.2f}", "r*", 1), spec.prune.ratio, spec.prune.method


METHOD_TITLES = {"mlp": "MLP-only structural pruning", "all": "all-layer structural pruning",
                 "unstructured": "unstructured pruning"}


def pruning_figure(table: Sequence[dict[str, Any]], colours: dict[str, str],
                   markers: dict[str, str] | None = None) -> Any:
    """Energy per sample and top-1 against pruning ratio: one row of panels per pruning method (MLP-only and
    all-layer never share an axis), one line per family (prune-all-r*-...) and machine. Points of several
    families at one ratio are dodged sideways, so none hides another; each is coloured and marked as its
    variant."""
    plt = _pyplot()
    markers = markers or {}
    families: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for t in table:
        found = _ratio_of(t["variant"])
        if found:
            families.setdefault((found[2], found[0], t["hardware_id"] or "?"), []).append({**t, "ratio": found[1]})
    baselines = {k[2]: v for k, v in families.items() if k[1] == "baseline"}
    methods = sorted({k[0] for k in families if k[0] != "*"}) or ["mlp"]
    fig, axes = plt.subplots(len(methods), 2, figsize=(12, 3.8 * len(methods)), squeeze=False)
    for row, method in enumerate(methods):
        ax_e, ax_a = axes[row]
        mine = sorted(k for k in families if k[0] == method)
        ratios = sorted({p["ratio"] for k in mine for p in families[k]} | {0.0})
        step = min((b - a for a, b in zip(ratios, ratios[1:], strict=False)), default=0.1)
        width = 0.25 * step  # all dodges of one ratio stay within a quarter of the gap to the next ratio
        for i, key in enumerate(mine):
            dodge = (i - (len(mine) - 1) / 2) * (width / max(1, len(mine) - 1)) if len(mine) > 1 else 0.0
            points = sorted(families[key] + baselines.get(key[2], []), key=lambda p: p["ratio"])
            xs = [p["ratio"] + (dodge if p["ratio"] else 0.0) for p in points]  # one baseline point, undodged
            ax_e.plot(xs, [1e3 * p["total_energy_per_sample_j"] for p in points], color="0.6", lw=1, zorder=1)
            ax_a.plot(xs, [100 * (p["top1"] or 0) for p in points], color="0.6", lw=1, zorder=1)
            for p, x in zip(points, xs, strict=True):
                style = {"color": colours[p["variant"]], "marker": markers.get(p["variant"], "o"), "ls": "none"}
                ax_e.errorbar(x, 1e3 * p["total_energy_per_sample_j"],
                              yerr=1e3 * (p["total_energy_per_sample_std_j"] or 0), label=p["variant"], zorder=2,
                              **style)
                if p["top1"] is not None:
                    ax_a.plot(x, 100 * p["top1"], label=p["variant"], zorder=2, **style)
        title = METHOD_TITLES.get(method, method)
        ax_e.set(xlabel="pruning ratio", ylabel="energy per sample (mJ)", title=f"energy: {title}")
        ax_a.set(xlabel="pruning ratio", ylabel="top-1 (%)", title=f"top-1: {title}")
        ax_e.set_ylim(bottom=0)
        _legend_outside(ax_a)
    _estimated_title(fig, table)
    fig.tight_layout()
    return fig


def pareto_front(points: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """The (energy, top-1) points that no other point beats on both (less energy and more top-1), by energy."""
    front: list[tuple[float, float]] = []
    for energy, top1 in sorted(points, key=lambda p: (p[0], -p[1])):
        if not front or top1 > front[-1][1]:
            front.append((energy, top1))
    return front


def pareto_figure(table: Sequence[dict[str, Any]], colours: dict[str, str]) -> Any:
    """Top-1 against energy per sample, with ± one std of energy, and the Pareto front per machine."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 5))
    by_hw: dict[str, list[tuple[float, float]]] = {}
    for t in table:
        if t["top1"] is None:
            continue
        x, y = 1e3 * t["total_energy_per_sample_j"], 100 * t["top1"]
        ax.errorbar(x, y, xerr=1e3 * (t["total_energy_per_sample_std_j"] or 0), fmt="o", color=colours[t["variant"]],
                    label=t["variant"], capsize=3)
        by_hw.setdefault(t["hardware_id"] or "?", []).append((x, y))
    for hw, points in sorted(by_hw.items()):
        front = pareto_front(points)
        ax.step([p[0] for p in front], [p[1] for p in front], where="post", color="0.3", ls="--", lw=1,
                label=f"Pareto front [{hw[:6]}]")
    ax.set(xlabel="energy per sample (mJ)", ylabel="top-1 (%)", title="accuracy vs energy")
    ax.set_xlim(left=0)
    _dedupe_legend(ax)
    _estimated_title(fig, table)
    fig.tight_layout()
    return fig


def hourly_figure(hourly: Sequence[dict[str, Any]], colours: dict[str, str],
                  table: Sequence[dict[str, Any]] = ()) -> Any:
    """Energy per sample by local hour: one panel per variant (shared axes), one line per host and device, each
    host with its own colour and marker pair; the legend (hosts) sits right of the panels."""
    plt = _pyplot()
    variants = sorted({h["variant"] for h in hourly}) or ["-"]
    hosts = sorted({f"{h['host']} {h['device']}" for h in hourly})
    host_colour, host_marker = variant_colours(hosts), variant_markers(hosts)
    cols = min(3, len(variants))
    rows = -(-len(variants) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols + 2.5, 3.2 * rows), sharex=True, sharey=True,
                             squeeze=False)
    series: dict[tuple[str, str], list[tuple[int, float, float]]] = {}
    for h in hourly:
        series.setdefault((h["variant"], f"{h['host']} {h['device']}"), []).append(
            (h["local_hour"], 1e3 * h["total_energy_per_sample_j"], 1e3 * (h["total_energy_per_sample_std_j"] or 0)))
    handles: dict[str, Any] = {}
    for i, variant in enumerate(variants):
        ax = axes[i // cols][i % cols]
        for (v, host), points in sorted(series.items()):
            if v != variant:
                continue
            points.sort()
            line = ax.errorbar([p[0] for p in points], [p[1] for p in points], yerr=[p[2] for p in points],
                               marker=host_marker[host], color=host_colour[host], capsize=2, ms=4, lw=1)
            handles.setdefault(host, line)
        ax.set_title(variant, fontsize=9)
        ax.set_xlim(-0.5, 23.5)
        ax.set_ylim(bottom=0)
    for j in range(len(variants), rows * cols):
        axes[j // cols][j % cols].set_visible(False)
    for ax in axes[-1]:
        ax.set_xlabel("local hour")
    for row in axes:
        row[0].set_ylabel("energy per sample (mJ)")
    if handles:
        _legend_outside(axes[0][cols - 1], list(handles.values()), list(handles))
    fig.suptitle("energy by time of day" + (" (CPU energy ESTIMATED on some rows)" if any(
        is_estimate(t["energy_source"]) for t in table) else ""))
    fig.tight_layout()
    return fig


def _by_variant(table: Sequence[dict[str, Any]]) -> dict[tuple[str, str, str], list[dict[str, Any]]]:
    """Offline rows with a batch size, by (variant, runtime, machine), sorted by batch size."""
    out: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for t in table:
        if t.get("batch_size") is not None and (t.get("scenario") or "offline") == "offline":
            out.setdefault((t["variant"], t["runtime"], (t["hardware_id"] or "?")[:6]), []).append(t)
    return {k: sorted(v, key=lambda t: t["batch_size"]) for k, v in sorted(out.items())}


def _no_data(ax: Any, what: str) -> None:
    ax.text(0.5, 0.5, f"no {what} in these results", ha="center", va="center", transform=ax.transAxes)


def latency_figure(table: Sequence[dict[str, Any]], colours: dict[str, str], markers: dict[str, str]) -> Any:
    """Latency per batch against batch size per variant: p50 solid, p99 dashed (log-log: batch sizes are 1, 8,
    32...)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(9, 4.5))
    series = {k: [t for t in v if t.get("latency_p50_s") is not None] for k, v in _by_variant(table).items()}
    series = {k: v for k, v in series.items() if v}
    for (variant, runtime, hw), points in series.items():
        xs = [p["batch_size"] for p in points]
        label = f"{variant} ({runtime}) [{hw}]"
        style = {"color": colours[variant], "marker": markers.get(variant, "o")}
        ax.plot(xs, [1e3 * p["latency_p50_s"] for p in points], ls="-", label=f"{label} p50", **style)
        ax.plot(xs, [1e3 * (p["latency_p99_s"] or 0) for p in points], ls="--", label=f"{label} p99", **style)
    if series:
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        _legend_outside(ax)
    else:
        _no_data(ax, "latencies")
    ax.set(xlabel="batch size", ylabel="latency per batch (ms)", title="latency p50 (solid) and p99 (dashed)")
    fig.tight_layout()
    return fig


def batch_energy_figure(table: Sequence[dict[str, Any]], colours: dict[str, str], markers: dict[str, str]) -> Any:
    """Energy per sample against batch size per variant, ± one std over repeats."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(9, 4.5))
    series = _by_variant(table)
    for (variant, runtime, hw), points in series.items():
        ax.errorbar([p["batch_size"] for p in points], [1e3 * p["total_energy_per_sample_j"] for p in points],
                    yerr=[1e3 * (p["total_energy_per_sample_std_j"] or 0) for p in points], capsize=2,
                    color=colours[variant], marker=markers.get(variant, "o"), label=f"{variant} ({runtime}) [{hw}]")
    if series:
        ax.set_xscale("log", base=2)
        _legend_outside(ax)
    else:
        _no_data(ax, "batch sizes")
    ax.set(xlabel="batch size", ylabel="energy per sample (mJ)", title="energy per sample vs batch size")
    ax.set_ylim(bottom=0)
    _estimated_title(fig, table)
    fig.tight_layout()
    return fig


def memory_figure(table: Sequence[dict[str, Any]], colours: dict[str, str]) -> Any:
    """Per variant (its largest batch): the worker's peak resident memory, and the model's weights, in MB."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(9, 4.5))
    best: dict[tuple[str, str], dict[str, Any]] = {}
    for t in table:
        if t.get("peak_rss_bytes") is None:
            continue
        key = (t["variant"], t["runtime"])
        if key not in best or (t.get("batch_size") or 0) > (best[key].get("batch_size") or 0):
            best[key] = t
    items = sorted(best.items())
    if items:
        xs = range(len(items))
        ax.bar([x - 0.2 for x in xs], [t["peak_rss_bytes"] / 2**20 for _, t in items], width=0.4,
               color=[colours[k[0]] for k, _ in items], label="peak resident memory")
        ax.bar([x + 0.2 for x in xs], [(t.get("weight_bytes") or 0) / 2**20 for _, t in items], width=0.4,
               color=[colours[k[0]] for k, _ in items], hatch="//", alpha=0.6, label="model weights")
        ax.set_xticks(list(xs), [f"{v}\n({r}, batch {best[(v, r)].get('batch_size')})" for (v, r), _ in items],
                      fontsize=7, rotation=30, ha="right")
        _legend_outside(ax)
    else:
        _no_data(ax, "memory figures")
    ax.set(ylabel="MB (MiB)", title="memory per variant")
    fig.tight_layout()
    return fig


def _dedupe_legend(ax: Any) -> None:
    handles, labels = ax.get_legend_handles_labels()
    seen: dict[str, Any] = {}
    for h, label in zip(handles, labels, strict=True):
        seen.setdefault(label, h)
    if seen:
        ax.legend(seen.values(), seen.keys(), fontsize=7)


def draw_all(table: Sequence[dict[str, Any]], hourly: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The figures by file name (FIGURES), with one colour and marker per variant across all of them."""
    names = [t["variant"] for t in table] + [h["variant"] for h in hourly]
    colours, markers = variant_colours(names), variant_markers(names)
    return {"pruning_ratio.png": pruning_figure(table, colours, markers), "pareto.png": pareto_figure(table, colours),
            "energy_by_hour.png": hourly_figure(hourly, colours, table),
            "latency_by_batch.png": latency_figure(table, colours, markers),
            "energy_by_batch.png": batch_energy_figure(table, colours, markers),
            "memory.png": memory_figure(table, colours)}


def png_bytes(fig: Any) -> bytes:
    import io

    plt = _pyplot()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()


def write_figures(table: Sequence[dict[str, Any]], hourly: Sequence[dict[str, Any]], folder: str) -> list[Path]:
    """Write the PNGs (FIGURES) into `folder` (created) and return their paths."""
    out = Path(folder).expanduser()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise FarmError(f"cannot create {out}: {exc.strerror}") from None
    paths = []
    for name, fig in draw_all(table, hourly).items():
        (out / name).write_bytes(png_bytes(fig))
        paths.append(out / name)
    return paths
