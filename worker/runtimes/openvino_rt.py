"""The `openvino` runtime: the ONNX export compiled by OpenVINO for the CPU, int8 through NNCF."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from shared.specs import QuantSpec
from worker.devices.base import DeviceHandle
from worker.runtimes.base import Runner, Runtime, quantizer
from worker.runtimes.onnx_export import Calibration, ExportCache, refuse_external_data


def read_onnx(data: bytes) -> object:
    """An OpenVINO model from ONNX bytes (its reader wants a file); FarmError for a model naming external data,
    which OpenVINO would read from wherever it points."""
    import tempfile

    import openvino as ov

    refuse_external_data(data, "the model given to OpenVINO")
    with tempfile.NamedTemporaryFile(suffix=".onnx") as fh:
        fh.write(data)
        fh.flush()
        return ov.Core().read_model(fh.name)


class OpenVinoRuntime(Runtime):
    """OpenVINO on the CPU with as many inference threads as torch has, latency hint (one stream), and f32
    inference precision: on CPUs with avx512_bf16 or AMX, OpenVINO would otherwise run an "fp32" model in bf16
    (its logits differed from torch's by 0.05 here; with f32, by 1e-5)."""

    name = "openvino"
    package = "openvino"

    def load(self, model: nn.Module, quant: QuantSpec | None, device: DeviceHandle, example: torch.Tensor, *,
             export: ExportCache | None = None, calibration: Calibration | None = None) -> Runner:
        import openvino as ov

        ov_model = read_onnx((export or ExportCache()).onnx(model, example))
        if quant is not None:
            ov_model = quantizer(quant, self.name, device)(ov_model, quant, calibration)
        compiled = ov.Core().compile_model(ov_model, "CPU", {"INFERENCE_NUM_THREADS": torch.get_num_threads(),
                                                             "PERFORMANCE_HINT": "LATENCY",
                                                             "INFERENCE_PRECISION_HINT": "f32"})
        request = compiled.create_infer_request()

        def run(batch: torch.Tensor) -> torch.Tensor:
            out = request.infer({0: np.ascontiguousarray(batch.cpu().numpy())})
            return torch.from_numpy(np.array(out[compiled.output(0)]))

        return run
