"""kombu's Redis transport, hardened against poison: a queue item that is not a kombu message is logged,
dead-lettered and dropped, and the worker keeps serving. (Stock kombu raises from its event loop, and the
Celery worker exits with "Unrecoverable error".)

Light: no torch. `worker.app` selects it for redis:// brokers.
"""

from __future__ import annotations

import logging
from typing import Any

from kombu.transport import redis as kombu_redis
from kombu.utils.encoding import bytes_to_str

from shared.dispatch import dead_letter

log = logging.getLogger(__name__)


def _well_formed(message: Any) -> bool:
    return (isinstance(message, dict) and isinstance(message.get("properties"), dict)
            and isinstance(message.get("headers", {}), dict) and "body" in message)


class Channel(kombu_redis.Channel):
    """Checks each popped item before kombu decodes and delivers it."""

    def _brpop_read(self, **options: Any) -> Any:
        client = self.client
        original = client.parse_response
        replies: list[Any] = []

        def remember(*args: Any, **kwargs: Any) -> Any:
            reply = original(*args, **kwargs)
            replies.append(reply)
            return reply

        client.parse_response = remember
        try:
            return super()._brpop_read(**options)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            dest, item = replies[-1] if replies and replies[-1] else (b"?", b"")
            self._bury(bytes_to_str(dest), item, exc)
            raise kombu_redis.Empty() from None
        finally:
            del client.parse_response  # the instance attribute shadowed the method

    def _get(self, queue: str) -> Any:
        with self.conn_or_acquire() as client:
            for pri in self.priority_steps:
                item = client.rpop(self._q_for_pri(queue, pri))
                if item:
                    try:
                        message = kombu_redis.loads(bytes_to_str(item))
                        if not _well_formed(message):
                            raise ValueError("not a kombu message")
                        return message
                    except (ValueError, TypeError) as exc:
                        self._bury(queue, item, exc)
            raise kombu_redis.Empty()

    def _bury(self, queue: str, item: bytes, exc: BaseException) -> None:
        text = item.decode("utf-8", errors="replace") if isinstance(item, bytes) else repr(item)
        reason = f"undecodable message on queue {queue!r}: {type(exc).__name__}: {exc}"
        log.error("%s; dropped and dead-lettered", reason)
        try:
            dead_letter(self.client, reason=reason, payload=text, queue=queue)
        except Exception:  # the broker just answered; if it has gone again, the log line is the record
            pass


class Transport(kombu_redis.Transport):
    Channel = Channel


TRANSPORT = "worker.transport:Transport"
