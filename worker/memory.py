"""Memory and size: the worker's peak resident memory over a window, GPU memory, and a model's weight bytes.

Peak RSS comes from Linux's high-water mark (VmHWM in /proc/self/status), reset at the start of each window
by writing 5 to /proc/self/clear_refs; where that cannot be reset, a 5 ms sampling thread reads VmRSS instead
(a spike shorter than that is missed). Weight bytes are counted per dtype over what the loaded model holds:
an nn.Module's state (torch.ao's packed int8 weights included), an ONNX graph's initializers, or an OpenVINO
model's constants.
"""

from __future__ import annotations

import io
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)
_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


@dataclass(frozen=True)
class MemoryPeak:
    """Memory over one window, in bytes. `rss_rise_bytes` is the peak over the RSS just before the window
    (the loaded model and data). GPU fields are None on a CPU device (or where they cannot be read)."""

    peak_rss_bytes: int
    rss_rise_bytes: int
    gpu_max_allocated_bytes: int | None = None
    gpu_max_reserved_bytes: int | None = None
    gpu_used_bytes: int | None = None  # NVML: the whole GPU's used memory at the window's end
    source: str = "vmhwm"  # vmhwm (kernel high-water mark) or sampled (5 ms polling)


def _status_kb(key: str) -> int | None:
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def rss_bytes() -> int:
    """The process's resident memory now (VmRSS), in bytes; falls back to ru_maxrss where /proc is absent."""
    kb = _status_kb("VmRSS")
    if kb is None:
        import resource

        return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024
    return kb * 1024


def _reset_hwm() -> bool:
    try:
        _CLEAR_REFS.write_text("5")
        return True
    except OSError:
        return False


@contextmanager
def peak_memory(device: Any = None) -> Iterator[list[MemoryPeak]]:
    """Measure the peak memory of the block; the MemoryPeak is appended to the yielded list on exit.
    `device` (a DeviceHandle) adds torch's CUDA peaks and NVML's used memory on a GPU."""
    out: list[MemoryPeak] = []
    before = rss_bytes()
    gpu = _gpu_index(device)
    if gpu is not None:
        import torch

        torch.cuda.reset_peak_memory_stats(gpu)
    hwm = _reset_hwm()
    sampled = [before]
    stop = threading.Event()
    poller = None
    if not hwm:
        def poll() -> None:
            while not stop.wait(0.005):
                sampled.append(rss_bytes())

        poller = threading.Thread(target=poll, name="rss-poller", daemon=True)
        poller.start()
    try:
        yield out
    finally:
        if poller is not None:
            stop.set()
            poller.join()
        peak = max(sampled + [rss_bytes()])
        if hwm:
            peak = max(peak, (_status_kb("VmHWM") or 0) * 1024)
        alloc = reserved = used = None
        if gpu is not None:
            import torch

            alloc, reserved = int(torch.cuda.max_memory_allocated(gpu)), int(torch.cuda.max_memory_reserved(gpu))
            used = nvml_used_bytes(gpu)
        out.append(MemoryPeak(peak, max(0, peak - before), alloc, reserved, used, "vmhwm" if hwm else "sampled"))


def _gpu_index(device: Any) -> int | None:
    d = getattr(device, "device", None)
    if d is None or getattr(d, "device_class", None) != "gpu":
        return None
    return int(d.index or 0)


def nvml_used_bytes(cuda_index: int) -> int | None:
    """The GPU's used memory as NVML reports it (every process's), or None without NVML."""
    try:
        from worker.meters.nvml import _load_pynvml, nvml_index

        nvml = _load_pynvml()
        nvml.nvmlInit()
        handle = nvml.nvmlDeviceGetHandleByIndex(nvml_index(cuda_index))
        return int(nvml.nvmlDeviceGetMemoryInfo(handle).used)
    except Exception as exc:  # no NVML here: GPU used memory is simply not recorded
        log.debug("no NVML memory reading: %s", exc)
        return None


# --- weight bytes -----------------------------------------------------------------------------------------------


def weight_bytes(obj: Any) -> dict[str, int]:
    """Bytes of the weights that `obj` holds, by dtype name (float32, qint8, int8, ...). `obj` is an
    nn.Module, ONNX model bytes, or an OpenVINO Model. Tensors shared by several names count once."""
    if isinstance(obj, (bytes, bytearray)):
        return _onnx_weight_bytes(bytes(obj))
    if hasattr(obj, "state_dict"):
        return _torch_weight_bytes(obj)
    if hasattr(obj, "get_ops"):
        return _openvino_weight_bytes(obj)
    raise TypeError(f"cannot count the weights of a {type(obj).__name__}")


def _torch_tensors(value: Any) -> Iterator[Any]:
    import torch

    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, (tuple, list)):
        for v in value:
            yield from _torch_tensors(v)
    elif hasattr(value, "__obj_flatten__"):  # torch.ao packed params (a script object)
        yield from _torch_tensors(value.__obj_flatten__())
    elif hasattr(value, "unpack"):
        yield from _torch_tensors(value.unpack())


def _torch_weight_bytes(model: Any) -> dict[str, int]:
    import torch

    out: dict[str, int] = {}
    seen: set[tuple[int, int]] = set()
    for value in model.state_dict().values():
        for t in _torch_tensors(value):
            if not isinstance(t, torch.Tensor) or t.numel() == 0:
                continue
            inner = getattr(t, "_data", None)  # optimum-quanto's QTensor: its int8 data and its scale
            parts = [inner, getattr(t, "_scale", None)] if isinstance(inner, torch.Tensor) else [t]
            for p in parts:
                if not isinstance(p, torch.Tensor):
                    continue
                try:
                    key = (p.untyped_storage().data_ptr(), p.storage_offset()) if not p.is_quantized else (id(p), 0)
                except (RuntimeError, NotImplementedError):
                    key = (id(p), 0)
                if key in seen:
                    continue
                seen.add(key)
                name = str(p.dtype).removeprefix("torch.")
                out[name] = out.get(name, 0) + p.numel() * p.element_size()
    return out


def _onnx_weight_bytes(data: bytes) -> dict[str, int]:
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load_model_from_string(data)
    out: dict[str, int] = {}
    for init in model.graph.initializer:
        name = helper.tensor_dtype_to_np_dtype(init.data_type).name
        out[name] = out.get(name, 0) + numpy_helper.to_array(init).nbytes
    return out


def _openvino_weight_bytes(model: Any) -> dict[str, int]:
    out: dict[str, int] = {}
    for op in model.get_ops():
        if op.get_type_name() == "Constant":
            name = op.get_element_type().get_type_name()
            out[name] = out.get(name, 0) + int(op.get_byte_size())
    return out


def serialized_bytes(obj: Any) -> int:
    """Bytes of the model as its runtime would ship it: the ONNX file, or torch.save of the state_dict."""
    if isinstance(obj, (bytes, bytearray)):
        return len(obj)
    if hasattr(obj, "state_dict"):
        import torch

        buf = io.BytesIO()
        torch.save(obj.state_dict(), buf)
        return buf.tell()
    import tempfile

    import openvino as ov

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.xml"
        ov.save_model(obj, str(path), compress_to_fp16=False)
        return sum(f.stat().st_size for f in Path(tmp).iterdir())
