"""A FAKE skewed wall clock for fault tests: a machine whose clock is FARM_FAKE_CLOCK_OFFSET_S seconds off.

Put this folder first on PYTHONPATH of a process (a `farm worker` in harness/faultkit.py): at start-up it shifts
`time.time`, `time.time_ns` and `datetime.now`/`utcnow` by the offset; monotonic clocks, sleeps and timeouts are
left alone, as they are on a real machine whose wall clock is wrong. (libfaketime breaks Python's time.sleep.)
Fake hardware only: never installed, never imported by farm itself.
"""

from __future__ import annotations

import datetime as _dt
import os
import time as _time

_OFFSET_S = float(os.environ.get("FARM_FAKE_CLOCK_OFFSET_S") or 0.0)

if _OFFSET_S:
    _real_time, _real_time_ns = _time.time, _time.time_ns
    _time.time = lambda: _real_time() + _OFFSET_S  # type: ignore[assignment]
    _time.time_ns = lambda: _real_time_ns() + int(_OFFSET_S * 1e9)  # type: ignore[assignment]

    class _SkewedDatetime(_dt.datetime):
        @classmethod
        def now(cls, tz=None):  # type: ignore[no-untyped-def,override]
            return super().now(tz) + _dt.timedelta(seconds=_OFFSET_S)

        @classmethod
        def utcnow(cls):  # type: ignore[no-untyped-def,override]
            return super().utcnow() + _dt.timedelta(seconds=_OFFSET_S)

    _dt.datetime = _SkewedDatetime  # type: ignore[misc]
