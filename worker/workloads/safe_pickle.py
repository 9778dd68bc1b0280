"""A restricted unpickler for CIFAR-100's python format: dicts, lists, strings, bytes, numbers, numpy arrays.

The archive format is pickle, and a plain `pickle.load` runs whatever a crafted file asks for. This one
admits only the globals that numpy needs to rebuild an array, and refuses every other with a FarmError.
"""

from __future__ import annotations

import pickle
from typing import IO, Any

from shared.errors import FarmError

# Globals a numpy array (or scalar) pickle refers to, under numpy 1 and numpy 2 module names.
_ALLOWED: frozenset[tuple[str, str]] = frozenset(
    (module, name)
    for module in ("numpy.core.multiarray", "numpy._core.multiarray")
    for name in ("_reconstruct", "scalar")
) | {("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")}


class _DataOnly(pickle.Unpickler):
    def __init__(self, fh: IO[bytes], source: str) -> None:
        super().__init__(fh, encoding="bytes")
        self.source = source

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED:
            return super().find_class(module, name)
        raise FarmError(f"refusing to unpickle {module}.{name} from {self.source}: a CIFAR-100 file holds only "
                        "dicts, lists, strings, bytes, numbers and numpy arrays")

    def persistent_load(self, pid: Any) -> Any:
        raise FarmError(f"refusing a persistent reference in {self.source}: not a CIFAR-100 file")


def load_data_pickle(fh: IO[bytes], source: str) -> Any:
    """Unpickle `fh` admitting only plain data and numpy arrays; FarmError for anything else or a broken file."""
    try:
        return _DataOnly(fh, source).load()
    except FarmError:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError,
            MemoryError, OverflowError) as exc:
        raise FarmError(f"{source} is not a readable CIFAR-100 pickle: {type(exc).__name__}: {exc}") from None
