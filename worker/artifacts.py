"""Content-addressed artifacts under FARM_ARTIFACTS: a local folder or any fsspec URL the machines share.

Every artifact is written durably (data fsynced, then renamed into place, then the folder fsynced, where the
filesystem allows) with a `<name>.sha256` sidecar, and its sha256 and size are recorded in the store (table
`artifact`) through a `Ledger`. A read is verified: against the store's record when there is one, else against
the sidecar (and then adopted into the store: trust on first use, see docs/artifacts.md). A file that does not
match, or that resolves outside the artifact root, raises `ArtifactMismatch`: callers treat it as missing and
rebuild it, or refuse to measure it.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import fsspec

log = logging.getLogger(__name__)
SIDECAR = ".sha256"


def recipe_key(recipe: dict[str, Any]) -> str:
    """A stable 20-hex-digit key for a recipe (any JSON-serialisable dict)."""
    blob = json.dumps(recipe, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:20]


@dataclass(frozen=True)
class Digest:
    """What an artifact's bytes hash to: hex sha256 and size in bytes."""

    sha256: str
    bytes: int

    @classmethod
    def of(cls, data: bytes) -> Digest:
        return cls(hashlib.sha256(data).hexdigest(), len(data))


class Ledger(Protocol):
    """Where artifacts' digests are recorded beside their recipe keys (the store's `artifact` table)."""

    def expected(self, kind: str, key: str, name: str) -> Digest | None: ...

    def record(self, kind: str, key: str, name: str, digest: Digest) -> None: ...


class ArtifactMismatch(RuntimeError):
    """An artifact that exists but is not what was recorded (truncated, corrupt, tampered, or outside the root)."""


