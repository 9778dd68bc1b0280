"""A job's two entry points, pure of queues and stores: `execute` (build, load on a runtime, benchmark inside
meters, return the rows) and `build_stage` (a chain's compress stage). `worker.delivery.handle` claims a delivery,
calls one of them and stores the outcome; `preflight` checks a job's inputs for `farm run`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from shared.devices import Device
from shared.errors import FarmError
from shared.settings import Settings
from shared.specs import JobSpec

if TYPE_CHECKING:
    from worker.cost import ModelCost
    from worker.delivery.locks import LockHold
    from worker.devices.base import DeviceHandle
    from worker.runtimes.base import Runner
    from worker.variants import BuildLock, CompressedModel, EpochCallback
    from worker.workloads.types import ImageSet

log = logging.getLogger(__name__)
HostLock = Callable[[], AbstractContextManager["LockHold"]]


def execute(
    spec: JobSpec,
    settings: Settings,
    device: Device | str,
    *,
    log_line: Callable[[str], None] = log.info,
    on_epoch: EpochCallback | None = None,
    on_progress: Callable[[str], None] | None = None,
    allow_train: bool = True,
    host_lock: HostLock | None = None,
    build_lock: BuildLock | None = None,
    checkpoint: Callable[[], None] | None = None,
    threads: int | None = None,
) -> list[dict[str, Any]]:
    """Run a job spec on `device` and return one validated result row (a dict of Result columns) per repeat.

    The variant's model comes from the artifact cache, or is built (and trained, on `device`) when
    `allow_train` is true; its runtime (spec.runtime) loads and quantizes it. `host_lock()` is held while
    anything heavy runs (training, the idle baseline and the benchmark), so that workers sharing a machine do
    not disturb each other's energy readings; never while waiting for a build lock.
    `checkpoint()` runs before every batch; it raises to stop the job
    (cancelled, or its lease lost). `threads` sets torch's intra-op threads (None: leave torch's choice); the
    rows record the number used.
    """
    import torch

    from worker.artifacts import ArtifactStore, store_ledger
    from worker.cost import model_cost
    from worker.delivery.locks import no_lock
    from worker.devices import open_device
    from worker.runtimes import get_runtime
    from worker.runtimes.onnx_export import ExportCache, export_key
    from worker.variants import build_compressed, example_inputs
    from worker.workloads.registry import load_dataset

    handle = open_device(device)
    ones = [spec] if spec.compare is None else [
        replace(spec, compare=None),
        replace(spec, variant=spec.compare.versus, compare=None, runtime=spec.compare.runtime or spec.runtime)]
    # FarmError before anything is built, when this worker lacks (or FARM_RUNTIMES switches off) a runtime
    runtimes = [get_runtime(one.runtime, settings.runtimes) for one in ones]
    if threads is not None:
        torch.set_num_threads(threads)
    store = ArtifactStore(settings.artifacts, store_ledger(settings.database_url))
    roots = settings.data_roots
    host = host_lock or (lambda: no_lock("host"))
    # Built (or found) before the host lock is taken: waiting for another worker's build holds no host lock;
    # training itself takes the host lock (train_lock), so it never overlaps a measurement on this host.
    built = [build_compressed(one, store, device=handle.torch_device, on_epoch=on_epoch, allow_train=allow_train,
                              roots=roots, build_lock=build_lock, train_lock=host, note=on_progress or log_line)
             for one in ones]
    with host() as hold:
        loaded = []
        for one, runtime, compressed in zip(ones, runtimes, built, strict=True):
            example = example_inputs(compressed.fmt)
            cost = model_cost(compressed.model, example)
            runner = runtime.load(compressed.model, one.variant.quant, handle, example,
                                  export=ExportCache(store, export_key(compressed.model_id, compressed.artifact_key,
                                                                       example)),
                                  calibration=_calibration(one, compressed.fmt, roots))
            loaded.append(Loaded(one, compressed.model_id, cost, runner, runtime.version()))
        data = load_dataset(spec.dataset, "test", compressed.fmt, seed=spec.seed, roots=roots)
        notes = (compressed.fmt.note,) if compressed.fmt.note else ()
        if spec.compare is None:
            rows = _measure(loaded[0], settings, handle, data, notes, log_line, on_progress, checkpoint,
                            torch.get_num_threads())
        else:
            rows = _compare(spec.compare.pairs, loaded, settings, handle, data, notes, log_line, on_progress,
                            checkpoint, torch.get_num_threads())
    if hold.lost:  # the measurement may have overlapped another worker's on this host; the rows are kept
        for row in rows:
            row["energy_warnings"].append(hold.lost)
    return rows


def _calibration(spec: JobSpec, fmt: Any, roots: Any) -> Callable[[], list[Any]]:
    """Batches of the training split at the benchmark's batch size, loaded when a scheme asks (calibration)."""

    def batches() -> list[Any]:
        from worker.workloads.registry import load_dataset

        train = load_dataset(spec.dataset, "train", fmt, seed=spec.seed, roots=roots)
        bs = spec.bench.batch_size
        return [train.images[i: i + bs] for i in range(0, len(train), bs)]

    return batches


@dataclass(frozen=True)
class Loaded:
    """A variant ready to benchmark: its spec, model id, cost, runner, and its runtime's version."""

    spec: JobSpec
    model_id: str
    cost: ModelCost
    runner: Runner
    runtime_version: str | None


