"""The background thread that RAPL (to see every counter wrap) and NVML (to integrate power) both need."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from worker.meters.base import MeterError


class Poller:
    """Calls `sample()` every `interval_s` seconds on a daemon thread until stopped.

    A MeterError from `sample` ends the polling and is raised by `stop()`, so a window whose source failed
    midway raises instead of returning the energy read so far. `busy_s` is the time spent inside `sample`.
    """

    def __init__(self, sample: Callable[[], None], interval_s: float, name: str) -> None:
        self._sample, self.interval_s, self.busy_s = sample, interval_s, 0.0
        self._stop = threading.Event()
        self._errors: list[MeterError] = []
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> Poller:
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            t0 = time.perf_counter()
            try:
                self._sample()
            except MeterError as exc:
                self._errors.append(exc)
                return
            finally:
                self.busy_s += time.perf_counter() - t0

    def stop(self) -> None:
        """Stop and wait for the thread; raise the MeterError that ended it early, if one did."""
        self.cancel()
        if self._errors:
            raise self._errors[0]

    def cancel(self) -> None:
        """Stop and wait for the thread, ignoring errors (the window is being abandoned)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
