"""The report's figures, from the tables of controller/report.py: energy and top-1 against pruning ratio (the
seed's Fig. 3), top-1 against energy with the Pareto front, and energy by local hour per host.

One variant has one colour in every figure (`variant_colours`); energy axes start at zero; error bars are one
standard deviation over repeats; estimated energy is said in the title.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from shared.energy import is_estimate
from shared.errors import FarmError

FIGURES = ("pruning_ratio.png", "pareto.png", "energy_by_hour.png")


def _pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise FarmError("figures need matplotlib: pip install matplotlib (or 'farm[worker]')") from None
    return plt


def variant_colours(variants: Sequence[str]) -> dict[str, str]:
    """One colour per variant name, the same in every figure (tab10, then tab20, in sorted order)."""
    from matplotlib import colormaps
    from matplotlib.colors import to_hex

    names = sorted(set(variants))
    cmap = colormaps["tab10" if len(names) <= 10 else "tab20"]
    return {name: to_hex(cmap(i % cmap.N)) for i, name in enumerate(names)}


def _estimated_title(fig: Any, table: Sequence[dict[str, Any]]) -> None:
    if any(is_estimate(t["energy_source"]) for t in table):
        fig.suptitle("CPU energy ESTIMATED from CPU time on some rows", color="darkred")


def _ratio_of(variant: str) -> tuple[str, float] | None:
    """(the variant's name with its pruning ratio masked, the ratio) for a pruned variant; 0 for the baseline."""
    from shared.specs import parse_variant

    if variant == "baseline":
        return "baseline", 0.0
    try:
        spec = parse_variant(variant)
    except FarmError:
        return None
    if spec.prune is None:
        return None
    return variant.replace(f"r{spec.prune.ratio:.2f}", "r*", 1), spec.prune.ratio


def pruning_figure(table: Sequence[dict[str, Any]], colours: dict[str, str]) -> Any:
    """Energy per sample and top-1 against pruning ratio, one line per family (prune-all-r*-...) and machine;
    each point is coloured as its variant."""
    plt = _pyplot()
    fig, (ax_e, ax_a) = plt.subplots(1, 2, figsize=(11, 4.2))
    families: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for t in table:
        found = _ratio_of(t["variant"])
        if found:
            families.setdefault((found[0], t["hardware_id"] or "?"), []).append({**t, "ratio": found[1]})
    baselines = {k[1]: v for k, v in families.items() if k[0] == "baseline"}
    for (family, hw), points in sorted(families.items()):
        if family == "baseline":
            continue
        points = sorted(points + baselines.get(hw, []), key=lambda p: p["ratio"])
        xs = [p["ratio"] for p in points]
        ax_e.plot(xs, [1e3 * p["total_energy_per_sample_j"] for p in points], color="0.6", lw=1, zorder=1)
        ax_a.plot(xs, [100 * (p["top1"] or 0) for p in points], color="0.6", lw=1, zorder=1)
        for p in points:
            ax_e.errorbar(p["ratio"], 1e3 * p["total_energy_per_sample_j"],
                          yerr=1e3 * (p["total_energy_per_sample_std_j"] or 0), fmt="o", color=colours[p["variant"]],
                          label=p["variant"], zorder=2)
            if p["top1"] is not None:
                ax_a.plot(p["ratio"], 100 * p["top1"], "o", color=colours[p["variant"]], label=p["variant"], zorder=2)
    ax_e.set(xlabel="pruning ratio", ylabel="energy per sample (mJ)", title="energy vs pruning ratio")
    ax_a.set(xlabel="pruning ratio", ylabel="top-1 (%)", title="top-1 vs pruning ratio")
    ax_e.set_ylim(bottom=0)
    _dedupe_legend(ax_e)
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
    """Energy per sample by local hour, one line per host and variant (colour: variant; line style: host)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(9, 4.5))
    styles = ["-", "--", ":", "-."]
    hosts = sorted({h["host"] for h in hourly})
    series: dict[tuple[str, str, str], list[tuple[int, float, float]]] = {}
    for h in hourly:
        series.setdefault((h["host"], h["device"], h["variant"]), []).append(
            (h["local_hour"], 1e3 * h["total_energy_per_sample_j"], 1e3 * (h["total_energy_per_sample_std_j"] or 0)))
    for (host, device, variant), points in sorted(series.items()):
        points.sort()
        ax.errorbar([p[0] for p in points], [p[1] for p in points], yerr=[p[2] for p in points], marker="o",
                    color=colours[variant], ls=styles[hosts.index(host) % len(styles)], capsize=2,
                    label=f"{variant} {host} {device}")
    ax.set(xlabel="local hour", ylabel="energy per sample (mJ)", title="energy by time of day")
    ax.set_xlim(-0.5, 23.5)
    ax.set_ylim(bottom=0)
    if series:
        ax.legend(fontsize=7)
    _estimated_title(fig, table)
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
    """The three figures by file name, with one colour per variant across all of them."""
    colours = variant_colours([t["variant"] for t in table] + [h["variant"] for h in hourly])
    return {"pruning_ratio.png": pruning_figure(table, colours), "pareto.png": pareto_figure(table, colours),
            "energy_by_hour.png": hourly_figure(hourly, colours, table)}


def png_bytes(fig: Any) -> bytes:
    import io

    plt = _pyplot()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()


def write_figures(table: Sequence[dict[str, Any]], hourly: Sequence[dict[str, Any]], folder: str) -> list[Path]:
    """Write the three PNGs into `folder` (created) and return their paths."""
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
