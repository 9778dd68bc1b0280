"""A job's outcome as one value: what the store must hold when the job ends, in JSON for the spool."""

from __future__ import annotations

import json
import uuid
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, Literal

from shared.db.types import utcnow

_DATETIME_KEYS = ("started_at", "recorded_at", "finished_at")


@dataclass
class Outcome:
    """A job's end state, its result rows and training epochs (dicts of the tables' columns).

    `token` is the delivery's lease token: the store takes the outcome only while the job still carries it
    (None: any job that has not finished). `lease_value` lets a spool keep the Redis lease alive.
    """

    job_id: str
    state: Literal["done", "failed"]
    token: str | None = None
    error: str | None = None
    rows: list[dict[str, Any]] = field(default_factory=list)
    epochs: list[dict[str, Any]] = field(default_factory=list)
    artifact_key: str | None = None
    trained: bool | None = None
    progress: str | None = None
    finished_at: datetime = field(default_factory=utcnow)
    lease_value: str | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self), default=_encode, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Outcome:
        data = _decode(json.loads(text))
        return cls(**data)


def _encode(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    raise TypeError(f"cannot spool a {type(value).__name__}")


def _decode(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: datetime.fromisoformat(v) if k in _DATETIME_KEYS and isinstance(v, str) else _decode(v)
                for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v) for v in value]
    return value
