"""Hide passwords in URLs before any text reaches a user, a log or a stored error."""

from __future__ import annotations

import logging
import re

# scheme://userinfo@ where userinfo runs to the last '@' of the token, so passwords holding '@', '#', '/' or ':'
# are covered whole. Only the part after the first ':' of userinfo (the password) is hidden; user names stay.
_URL_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.\-]*://)(?P<userinfo>[^\s'\"<>()\[\]{}]*)@")
MASK = "***"


def _mask(match: re.Match[str]) -> str:
    userinfo = match["userinfo"]
    if ":" not in userinfo:
        return match.group(0)
    user = userinfo.split(":", 1)[0]
    return f"{match['scheme']}{user}:{MASK}@"


def redact(text: object) -> str:
    """`text` as a string with the password of every URL in it replaced by ***; whatever the scheme."""
    return _URL_USERINFO.sub(_mask, str(text))


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