def _compare(pairs: int, loaded: list[Loaded], settings: Settings, device: DeviceHandle, data: ImageSet,
             notes: tuple[str, ...], log_line: Callable[[str], None], on_progress: Callable[[str], None] | None,
             checkpoint: Callable[[], None] | None, threads: int) -> list[dict[str, Any]]:
    """`farm compare`: both variants warmed up, then `pairs` pairs of one repeat each, A B then B A alternately,
    inside one meter; each row records its pair."""
    from worker.bench import RepeatMeasurement, run_benchmark
    from worker.meters.select import build_meter
    from worker.rows import result_rows

    one = replace(loaded[0].spec.bench, repeats=1, until_cv=None)
    meter = build_meter(device, settings)
    measured: list[list[RepeatMeasurement]] = [[], []]
    try:
        log_line(f"comparing {loaded[0].spec.variant.name} with {loaded[1].spec.variant.name} on {device}: "
                 f"{pairs} pairs with {meter.name}")
        warmed = [run_benchmark(x.runner, data.head(one.batch_size), one, device, meter, checkpoint=checkpoint)[0]
                  .warmup_batches for x in loaded]
        for p in range(pairs):
            for i in ((0, 1) if p % 2 == 0 else (1, 0)):
                (rep,) = run_benchmark(loaded[i].runner, data, one, device, meter, probe=device.temperatures_c,
                                       checkpoint=checkpoint, warm=False)
                measured[i].append(replace(rep, repeat_index=p, warmup_batches=warmed[i]))
            if on_progress:
                on_progress(f"compare pair {p + 1}/{pairs}")
        facts = meter.describe()
    finally:
        meter.close()
    return [row for x, reps, w in zip(loaded, measured, warmed, strict=True)
            for row in result_rows(x.spec, settings, device, x.model_id, x.cost, facts, None, reps, notes, threads,
                                   runtime_version=x.runtime_version, warmup_batches=w,
                                   pair_indices=list(range(pairs)))]


def build_stage(
    spec: JobSpec,
    settings: Settings,
    device: Device | str,
    *,
    on_epoch: EpochCallback | None = None,
    build_lock: BuildLock | None = None,
    host_lock: HostLock | None = None,
    threads: int | None = None,
    on_progress: Callable[[str], None] | None = None,
) -> CompressedModel:
    """The compress stage of a chain: build (prune, train on `device`) and store the variant's artifact.

    `build_lock(key)` is held while building, so that chains of the same recipe submitted at once train it
    once; `host_lock()` is taken only while training (not while waiting for the build lock), so that benchmarks
    on this host do not run meanwhile. `on_progress` hears of a stored artifact that failed verification.
    """
    from worker.artifacts import ArtifactStore, ensure_writable, store_ledger
    from worker.devices import open_device
    from worker.variants import build_compressed

    handle = open_device(device)
    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    store = ArtifactStore(settings.artifacts, store_ledger(settings.database_url))
    ensure_writable(store)
    return build_compressed(spec, store, device=handle.torch_device, on_epoch=on_epoch, roots=settings.data_roots,
                            build_lock=build_lock, train_lock=host_lock, note=on_progress)


def _measure(loaded: Loaded, settings: Settings, device: DeviceHandle, data: ImageSet, notes: tuple[str, ...],
             log_line: Callable[[str], None], on_progress: Callable[[str], None] | None,
             checkpoint: Callable[[], None] | None, threads: int) -> list[dict[str, Any]]:
    """Idle baseline, then the benchmark, with the meters this machine has for the device."""
    from worker.bench import RepeatMeasurement, measure_idle, run_benchmark
    from worker.meters.select import build_meter
    from worker.rows import result_rows

    spec = loaded.spec
    meter = build_meter(device, settings)
    try:
        idle_s = settings.idle_s if spec.bench.idle_s is None else spec.bench.idle_s
        log_line(f"measuring idle power for {idle_s:g} s with {meter.name}")
        idle = measure_idle(meter, idle_s, checkpoint)
        log_line(f"benchmarking {spec.variant.name} on {device} ({spec.runtime}): "
                 f"{len(data.head(spec.bench.limit))} samples")
        planned = spec.bench.planned_repeats

        def repeat_done(rep: RepeatMeasurement) -> None:
            if on_progress:
                on_progress(f"benchmark repeat {rep.repeat_index + 1}/{planned}")

        repeats = run_benchmark(loaded.runner, data, spec.bench, device, meter, probe=device.temperatures_c,
                                on_repeat=repeat_done, checkpoint=checkpoint)
        facts = meter.describe()
    finally:
        meter.close()
    return result_rows(spec, settings, device, loaded.model_id, loaded.cost, facts, idle, repeats, notes, threads,
                       runtime_version=loaded.runtime_version,
                       warmup_batches=repeats[0].warmup_batches if repeats else None)


def preflight(spec: JobSpec, settings: Settings) -> None:
    """FarmError now, in one line, for what would fail the job later: the model folder, the dataset, the store
    of artifacts, the runtime. For `farm run`, which has the worker's view of files."""
    from shared.inputs import model_kind, parse_dataset, under_roots
    from worker.artifacts import ArtifactStore, ensure_writable
    from worker.runtimes import get_runtime
    from worker.workloads.registry import load_dataset
    from worker.workloads.types import ImageFormat

    get_runtime(spec.runtime)
    ensure_writable(ArtifactStore(settings.artifacts))
    if model_kind(spec.model) == "path":
        from transformers import AutoConfig, AutoModelForImageClassification

        folder = under_roots(spec.model, settings.data_roots, what="model folder")
        if not folder.is_dir():
            raise FarmError(f"model folder not found: {folder}")
        try:
            config = AutoConfig.from_pretrained(folder)
            AutoModelForImageClassification.from_config(config)
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise FarmError(f"cannot load model {spec.model!r}: {first}") from None
    if parse_dataset(spec.dataset).path is not None:  # reads and checks the file (the others cannot fail)
        load_dataset(spec.dataset, "test", ImageFormat(3, 32, (0.0,) * 3, (1.0,) * 3), roots=settings.data_roots)
