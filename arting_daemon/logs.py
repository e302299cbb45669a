"""Logging: every line carries the request id, and no secret is ever printed.

Redaction happens where log records are made (a record factory), so every handler —
the console, a file, a test's capture — sees the same cleaned text.
"""

from __future__ import annotations

import logging
import sys
from contextvars import ContextVar

request_id: ContextVar[str] = ContextVar("request_id", default="-")

_secrets: set[str] = set()
_longest_first: tuple[str, ...] = ()   # _secrets, sorted once per change, not per line
_base_factory = logging.getLogRecordFactory()
MASK = "***"


def add_secrets(*values: str) -> None:
    """Register values that must never appear in a log line (tokens, keys, cookies)."""
    global _longest_first
    _secrets.update(v for v in values if v and len(v) >= 4)
    _longest_first = tuple(sorted(_secrets, key=len, reverse=True))


def redact(text: str) -> str:
    for secret in _longest_first:
        if secret in text:
            text = text.replace(secret, MASK)
    return text


def _record_factory(*args, **kwargs) -> logging.LogRecord:
    record = _base_factory(*args, **kwargs)
    record.request_id = request_id.get()
    if _secrets:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
    return record


logging.setLogRecordFactory(_record_factory)


class _Formatter(logging.Formatter):
    """Redacts the formatted line too: tracebacks are rendered after the record exists."""

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


def setup(level: str = "info", stream: str = "stderr") -> None:
    handler = logging.StreamHandler(sys.stdout if stream == "stdout" else sys.stderr)
    handler.setFormatter(_Formatter(
        "%(asctime)s %(levelname)-7s [%(request_id)s] %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
