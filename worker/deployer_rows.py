"""The deployer's columns of a result row (docs/deployer-metrics.md): batch size, scenario, latency
percentiles, throughput, memory, size and load cost. rows.py merges them into each row."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from shared.specs import JobSpec


@dataclass(frozen=True)
class ModelFacts:
    """What loading a variant cost and what it weighs: seconds (and joules, where a meter ran) to load it on the
    device, bytes of its weights in memory by dtype, and bytes of the model as its runtime ships it."""

    load_s: float | None = None
    load_energy_j: float | None = None
    weight_bytes_by_dtype: dict[str, int] = field(default_factory=dict)
    artifact_bytes: int | None = None

    @property
    def weight_bytes(self) -> int | None:
        return sum(self.weight_bytes_by_dtype.values()) if self.weight_bytes_by_dtype else None


def deployer_columns(spec: JobSpec, rep: Any, facts: ModelFacts | None) -> dict[str, Any]:
    """The columns for one repeat `rep` (a bench.RepeatMeasurement); None where it was not measured."""
    bench = spec.bench
    lat, mem, server = rep.latency, rep.memory, getattr(rep, "server", None)
    out: dict[str, Any] = {
        "batch_size": bench.max_batch if bench.scenario == "server" else bench.batch_size,
        "scenario": bench.scenario,
        "target_qps": server.target_qps if server else None,
        "latency_p50_s": lat.p50_s if lat else None,
        "latency_p90_s": lat.p90_s if lat else None,
        "latency_p99_s": lat.p99_s if lat else None,
        "latency_max_s": lat.max_s if lat else None,
        "latency_count": lat.count if lat else None,
        "throughput_sps": rep.samples / rep.duration_s if rep.duration_s > 0 else None,
        "peak_rss_bytes": mem.peak_rss_bytes if mem else None,
        "rss_rise_bytes": mem.rss_rise_bytes if mem else None,
        "gpu_max_allocated_bytes": mem.gpu_max_allocated_bytes if mem else None,
        "gpu_max_reserved_bytes": mem.gpu_max_reserved_bytes if mem else None,
        "gpu_used_bytes": mem.gpu_used_bytes if mem else None,
        "cold_latency_s": rep.cold_latency_s,
        "achieved_qps": server.achieved_qps if server else None,
        "late_queries": server.late if server else None,
        "dropped_queries": server.dropped if server else None,
        "energy_per_query_j": (rep.energy.total_energy_j / rep.samples) if server else None,
    }
    if facts is not None:
        out.update(load_s=facts.load_s, load_energy_j=facts.load_energy_j, weight_bytes=facts.weight_bytes,
                   weight_bytes_by_dtype=facts.weight_bytes_by_dtype or None, artifact_bytes=facts.artifact_bytes)
    return out
