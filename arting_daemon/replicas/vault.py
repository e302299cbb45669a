"""The runtime Arting tokens in Redis, so that a token added on one replica (or by
``arting-daemon tokens`` with the same ``redis_url``) is used by all of them.

``tokens:vault`` is a hash, label → the entry sealed with ``secret_key`` (libsodium's
secret box): a Redis server is shared and often unencrypted, so nothing in it is
readable without the key, and a vault without one refuses to add tokens. A change bumps
``tokens:vault:version`` and is announced; replicas reload on the announcement, and
compare the version every ``REFRESH`` seconds in case one was missed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging

from ..config import ConfigError
from ..errors import FeatureDisabled
from ..providers.arting.vault import REFRESH, Entry, Seal, Vault, merge
from ..tasks import stop, wait_for
from .link import RedisLink

log = logging.getLogger(__name__)


class RedisVault(Vault):
    def __init__(self, link: RedisLink, secret_key: str | None) -> None:
        super().__init__()
        self.link = link
        self.secret_key = secret_key
        self.seal = Seal(secret_key, b"")
        self._version: str | None = None
        self._task: asyncio.Task | None = None
        self._reload_now = asyncio.Event()
        link.listen("vault", lambda _: self._reload_now.set())

    async def open(self) -> None:
        try:
            await self._reload()
        except FeatureDisabled as exc:      # sealed with another secret_key
            raise ConfigError(f"The runtime tokens in Redis: {exc.message}") from None
        self._task = asyncio.create_task(self._watch(), name="redis-token-vault")

    async def close(self) -> None:
        await stop(self._task)
        self._task = None

    def _sealing(self) -> None:
        if not self.secret_key:
            raise FeatureDisabled("Runtime tokens are shared through Redis sealed with "
                                  "`secret_key`: set the same secret_key (ARTING_SECRET_KEY) "
                                  "on every replica first.")

    async def add(self, entries: list[Entry], reserved: frozenset[str] = frozenset()
                  ) -> tuple[list[Entry], list[str]]:
        """Each new label is taken with HSETNX: an entry whose label another writer took
        meanwhile is merged again against the vault as it is then."""
        self._sealing()
        added: list[Entry] = []
        seen: list[str] = []
        todo = entries
        while todo:
            await self._reload()
            _, fresh, dup = merge(self.entries, todo, self.fingerprint, reserved)
            seen += dup
            async with self.link.call() as r:
                pipe = r.pipeline()
                for entry in fresh:
                    pipe.hsetnx(self._key(), entry.label,
                                self.seal.seal(json.dumps(self.stamped(entry).record())
                                               .encode()))
                pipe.incr(self._key("version"))
                pipe.publish(self.link.key("vault"), "put")
                *took, _, _ = await pipe.execute()
            added += [e for e, ok in zip(fresh, took) if ok]
            todo = [e for e, ok in zip(fresh, took) if not ok]
        await self._reload()
        return added, seen

    async def put(self, entries: list[Entry]) -> None:
        self._sealing()
        async with self.link.call() as r:
            pipe = r.pipeline()
            for entry in entries:
                entry = self.stamped(entry)
                pipe.hset(self._key(), entry.label,
                          self.seal.seal(json.dumps(entry.record()).encode()))
            pipe.incr(self._key("version"))
            pipe.publish(self.link.key("vault"), "put")
            await pipe.execute()
        await self._reload()

    async def remove(self, label: str) -> Entry | None:
        await self._reload()
        gone = self.entries.get(label)
        if gone is None:
            return None
        async with self.link.call() as r:
            pipe = r.pipeline()
            pipe.hdel(self._key(), label)
            pipe.incr(self._key("version"))
            pipe.publish(self.link.key("vault"), "remove")
            await pipe.execute()
        await self._reload()
        return gone

    # --- internals ----------------------------------------------------------------------

    def _key(self, *more: str) -> str:
        return self.link.key("tokens", "vault", *more)

    async def _reload(self) -> None:
        async with self.link.call() as r:
            pipe = r.pipeline()
            pipe.get(self._key("version"))
            pipe.hgetall(self._key())
            version, sealed = await pipe.execute()
        if sealed and not self.secret_key:
            log.warning("Redis holds %d runtime token(s) sealed with a secret_key this "
                        "replica does not have: set secret_key (ARTING_SECRET_KEY)",
                        len(sealed))
            return
        self._loaded([json.loads(self.seal.open(text)) for text in sealed.values()])
        self._version = version

    async def _watch(self) -> None:
        while True:
            with contextlib.suppress(asyncio.TimeoutError):
                await wait_for(self._reload_now.wait(), REFRESH)
            self._reload_now.clear()
            try:
                async with self.link.call() as r:
                    version = await r.get(self._key("version"))
                if version != self._version:
                    await self._reload()
            except Exception as exc:
                log.debug("token vault round failed: %s", exc)
