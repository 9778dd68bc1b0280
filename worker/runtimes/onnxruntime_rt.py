"""The `onnxruntime` runtime: the ONNX export on ONNX Runtime's CPU provider, quantized by its own tools."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from shared.specs import QuantSpec
from worker.devices.base import DeviceHandle
from worker.runtimes.base import Runner, Runtime, quantizer
from worker.runtimes.onnx_export import Calibration, ExportCache, refuse_external_data


class OnnxRuntime(Runtime):
    """ONNX Runtime with as many intra-op threads as torch has (a runtime comparison at other thread counts
    would not be one), one inter-op thread, all graph optimisations."""

    name = "onnxruntime"
    package = "onnxruntime"

    def load(self, model: nn.Module, quant: QuantSpec | None, device: DeviceHandle, example: torch.Tensor, *,
             export: ExportCache | None = None, calibration: Calibration | None = None) -> Runner:
        import onnxruntime as ort

        data = (export or ExportCache()).onnx(model, example)
        if quant is not None:
            data = quantizer(quant, self.name, device)(data, quant, calibration)
        refuse_external_data(data, "the model given to ONNX Runtime")  # it would read any file the model names
        options = ort.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])

        def run(batch: torch.Tensor) -> torch.Tensor:
            (logits,) = session.run(["logits"], {"pixel_values": np.ascontiguousarray(batch.cpu().numpy())})
            return torch.from_numpy(logits)

        return run
