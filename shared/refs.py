"""Where a descriptor in shared/ points at its worker implementation: a "module:attribute" text.

Descriptors stay import-light this way (the controller reads them without torch); the worker resolves them.
`tests/test_axes.py` resolves every reference every descriptor holds, so a renamed function fails a test, not a
job.
"""

from __future__ import annotations

import importlib
from typing import Any


def resolve(ref: str) -> Any:
    """The object named "module:attribute"; ImportError or AttributeError when there is none."""
    module, sep, attr = ref.partition(":")
    if not sep or not module or not attr:
        raise ValueError(f"a reference is 'module:attribute', got {ref!r}")
    return getattr(importlib.import_module(module), attr)


def every_ref() -> dict[str, str]:
    """Every reference the axes declare, by where it is declared ("stage ort-int8 on onnxruntime": ref)."""
    from shared.datasets import DATASETS
    from shared.meters import METERS
    from shared.runtimes import RUNTIME_INFOS
    from shared.stages import STAGES

    refs = {f"runtime {r.name}": r.implementation for r in RUNTIME_INFOS}
    refs.update({f"meter {m.name}": m.opens for m in METERS})
    refs.update({f"dataset {d.kind}": d.loader for d in DATASETS})
    for stage in STAGES:
        refs.update({f"stage {stage.token} on {runtime}": ref for runtime, ref in stage.apply.items()})
    return refs
