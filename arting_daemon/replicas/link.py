"""One replica's link to the Redis all replicas share: the client, whether Redis answers,
and the messages replicas send each other.

Every call goes through ``call``, which turns a Redis that does not answer into the
retryable ``Unavailable`` (a 503 with ``Retry-After`` in every protocol), so no request
hangs on it. A monitor pings every second: ``/readyz`` says when Redis is out of reach,
and the replica recovers by itself when it answers again (the client reconnects on the
next call; the message listener resubscribes).

Messages go over one pub/sub channel per kind (``KINDS``, as ``arting:<kind>``), each a
short string (a job id, a replica name); ``listen`` says what to do with them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
from collections.abc import Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from ..config import ConfigError
from ..errors import Unavailable
from ..tasks import kept_cancel, stop, wait_for

log = logging.getLogger(__name__)

PING_EVERY = 1.0
PREFIX = "arting:"
#: The messages replicas send each other: a job changed, please cancel a job, a replica
#: handed its jobs over, the keys changed, a token's health changed.
KINDS = ("changed", "cancel", "handover", "keys", "tokens", "vault")


def shown(url: str) -> str:
    """The URL without its password, for messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = f"{parts.username}:***@" if parts.username else ":***@"
    return urlunsplit(parts._replace(netloc=user + netloc))


def replica_name() -> str:
    """This process among the replicas: readable, and unique even on one host."""
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


class RedisLink:
    def __init__(self, url: str, name: str | None = None) -> None:
        import redis.asyncio as redis   # only replicas need the client

        self.url = url
        self.name = name or replica_name()
        self.redis = redis.from_url(url, decode_responses=True, socket_timeout=5,
                                    socket_connect_timeout=3, health_check_interval=10)
        self.down: str | None = None     # why Redis is out of reach, while it is
        self.round_trips = 0             # requests sent to Redis (a pipeline is one)
        self._count_round_trips()
        self._handlers: dict[str, Callable[[str], Awaitable[None] | None]] = {}
        self._tasks: list[asyncio.Task] = []
        self._errors: tuple[type[BaseException], ...] = (redis.RedisError, OSError)

    async def open(self) -> None:
        """Connect, or fail start-up with a message naming ``redis_url``."""
        try:
            await self.redis.ping()
        except self._errors as exc:
            await self.redis.aclose()
            raise ConfigError(f"Redis at {shown(self.url)} (`redis_url`, ARTING_REDIS_URL) "
                              f"does not answer ({exc}). Start it, or fix the URL.") from None
        self._tasks = [asyncio.create_task(self._monitor(), name="redis-monitor"),
                       asyncio.create_task(self._listen(), name="redis-listener")]
        log.info("replica %s: sharing state through Redis at %s", self.name, shown(self.url))

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=2)
        self._tasks = []
        await self.redis.aclose()

    def _count_round_trips(self) -> None:
        """Count each command sent, and each pipeline as one (for the metrics); and raise
        the cancel redis-py may swallow as a command is sent (Python 3.11: ``tasks.py``),
        so whoever waits for Redis — a job, a request, a service stopping — is cancelled
        when asked."""
        client, execute, pipeline = self.redis, self.redis.execute_command, self.redis.pipeline

        async def counted(*args: Any, **kwargs: Any) -> Any:
            self.round_trips += 1
            with kept_cancel():
                return await execute(*args, **kwargs)

        def counted_pipeline(*args: Any, **kwargs: Any):
            pipe = pipeline(*args, **kwargs)
            run = pipe.execute

            async def counted_run(*a: Any, **kw: Any) -> Any:
                self.round_trips += 1
                with kept_cancel():
                    return await run(*a, **kw)
            pipe.execute = counted_run  # type: ignore[method-assign]
            return pipe

        client.execute_command = counted  # type: ignore[method-assign]
        client.pipeline = counted_pipeline  # type: ignore[method-assign]

    def collect(self):
        """Prometheus: round trips to Redis so far, and whether it answers."""
        yield CounterMetricFamily("arting_redis_round_trips", "Requests this replica sent to "
                                  "Redis (a pipeline counts once).", value=self.round_trips)
        yield GaugeMetricFamily("arting_redis_up", "1 while Redis answers.",
                                value=0 if self.down else 1)

    @staticmethod
    def key(*parts: Any) -> str:
        return PREFIX + ":".join(str(p) for p in parts)

    @asynccontextmanager
    async def call(self):
        """Around Redis calls: a Redis out of reach becomes ``Unavailable``."""
        try:
            yield self.redis
        except self._errors as exc:
            self.down = self.down or f"Redis at {shown(self.url)} does not answer ({exc})"
            raise Unavailable(f"{self.down}; this replica cannot serve the request now. "
                              "Try again in a moment.", retry_after=2) from None

    def listen(self, kind: str, handler: Callable[[str], Awaitable[None] | None]) -> None:
        """Call ``handler(message)`` for each message of ``kind`` (one of ``KINDS``)."""
        assert kind in KINDS, kind
        self._handlers[PREFIX + kind] = handler

    async def send(self, kind: str, message: str) -> None:
        async with self.call() as r:
            await r.publish(PREFIX + kind, message)

    # --- background ---------------------------------------------------------------------

    async def _monitor(self) -> None:
        while True:
            try:
                await self.redis.ping()
                if self.down:
                    log.info("Redis answers again")
                self.down = None
            except self._errors as exc:
                if not self.down:
                    log.warning("Redis at %s does not answer: %s", shown(self.url), exc)
                self.down = f"Redis at {shown(self.url)} does not answer ({exc})"
            await asyncio.sleep(PING_EVERY)

    async def _listen(self) -> None:
        """Deliver messages to their handlers; resubscribe after a lost connection."""
        while True:
            pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
            try:
                with kept_cancel():
                    await pubsub.subscribe(*(PREFIX + kind for kind in KINDS))
                async for message in pubsub.listen():
                    handler = self._handlers.get(message.get("channel"))
                    if handler is None:
                        continue
                    try:
                        outcome = handler(message["data"])
                        if asyncio.iscoroutine(outcome):
                            await outcome
                    except Exception:
                        log.exception("handling a %s message failed", message.get("channel"))
            except self._errors:
                await asyncio.sleep(PING_EVERY)
            finally:    # no goodbye to a Redis that may be gone: just close the socket
                with contextlib.suppress(Exception, asyncio.CancelledError):
                    await wait_for(asyncio.shield(pubsub.aclose()), 0.5)


class WriteBehind:
    """A task that runs ``write`` each time it is woken: what a replica queues in memory
    (a result, a webhook delivery) reaches Redis in batches, off the request's path. While
    Redis is away (or refuses a write) the queue waits and the task tries again every
    second; ``stop`` makes one last attempt. ``write`` takes its batch and puts it back when it
    fails."""

    def __init__(self, write: Callable[[], Awaitable[None]], what: str) -> None:
        self._write, self._what = write, what
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name=f"{self._what}-writer")

    def wake(self) -> None:
        self._wake.set()

    async def stop(self) -> None:
        await stop(self._task)
        with contextlib.suppress(Unavailable):
            await self._write()

    async def _loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            try:
                await self._write()
            except Exception as exc:        # Redis away or refusing: the batch waits
                log.warning("%s: %s", self._what, getattr(exc, "message", exc))
                await asyncio.sleep(1.0)
                self._wake.set()

