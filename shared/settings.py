"""One settings object, read from FARM_* environment variables."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from pathlib import Path

import platformdirs

from shared.errors import FarmError
from shared.redact import remember_secrets
from shared.routing import check_hostname


def _default_database_url() -> str:
    data_dir = Path(platformdirs.user_data_dir("farm"))
    return f"sqlite:///{data_dir / 'farm.db'}"


def _default_data_roots() -> tuple[str, ...]:
    return (str(Path(platformdirs.user_data_dir("farm")) / "data"),)


def _float_env(name: str, default: float, *, minimum: float = 0.0) -> float:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise FarmError(f"{name} must be a number, got {raw!r}") from None
    if not value >= minimum:  # also refuses nan
        raise FarmError(f"{name} must be at least {minimum:g}, got {raw!r}")
    return value


def _choice_env(name: str, default: str, choices: tuple[str, ...]) -> str:
    raw = (os.environ.get(name) or "").strip()
    if not raw:
        return default
    if raw not in choices:
        raise FarmError(f"{name} must be one of {', '.join(choices)}, got {raw!r}")
    return raw


def _roots_env(name: str, default: tuple[str, ...]) -> tuple[str, ...]:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    roots = tuple(str(Path(p).expanduser().resolve()) for p in raw.split(os.pathsep) if p.strip())
    return roots


@dataclass(frozen=True)
class Settings:
    """Where farm finds its broker, store and artifacts, and how it meters.

    Every field has an environment variable (docs/settings.md).
    """

    broker_url: str = "redis://localhost:6379/0"
    database_url: str = field(default_factory=_default_database_url)
    artifacts: str = field(default_factory=lambda: platformdirs.user_cache_dir("farm"))
    hostname: str = field(default_factory=socket.gethostname)
    # Power attributed to one fully busy core when no meter exists (estimated:cpu-time), in watts.
    cpu_watts_per_core: float = 12.0
    # Idle-power measurement before each benchmark, in seconds (0 disables it).
    idle_s: float = 5.0
    # A directory laid out like /sys/class/powercap, so tests can point RAPL at a fake tree.
    powercap_root: str = "/sys/class/powercap"
    # Which RAPL domains make "CPU energy": "package+dram" (each socket's package and DRAM) or "psys" (platform).
    rapl_domains: str = "package+dram"
    # How long the CLI waits for the broker before it gives up, in seconds.
    broker_timeout_s: float = 3.0
    # Redis redelivers a message that no worker acknowledged within this many seconds (a dead machine's
    # job). It must exceed the longest job, training included.
    visibility_timeout_s: float = 12 * 3600.0
    # Cross-machine locks (one build per recipe, one measurement per host) expire this long after their
    # holder stops renewing them, in seconds.
    lock_ttl_s: float = 60.0
    # Folders under which jobs may name datasets and model folders (FARM_DATA_ROOTS, os.pathsep-separated).
    data_roots: tuple[str, ...] = field(default_factory=_default_data_roots)
    # Where a worker keeps finished outcomes it could not write to the store, until the store returns.
    spool_dir: str = field(default_factory=lambda: str(Path(platformdirs.user_data_dir("farm")) / "spool"))
    # A running job whose worker has not renewed its lease for this long is requeued, in seconds.
    lease_timeout_s: float = 30.0
    # A job delivered this many times without finishing (its worker died each time) is failed and dead-lettered.
    max_deliveries: int = 3
    # How long a worker that picked up a job waits for an unreachable store before it requeues the job, seconds.
    db_wait_s: float = 120.0
    # The runtimes a worker offers (FARM_RUNTIMES, comma-separated; None: every one whose packages it has).
    runtimes: tuple[str, ...] | None = None

    @classmethod
    def from_env(cls) -> Settings:
        env = os.environ
        defaults = cls()
        remember_secrets(env.get("FARM_BROKER_URL", ""), env.get("FARM_DATABASE_URL", ""))
        return cls(
            broker_url=env.get("FARM_BROKER_URL") or defaults.broker_url,
            database_url=env.get("FARM_DATABASE_URL") or defaults.database_url,
            artifacts=env.get("FARM_ARTIFACTS") or defaults.artifacts,
            hostname=check_hostname(env.get("FARM_HOSTNAME") or defaults.hostname),
            cpu_watts_per_core=_float_env("FARM_CPU_WATTS_PER_CORE", defaults.cpu_watts_per_core),
            idle_s=_float_env("FARM_IDLE_S", defaults.idle_s),
            powercap_root=env.get("FARM_POWERCAP_ROOT") or defaults.powercap_root,
            rapl_domains=_choice_env("FARM_RAPL_DOMAINS", defaults.rapl_domains, ("package+dram", "psys")),
            broker_timeout_s=_float_env("FARM_BROKER_TIMEOUT_S", defaults.broker_timeout_s, minimum=0.1),
            visibility_timeout_s=_float_env("FARM_VISIBILITY_TIMEOUT_S", defaults.visibility_timeout_s, minimum=1.0),
            lock_ttl_s=_float_env("FARM_LOCK_TTL_S", defaults.lock_ttl_s, minimum=0.1),
            data_roots=_roots_env("FARM_DATA_ROOTS", defaults.data_roots),
            spool_dir=env.get("FARM_SPOOL") or defaults.spool_dir,
            lease_timeout_s=_float_env("FARM_LEASE_TIMEOUT_S", defaults.lease_timeout_s, minimum=1.0),
            max_deliveries=int(_float_env("FARM_MAX_DELIVERIES", defaults.max_deliveries, minimum=1)),
            db_wait_s=_float_env("FARM_DB_WAIT_S", defaults.db_wait_s),
            runtimes=tuple(r.strip() for r in env["FARM_RUNTIMES"].split(",") if r.strip())
            if env.get("FARM_RUNTIMES") else None,
        )

