"""User keys in Redis: the same interface as ``keys/ring.py``, shared by every replica.

Each replica keeps all keys in memory, as the embedded ring does. A change (made by any
replica, or by ``arting-daemon keys`` with the same ``redis_url``) bumps a version and
is announced; replicas reload on the announcement, and compare the version every
``REFRESH`` seconds in case one was missed — so a revoked key is refused everywhere
within a second. Request counts go to ``arting:requests:<day>`` in batches.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import Counter
from dataclasses import replace
from types import EllipsisType

from ..keys.counters import utc_day
from ..keys.limits import NO_LIMITS, KeyLimits
from ..keys.ring import REFRESH, KeyIndex
from ..keys.store import ApiKey, changed, new_key
from ..tasks import stop, wait_for
from .link import RedisLink

log = logging.getLogger(__name__)


class RedisKeyRing(KeyIndex):
    def __init__(self, link: RedisLink) -> None:
        super().__init__()
        self.link = link
        self._version: str | None = None
        self._task: asyncio.Task | None = None
        self._reload_now = asyncio.Event()
        link.listen("keys", lambda _: self._reload_now.set())

    async def open(self) -> None:
        await self._reload()
        self._task = asyncio.create_task(self._watch(), name="redis-keys")

    async def close(self) -> None:
        await stop(self._task)
        self._task = None
        with contextlib.suppress(Exception):
            await self._flush()

    # --- changes --------------------------------------------------------------------------

    async def create(self, name: str, limits: KeyLimits = NO_LIMITS,
                     expires_at: float | None = None) -> tuple[ApiKey, str]:
        key, secret = new_key(name, limits, expires_at)
        await self._store(key)
        return key, secret

    async def update(self, key_id: str, *, name: str | None = None,
                     limits: KeyLimits | None = None,
                     expires_at: float | None | EllipsisType = ...) -> ApiKey | None:
        key = await self._fresh(key_id)
        if key is None:
            return None
        key = changed(key, name, limits, expires_at)
        await self._store(key)
        return key

    async def revoke(self, key_id: str) -> ApiKey | None:
        key = await self._fresh(key_id)
        if key is None:
            return None
        if key.revoked_at is None:
            key = replace(key, revoked_at=time.time())
            await self._store(key)
        return key

    async def requests(self, since: float) -> Counter[tuple[str, str]]:
        counts: Counter[tuple[str, str]] = Counter()
        days = [utc_day(t) for t in range(int(since - since % 86400), int(time.time()) + 1,
                                          86400)]
        async with self.link.call() as r:
            for day in days:
                for key_id, count in (await r.hgetall(self.link.key("requests", day))).items():
                    counts[(key_id, day)] += int(count)
        counts.update({k: n for k, n in self._pending.items() if k[1] >= days[0]})
        return counts

    async def catch_up(self) -> bool:
        """Reload if the keys' version moved (a key made on another replica a moment ago,
        its announcement not heard yet): one round trip for a key not known here."""
        async with self.link.call() as r:
            version = await r.get(self.link.key("keys", "version"))
        if version == self._version:
            return False
        await self._reload()
        return True

    # --- internals ----------------------------------------------------------------------

    async def _fresh(self, key_id: str) -> ApiKey | None:
        async with self.link.call() as r:
            text = await r.hget(self.link.key("keys"), key_id)
        return ApiKey.from_record(json.loads(text)) if text else None

    async def _store(self, key: ApiKey) -> None:
        async with self.link.call() as r:
            pipe = r.pipeline()
            pipe.hset(self.link.key("keys"), key.id, json.dumps(key.record()))
            pipe.incr(self.link.key("keys", "version"))
            pipe.publish(self.link.key("keys"), key.id)
            await pipe.execute()
        self._remember(key)

    async def _reload(self) -> None:
        async with self.link.call() as r:
            pipe = r.pipeline()
            pipe.get(self.link.key("keys", "version"))
            pipe.hgetall(self.link.key("keys"))
            version, records = await pipe.execute()
        self._replace([ApiKey.from_record(json.loads(t)) for t in records.values()])
        self._version = version

    async def _flush(self) -> None:
        if not self._pending:
            return
        counts, self._pending = self._pending, Counter()
        try:
            async with self.link.call() as r:
                pipe = r.pipeline()
                for (key_id, day), n in counts.items():
                    pipe.hincrby(self.link.key("requests", day), key_id, n)
                    pipe.expire(self.link.key("requests", day), 400 * 86400)
                await pipe.execute()
        except Exception:
            self._pending.update(counts)        # counted next time
            raise

    async def _watch(self) -> None:
        while True:
            with contextlib.suppress(asyncio.TimeoutError):
                await wait_for(self._reload_now.wait(), REFRESH)
            self._reload_now.clear()
            try:
                await self._flush()
                async with self.link.call() as r:
                    version = await r.get(self.link.key("keys", "version"))
                if version != self._version:
                    await self._reload()
            except Exception as exc:
                log.debug("keys round failed: %s", exc)
