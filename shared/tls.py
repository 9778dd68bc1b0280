"""TLS options for the broker and the store, built in one place from the settings.

The options travel inside the URLs, so every client built from them (Celery and kombu, redis-py's lease and lock
client in `shared.dispatch.redis_client`, psycopg and SQLAlchemy) verifies the same way without its own code:

- broker: a `rediss://` URL gets `ssl_cert_reqs=required` and, from FARM_BROKER_CA / FARM_BROKER_CERT /
  FARM_BROKER_KEY, `ssl_ca_certs`, `ssl_certfile` and `ssl_keyfile` query parameters (read by kombu's URL parser
  and by redis-py's `from_url` alike);
- store: a Postgres URL gets `sslrootcert` from FARM_DATABASE_CA and, unless it names one, `sslmode=verify-full`.

Weaker settings are refused rather than kept: with FARM_DATABASE_CA, an sslmode other than verify-ca or
verify-full (disable, allow, prefer, require would reach the store unverified or in clear text); on a `rediss://`
broker, ssl_cert_reqs none or optional.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qsl, quote, urlsplit

from shared.errors import FarmError


def _check_file(option: str, path: str) -> str:
    resolved = Path(path).expanduser()
    if not resolved.is_file():
        raise FarmError(f"{option} names {path!r}, which is not a readable file")
    return str(resolved.resolve())


def _query(url: str) -> dict[str, str]:
    query = url.split("?", 1)[1] if "?" in url else ""
    return {k: v for k, v in parse_qsl(query.split("#", 1)[0], keep_blank_values=True)}


def _query_keys(url: str) -> set[str]:
    return set(_query(url))


# Modes that verify the server: anything weaker silently falls back to clear text or to an unverified peer.
VERIFYING_SSLMODES = ("verify-ca", "verify-full")
# redis-py's names (and Python's constants) for "do not verify the broker's certificate".
_UNVERIFIED_CERT_REQS = frozenset({"none", "optional", "cert_none", "cert_optional", "ssl.cert_none",
                                   "ssl.cert_optional", "0", "1"})


def _append(url: str, params: list[tuple[str, str]]) -> str:
    if not params:
        return url
    joined = "&".join(f"{k}={quote(v, safe='/:')}" for k, v in params)
    return f"{url}{'&' if '?' in url else '?'}{joined}"


def broker_url_with_tls(url: str, ca: str | None = None, cert: str | None = None, key: str | None = None) -> str:
    """The broker URL with its TLS options; a `rediss://` URL always verifies the server's certificate.

    FarmError when a CA, certificate or key is given for a broker URL that is not `rediss://`, or names no file.
    """
    given = [(n, v) for n, v in (("FARM_BROKER_CA", ca), ("FARM_BROKER_CERT", cert), ("FARM_BROKER_KEY", key)) if v]
    if not url.startswith("rediss://"):
        if given:
            raise FarmError(f"{given[0][0]} applies only to a TLS broker URL (rediss://...); FARM_BROKER_URL is not "
                            "one")
        return url
    if bool(cert) != bool(key):
        raise FarmError("FARM_BROKER_CERT and FARM_BROKER_KEY go together (a client certificate and its key)")
    have = _query_keys(url)
    reqs = _query(url).get("ssl_cert_reqs")
    if reqs is not None and reqs.strip().lower() in _UNVERIFIED_CERT_REQS:
        raise FarmError(f"FARM_BROKER_URL sets ssl_cert_reqs={reqs}, which does not verify the broker's certificate; "
                        "refused: drop it (farm sets ssl_cert_reqs=required) or set it to required")
    params: list[tuple[str, str]] = []
    if "ssl_cert_reqs" not in have:
        params.append(("ssl_cert_reqs", "required"))
    for name, value, param in (("FARM_BROKER_CA", ca, "ssl_ca_certs"), ("FARM_BROKER_CERT", cert, "ssl_certfile"),
                               ("FARM_BROKER_KEY", key, "ssl_keyfile")):
        if value and param not in have:
            params.append((param, _check_file(name, value)))
    return _append(url, params)


def database_url_with_tls(url: str, ca: str | None = None) -> str:
    """The store URL with `sslrootcert` (FARM_DATABASE_CA) and `sslmode=verify-full` unless the URL sets a mode;
    FarmError for a mode that does not verify (anything but verify-ca and verify-full)."""
    if not ca:
        return url
    if urlsplit(url).scheme.split("+", 1)[0] not in ("postgresql", "postgres"):
        raise FarmError("FARM_DATABASE_CA applies only to a Postgres store URL (postgresql+psycopg://...)")
    have = _query_keys(url)
    mode = _query(url).get("sslmode")
    if mode is not None and mode.strip().lower() not in VERIFYING_SSLMODES:
        raise FarmError(f"FARM_DATABASE_CA is set but FARM_DATABASE_URL has sslmode={mode}, which does not verify the "
                        "store's certificate; refused: use sslmode=verify-ca or verify-full (or leave it out)")
    params: list[tuple[str, str]] = []
    if "sslrootcert" not in have:
        params.append(("sslrootcert", _check_file("FARM_DATABASE_CA", ca)))
    if "sslmode" not in have:
        params.append(("sslmode", "verify-full"))
    return _append(url, params)
