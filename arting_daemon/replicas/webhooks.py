"""Webhook deliveries in Redis, so any replica goes on with any of them.

Keys (prefix ``arting:``): ``webhook:<id>`` (a delivery, JSON), ``webhooks:due`` (the
pending ones' ids, scored by when they are due) and ``webhook:lease:<id>`` (the replica
attempting one). A replica takes a due delivery by leasing it (``SET NX PX``), so one
replica at a time attempts it; the outcome is stored and the lease let go in one script.
If the replica dies mid-attempt, the lease lapses (``webhook_timeout`` + 30 s) and another
one attempts it again, with the same ``webhook-id``.

A new delivery is written right after its job's final record (by a writer task, not in
one transaction with it: a replica that dies in those milliseconds loses that job's
deliveries), and before a stopping replica lets go of Redis.
"""

from __future__ import annotations

import json
import time

from ..webhooks import Delivery
from .link import RedisLink, WriteBehind

#: Seconds between two looks for due deliveries (another replica may have made them).
POLL = 0.5

#: Store an attempt's outcome and let go of the lease, if it is still this replica's.
SAVE = """
local row, lease, due = KEYS[1], KEYS[2], KEYS[3]
local id, record, state, next_at, me = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
redis.call('SET', row, record)
if state == 'pending' then redis.call('ZADD', due, next_at, id)
else redis.call('ZREM', due, id) end
if redis.call('GET', lease) == me then redis.call('DEL', lease) end
return 1
"""


class RedisDeliveries:
    def __init__(self, link: RedisLink, timeout: float) -> None:
        self.link = link
        self.lease_ms = int((timeout + 30) * 1000)
        self._new: list[Delivery] = []
        self._writer = WriteBehind(self._write_new, "webhooks")
        self._pending = 0
        self._save = link.redis.register_script(SAVE)

    async def open(self) -> None:
        async with self.link.call() as r:
            self._pending = await r.zcard(self.link.key("webhooks", "due"))
        self._writer.start()

    async def close(self) -> None:
        await self._writer.stop()

    def add(self, delivery: Delivery) -> None:
        self._new.append(delivery)
        self._pending += 1
        self._writer.wake()

    def pending(self) -> int:
        return self._pending

    def next_look(self, busy: set[str]) -> float | None:
        return time.time() + POLL

    async def due(self, now: float, limit: int, busy: set[str]) -> list[Delivery]:
        await self._write_new()
        key = self.link.key
        async with self.link.call() as r:
            ids = await r.zrangebyscore(key("webhooks", "due"), "-inf", now, start=0,
                                        num=limit + len(busy))
            ids = [i for i in ids if i not in busy][:limit]
            pipe = r.pipeline()
            pipe.zcard(key("webhooks", "due"))
            for delivery_id in ids:
                pipe.set(key("webhook", "lease", delivery_id), self.link.name, nx=True,
                         px=self.lease_ms)
            self._pending, *leased = await pipe.execute()
            mine = [i for i, got in zip(ids, leased) if got]
        return await self.load(mine)

    async def save(self, delivery: Delivery) -> None:
        key = self.link.key
        async with self.link.call():
            await self._save(keys=[key("webhook", delivery.id),
                                   key("webhook", "lease", delivery.id),
                                   key("webhooks", "due")],
                             args=[delivery.id, json.dumps(delivery.row()), delivery.state,
                                   delivery.next_at, self.link.name])

    async def load(self, ids: list[str]) -> list[Delivery]:
        if not ids:
            return []
        async with self.link.call() as r:
            texts = await r.mget([self.link.key("webhook", i) for i in ids])
        return [Delivery(**json.loads(text)) for text in texts if text]

    async def _write_new(self) -> None:
        if not self._new:
            return
        batch, self._new = self._new, []
        try:
            async with self.link.call() as r:
                pipe = r.pipeline()
                for delivery in batch:
                    pipe.set(self.link.key("webhook", delivery.id), json.dumps(delivery.row()))
                    pipe.zadd(self.link.key("webhooks", "due"),
                              {delivery.id: delivery.next_at})
                await pipe.execute()
        except BaseException:
            self._new = batch + self._new     # kept, for the next try
            raise
