"""Outcomes that could not reach the store, kept on local disk until it returns.

One JSON file per job, written atomically (temporary file, fsync, rename), so a crash leaves either the
whole outcome or none. A worker's maintenance thread writes them to the store, idempotently, and deletes each
file only after its transaction committed (worker.delivery.sink); outcomes the store refuses go to `dead/`.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path

from shared.outcome import Outcome

log = logging.getLogger(__name__)


class Spool:
    """A folder of pending outcomes, one `<job id>.json` each."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)

    def put(self, outcome: Outcome) -> Path:
        """Write `outcome` durably; raises OSError when the disk cannot hold it."""
        return self._put(self.folder, outcome)

    def put_dead(self, outcome: Outcome) -> Path:
        """Keep an outcome the store refused in `dead/`, out of the flush's way (a person can read it)."""
        return self._put(self.folder / "dead", outcome)

    def _put(self, folder: Path, outcome: Outcome) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{outcome.job_id}.json"
        tmp = path.with_suffix(".partial")
        try:
            with tmp.open("w") as fh:
                fh.write(outcome.to_json())
                fh.flush()
                os.fsync(fh.fileno())
            tmp.replace(path)
        except OSError:  # a full disk: leave no half-written file behind
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
        with contextlib.suppress(OSError):  # make the rename itself durable where the filesystem allows
            fd = os.open(folder, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        return path

    def count(self) -> int:
        """How many outcomes wait (files only: nothing is parsed); 0 when the folder cannot be read."""
        try:
            return sum(1 for _ in self.folder.glob("*.json")) if self.folder.is_dir() else 0
        except OSError:
            return 0

    def pending(self) -> list[tuple[Path, Outcome]]:
        """Every readable outcome, oldest first; an unreadable file is moved aside with a log line."""
        if not self.folder.is_dir():
            return []
        out = []
        for path in sorted(self.folder.glob("*.json"), key=lambda p: p.stat().st_mtime):
            try:
                out.append((path, Outcome.from_json(path.read_text())))
            except (OSError, ValueError, TypeError) as exc:
                log.error("unreadable spool file %s (%s); moved to %s.bad", path, exc, path.name)
                with contextlib.suppress(OSError):
                    path.replace(path.with_suffix(".bad"))
        return out

    @contextlib.contextmanager
    def flushing(self) -> Iterator[bool]:
        """Hold this spool's flush lock if no other process holds it (workers of one machine share a spool): yields
        whether this one may flush now."""
        if not self.folder.is_dir():
            yield True
            return
        import fcntl

        with (self.folder / ".flush-lock").open("a") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
            try:
                yield True
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def remove(self, path: Path) -> None:
        path.unlink(missing_ok=True)
