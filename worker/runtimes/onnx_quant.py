"""int8 for the ONNX-based runtimes, one function per scheme (shared/stages.py says which runs where).

- `ort-int8dyn`: ONNX Runtime's dynamic quantization: int8 weights per channel, uint8 activations scaled per
  batch (MatMulInteger / DynamicQuantizeLinear). No calibration.
- `ort-int8`: ONNX Runtime static QDQ: weights per channel, activation ranges from the training split (MinMax).
- `ov-int8`: NNCF post-training quantization of the OpenVINO model, transformer preset, calibrated on the
  training split.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

from shared.errors import FarmError
from shared.specs import QuantSpec
from worker.runtimes.onnx_export import Calibration

CALIBRATION_BATCHES = 32  # of the training split's batches, at the benchmark's batch size


def _calibration(calibration: Calibration | None, scheme: str) -> list[np.ndarray]:
    if calibration is None:
        raise FarmError(f"{scheme} needs calibration data (the training split), and none was given")
    return [np.ascontiguousarray(b.cpu().numpy()) for b in calibration()[:CALIBRATION_BATCHES]]


@contextmanager
def _quiet() -> Iterator[None]:
    """ONNX Runtime's quantizer logs a warning per 1-D weight and a pre-processing tip on the root logger."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def ort_dynamic_int8(data: bytes, spec: QuantSpec, calibration: Calibration | None) -> bytes:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with tempfile.TemporaryDirectory() as tmp, _quiet():
        src, dst = os.path.join(tmp, "fp32.onnx"), os.path.join(tmp, "int8.onnx")
        with open(src, "wb") as fh:
            fh.write(data)
        quantize_dynamic(src, dst, weight_type=QuantType.QInt8, per_channel=True)
        with open(dst, "rb") as fh:
            return fh.read()


def ort_static_int8(data: bytes, spec: QuantSpec, calibration: Calibration | None) -> bytes:
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    batches = _calibration(calibration, spec.scheme)

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter([{"pixel_values": b} for b in batches])

        def get_next(self) -> dict[str, Any] | None:
            return next(self.items, None)

    with tempfile.TemporaryDirectory() as tmp, _quiet():
        src, dst = os.path.join(tmp, "fp32.onnx"), os.path.join(tmp, "int8.onnx")
        with open(src, "wb") as fh:
            fh.write(data)
        quantize_static(src, dst, Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
        with open(dst, "rb") as fh:
            return fh.read()


def nncf_int8(ov_model: Any, spec: QuantSpec, calibration: Calibration | None) -> Any:
    import nncf

    nncf.set_log_level(logging.ERROR)
    batches = _calibration(calibration, spec.scheme)
    return nncf.quantize(ov_model, nncf.Dataset(batches), model_type=nncf.ModelType.TRANSFORMER,
                         subset_size=sum(len(b) for b in batches))
