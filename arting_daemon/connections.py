"""When a request really leaves: the moment it got its connection.

Upstream connections are pooled and bounded (``app.py``: 64 per host), so in a burst a
request may wait for one long after it was made. A job's clock (what its poll schedule
and the learned durations count from) must start when the upstream got the create,
not when the create began waiting: a request sent under ``SendTime.measuring`` is
stamped by the connector (``Connector``) once it has its connection (it is written
right after). A session with another connector leaves the stamp at the moment the
request was made.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from contextvars import ContextVar
from typing import TYPE_CHECKING

import aiohttp

if TYPE_CHECKING:
    from aiohttp.connector import Connection
    from aiohttp.tracing import Trace

_measuring: ContextVar[SendTime | None] = ContextVar("measuring", default=None)


class SendTime:
    """When the last request made under ``measuring`` was sent (wall time)."""

    at: float = 0.0

    @contextlib.contextmanager
    def measuring(self) -> Iterator[None]:
        self.at = time.time()
        token = _measuring.set(self)
        try:
            yield
        finally:
            _measuring.reset(token)


class Connector(aiohttp.TCPConnector):
    """aiohttp's connector, stamping the ``SendTime`` of the task that asked, if any.
    (A context variable, not a trace: traces cost every request about a tenth more.)"""

    async def connect(self, req: aiohttp.ClientRequest, traces: list[Trace],
                      timeout: aiohttp.ClientTimeout) -> Connection:
        connection = await super().connect(req, traces, timeout)
        stamp = _measuring.get()
        if stamp is not None:
            stamp.at = time.time()
        return connection
