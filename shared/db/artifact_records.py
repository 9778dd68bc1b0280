"""The store's record of artifacts (table `artifact`): sha256 and size per (kind, recipe key, file name)."""

from __future__ import annotations

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from shared.db.models import Artifact
from shared.db.types import utcnow


def expected(*, session: Session, kind: str, key: str, name: str) -> Artifact | None:
    """The recorded artifact, or None when this store never saw it."""
    stmt = select(Artifact).where(Artifact.kind == kind, Artifact.key == key, Artifact.name == name)
    return session.exec(stmt).first()


def record(*, session: Session, kind: str, key: str, name: str, sha256: str, size: int) -> None:
    """Record (or, after a rebuild, replace) an artifact's digest."""
    for _attempt in range(2):  # two writers at once (the second loses the insert race): update instead
        row = expected(session=session, kind=kind, key=key, name=name)
        if row is None:
            row = Artifact(kind=kind, key=key, name=name, sha256=sha256, bytes=size)
        else:
            row.sha256, row.bytes, row.created_at = sha256, size, utcnow()
        session.add(row)
        try:
            session.commit()
            return
        except IntegrityError:
            session.rollback()
    raise RuntimeError(f"could not record artifact {kind}/{key}/{name}")


class StoreLedger:
    """worker/artifacts.py's Ledger on the farm's store (its URL; the engine is built once per process)."""

    def __init__(self, database_url: str) -> None:
        self.database_url = database_url

    def _session(self) -> Session:
        from shared.db.engine import get_engine

        return Session(get_engine(self.database_url))

    def expected(self, kind: str, key: str, name: str):  # noqa: ANN201  (worker.artifacts.Digest, kept import-light)
        from worker.artifacts import Digest

        with self._session() as session:
            row = expected(session=session, kind=kind, key=key, name=name)
            return None if row is None else Digest(row.sha256, row.bytes)

    def record(self, kind: str, key: str, name: str, digest: object) -> None:
        with self._session() as session:
            record(session=session, kind=kind, key=key, name=name, sha256=digest.sha256,  # type: ignore[attr-defined]
                   size=digest.bytes)  # type: ignore[attr-defined]
