"""Hide secrets before any text reaches a user, a log, a stored job error or a dead letter.

Two layers, both by parsing rather than by one pattern:

- Every configured secret (the password and secret query values of FARM_BROKER_URL and FARM_DATABASE_URL, the
  contents of password files, secret-named environment variables) is parsed once, when the settings are read,
  and kept in one set; `redact` replaces each of them, in its raw, percent-decoded and percent-encoded forms,
  wherever it appears: a driver that quotes a URL back, or a fragment of one, never shows it.
- Any URL in the text (any scheme) is parsed: its userinfo runs to the last '@' that is followed by a host, so
  a password may hold any character (`@ # / : ( ) [ ] { } ' "` and spaces), and the values of secret query
  parameters (`password`, `sslpassword`, `token`, `secret`, `key`...) are hidden. So are libpq keyword
  strings (`password=...`).
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from urllib.parse import quote, unquote

MASK = "***"
# Query parameters and keywords whose value is a secret (lower case; `_` and `-` are ignored when comparing).
SECRET_KEYS = frozenset({"password", "passwd", "pwd", "pass", "sslpassword", "token", "accesstoken", "authtoken",
                         "secret", "secretkey", "clientsecret", "key", "apikey", "accesskey", "auth", "credentials",
                         "sig", "signature", "privatekey", "keypassword"})
# Keys too common in ordinary text to mask outside a URL's query string.
_QUERY_ONLY_KEYS = frozenset({"key", "auth", "sig", "signature", "pass", "credentials"})
# Environment variables whose value is a secret, besides FARM_BROKER_URL / FARM_DATABASE_URL.
_SECRET_ENV = re.compile(r"(PASSWORD|PASSWD|SECRET|TOKEN|BASIC_AUTH|API_KEY|KEY_PASSWORD)$")
_PASSWORD_FILE_ENV = re.compile(r"(PASSWORD_FILE|PASSFILE|SECRET_FILE)$")
# Secrets, and their pieces: a driver that mis-parses a URL with an odd password can quote a fragment of it
# (libpq reports host "ss#SECRET@127.0.0.1" for "u:p@ss#SECRET@127.0.0.1").
_KNOWN: set[str] = set()
# Pieces are remembered only for passwords a driver may split (holding '@', '#' or '/'), and only long ones: a
# password `farm/2024` must not turn every "farm" and "2024" in later output into ***.
MIN_PIECE = 8
_SPLIT_CHARS = "@#/"
MIN_SECRET = 3  # shorter "secrets" (a password "x") would mask ordinary text everywhere; they are still parsed out

# A scheme starts where a run of scheme characters starts (so each run is scanned once: "a.a.a...." was quadratic)
# and its characters are taken possessively.
_SCHEME = re.compile(r"(?<![A-Za-z0-9+.\-])[A-Za-z][A-Za-z0-9+.\-]*+://")
_TOKEN_END = re.compile(r"[\s'\"]")  # where a URL written into text ends, at the latest
# What follows the userinfo's '@': a host name, an IPv4 or a bracketed IPv6 (its zone id in any case), an optional
# port, then the end of the URL's authority; or no host at all before a '/' (a Unix-socket URL: `u:pw@/db?host=/run`,
# `redis+socket://:pw@/x.sock`).
_HOST_AFTER_AT = re.compile(r"(\[[0-9A-Za-z:.%\-_~]+\]|[A-Za-z0-9._~%\-]+|(?=/))(:[^/?#\s'\",;)\]}>@]*)?"
                            r"(?=$|[/?#\s'\",;)\]}>])")
# Only keys that may be secret are matched, so an ordinary `dsn='... password=x'` does not hide the one inside it.
# The key is one possessive run of key characters that holds a secret-like word (a lookahead finds it): a keyword
# between two backtracking runs made " passpass...pass" quadratic (13 s for 80 KB).
_KEY_VALUE = re.compile(r"(?P<lead>(?:^|[?&;\s,(]))(?P<key>(?=[A-Za-z0-9_\-]*?(?i:pass|pwd|secret|token|key|auth|"
                        r"sig|credentials))[A-Za-z0-9_\-]++)\s*=\s*"
                        r"(?P<value>'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"|[^&;#\s'\",)]+)")


def _is_secret_key(key: str) -> bool:
    k = key.lower().replace("_", "").replace("-", "")
    return k in SECRET_KEYS or k.endswith(("password", "secret", "token"))


def _userinfo_end(text: str, start: int) -> int | None:
    """Index of the '@' that ends the userinfo of the URL whose authority starts at `start`, or None.

    The last '@' before the next URL (or the end of the line) that is followed by a host wins, so passwords may
    hold '@' and any other character. Over-masking text that follows an unusual URL is accepted; leaking is not.
    """
    nxt = _SCHEME.search(text, start)
    stop = nxt.start() if nxt else len(text)
    newline = text.find("\n", start, stop)
    stop = newline if newline >= 0 else stop
    at = text.rfind("@", start, stop)
    while at >= 0:
        if _HOST_AFTER_AT.match(text, at + 1):
            return at
        at = text.rfind("@", start, at)
    # No host that parses after any '@' (`u:pw@[::1:5432/x`, an unclosed bracket): a URL that cannot be parsed still
    # holds its password, so the last '@' of the URL's own token ends the userinfo.
    token = _TOKEN_END.search(text, start, stop)
    last = text.rfind("@", start, token.start() if token else stop)
    return last if last >= 0 else None


def _mask_urls(text: str) -> str:
    out: list[str] = []
    pos = 0
    for match in _SCHEME.finditer(text):
        if match.start() < pos:
            continue
        start = match.end()
        at = _userinfo_end(text, start)
        if at is None:
            continue
        userinfo = text[start:at]
        if ":" not in userinfo:
            continue
        user = userinfo.split(":", 1)[0]
        out.append(text[pos:start] + f"{user}:{MASK}")
        pos = at
    out.append(text[pos:])
    return "".join(out)


def _mask_key_values(text: str) -> str:
    def sub(m: re.Match[str]) -> str:
        if not _is_secret_key(m["key"]):
            return m.group(0)
        if m["key"].lower() in _QUERY_ONLY_KEYS and m["lead"] not in ("?", "&", ";"):
            return m.group(0)
        return f"{m['lead']}{m['key']}={MASK}"

    return _KEY_VALUE.sub(sub, text)


def url_secrets(url: str) -> list[str]:
    """The secrets of one whole URL: its password (to the last '@' before the host) and secret query values."""
    found: list[str] = []
    match = _SCHEME.match(url.strip())
    if match:
        rest = url.strip()[match.end():]
        at = _userinfo_end(rest, 0)
        if at is not None and ":" in rest[:at]:
            found.append(rest[:at].split(":", 1)[1])
        # A whole URL has no text around it: its userinfo may also run to its LAST '@' (a password holding '@'
        # before host-like text, '://', a space or a quote, in a URL whose host does not parse). Both are kept:
        # masking too much of a configured URL costs nothing, missing its password leaks it.
        last = rest.rfind("@")
        if last > 0 and ":" in rest[:last] and (at is None or last > at):
            found.append(rest[:last].split(":", 1)[1])
        query = rest[at + 1 if at is not None else 0:]
        query = query.split("?", 1)[1] if "?" in query else ""
        for part in re.split(r"[&;]", query.split("#", 1)[0]):
            key, sep, value = part.partition("=")
            if sep and _is_secret_key(key.strip()):
                found.append(value)
    return [s for s in found if s]


def _url_parts(url: str) -> set[str]:
    """The non-secret parts of one URL (user, host, port, database or socket path pieces), never masked as pieces."""
    match = _SCHEME.match(url.strip())
    if not match:
        return set()
    rest = url.strip()[match.end():]
    at = _userinfo_end(rest, 0)
    parts: set[str] = set()
    if at is not None:
        parts.add(rest[:at].split(":", 1)[0])
        rest = rest[at + 1:]
    parts.update(p for p in re.split(r"[/?#:&=;\[\]]+", rest) if p)
    return parts | {unquote(p) for p in parts}


def remember_secret(*values: str, exclude: frozenset[str] | set[str] = frozenset()) -> None:
    """Mask these exact values (and their percent-coded forms) from now on; of a password holding '@', '#' or '/'
    (where a driver may split it) also its pieces of 8+ characters that are not in `exclude` (the URL's own user,
    host, port and database)."""
    for value in values:
        if not value or len(value) < MIN_SECRET:
            continue
        forms = {value, unquote(value), quote(value, safe=""), quote(unquote(value), safe="")}
        for form in forms:
            if len(form) < MIN_SECRET:
                continue
            _KNOWN.add(form)
            if any(c in form for c in _SPLIT_CHARS):
                # pieces between URL delimiters: what a driver that splits the URL wrongly would quote back
                _KNOWN.update(p for p in re.split(r"[@#/?:&=;\s\[\]]+", form)
                              if len(p) >= MIN_PIECE and p not in exclude)


def remember_secrets(*urls: str) -> None:
    """Mask the password and secret query values of these URLs wherever they appear later."""
    for url in urls:
        secrets = url_secrets(url or "")
        remember_secret(*secrets, exclude=_url_parts(url or "") - set(secrets))


def _pgpass_passwords(text: str) -> list[str]:
    """The password field of each line of a .pgpass file (host:port:db:user:password), or the file whole."""
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    fields = [re.split(r"(?<!\\):", ln, maxsplit=4) for ln in lines]
    if fields and all(len(f) == 5 for f in fields):
        return [f[4].replace("\\:", ":").replace("\\\\", "\\") for f in fields]
    return [ln.strip() for ln in lines]


def remember_env_secrets(env: dict[str, str] | os._Environ[str] | None = None) -> None:
    """Remember every secret the environment configures: URLs, secret-named variables, password files."""
    env = os.environ if env is None else env
    for name, value in env.items():
        if not value:
            continue
        upper = name.upper()
        if upper.endswith("_URL") or upper.endswith("_URI") or "://" in value[:40]:
            remember_secrets(value)
        if _SECRET_ENV.search(upper):
            # FLOWER_BASIC_AUTH is user:password[,user:password]
            parts = [p.split(":", 1)[1] for p in value.split(",") if ":" in p] if "BASIC_AUTH" in upper else [value]
            remember_secret(*parts)
        if _PASSWORD_FILE_ENV.search(upper):
            try:
                remember_secret(*_pgpass_passwords(Path(value).read_text()[:100_000]))
            except OSError:
                pass


def redact(text: object) -> str:
    """`text` as a string with every URL's password, every secret query value or keyword, and every remembered
    secret replaced by ***."""
    out = str(text)
    # known secrets first, whole: the parsers below may cut a password at one of its own odd characters
    for secret in sorted(_KNOWN, key=len, reverse=True):
        if secret in out:
            out = out.replace(secret, MASK)
    return _mask_key_values(_mask_urls(out))


def redact_value(value: object) -> object:
    """`value` (a JSON-like structure) with every string in it redacted."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: redact_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact_value(v) for v in value]
    return value


class RedactingFilter(logging.Filter):
    """A logging filter that redacts each record's final message (and its traceback text)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a record whose args do not fit its format: leave it to logging's own error path
            return True
        record.msg, record.args = redact(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


def install_log_redaction(logger: logging.Logger | None = None) -> None:
    """Redact every record that reaches `logger`'s handlers (the root logger's by default)."""
    logger = logger or logging.getLogger()
    flt = RedactingFilter()
    for handler in logger.handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(flt)
