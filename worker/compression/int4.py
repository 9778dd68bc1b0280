"""`int4`: optimum-quanto qint4 weights, activations in float.

Weights are stored 4-bit (two per byte) with one float scale and zero point per group of input channels
(quanto's group size, 128, or the whole row where a layer is narrower), then frozen; every matmul dequantizes
them. It halves the weight memory of `uint8` again; like `uint8`, it is slower than fp32 on a CPU, where quanto
has no int4 kernel.

It quantizes under `torch.inference_mode`: qint4 weights frozen outside it raise "Cannot set version_counter for
inference tensor" when the benchmark (which runs under inference mode) calls the model (torch 2.13,
optimum-quanto 0.2.7). Frozen inside it, they are inference tensors: the model then runs under inference mode
or `torch.no_grad`, never with autograd, which a benchmark never needs.

On a CPU quanto unpacks the 4-bit weights with a C++ extension that it compiles on first use, into its own folder
in site-packages (the first int4 test took 198-229 s beside the suite on a 2-core AVX2 EPYC; `make install` builds
it ahead). It is loaded here, at quantization, so that neither the compile nor its failure lands in a warm-up or a
measured window; a worker without a C++ compiler fails the job saying so (the Docker image builds it at image build).
"""

from __future__ import annotations

import os

import torch
from torch import nn

from shared.errors import FarmError
from shared.specs import QuantSpec


def load_cpu_unpack_kernel() -> None:
    """Build (first time) or load quanto's CPU int4 unpack extension; FarmError naming what is missing."""
    from optimum.quanto.library.extensions import get_extension

    ext = get_extension("quanto_cpp")
    try:
        ext.lib  # noqa: B018 (the property builds and loads it)
    except PermissionError as exc:  # torch takes a lock file in the build folder even to load a built extension
        raise FarmError(f"int4 on a CPU needs optimum-quanto's C++ unpack extension, and this worker (uid "
                        f"{os.getuid()}) cannot write its build folder {ext.build_directory} ({exc.strerror}): make "
                        "that folder writable by the worker's user, or build it as that user") from None
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise FarmError(f"int4 on a CPU needs optimum-quanto's C++ unpack extension, which could not be built here "
                        f"({first}): install a C++ compiler and ninja on this worker (Debian: apt-get install g++), "
                        "or choose another scheme") from None


def quanto_int4(model: nn.Module, spec: QuantSpec, device: str) -> nn.Module:
    """Quantize every Linear and Conv2d's weights to quanto's qint4 and freeze them (in place; returns `model`)."""
    from optimum.quanto import freeze, qint4, quantize

    if str(device).startswith("cpu"):
        load_cpu_unpack_kernel()
    with torch.inference_mode():
        quantize(model, weights=qint4)
        freeze(model)
    return model
