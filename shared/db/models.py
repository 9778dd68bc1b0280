"""Tables: one job per submission, one result row per benchmark repeat."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Column, Index
from sqlmodel import Field, SQLModel

from shared.db.types import UTCDateTime, utcnow

FINISHED_STATES = ("done", "failed")


class Job(SQLModel, table=True):
    """A submitted job and its lifecycle; `spec` is the JobSpec as JSON."""

    __tablename__ = "job"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    variant: str = Field(index=True)
    spec: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    queue: str
    state: str = Field(default="queued", index=True)
    submitted_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    started_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    finished_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    worker: str | None = None
    error: str | None = None
    # Added in migration 0003: a chain's stages share chain_id; stage is "compress" or "benchmark".
    chain_id: uuid.UUID | None = Field(default=None, index=True)
    stage: str = Field(default="benchmark")
    progress: str | None = None
    artifact_key: str | None = None
    trained: bool | None = None
    # Added in migration 0004: the delivery that owns the job (its outcome is written only while this matches),
    # and how many times the job's message was delivered.
    lease_token: str | None = None
    deliveries: int = 0


class TrainingEpoch(SQLModel, table=True):
    """One epoch of a retrained/distilled stage: mean train loss, val top-1 (fraction), seconds."""

    __tablename__ = "training_epoch"

    id: int | None = Field(default=None, primary_key=True)
    job_id: uuid.UUID = Field(foreign_key="job.id", index=True)
    artifact_key: str = Field(index=True)
    kind: str
    epoch: int
    train_loss: float
    val_top1: float
    duration_s: float
    recorded_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class Result(SQLModel, table=True):
    """One benchmark repeat. Energies are joules per sample; times are seconds per sample."""

    __tablename__ = "result"
    __table_args__ = (
        Index("ix_result_hardware", "cpu_model", "gpu_name", "device"),
        Index("ix_result_host_started", "host", "started_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    job_id: uuid.UUID = Field(foreign_key="job.id", index=True)
    repeat_index: int
    variant: str = Field(index=True)
    model_id: str
    dataset_id: str
    host: str = Field(index=True)
    cpu_model: str
    gpu_name: str | None = None
    device: str
    started_at: datetime = Field(sa_type=UTCDateTime, index=True)
    local_hour: int = Field(index=True)
    timezone: str
    samples: int
    top1: float | None = None
    top5: float | None = None
    time_per_sample_s: float
    cpu_energy_per_sample_j: float | None = None
    gpu_energy_per_sample_j: float | None = None
    total_energy_per_sample_j: float
    energy_source: str
    # Added in migration 0002: idle baseline, DRAM, per-device split, warnings and drift conditions.
    dram_energy_per_sample_j: float | None = None
    idle_power_w: float | None = None
    active_energy_per_sample_j: float | None = None
    energy_per_device_j: dict[str, float] = Field(default_factory=dict, sa_column=Column(JSON, nullable=True))
    energy_warnings: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=True))
    cpu_temp_start_c: float | None = None
    cpu_temp_end_c: float | None = None
    gpu_temp_start_c: float | None = None
    gpu_temp_end_c: float | None = None
    cpu_governor: str | None = None
    gpu_driver: str | None = None
    gpu_power_limit_w: float | None = None
    # Added in migration 0005: which energy domains were summed, e.g. package-0+package-1+dram-0+dram-1.
    energy_domains: str | None = None
    params: int = Field(sa_type=BigInteger)
    macs: int = Field(sa_type=BigInteger)
    software: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))


RESULT_COLUMNS: tuple[str, ...] = tuple(c.name for c in Result.__table__.columns)  # type: ignore[attr-defined]
