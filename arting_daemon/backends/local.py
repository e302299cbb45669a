"""The local backend: one daemon, its state in the data directory (SQLite files, a JSON
file) and in memory."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from ..clock import Clock
from ..config import Settings
from ..engine.cache import JournalResults
from ..engine.jobs import Job
from ..engine.journal import JobJournal, Journal
from ..engine.runner import Runner
from ..facades.a1111_state import A1111State
from ..keys.counters import LocalCounters
from ..keys.ring import KeyRing
from ..metrics import Metrics
from ..providers.arting.tokens import Board, fingerprint_key
from ..providers.arting.vault import FileVault, Vault
from ..retention import Retention, StoreLimits
from ..store import ImageStore
from ..webhooks import JournalDeliveries


class LocalBackend:
    name = "local"

    def __init__(self, settings: Settings, clock: Clock) -> None:
        self.data = settings.data_dir
        self.settings = settings
        self.clock = clock

    async def open(self, metrics: Metrics) -> None:
        """Nothing to connect to: each store opens its own file."""

    async def close(self) -> None:
        """Each store closed its own."""

    def trouble(self) -> str | None:
        return None

    @asynccontextmanager
    async def journal(self, load: Callable[[dict[str, Any]], Job]
                      ) -> AsyncIterator[JobJournal[Job]]:
        journal = Journal(self.data / "jobs.sqlite3", load)
        await journal.open()
        try:
            yield journal
        finally:
            await journal.close()

    @asynccontextmanager
    async def keys(self) -> AsyncIterator[KeyRing]:
        ring = KeyRing(self.data / "keys.sqlite3")
        await ring.open()
        try:
            yield ring
        finally:
            await ring.close()

    @asynccontextmanager
    async def counters(self, journal: JobJournal[Job]) -> AsyncIterator[LocalCounters]:
        """In memory; today's images from the journal."""
        counters = LocalCounters(journal, self.clock)
        await counters.open()
        yield counters

    @asynccontextmanager
    async def results(self, journal: JobJournal[Job]) -> AsyncIterator[JournalResults]:
        """In the journal's ``results`` table, queued with the jobs' records."""
        yield JournalResults(_sqlite(journal))

    @asynccontextmanager
    async def deliveries(self, journal: JobJournal[Job]) -> AsyncIterator[JournalDeliveries]:
        """In the journal's ``webhooks`` table."""
        deliveries = JournalDeliveries(_sqlite(journal))
        await deliveries.open()
        yield deliveries

    @asynccontextmanager
    async def a1111(self, runner: Runner) -> AsyncIterator[A1111State]:
        """The options in ``a1111.json``, the requests in memory."""
        yield A1111State(self.data / "a1111.json")

    def board(self) -> Board:
        return Board()

    async def fingerprint_key(self) -> bytes:
        """In ``fingerprint.key`` in the data directory."""
        return fingerprint_key(self.data)

    def vault(self) -> Vault:
        """``tokens.json`` in the data directory (sealed with ``secret_key``, if set)."""
        key = self.settings.secret_key
        return FileVault(self.data, key.get_secret_value() if key else None)

    def retention(self, limits: StoreLimits, store: ImageStore, journal: JobJournal[Job],
                  pinned: Callable[[], set[str]]) -> Retention:
        """The store's index in the journal's ``images`` table."""
        return Retention(limits, store, _sqlite(journal), pinned)


def _sqlite(journal: JobJournal[Job]) -> Journal[Job]:
    """The SQLite journal this backend made: its tables hold what lives with the jobs."""
    assert isinstance(journal, Journal)
    return journal
