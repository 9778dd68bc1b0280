"""One settings object, read from FARM_* environment variables."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from pathlib import Path

import platformdirs

from shared.errors import FarmError
from shared.redact import remember_env_secrets
from shared.routing import check_hostname
from shared.tls import broker_url_with_tls, database_url_with_tls


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
    if not minimum <= value < float("inf"):  # also refuses nan and inf
        raise FarmError(f"{name} must be at least {minimum:g}, got {raw!r}")
    return value


def _int_env(name: str, default: int, *, minimum: int = 1) -> int:
    raw = (os.environ.get(name) or "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise FarmError(f"{name} must be a whole number, got {raw!r}") from None
    if value < minimum:
        raise FarmError(f"{name} must be at least {minimum}, got {raw!r}")
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
    # Upper bounds on what one command may ask for (docs/security.md, "Bounds"); a lab that needs more raises them.
    max_repeats: int = 1000  # --repeats (benchmark passes over the test split), and the until-cv cap
    max_pairs: int = 200  # compare --pairs
    max_epochs: int = 1000  # --epochs
    max_batch_size: int = 4096  # --batch-size
    max_limit: int = 10_000_000  # --limit, in samples
    # A submit that would queue more jobs than this prints its plan and asks for --yes.
    confirm_jobs: int = 200
    # What a benchmark window measured while other work ran does (docs/measurement-noise.md): wait, flag, refuse.
    contention: str = "wait"
    # A window is contended when more than this many cores were busy outside the worker's process tree.
    contention_cores: float = 0.5
    # `wait`: the machine must stay below the threshold this long before a contended window is redone, seconds.
    contention_quiet_s: float = 3.0
    # `wait`: the longest wait for a quiet machine, seconds; then the window is measured anyway and flagged.
    contention_max_wait_s: float = 120.0
    # `wait`: contended windows redone per benchmark at most; later ones are kept and flagged.
    contention_redos: int = 3
    # Cool-down before each window until the device is within FARM_COOLDOWN_DELTA_C of its starting temperature,
    # for at most this many seconds (0: no cool-down).
    cooldown_max_s: float = 0.0
    cooldown_delta_c: float = 3.0

    @classmethod
    def from_env(cls) -> Settings:
        env = os.environ
        defaults = cls()
        remember_env_secrets(env)
        return cls(
            broker_url=broker_url_with_tls(env.get("FARM_BROKER_URL") or defaults.broker_url,
                                           env.get("FARM_BROKER_CA"), env.get("FARM_BROKER_CERT"),
                                           env.get("FARM_BROKER_KEY")),
            database_url=database_url_with_tls(env.get("FARM_DATABASE_URL") or defaults.database_url,
                                               env.get("FARM_DATABASE_CA")),
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
            max_repeats=_int_env("FARM_MAX_REPEATS", defaults.max_repeats),
            max_pairs=_int_env("FARM_MAX_PAIRS", defaults.max_pairs, minimum=2),
            max_epochs=_int_env("FARM_MAX_EPOCHS", defaults.max_epochs),
            max_batch_size=_int_env("FARM_MAX_BATCH_SIZE", defaults.max_batch_size),
            max_limit=_int_env("FARM_MAX_LIMIT", defaults.max_limit),
            confirm_jobs=_int_env("FARM_CONFIRM_JOBS", defaults.confirm_jobs),
            contention=_choice_env("FARM_CONTENTION", defaults.contention, ("wait", "flag", "refuse")),
            contention_cores=_float_env("FARM_CONTENTION_CORES", defaults.contention_cores),
            contention_quiet_s=_float_env("FARM_CONTENTION_QUIET_S", defaults.contention_quiet_s),
            contention_max_wait_s=_float_env("FARM_CONTENTION_MAX_WAIT_S", defaults.contention_max_wait_s),
            contention_redos=int(_float_env("FARM_CONTENTION_REDOS", defaults.contention_redos)),
            cooldown_max_s=_float_env("FARM_COOLDOWN_MAX_S", defaults.cooldown_max_s),
            cooldown_delta_c=_float_env("FARM_COOLDOWN_DELTA_C", defaults.cooldown_delta_c, minimum=0.1),
        )

