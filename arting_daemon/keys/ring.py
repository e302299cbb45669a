"""The daemon's keys: all of them in memory (a daemon has few), in step with the file.

A request's key is found by the SHA-256 of what it sent, without touching the disk.
Changes made through the daemon (the admin API) take effect at once; changes the
command line makes to the file while the daemon runs are noticed within ``REFRESH``
seconds (SQLite's ``data_version`` tells when another process committed). Requests are
counted in memory and written with the same heartbeat.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import EllipsisType
from typing import Protocol, TypeVar

from ..tasks import stop
from .counters import utc_day
from .limits import NO_LIMITS, KeyLimits
from .store import ApiKey, KeyFile, digest

REFRESH = 0.5
R = TypeVar("R")

log = logging.getLogger(__name__)


class KeyStore(Protocol):
    """The keys, where the backend keeps them (the data directory's ``keys.sqlite3``, or the
    replicas' Redis): every key in memory for lookups (``KeyIndex``), changes written
    through, requests counted per key and UTC day."""

    @property
    def in_use(self) -> bool: ...

    def find(self, secret: str) -> ApiKey | None: ...

    def get(self, key_id: str) -> ApiKey | None: ...

    def all(self) -> list[ApiKey]: ...

    def on_change(self, listener: Callable[[], None]) -> None: ...

    def count_request(self, key_id: str, now: float) -> None: ...

    async def create(self, name: str, limits: KeyLimits = NO_LIMITS,
                     expires_at: float | None = None) -> tuple[ApiKey, str]: ...

    async def update(self, key_id: str, *, name: str | None = None,
                     limits: KeyLimits | None = None,
                     expires_at: float | None | EllipsisType = ...) -> ApiKey | None: ...

    async def revoke(self, key_id: str) -> ApiKey | None: ...

    async def requests(self, since: float) -> Counter[tuple[str, str]]:
        """Requests per (key id, UTC day) since ``since``, those not yet written included."""

    async def catch_up(self) -> bool:
        """Read the changes made elsewhere that this process has not heard of yet (a key
        just made on another replica); whether there were any."""


class KeyIndex:
    """Every key in memory, by id and by the hash of its secret, and the requests counted
    but not yet written: what a request's key is looked up in, without touching a disk."""

    def __init__(self) -> None:
        self._by_id: dict[str, ApiKey] = {}
        self._by_hash: dict[str, ApiKey] = {}
        self._pending: Counter[tuple[str, str]] = Counter()
        self._listeners: list[Callable[[], None]] = []

    def on_change(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` whenever a key changes here: made, changed or revoked through
        this daemon, or read again after another process (a replica, the command line)
        changed one. Revocation reaches open connections this way (``revocation.py``)."""
        self._listeners.append(listener)

    @property
    def in_use(self) -> bool:
        """Whether any user key was ever made: from then on every request needs a key."""
        return bool(self._by_id)

    def find(self, secret: str) -> ApiKey | None:
        """The key whose secret this is (revoked and expired ones included), or None."""
        if not secret.startswith("sk-arting-"):
            return None
        return self._by_hash.get(digest(secret))

    def get(self, key_id: str) -> ApiKey | None:
        return self._by_id.get(key_id)

    def all(self) -> list[ApiKey]:
        return sorted(self._by_id.values(), key=lambda k: k.created_at)

    def count_request(self, key_id: str, now: float) -> None:
        self._pending[(key_id, utc_day(now))] += 1

    def _remember(self, key: ApiKey) -> None:
        self._put(key)
        self._changed()

    def _replace(self, keys: list[ApiKey]) -> None:
        self._by_id, self._by_hash = {}, {}
        for key in keys:
            self._put(key)
        self._changed()

    def _put(self, key: ApiKey) -> None:
        old = self._by_id.get(key.id)
        if old is not None:
            self._by_hash.pop(old.hash, None)
        self._by_id[key.id] = key
        self._by_hash[key.hash] = key

    def _changed(self) -> None:
        for listener in self._listeners:
            listener()


class KeyRing(KeyIndex):
    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="keys")
        self._file: KeyFile | None = None
        self._version = -1
        self._watcher: asyncio.Task[None] | None = None

    async def open(self) -> None:
        self._file = await self._run(KeyFile, self.path)
        await self._reload()
        self._watcher = asyncio.create_task(self._watch(), name="key-watcher")

    async def close(self) -> None:
        await stop(self._watcher)
        self._watcher = None
        if self._file is not None:
            await self._flush()
            await self._run(self._file.close)
            self._file = None
        self._pool.shutdown(wait=True)

    # --- changes (to the file, then in memory) ------------------------------------------------

    async def create(self, name: str, limits: KeyLimits = NO_LIMITS,
                     expires_at: float | None = None) -> tuple[ApiKey, str]:
        assert self._file is not None
        key, secret = await self._run(self._file.create, name, limits, expires_at)
        self._remember(key)
        return key, secret

    async def update(self, key_id: str, *, name: str | None = None,
                     limits: KeyLimits | None = None,
                     expires_at: float | None | EllipsisType = ...) -> ApiKey | None:
        assert self._file is not None
        file = self._file
        key = await self._run(lambda: file.update(key_id, name=name, limits=limits,
                                                  expires_at=expires_at))
        if key is not None:
            self._remember(key)
        return key

    async def revoke(self, key_id: str) -> ApiKey | None:
        assert self._file is not None
        key = await self._run(self._file.revoke, key_id)
        if key is not None:
            self._remember(key)
        return key

    async def requests(self, since: float) -> Counter[tuple[str, str]]:
        """Requests per (key id, UTC day) since ``since``, those not yet written included."""
        assert self._file is not None
        day = utc_day(since)
        counts = Counter(await self._run(self._file.requests, day))
        counts.update({k: n for k, n in self._pending.items() if k[1] >= day})
        return counts

    async def catch_up(self) -> bool:
        """One daemon makes its API's keys itself; the command line's are noticed within
        ``REFRESH``, without a disk read per unknown key."""
        return False

    # --- internals ----------------------------------------------------------------------

    async def _run(self, fn: Callable[..., R], *args: object) -> R:
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    async def _reload(self) -> None:
        file = self._file
        assert file is not None
        version, keys = await self._run(lambda: (file.version(), file.all()))
        self._replace(keys)
        self._version = version

    async def _flush(self) -> None:
        if self._pending and self._file is not None:
            counts, self._pending = self._pending, Counter()
            try:
                await self._run(self._file.add_requests, dict(counts))
            except Exception:     # a full disk costs request counts, never a request
                log.exception("could not write %d request count(s)", len(counts))

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(REFRESH)
            try:
                await self._flush()
                assert self._file is not None
                if await self._run(self._file.version) != self._version:
                    await self._reload()
                    log.info("API keys changed on disk; %d key(s) loaded", len(self._by_id))
            except Exception:
                log.exception("could not read %s", self.path.name)
