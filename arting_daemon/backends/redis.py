"""The Redis backend (``redis_url``): replicas share their state through one Redis, each
store implemented in ``replicas/`` over one link (``replicas/link.py``)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from ..clock import Clock
from ..config import ConfigError, Settings
from ..engine.jobs import Job
from ..engine.journal import JobJournal
from ..engine.runner import Runner
from ..metrics import Metrics
from ..replicas.a1111 import RedisA1111State
from ..replicas.jobs import RedisJournal
from ..replicas.keys import RedisKeyRing
from ..replicas.limits import RedisCounters
from ..replicas.link import RedisLink
from ..replicas.results import RedisResults
from ..replicas.tokens import RedisBoard, fingerprint_key
from ..replicas.vault import RedisVault
from ..replicas.webhooks import RedisDeliveries
from ..retention import Retention, StoreLimits
from ..store import ImageStore


class RedisBackend:
    name = "redis"

    def __init__(self, settings: Settings, clock: Clock) -> None:
        assert settings.redis_url is not None
        self.settings = settings
        self.clock = clock
        self.link = RedisLink(settings.redis_url.get_secret_value())

    async def open(self, metrics: Metrics) -> None:
        await self.link.open()
        metrics.watch(self.link)

    async def close(self) -> None:
        await self.link.close()

    def trouble(self) -> str | None:
        return self.link.down

    @asynccontextmanager
    async def journal(self, load: Callable[[dict[str, Any]], Job]
                      ) -> AsyncIterator[RedisJournal[Job]]:
        journal = RedisJournal(self.link, load, self.settings.replica_lease)
        async with _opened(journal):
            yield journal

    @asynccontextmanager
    async def keys(self) -> AsyncIterator[RedisKeyRing]:
        ring = RedisKeyRing(self.link)
        async with _opened(ring):
            yield ring

    @asynccontextmanager
    async def counters(self, journal: JobJournal[Job]) -> AsyncIterator[RedisCounters]:
        counters = RedisCounters(self.link, self.clock)
        async with _opened(counters):
            yield counters

    @asynccontextmanager
    async def results(self, journal: JobJournal[Job]) -> AsyncIterator[RedisResults]:
        results = RedisResults(self.link)
        async with _opened(results):
            yield results

    @asynccontextmanager
    async def deliveries(self, journal: JobJournal[Job]) -> AsyncIterator[RedisDeliveries]:
        deliveries = RedisDeliveries(self.link, self.settings.webhook_timeout)
        async with _opened(deliveries):
            yield deliveries

    @asynccontextmanager
    async def a1111(self, runner: Runner) -> AsyncIterator[RedisA1111State]:
        state = RedisA1111State(self.link, runner, self.settings.replica_lease)
        async with _opened(state):
            yield state

    def board(self) -> RedisBoard:
        return RedisBoard(self.link, self.settings.replica_lease)

    async def fingerprint_key(self) -> bytes:
        """Shared through Redis (replicas need not share a data directory)."""
        return await fingerprint_key(self.link)

    def vault(self) -> RedisVault:
        """In Redis, sealed with ``secret_key`` (required to add any)."""
        key = self.settings.secret_key
        return RedisVault(self.link, key.get_secret_value() if key else None)

    def retention(self, limits: StoreLimits, store: ImageStore, journal: JobJournal[Job],
                  pinned: Callable[[], set[str]]) -> Retention:
        raise ConfigError("store_max_gb and store_max_images do not work with redis_url yet: "
                          "the replicas share one image folder, and trimming it needs them "
                          "to agree. Leave them unset with replicas.")


@asynccontextmanager
async def _opened(store: Any) -> AsyncIterator[None]:
    """A Redis store between its ``open`` and ``close``."""
    await store.open()
    try:
        yield
    finally:
        await store.close()