class ArtifactStore:
    """Files grouped by key: `<root>/<kind>/<key>/<name>`; writes are durable and atomic where the filesystem
    allows, reads are verified (see the module's docstring). `ledger` None: the sidecar alone is checked."""

    def __init__(self, root: str, ledger: Ledger | None = None) -> None:
        self.root = root.rstrip("/")
        self.fs, self.base = fsspec.core.url_to_fs(self.root)
        self.ledger = ledger
        self.local = "file" in _protocols(self.fs)

    def _path(self, kind: str, key: str, name: str) -> str:
        return f"{self.base}/{kind}/{key}/{name}"

    def exists(self, kind: str, key: str, name: str) -> bool:
        return bool(self.fs.exists(self._path(kind, key, name)))

    def _inside_root(self, path: str) -> bool:
        """Whether a local `path`, symlinks resolved, lies under the artifact root (remote stores have no links)."""
        if not self.local:
            return True
        return Path(path).resolve().is_relative_to(Path(self.base).resolve())

    def _refuse_outside(self, folder: str, path: str) -> None:
        if not self._inside_root(folder):
            raise ArtifactMismatch(f"refusing to write {path}: its folder resolves outside the artifact root "
                                   f"{self.root} (a symlink in the store?)")

    def read_bytes(self, kind: str, key: str, name: str) -> bytes:
        """The artifact's bytes, verified; ArtifactMismatch when they are not what was written."""
        path = self._path(kind, key, name)
        if not self._inside_root(path):
            raise ArtifactMismatch(f"{self.url(kind, key)}/{name} resolves outside the artifact root {self.root}")
        with self.fs.open(path, "rb") as fh:
            data: bytes = fh.read()
        got = Digest.of(data)
        want, source = self._recorded(kind, key, name), "recorded in the store"
        if want is None:
            want, source = self._sidecar(kind, key, name), "in its .sha256 file"
            if want is None or want == got:
                self._record(kind, key, name, got)  # first use of an artifact written without this store
        if want is not None and want != got:
            raise ArtifactMismatch(f"{self.url(kind, key)}/{name} does not match the sha256 {source} "
                                   f"({got.bytes} bytes, sha256 {got.sha256[:12]}; expected {want.bytes} bytes, "
                                   f"sha256 {want.sha256[:12]})")
        return data

    def _recorded(self, kind: str, key: str, name: str) -> Digest | None:
        if self.ledger is None:
            return None
        try:
            return self.ledger.expected(kind, key, name)
        except Exception as exc:  # the store away: fall back on the sidecar rather than stop the job
            log.warning("cannot read the store's record of artifact %s/%s/%s (%s); checking its sidecar", kind, key,
                        name, exc)
            return None

    def _sidecar(self, kind: str, key: str, name: str) -> Digest | None:
        path = self._path(kind, key, name + SIDECAR)
        try:
            with self.fs.open(path, "rb") as fh:
                text = fh.read().decode("ascii", "replace").split()
            return Digest(text[0], int(text[1]))
        except (OSError, IndexError, ValueError):
            return None

    def _record(self, kind: str, key: str, name: str, digest: Digest) -> None:
        if self.ledger is None:
            return
        try:
            self.ledger.record(kind, key, name, digest)
        except Exception as exc:  # the store away: the sidecar still guards integrity; the next use records it
            log.warning("cannot record artifact %s/%s/%s in the store (%s)", kind, key, name, exc)

    def write_bytes(self, kind: str, key: str, name: str, data: bytes) -> Digest:
        """Write durably, then record the digest (store and sidecar); returns it."""
        digest = Digest.of(data)
        self._write_durably(self._path(kind, key, name), data)
        self._write_durably(self._path(kind, key, name + SIDECAR), f"{digest.sha256} {digest.bytes}\n".encode())
        self._record(kind, key, name, digest)
        return digest

    def _write_durably(self, path: str, data: bytes) -> None:
        folder = path.rsplit("/", 1)[0]
        if self.local:
            # a planted symlink (`<root>/onnx -> /elsewhere`) must not carry a write out of the root: check the
            # deepest folder that exists before makedirs (nothing is created outside), and the folder after it
            existing, base = Path(folder), Path(self.base)
            while not existing.exists() and existing != base and existing != existing.parent:
                existing = existing.parent
            if existing.exists():  # the root itself may not exist yet: makedirs creates it
                self._refuse_outside(str(existing), path)
        self.fs.makedirs(folder, exist_ok=True)
        if self.local:
            self._refuse_outside(folder, path)
        tmp = f"{path}.{uuid.uuid4().hex[:8]}.partial"
        if not self.local:  # fsspec remote stores keep their own semantics (object stores put whole objects)
            with self.fs.open(tmp, "wb") as fh:
                fh.write(data)
            self.fs.mv(tmp, path)
            return
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)  # a symlink planted at `path` is replaced, never followed
        _fsync_dir(folder)

    def write_json(self, kind: str, key: str, name: str, obj: Any) -> Digest:
        return self.write_bytes(kind, key, name, json.dumps(obj, indent=2, sort_keys=True).encode())

    def save_torch(self, kind: str, key: str, name: str, obj: Any) -> Digest:
        import torch

        buf = io.BytesIO()
        torch.save(obj, buf)
        return self.write_bytes(kind, key, name, buf.getvalue())

    def load_torch(self, kind: str, key: str, name: str) -> Any:
        """A verified torch file (weights only); ArtifactMismatch also when torch cannot read it."""
        import pickle
        import zipfile

        import torch

        data = self.read_bytes(kind, key, name)
        try:
            return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
        except (RuntimeError, EOFError, zipfile.BadZipFile, pickle.UnpicklingError, ValueError) as exc:
            raise ArtifactMismatch(f"{self.url(kind, key)}/{name} cannot be read by torch: "
                                   f"{str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__}") from None

    def url(self, kind: str, key: str) -> str:
        return f"{self.root}/{kind}/{key}"


def _protocols(fs: Any) -> tuple[str, ...]:
    proto = fs.protocol
    return tuple(proto) if isinstance(proto, (tuple, list)) else (str(proto),)


def _fsync_dir(folder: str) -> None:
    """Make a rename in `folder` durable; some filesystems (and Windows) cannot open a folder: then nothing."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


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


def store_ledger(database_url: str) -> Ledger:
    """The ledger on the farm's store (shared/db/artifact_records.py)."""
    from shared.db.artifact_records import StoreLedger

    return StoreLedger(database_url)
