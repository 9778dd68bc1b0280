"""Tables: one job per submission, one result row per benchmark repeat."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import ConfigDict, field_validator
from sqlalchemy import JSON, BigInteger, Column, Index, false
from sqlmodel import Field, SQLModel

from shared.db import columns
from shared.db.types import UTCDateTime, utcnow

FINISHED_STATES = ("done", "failed", "cancelled")
# Column comments, for people who query the store with SQL (Postgres keeps them; migration 0007 sets them).
COMMENTS: dict[str, str] = {
    "time_per_sample_s": "seconds per sample: the repeat's metered window divided by its samples",
    "total_energy_per_sample_j": "joules per sample over every metered domain (energy_domains)",
    "active_energy_per_sample_j": "joules per sample above idle: total minus idle_power_w times the window",
    "energy_per_device_j": "joules PER SAMPLE by energy domain (package-0, dram-0, gpu-0, ...)",
    "top1": "top-1 accuracy as a fraction (0-1)",
    "energy_source": "measured:... or estimated:... per meter, joined by +",
    "started_at": "when the repeat's window opened (UTC, timezone-aware)",
    "local_hour": "the worker's local hour (0-23) when the repeat started",
    "hardware_id": "12 hex digits hashing the machine fingerprint in hardware (CPU, ISA, GPU, threads)",
    "runtime": "the runtime that ran the model (torch, ...)",
    "noise": "set when the run's repeats vary more than farm accepts: why (CV, outlier repeat)",
    "pair_index": "a comparison's pair (farm compare): rows of one pair ran back to back",
    "passes": "passes over the test split inside the repeat's window (samples counts them all)",
    "clock_skew_s": "the worker's clock minus the store's (or broker's) clock, in seconds, when the row was measured",
    # Added in migration 0011 (issue 21, docs/deployer-metrics.md)
    "batch_size": "the inference batch the repeat ran (queries per call; server: the dynamic batcher's largest)",
    "scenario": "MLPerf scenario: offline, single-stream or server",
    "target_qps": "server scenario: the queries per second asked for (Poisson arrivals)",
    "latency_p50_s": "median seconds per batch (server: per query, arrival to answer) inside the window",
    "latency_p99_s": "99th percentile of seconds per batch (server: per query) inside the window",
    "throughput_sps": "samples (queries) answered per second over the window",
    "peak_rss_bytes": "the worker's peak resident memory during the window, bytes",
    "weight_bytes": "bytes of the loaded model's weights in memory (by dtype in weight_bytes_by_dtype)",
    "load_s": "seconds to load the model on the device (runtime session, compile, quantization at load)",
    "cold_latency_s": "seconds of the first batch after loading, before warm-up",
    "foreign_cpu_cores": "cores busy outside the worker's process tree during the window (/proc/stat or cgroup)",
    "foreign_gpu": "other processes on the GPU and its utilisation (%) during the window (NVML)",
    "contended": "the window ran while other work used more than FARM_CONTENTION_CORES (noise says how much)",
    "cooldown_s": "seconds waited before the window for the device to cool back to its starting temperature",
    "min_window_s": "the shortest window the meter needed, seconds (min_window_reason says why)",
}


class Job(SQLModel, table=True):
    """A submitted job and its lifecycle; `spec` is the JobSpec as JSON."""

    __tablename__ = "job"
    __table_args__ = (Index("ix_job_state_submitted", "state", "submitted_at", "id"),)  # the reaper's walk

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
    # Added in migration 0006: the jobs of one `farm submit` (several variants or hosts) share a sweep_id.
    sweep_id: uuid.UUID | None = Field(default=None, index=True)


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


class Artifact(SQLModel, table=True):
    """A stored artifact's content hash beside its recipe key (migration 0009): a load that does not match it is
    rebuilt or refused, never measured (worker/artifacts.py)."""

    __tablename__ = "artifact"
    __table_args__ = (Index("ix_artifact_kind_key_name", "kind", "key", "name", unique=True),)

    id: int | None = Field(default=None, primary_key=True)
    kind: str  # base, variants, onnx
    key: str  # the recipe key (worker/artifacts.py recipe_key)
    name: str  # the file under <root>/<kind>/<key>/
    sha256: str
    bytes: int = Field(sa_type=BigInteger)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class ResultFields(SQLModel):
    """The columns of one benchmark repeat that a worker fills. Energies are joules per sample; times are
    seconds per sample. Rows are built through `ResultCreate`, which refuses a misspelled or missing key."""

    repeat_index: int
    variant: str = Field(index=True)
    model_id: str
    dataset_id: str
    host: str = Field(index=True)
    cpu_model: str
    gpu_name: str | None = None
    device: str
    started_at: datetime = Field(sa_type=UTCDateTime, index=True, sa_column_kwargs={"comment": COMMENTS["started_at"]})
    local_hour: int = Field(index=True, ge=0, le=23, sa_column_kwargs={"comment": COMMENTS["local_hour"]})
    timezone: str
    samples: int = Field(gt=0)
    top1: float | None = Field(default=None, ge=0, le=1, sa_column_kwargs={"comment": COMMENTS["top1"]})
    top5: float | None = Field(default=None, ge=0, le=1)
    time_per_sample_s: float = Field(gt=0, sa_column_kwargs={"comment": COMMENTS["time_per_sample_s"]})
    cpu_energy_per_sample_j: float | None = None
    gpu_energy_per_sample_j: float | None = None
    total_energy_per_sample_j: float = Field(sa_column_kwargs={"comment": COMMENTS["total_energy_per_sample_j"]})
    energy_source: str = Field(sa_column_kwargs={"comment": COMMENTS["energy_source"]})
    # Added in migration 0002: idle baseline, DRAM, per-domain split, warnings and drift conditions.
    dram_energy_per_sample_j: float | None = None
    idle_power_w: float | None = None
    active_energy_per_sample_j: float | None = Field(
        default=None, sa_column_kwargs={"comment": COMMENTS["active_energy_per_sample_j"]})
    # Joules PER SAMPLE by energy domain (package-0, dram-0, gpu-0, ...).
    energy_per_device_j: dict[str, float] = Field(default_factory=dict, sa_type=JSON, nullable=True,
                                                  sa_column_kwargs={"comment": COMMENTS["energy_per_device_j"]})
    energy_warnings: list[str] = Field(default_factory=list, sa_type=JSON, nullable=True)
    cpu_temp_start_c: float | None = None
    cpu_temp_end_c: float | None = None
    gpu_temp_start_c: float | None = None
    gpu_temp_end_c: float | None = None
    cpu_governor: str | None = None
    gpu_driver: str | None = None
    gpu_power_limit_w: float | None = None
    # Added in migration 0005: which energy domains were summed, e.g. package-0+package-1+dram-0+dram-1.
    energy_domains: str | None = None
    # Added in migration 0006: torch's intra-op threads during the benchmark (farm worker --threads).
    threads: int | None = Field(default=None, ge=1)
    params: int = Field(sa_type=BigInteger)
    macs: int = Field(sa_type=BigInteger)
    software: dict[str, Any] = Field(sa_type=JSON, nullable=False)
    # Added in migration 0007: the machine's fingerprint (CPU model, speed-relevant ISA, sockets, CPUs, memory,
    # threads; GPU name, memory, driver, power limit), a short stable hash of it and a readable label; the
    # runtime that ran the model; warm-up batches run; a noise flag; a comparison's pair index.
    hardware_id: str | None = Field(default=None, index=True,
                                    sa_column_kwargs={"comment": COMMENTS["hardware_id"]})
    hardware_label: str | None = None
    hardware: dict[str, Any] = Field(default_factory=dict, sa_type=JSON, nullable=True)
    runtime: str = Field(default="torch", sa_column_kwargs={"comment": COMMENTS["runtime"]})
    warmup_batches: int | None = None
    noise: str | None = Field(default=None, sa_column_kwargs={"comment": COMMENTS["noise"]})
    pair_index: int | None = Field(default=None, sa_column_kwargs={"comment": COMMENTS["pair_index"]})
    passes: int | None = Field(default=None, sa_column_kwargs={"comment": COMMENTS["passes"]})
    # Added in migration 0008: the worker's clock skew (its timestamps and local hour carry that error).
    clock_skew_s: float | None = Field(default=None, sa_column_kwargs={"comment": COMMENTS["clock_skew_s"]})
    # Added in migration 0011: what a deployer measures (docs/deployer-metrics.md). NULL where not measured.
    batch_size: int | None = Field(default=None, ge=1, sa_column_kwargs={"comment": COMMENTS["batch_size"]})
    scenario: str | None = Field(default=None, sa_column_kwargs={"comment": COMMENTS["scenario"]})
    target_qps: float | None = Field(default=None, sa_column_kwargs={"comment": COMMENTS["target_qps"]})
    latency_p50_s: float | None = Field(default=None, sa_column_kwargs={"comment": COMMENTS["latency_p50_s"]})
    latency_p90_s: float | None = None
    latency_p99_s: float | None = Field(default=None, sa_column_kwargs={"comment": COMMENTS["latency_p99_s"]})
    latency_max_s: float | None = None
    latency_count: int | None = None  # batches (server: queries) timed in the window
    throughput_sps: float | None = Field(default=None, sa_column_kwargs={"comment": COMMENTS["throughput_sps"]})
    peak_rss_bytes: int | None = Field(default=None, sa_type=BigInteger,
                                       sa_column_kwargs={"comment": COMMENTS["peak_rss_bytes"]})
    rss_rise_bytes: int | None = Field(default=None, sa_type=BigInteger)
    gpu_max_allocated_bytes: int | None = Field(default=None, sa_type=BigInteger)
    gpu_max_reserved_bytes: int | None = Field(default=None, sa_type=BigInteger)
    gpu_used_bytes: int | None = Field(default=None, sa_type=BigInteger)
    weight_bytes: int | None = Field(default=None, sa_type=BigInteger,
                                     sa_column_kwargs={"comment": COMMENTS["weight_bytes"]})
    weight_bytes_by_dtype: dict[str, int] | None = Field(default=None, sa_type=JSON, nullable=True)
    artifact_bytes: int | None = Field(default=None, sa_type=BigInteger)
    load_s: float | None = Field(default=None, sa_column_kwargs={"comment": COMMENTS["load_s"]})
    load_energy_j: float | None = None
    cold_latency_s: float | None = Field(default=None, sa_column_kwargs={"comment": COMMENTS["cold_latency_s"]})
    achieved_qps: float | None = None
    late_queries: int | None = None
    dropped_queries: int | None = None
    energy_per_query_j: float | None = None
    # Added in migration 0010: contention measured during the window, the cool-down before it, its minimum length.
    foreign_cpu_cores: float | None = Field(default=None, sa_column_kwargs={"comment": COMMENTS["foreign_cpu_cores"]})
    foreign_gpu: dict[str, Any] | None = Field(default=None, sa_type=JSON, nullable=True,
                                               sa_column_kwargs={"comment": COMMENTS["foreign_gpu"]})
    # false by default in SQL too: rows written by hand (or by older tools) are not contended unless they say so
    contended: bool = Field(default=False, index=True, sa_column_kwargs={"comment": COMMENTS["contended"],
                                                                         "server_default": false()})
    cooldown_s: float | None = Field(default=None, sa_column_kwargs={"comment": COMMENTS["cooldown_s"]})
    min_window_s: float | None = Field(default=None, sa_column_kwargs={"comment": COMMENTS["min_window_s"]})
    min_window_reason: str | None = None


class ResultCreate(ResultFields):
    """A result row as a worker builds it: validated, and a key that is not a column is an error."""

    # NaN and infinities are refused (a NaN time or energy made every prediction of its machine NaN); so is a
    # negative energy of a meter (the active energy, total less idle, may be negative within noise).
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)  # type: ignore[assignment]
    hardware_id: str  # required of new rows; rows stored before migration 0007 got one from what they kept
    hardware_label: str

    @field_validator("total_energy_per_sample_j", "cpu_energy_per_sample_j", "gpu_energy_per_sample_j",
                     "dram_energy_per_sample_j")
    @classmethod
    def _energy_not_negative(cls, value: float | None) -> float | None:
        if value is not None and value < 0:
            raise ValueError(f"an energy cannot be negative: {value} J")
        return value


class Result(ResultFields, table=True):
    """One stored benchmark repeat (see ResultFields for the columns)."""

    __tablename__ = "result"
    __table_args__ = (
        Index("ix_result_hardware", "cpu_model", "gpu_name", "device"),
        Index("ix_result_host_started", "host", "started_at"),
        {"comment": "one benchmark repeat; energies and times are per sample"},
    )

    id: int | None = Field(default=None, primary_key=True)
    job_id: uuid.UUID = Field(foreign_key="job.id", index=True)


class NoiseFloor(SQLModel, table=True):
    """What `farm calibrate` measured of one machine and device: an A/A campaign's spread (CV of time and energy
    per sample across its runs) and the smallest B/A difference its pairs resolve (95 % half-width, fractions)."""

    __tablename__ = "noise_floor"

    id: int | None = Field(default=None, primary_key=True)
    job_id: uuid.UUID = Field(foreign_key="job.id", index=True)
    hardware_id: str = Field(index=True)
    hardware_label: str | None = None
    device: str
    runtime: str
    variant: str
    pairs: int
    window_s: float | None = None
    time_cv: float
    energy_cv: float
    time_resolvable_fraction: float
    energy_resolvable_fraction: float
    foreign_cpu_cores_max: float | None = None
    measured_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


# Columns in the order that JSON and CSV output use: ids first, then the fields as declared (shared/db/columns.py
# spells them out for the driver-only export, which must not import this module).
RESULT_COLUMNS = columns.RESULT_COLUMNS  # tests/test_export.py: ("id", "job_id", *ResultFields.model_fields)
