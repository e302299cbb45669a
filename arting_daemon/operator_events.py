"""What the operator must hear about the Arting tokens, at once and everywhere.

An event (``token_refused``: Arting refused a token; ``low_balance``: its
``remain_balance`` fell below ``low_balance``; ``pool_exhausted``: no token is usable)
goes to the log, to ``/arting/v1/status`` (the latest ones), to the metric
``arting_operator_events_total`` and, with ``operator_webhook_url``, as a POST signed the
Standard Webhooks way with ``webhook_secret`` (``webhooks.sign``, the same headers as job
webhooks; message type ``operator.<event>``). Events are not journaled: a delivery is
tried a few times with backoff, then given up (the log and the status keep it).
Tokens are named by label, never by value.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import aiohttp
from pydantic import SecretStr

from . import __version__
from .clock import SYSTEM, Clock
from .config import Section, webhook_key
from .errors import ArtingError
from .metrics import Metrics
from .outbound import OutboundPolicy
from .providers.arting.tokens import Token
from .retry import backoff
from .webhooks import sign, target

log = logging.getLogger(__name__)

#: Attempts at one delivery before it is given up; the events kept for the status.
ATTEMPTS, KEPT = 5, 50


@dataclass(frozen=True)
class OperatorSettings(Section):
    operator_webhook_url: str | None
    webhook_secret: SecretStr | None
    webhook_allow_hosts: list[str]
    webhook_timeout: float


@dataclass(frozen=True)
class Event:
    id: str
    event: str
    token: str | None
    message: str
    at: float

    def view(self) -> dict[str, Any]:
        return {"id": self.id, "event": self.event, "token": self.token,
                "message": self.message, "at": self.at}


class OperatorEvents:
    def __init__(self, settings: OperatorSettings, metrics: Metrics,
                 clock: Clock = SYSTEM) -> None:
        self.url = settings.operator_webhook_url
        secret = settings.webhook_secret
        self.key = webhook_key(secret) if secret is not None else None
        self.timeout = settings.webhook_timeout
        self.policy = OutboundPolicy(webhook_allow_hosts=settings.webhook_allow_hosts)
        self.clock = clock
        self.recent: deque[Event] = deque(maxlen=KEPT)
        self.counts = metrics.operator_events
        self._tasks: set[asyncio.Task] = set()
        self._session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()

    def raised(self, event: str, token: Token | None, message: str) -> None:
        """An event happened (the token pool calls this)."""
        found = Event(f"msg_{uuid.uuid4().hex}", event, token.label if token else None,
                      message, self.clock.time())
        self.recent.append(found)
        self.counts.labels(event).inc()
        log.warning("operator event %s: %s", event, message)
        if self.url and self.key is not None:
            task = asyncio.get_running_loop().create_task(self._deliver(found),
                                                          name=f"operator-{found.id}")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _deliver(self, found: Event) -> None:
        assert self.url is not None and self.key is not None
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(resolver=self.policy.resolver()),
                cookie_jar=aiohttp.DummyCookieJar())
        body = json.dumps({"type": f"operator.{found.event}",
                           "timestamp": datetime.fromtimestamp(found.at, timezone.utc)
                           .isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                           "data": found.view()}).encode()
        for attempt in range(1, ATTEMPTS + 1):
            stamp = int(self.clock.time())
            headers = {"Content-Type": "application/json",
                       "User-Agent": f"arting-2api/{__version__}", "webhook-id": found.id,
                       "webhook-timestamp": str(stamp),
                       "webhook-signature": sign(self.key, found.id, stamp, body)}
            why = ""
            with contextlib.suppress(asyncio.TimeoutError, aiohttp.ClientError, OSError,
                                     ArtingError):
                await self.policy.check_webhook(self.url)
                async with self._session.post(
                        self.url, data=body, headers=headers, allow_redirects=False,
                        timeout=aiohttp.ClientTimeout(total=self.timeout)) as resp:
                    if 200 <= resp.status < 300:
                        return
                    why = f"HTTP {resp.status}"
            log.info("operator webhook %s to %s: attempt %d failed %s", found.id,
                     target(self.url), attempt, why)
            await self.clock.sleep(backoff(attempt, first=1.0, cap=60.0, jitter="spread"))
        log.warning("operator webhook %s to %s given up after %d attempts", found.id,
                    target(self.url), ATTEMPTS)
