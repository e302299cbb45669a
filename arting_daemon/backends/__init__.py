"""Where the daemon keeps its state: one backend, chosen once at start (``choose``), builds
every store the services use, each behind its Protocol, each opened and closed by a
context of its own here.

* ``local`` (the default): one daemon; job records, keys and the store's index in SQLite
  files in the data directory, A1111's options in a file there, counts in memory.
* ``redis`` (``redis_url``): replicas share all of it through Redis (``replicas/``), and
  the data directory's images.

Nothing outside ``app.py`` and the commands asks which backend runs: a service is given
its store. A new store is a method here on ``Backend`` and on each backend (its Protocol
and local implementation beside its service; its Redis one in ``replicas/``).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any, Protocol

from ..clock import Clock
from ..config import Settings

if TYPE_CHECKING:
    from ..engine.cache import ResultIndex
    from ..engine.jobs import Job
    from ..engine.journal import JobJournal
    from ..engine.runner import Runner
    from ..facades.a1111_state import A1111Store
    from ..keys.counters import Counters
    from ..keys.ring import KeyStore
    from ..metrics import Metrics
    from ..providers.arting.tokens import Board
    from ..providers.arting.vault import Vault
    from ..retention import Retention, StoreLimits
    from ..store import ImageStore
    from ..webhooks import DeliveryStore


class Backend(Protocol):
    #: ``local`` or ``redis``, for the log.
    name: str

    async def open(self, metrics: Metrics) -> None:
        """Connect where the state is (if anywhere); fail start-up saying what to fix."""

    async def close(self) -> None: ...

    def trouble(self) -> str | None:
        """Why the shared state is out of reach now (for ``/readyz``), or None."""

    def journal(self, load: Callable[[dict[str, Any]], Job]
                ) -> AbstractAsyncContextManager[JobJournal[Job]]:
        """Job records (``engine/journal.py``)."""

    def keys(self) -> AbstractAsyncContextManager[KeyStore]:
        """User keys (``keys/ring.py``)."""

    def counters(self, journal: JobJournal[Job]) -> AbstractAsyncContextManager[Counters]:
        """The counts key limits are held to (``keys/counters.py``)."""

    def results(self, journal: JobJournal[Job]) -> AbstractAsyncContextManager[ResultIndex]:
        """The result cache's index (``engine/cache.py``)."""

    def deliveries(self, journal: JobJournal[Job]
                   ) -> AbstractAsyncContextManager[DeliveryStore]:
        """Webhook deliveries (``webhooks.py``)."""

    def a1111(self, runner: Runner) -> AbstractAsyncContextManager[A1111Store]:
        """AUTOMATIC1111's options and requests in flight (``facades/a1111_state.py``)."""

    def board(self) -> Board:
        """Where the ``arting`` provider's token pool shares its tokens' health and places
        (``providers/arting/tokens.py``); the pool opens and closes it."""

    async def fingerprint_key(self) -> bytes:
        """The key Arting tokens' fingerprints are made with, the same each start (and on
        every replica): ``providers/arting/tokens.py``."""

    def vault(self) -> Vault:
        """Where the tokens added at runtime are kept (``providers/arting/vault.py``)."""

    def retention(self, limits: StoreLimits, store: ImageStore, journal: JobJournal[Job],
                  pinned: Callable[[], set[str]]) -> Retention:
        """The bounded store's keeper (``retention.py``); the caller starts and closes it."""


def choose(settings: Settings, clock: Clock) -> Backend:
    """The backend the settings ask for: ``redis`` with ``redis_url``, else ``local``."""
    if settings.redis_url is not None:
        from .redis import RedisBackend
        return RedisBackend(settings, clock)
    from .local import LocalBackend
    return LocalBackend(settings, clock)
