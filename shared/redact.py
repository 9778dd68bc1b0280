"""Hide passwords in URLs before any text reaches a user, a log or a stored error."""

from __future__ import annotations

import logging
import re

# scheme://userinfo@ where userinfo runs to the last '@' of the token, so passwords holding '@', '#', '/' or ':'
# are covered whole. Only the part after the first ':' of userinfo (the password) is hidden; user names stay.
_URL_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.\-]*://)(?P<userinfo>[^\s'\"<>()\[\]{}]*)@")
MASK = "***"
# Passwords of the configured URLs, and their pieces: a driver that mis-parses a URL with an odd password can
# quote a fragment of it (libpq reports host "ss#SECRET@127.0.0.1" for "u:p@ss#SECRET@127.0.0.1").
_KNOWN: set[str] = set()
MIN_PIECE = 4


def remember_secrets(*urls: str) -> None:
    """Mask these URLs' passwords, and every piece of 4+ characters of them, wherever they appear later."""
    for url in urls:
        for match in _URL_USERINFO.finditer(url or ""):
            userinfo = match["userinfo"]
            if ":" not in userinfo:
                continue
            password = userinfo.split(":", 1)[1]
            _KNOWN.add(password)
            _KNOWN.update(p for p in re.split(r"[^A-Za-z0-9]+", password) if len(p) >= MIN_PIECE)


def _mask(match: re.Match[str]) -> str:
    userinfo = match["userinfo"]
    if ":" not in userinfo:
        return match.group(0)
    user = userinfo.split(":", 1)[0]
    return f"{match['scheme']}{user}:{MASK}@"


def redact(text: object) -> str:
    """`text` as a string with the password of every URL in it, and every remembered secret, replaced by ***."""
    out = _URL_USERINFO.sub(_mask, str(text))
    for secret in sorted(_KNOWN, key=len, reverse=True):
        out = out.replace(secret, MASK)
    return out


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
