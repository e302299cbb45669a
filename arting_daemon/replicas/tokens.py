"""The Arting token pool's board in Redis: what replicas share of each token.

* **Its health** (``token:<fingerprint>``: state, until — wall-clock —, strikes, the
  error that put it out of use): a 429 or a refusal met by one replica cools or blocks
  the token for all of them, each told at once.
* **Its places** (``token:<fingerprint>:slots``, a sorted set of places by expiry): a
  replica takes a place before a job uses the token, so all replicas together never
  put more than ``token_max_jobs`` jobs on one token. Places expire unless renewed, so
  a replica that dies gives its places back by itself.
* **Who probes it** (``token:<fingerprint>:probe``): one replica at a time.
* **Its pace** (``token:<fingerprint>:day:<UTC day>``, images created that day, and
  ``token:<fingerprint>:last``, the last create): ``daily_limit`` and ``min_interval``
  hold across replicas.

Tokens are known by their fingerprint (the start of their HMAC under a key made once
per Redis, ``fingerprint-key``, so every replica names a token alike), never the secret.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import time

from ..clock import SYSTEM, Clock
from ..errors import Unavailable, error_from_dict
from ..providers.arting.tokens import (FINGERPRINT_KEY_BYTES, Board, Token, TokenPool,
                                       TokenState, utc_day)
from ..tasks import stop
from .link import RedisLink

log = logging.getLogger(__name__)

TAKE = """
local key, now, ttl, max, member = KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]),
  tonumber(ARGV[3]), ARGV[4]
redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
if redis.call('ZCARD', key) >= max then return 0 end
redis.call('ZADD', key, now + ttl, member)
redis.call('PEXPIRE', key, ttl)
return 1
"""


async def fingerprint_key(link: RedisLink) -> bytes:
    """The replicas' key for token fingerprints: made by the first replica that asks."""
    async with link.call() as r:
        await r.set(link.key("fingerprint-key"),
                    secrets.token_hex(FINGERPRINT_KEY_BYTES), nx=True)
        return bytes.fromhex(await r.get(link.key("fingerprint-key")))


class RedisBoard(Board):
    poll = 0.25

    def __init__(self, link: RedisLink, lease: float) -> None:
        self.link = link
        self.ttl_ms = int(lease * 1000)
        self.pool: TokenPool | None = None
        self._places: dict[str, list[str]] = {}      # fingerprint → places held here
        self._take = link.redis.register_script(TAKE)
        self._task: asyncio.Task | None = None
        link.listen("tokens", self._heard)

    async def open(self, pool: TokenPool) -> None:
        """Learn what the other replicas know of the pool's tokens, and keep the places
        held here alive."""
        self.pool = pool
        for token in pool.tokens:
            await self._heard(token.fingerprint)
        self._task = asyncio.create_task(self._renew(), name="redis-token-places")

    async def close(self) -> None:
        await stop(self._task)
        with contextlib.suppress(Exception):
            async with self.link.call() as r:
                for fingerprint, places in self._places.items():
                    if places:
                        await r.zrem(self._slots(fingerprint), *places)

    async def take(self, token: Token) -> bool:
        """A place on the token among all replicas'; with Redis away, this replica counts
        its own only (the pool's check), rather than stopping every job."""
        place = f"{self.link.name}:{secrets.token_hex(4)}"
        try:
            async with self.link.call():
                taken = await self._take(keys=[self._slots(token.fingerprint)],
                                         args=[int(time.time() * 1000), self.ttl_ms,
                                               self.pool.max_jobs if self.pool else 1, place])
        except Unavailable:
            return True
        if taken:
            self._places.setdefault(token.fingerprint, []).append(place)
        return bool(taken)

    async def give(self, token: Token) -> None:
        places = self._places.get(token.fingerprint)
        if places:
            place = places.pop()
            with contextlib.suppress(Exception):    # unrenewed, it expires by itself
                async with self.link.call() as r:
                    await r.zrem(self._slots(token.fingerprint), place)

    async def tell(self, token: Token) -> None:
        clock = self._clock()
        until = clock.time() + (token.until - clock.monotonic()) if token.until else 0.0
        health = {"state": token.state.value, "until": until, "strikes": token.strikes,
                  "reason": json.dumps(token.reason.to_dict()) if token.reason else ""}
        with contextlib.suppress(Exception):        # Redis away: this replica knows it
            async with self.link.call() as r:
                pipe = r.pipeline()
                pipe.hset(self.link.key("token", token.fingerprint), mapping=health)
                pipe.publish(self.link.key("tokens"), token.fingerprint)
                await pipe.execute()

    async def met(self, token: Token) -> None:
        await self._heard(token.fingerprint)

    async def spend(self, token: Token, images: int, day: str) -> int | None:
        try:
            async with self.link.call() as r:
                pipe = r.pipeline()
                pipe.incrby(self._day(token.fingerprint, day), images)
                pipe.expire(self._day(token.fingerprint, day), 2 * 86400)
                pipe.set(self.link.key("token", token.fingerprint, "last"),
                         repr(token.last_create or 0.0), ex=2 * 86400)
                pipe.publish(self.link.key("tokens"), token.fingerprint)
                total, *_ = await pipe.execute()
            return int(total)
        except Exception:                           # Redis away: this replica's count
            return None

    async def may_probe(self, token: Token) -> bool:
        try:
            async with self.link.call() as r:
                return bool(await r.set(self.link.key("token", token.fingerprint, "probe"),
                                        self.link.name, nx=True,
                                        px=int(max(1.0, token.until - self._clock().monotonic()
                                                   + 5.0) * 1000)))
        except Exception:
            return True                             # Redis away: probe it ourselves

    # --- internals ----------------------------------------------------------------------

    def _clock(self) -> Clock:
        """The pool's clock: its tokens' times are on it."""
        return self.pool.clock if self.pool is not None else SYSTEM

    def _slots(self, fingerprint: str) -> str:
        return self.link.key("token", fingerprint, "slots")

    def _day(self, fingerprint: str, day: str) -> str:
        return self.link.key("token", fingerprint, "day", day)

    async def _heard(self, fingerprint: str) -> None:
        if self.pool is None:
            return
        day = utc_day(self._clock().time())
        async with self.link.call() as r:
            pipe = r.pipeline()
            pipe.hgetall(self.link.key("token", fingerprint))
            pipe.get(self._day(fingerprint, day))
            pipe.get(self.link.key("token", fingerprint, "last"))
            health, spent, last = await pipe.execute()
        if spent is not None or last is not None:
            self.pool.learn_pace(fingerprint, day, int(spent or 0),
                                 float(last) if last else None)
        if not health:
            return
        reason = error_from_dict(json.loads(health["reason"])) if health.get("reason") else None
        self.pool.learn(fingerprint, TokenState(health["state"]), float(health["until"]),
                        int(health["strikes"]), reason)

    async def _renew(self) -> None:
        while True:
            await asyncio.sleep(self.ttl_ms / 3000)
            try:
                expiry = int(time.time() * 1000) + self.ttl_ms
                async with self.link.call() as r:
                    pipe = r.pipeline()
                    for fingerprint, places in self._places.items():
                        for place in places:
                            pipe.zadd(self._slots(fingerprint), {place: expiry}, xx=True)
                        if places:
                            pipe.pexpire(self._slots(fingerprint), self.ttl_ms)
                    await pipe.execute()
            except Exception as exc:
                log.debug("renewing token places failed: %s", exc)
