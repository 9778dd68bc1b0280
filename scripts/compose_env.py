"""Write the `.env` that docker-compose.yml reads: random secrets for Redis, Postgres and Flower (`make compose-env`).

The compose file has no default password: without this file (or the same variables in the environment)
`docker compose up` stops with an error naming the missing variable. The file is created mode 0600 and never
overwritten.
"""

from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path

VARIABLES = ("REDIS_PASSWORD", "POSTGRES_PASSWORD", "FLOWER_PASSWORD")


def env_text() -> str:
    """The file's text: one random 32-hex-digit secret per variable (hex: safe in a URL without quoting)."""
    lines = ["# Written by `make compose-env` (scripts/compose_env.py). Keep it private; docker compose reads it."]
    lines += [f"{name}={secrets.token_hex(16)}" for name in VARIABLES]
    return "\n".join(lines) + "\n"


def main(path: str = ".env") -> int:
    target = Path(path)
    if target.exists():
        print(f"{target} exists; not overwriting it (delete it to make new secrets)", file=sys.stderr)
        return 0
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(env_text())
    print(f"wrote {target} with new secrets for {', '.join(VARIABLES)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
