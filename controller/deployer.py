"""The deployer's options (docs/deployer-metrics.md): the inference batch size and its fan-out, and the MLPerf
scenario with the server's rate and batcher. `run`, `submit` and `compare` take them."""

from __future__ import annotations

from typing import Any

import click

from shared.errors import FarmError
from shared.specs import SCENARIOS


def _max_batch_size() -> int:
    """FARM_MAX_BATCH_SIZE (docs/security.md, "Bounds"): the largest batch a command may ask for."""
    from shared.settings import Settings

    return Settings.from_env().max_batch_size


def deployer_options(fn: Any, *, scenarios: bool = True) -> Any:
    """--batch-size and --batch-sizes, and (with `scenarios`) --scenario, --qps, --max-batch, --max-wait-ms,
    --server-s, --p99-ms and --qps-sweep. The command receives them as keyword arguments for `bench_fields`."""
    options = [
        click.option("--batch-size", "batch_size", type=int, default=None,
                     help="Inference batch size: samples per model call (default 8, the seed's)."),
        click.option("--batch-sizes", "batch_sizes", default=None,
                     help="Several inference batch sizes, e.g. 1,8,32: one job each (one sweep with submit)."),
    ]
    if scenarios:
        options += [
            click.option("--scenario", type=click.Choice(SCENARIOS), default="offline", show_default=True,
                         help="MLPerf scenario: offline (closed loop over batches), single-stream (batch 1, one "
                              "query at a time; p90 is the headline) or server (Poisson arrivals at --qps)."),
            click.option("--qps", type=float, default=None,
                         help="server: target queries per second (with --qps-sweep: where the search starts)."),
            click.option("--max-batch", type=int, default=None,
                         help="server: the dynamic batcher's largest batch (default 1: no batching)."),
            click.option("--max-wait-ms", type=float, default=None,
                         help="server: longest a query waits for its batch to fill, ms (default 0)."),
            click.option("--server-s", type=float, default=None,
                         help="server: seconds of arrivals per repeat (default 10)."),
            click.option("--p99-ms", type=float, default=None,
                         help="server: the latency bound, ms; a query answered later is late (default 100)."),
            click.option("--qps-sweep", is_flag=True,
                         help="server: search the highest QPS whose p99 stays under --p99-ms (a row per QPS tried; "
                              "--repeats is the number of rates tried)."),
        ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def batch_sizes(batch_size: int | None, batch_sizes: str | None) -> list[int | None]:
    """The inference batch sizes the options ask for ([None]: the default); FarmError for a bad value."""
    if batch_size is not None and batch_sizes is not None:
        raise FarmError("give --batch-size or --batch-sizes, not both")
    if batch_sizes is not None:
        try:
            sizes = [int(x) for x in batch_sizes.split(",") if x.strip()]
        except ValueError:
            raise FarmError(f"--batch-sizes must be integers separated by commas (1,8,32), got {batch_sizes!r}"
                            ) from None
        if not sizes:
            raise FarmError("--batch-sizes needs at least one size")
    else:
        sizes = [batch_size] if batch_size is not None else [None]
    maximum = _max_batch_size()
    for s in sizes:
        if s is not None and s < 1:
            raise FarmError(f"a batch size must be at least 1, got {s}")
        if s is not None and s > maximum:
            raise FarmError(f"--batch-size must be at most {maximum:,}, got {s:,} (a lab that needs more sets "
                            "FARM_MAX_BATCH_SIZE; docs/security.md, \"Bounds\")")
    return list(dict.fromkeys(sizes))


def bench_fields(batch_size: int | None = None, scenario: str = "offline", qps: float | None = None,
                 max_batch: int | None = None, max_wait_ms: float | None = None, server_s: float | None = None,
                 p99_ms: float | None = None, qps_sweep: bool = False, **_ignored: Any) -> dict[str, Any]:
    """BenchSpec fields for one batch size and the scenario options; FarmError for what does not fit."""
    out: dict[str, Any] = {"scenario": scenario}
    if batch_size is not None:
        out["batch_size"] = batch_size
    server_only = {"--qps": qps, "--max-batch": max_batch, "--max-wait-ms": max_wait_ms, "--server-s": server_s,
                   "--p99-ms": p99_ms, "--qps-sweep": qps_sweep or None}
    if scenario != "server":
        given = [k for k, v in server_only.items() if v is not None]
        if given:
            raise FarmError(f"{given[0]} applies only to --scenario server")
        if scenario == "single-stream" and batch_size not in (None, 1):
            raise FarmError("single-stream runs at batch 1; drop --batch-size")
        if scenario == "single-stream":
            out["batch_size"] = 1
        return out
    if batch_size is not None:
        raise FarmError("the server scenario batches with --max-batch (and --max-wait-ms), not --batch-size")
    if qps is None and not qps_sweep:
        raise FarmError("--scenario server needs --qps Q (or --qps-sweep with --p99-ms)")
    if qps_sweep and p99_ms is None:
        raise FarmError("--qps-sweep needs --p99-ms, the bound p99 must stay under")
    for name, value in (("--qps", qps), ("--max-wait-ms", max_wait_ms), ("--server-s", server_s),
                        ("--p99-ms", p99_ms)):
        if value is not None and not value > 0 and not (name == "--max-wait-ms" and value == 0):
            raise FarmError(f"{name} must be positive, got {value:g}")
    if max_batch is not None and not 1 <= max_batch <= _max_batch_size():
        raise FarmError(f"--max-batch must be between 1 and {_max_batch_size():,} (FARM_MAX_BATCH_SIZE), got "
                        f"{max_batch}")
    if qps is not None and qps * (server_s or 10.0) > 2_000_000:
        raise FarmError(f"--qps {qps:g} over {server_s or 10.0:g} s is more than 2,000,000 queries")
    out.update(qps=qps, qps_sweep=qps_sweep, p99_ms=p99_ms)
    if max_batch is not None:
        out["max_batch"] = max_batch
        out["batch_size"] = max_batch
    else:
        out["batch_size"] = 1
    if max_wait_ms is not None:
        out["max_wait_ms"] = max_wait_ms
    if server_s is not None:
        out["server_s"] = server_s
    return out
