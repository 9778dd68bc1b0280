"""Load cost and model facts for `worker.jobs.execute`: how long (and, with a measuring meter, how many
joules) loading a variant on the device took, and what the loaded model weighs."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from shared.settings import Settings
from worker.deployer_rows import ModelFacts
from worker.devices.base import DeviceHandle
from worker.runtimes.base import Runner, loaded_weights

log = logging.getLogger(__name__)


@dataclass
class LoadTiming:
    """Filled when the `load_cost` block ends: seconds, and joules when the meter measured (not estimated)."""

    seconds: float | None = None
    energy_j: float | None = None


@contextmanager
def load_cost(device: DeviceHandle, settings: Settings) -> Iterator[LoadTiming]:
    """Time the block (loading a model: ORT session creation, OpenVINO compile, quantization at load) inside the
    job's meter, synchronising the device at both edges. An estimated energy is not recorded as a load's."""
    from worker.meters.select import build_meter

    timing = LoadTiming()
    # the benchmark's meter says once per job why energy is estimated; this one need not say it again
    quiet = logging.getLogger("worker.meters.select")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        meter = build_meter(device, settings)
    finally:
        quiet.setLevel(level)
    try:
        device.synchronize()
        t0 = time.perf_counter()
        with meter.window() as win:
            yield timing
            device.synchronize()
        timing.seconds = time.perf_counter() - t0
        energy = win.measurement
        if energy.source.startswith("measured") and "estimated" not in energy.source:
            timing.energy_j = energy.total_energy_j
    finally:
        meter.close()


def model_facts(runner: Runner, timing: LoadTiming) -> ModelFacts:
    """The load cost with the loaded model's weight bytes by dtype and its shipped size (None where the runner
    does not say what holds its weights)."""
    from worker.memory import serialized_bytes, weight_bytes

    weights = loaded_weights(runner)
    by_dtype: dict[str, int] = {}
    size = None
    if weights is not None:
        try:
            by_dtype, size = weight_bytes(weights), serialized_bytes(weights)
        except Exception as exc:  # a format farm cannot count: the row says NULL, the job goes on
            log.warning("cannot count the model's weights: %s", exc)
    return ModelFacts(timing.seconds, timing.energy_j, by_dtype, size)

