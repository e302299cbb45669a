"""AUTOMATIC1111's state in Redis: its options, and the requests in flight on every
replica — the same interface as ``facades/a1111_state.py``.

Options live in ``a1111`` (``model``, ``options``: the defaults) and
``a1111:key:<key id>`` (what that user key has set over them). A request in flight is kept where
its replica works on it, and announced in ``a1111:batches:<owner>`` (its jobs by id,
and until when the entry holds: the replica renews it while the request runs, so one
left by a replica that died fades by itself); ``a1111:flags:<request>`` holds whether
it was interrupted or skipped, added to and never overwritten. A progress call on any replica
reads the owner's requests and their jobs' records; an interrupt there marks them and
cancels their jobs wherever those run; the replica answering the request reads the
flags back before it answers. A request whose client went away is flagged ``gone`` and
its entry left to fade ``GONE_KEPT`` seconds later.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from typing import Any

from ..engine.runner import Runner
from ..facades.a1111_state import GONE_KEPT, Batch
from ..tasks import stop
from .link import RedisLink

log = logging.getLogger(__name__)


class RedisA1111State:
    def __init__(self, link: RedisLink, runner: Runner, lease: float) -> None:
        self.link = link
        self.runner = runner
        self.lease = lease
        self._local: dict[str, Batch] = {}
        self._task: asyncio.Task | None = None

    async def open(self) -> None:
        self._task = asyncio.create_task(self._keep_alive(), name="redis-a1111")

    async def close(self) -> None:
        await stop(self._task)

    async def read(self, layer: str | None = None) -> tuple[str | None, dict[str, Any]]:
        async with self.link.call() as r:
            saved = await r.hgetall(self._options(layer))
        return saved.get("model") or None, json.loads(saved.get("options") or "{}")

    async def write(self, layer: str | None, model: str | None,
                    options: dict[str, Any]) -> None:
        async with self.link.call() as r:
            await r.hset(self._options(layer),
                         mapping={"model": model or "", "options": json.dumps(options)})

    def _options(self, layer: str | None) -> str:
        return self.link.key("a1111") if layer is None else self.link.key("a1111", "key", layer)

    async def add(self, batch: Batch) -> None:
        self._local[batch.id] = batch
        await self.update(batch)

    async def update(self, batch: Batch) -> None:
        entry = {**batch.record(), "until": time.time() + 2 * self.lease}
        async with self.link.call() as r:
            pipe = r.pipeline()
            pipe.hset(self._key(batch.owner), batch.id, json.dumps(entry))
            pipe.expire(self._key(batch.owner), int(4 * self.lease) + 1)
            pipe.expire(self._flags(batch.id), int(4 * self.lease) + 1)
            await pipe.execute()

    async def remove(self, batch: Batch) -> None:
        """Forget an answered request; one whose client went away is left to fade
        ``GONE_KEPT`` seconds later, for the interrupt that follows."""
        self._local.pop(batch.id, None)
        with contextlib.suppress(Exception):       # unrenewed, it fades anyway
            async with self.link.call() as r:
                if batch.gone:
                    entry = {**batch.record(), "until": batch.left + GONE_KEPT}
                    await r.hset(self._key(batch.owner), batch.id, json.dumps(entry))
                else:
                    await r.hdel(self._key(batch.owner), batch.id)

    async def of(self, owner: str) -> list[Batch]:
        async with self.link.call() as r:
            entries = [json.loads(t) for t in (await r.hgetall(self._key(owner))).values()]
            entries = [e for e in entries if e["until"] >= time.time()]
            pipe = r.pipeline()
            for entry in entries:
                pipe.smembers(self._flags(entry["id"]))
            flags = await pipe.execute()
        batches = []
        for entry, marked in zip(entries, flags):
            batch = self._local.get(entry["id"]) or Batch(
                entry["kind"], owner, started=entry["started"], id=entry["id"],
                jobs=[j for j in [await self.runner.get(i) for i in entry["jobs"]] if j],
                upscales=[j for j in [await self.runner.get(i) for i in entry["upscales"]]
                          if j])
            batch.interrupted, batch.skipped = "interrupted" in marked, "skipped" in marked
            batch.gone, batch.left = "gone" in marked, entry.get("left") or batch.left
            batches.append(batch)
        return sorted(batches, key=lambda b: b.started)

    async def mark(self, batch: Batch, **flags: bool) -> None:
        for name, value in flags.items():
            setattr(batch, name, value)
        if flags.get("gone"):
            batch.left = time.time()
        async with self.link.call() as r:
            pipe = r.pipeline()
            pipe.sadd(self._flags(batch.id), *[name for name, on in flags.items() if on])
            pipe.expire(self._flags(batch.id), int(4 * self.lease) + 1)
            await pipe.execute()

    async def refresh(self, batch: Batch) -> None:
        with contextlib.suppress(Exception):       # Redis away: what this replica knows
            async with self.link.call() as r:
                marked = await r.smembers(self._flags(batch.id))
            batch.interrupted = batch.interrupted or "interrupted" in marked
            batch.skipped = batch.skipped or "skipped" in marked

    def _key(self, owner: str) -> str:
        return self.link.key("a1111", "batches", owner)

    def _flags(self, batch_id: str) -> str:
        return self.link.key("a1111", "flags", batch_id)

    async def _keep_alive(self) -> None:
        """Renew this replica's requests in flight."""
        while True:
            await asyncio.sleep(self.lease / 2)
            for batch in list(self._local.values()):
                try:
                    await self.update(batch)
                except Exception as exc:
                    log.debug("renewing an A1111 request failed: %s", exc)
