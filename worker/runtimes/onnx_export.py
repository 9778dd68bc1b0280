"""Export a compressed fp32 model to ONNX once, cached in the artifact store by recipe (like trained weights).

ONNX Runtime and OpenVINO both start from this file. The exporter is torch.onnx's TorchScript one (opset 17),
with a dynamic batch axis: it handles the pruned ViTs (odd head widths, recomputed attention scaling) exactly;
tests hold the round trip.
"""

from __future__ import annotations

import io
import logging
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from shared.errors import FarmError

log = logging.getLogger(__name__)
OPSET = 17
Calibration = Callable[[], list[torch.Tensor]]  # batches of the training split, (N, C, H, W) float32


class _Logits(nn.Module):
    """The Hugging Face model with a plain tensor output, for the exporter."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        out = self.model(pixel_values)
        return out if isinstance(out, torch.Tensor) else out.logits


def export_onnx(model: nn.Module, example: torch.Tensor) -> bytes:
    """The model (fp32, CPU, eval) as ONNX bytes with input `pixel_values` and output `logits`, batch dynamic."""
    buf = io.BytesIO()
    with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer warnings about Python control flow on shapes (none vary here)
        try:
            torch.onnx.export(_Logits(model.eval().cpu()), (example.cpu(),), buf, input_names=["pixel_values"],
                              output_names=["logits"], opset_version=OPSET, dynamo=False,
                              dynamic_axes={"pixel_values": {0: "batch"}, "logits": {0: "batch"}})
        except Exception as exc:  # an op the exporter cannot translate: the job fails with why
            raise FarmError(f"ONNX export failed: {type(exc).__name__}: {str(exc).splitlines()[0][:300]}") from None
    return buf.getvalue()


def _external_tensors(message: object) -> list[object]:
    """Every TensorProto under `message` (any protobuf) with data_location EXTERNAL or external_data entries: the
    whole tree is walked (initializers, sparse values and indices, attributes, subgraphs, functions), not only what
    onnx's own helper lists."""
    from onnx import TensorProto

    found: list[object] = []
    stack = [message]
    while stack:
        node = stack.pop()
        if isinstance(node, TensorProto) and (node.data_location == TensorProto.EXTERNAL or len(node.external_data)):
            found.append(node)
        for field, value in node.ListFields():  # type: ignore[attr-defined]
            if field.message_type is None:
                continue
            stack.extend([value] if hasattr(value, "ListFields") else value)
    return found


def refuse_external_data(data: bytes, where: str) -> None:
    """FarmError when an ONNX model names external data (tensor bytes in another file): ONNX Runtime and OpenVINO
    would read that file, wherever it points. farm's exports never use external data (they are one file)."""
    import onnx

    try:
        model = onnx.load_model_from_string(data)
    except Exception as exc:  # not an ONNX model at all
        raise FarmError(f"{where} is not a readable ONNX model: {type(exc).__name__}") from None
    external = _external_tensors(model)
    outside = sorted({e.value for t in external for e in t.external_data if e.key == "location"}) or ["no location"]
    if external:
        raise FarmError(f"{where} names external data files ({', '.join(map(repr, outside[:3]))}); refused: a farm "
                        "export is one self-contained file")


@dataclass
class ExportCache:
    """Where a variant's ONNX export lives: `store` (an ArtifactStore) under `key`, or nowhere (None: export
    every time, for scripts). A cached export that fails verification (its sha256, a path outside the artifact
    root, external data) is exported again and replaces it; what this returns never names external data."""

    store: Any = None
    key: str | None = None

    def onnx(self, model: nn.Module, example: torch.Tensor) -> bytes:
        from worker.artifacts import ArtifactMismatch

        if self.store is not None and self.key and self.store.exists("onnx", self.key, "model.onnx"):
            try:
                data = bytes(self.store.read_bytes("onnx", self.key, "model.onnx"))
                refuse_external_data(data, f"{self.store.url('onnx', self.key)}/model.onnx")
                return data
            except (ArtifactMismatch, FarmError) as exc:
                log.warning("%s; exporting it again", exc)
        data = export_onnx(model, example)
        refuse_external_data(data, "the ONNX export")
        if self.store is not None and self.key:
            try:
                self.store.write_bytes("onnx", self.key, "model.onnx", data)
            except OSError as exc:  # a read-only store still benchmarks; the next job exports again
                log.warning("cannot cache the ONNX export under %s: %s", self.key, exc)
        return data


def export_key(model_id: str, artifact_key: str | None, example: torch.Tensor) -> str:
    """The cache key of an export: the model and the artifact it came from, the input shape, exporter and torch."""
    from worker.artifacts import recipe_key

    return recipe_key({"model_id": model_id, "artifact": artifact_key, "input": list(example.shape[1:]),
                       "exporter": f"torch.onnx torchscript opset {OPSET}", "torch": torch.__version__})
