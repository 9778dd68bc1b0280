"""Content-addressed artifacts under FARM_ARTIFACTS: a local folder or any fsspec URL the machines share."""

from __future__ import annotations

import hashlib
import io
import json
import uuid
from typing import Any

import fsspec


def recipe_key(recipe: dict[str, Any]) -> str:
    """A stable 20-hex-digit key for a recipe (any JSON-serialisable dict)."""
    blob = json.dumps(recipe, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:20]


class ArtifactStore:
    """Files grouped by key: `<root>/<kind>/<key>/<name>`; writes land atomically where the filesystem allows."""

    def __init__(self, root: str) -> None:
        self.root = root.rstrip("/")
        self.fs, self.base = fsspec.core.url_to_fs(self.root)

    def _path(self, kind: str, key: str, name: str) -> str:
        return f"{self.base}/{kind}/{key}/{name}"

    def exists(self, kind: str, key: str, name: str) -> bool:
        return bool(self.fs.exists(self._path(kind, key, name)))

    def read_bytes(self, kind: str, key: str, name: str) -> bytes:
        with self.fs.open(self._path(kind, key, name), "rb") as fh:
            return fh.read()

    def write_bytes(self, kind: str, key: str, name: str, data: bytes) -> None:
        path = self._path(kind, key, name)
        self.fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
        tmp = f"{path}.partial"
        with self.fs.open(tmp, "wb") as fh:
            fh.write(data)
        self.fs.mv(tmp, path)

    def write_json(self, kind: str, key: str, name: str, obj: Any) -> None:
        self.write_bytes(kind, key, name, json.dumps(obj, indent=2, sort_keys=True).encode())

    def save_torch(self, kind: str, key: str, name: str, obj: Any) -> None:
        import torch

        buf = io.BytesIO()
        torch.save(obj, buf)
        self.write_bytes(kind, key, name, buf.getvalue())

    def load_torch(self, kind: str, key: str, name: str) -> Any:
        import torch

        return torch.load(io.BytesIO(self.read_bytes(kind, key, name)), map_location="cpu", weights_only=True)

    def url(self, kind: str, key: str) -> str:
        return f"{self.root}/{kind}/{key}"


def ensure_writable(store: ArtifactStore) -> None:
    """FarmError now, before any training, when the artifact root cannot be written."""
    from shared.errors import FarmError

    probe = f"{store.base}/.farm-write-probe-{uuid.uuid4().hex}"
    try:
        store.fs.makedirs(store.base, exist_ok=True)
        with store.fs.open(probe, "wb") as fh:
            fh.write(b"ok")
        store.fs.rm(probe)
    except (OSError, PermissionError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise FarmError(f"cannot write to FARM_ARTIFACTS {store.root!r}: {reason}") from None
