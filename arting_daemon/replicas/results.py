"""The result cache's index in Redis (hash ``arting:results``: key → job id), which every
replica shares: a generation made by one replica answers a request on another.

Entries are written by a writer task right after the job's final record is queued (not
in one transaction with it: a replica that dies in between forgets that result, and the
next such request makes it anew). Until written, this replica's own lookups see them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from ..errors import ArtingError
from .link import RedisLink

log = logging.getLogger(__name__)


class RedisResults:
    def __init__(self, link: RedisLink) -> None:
        self.link = link
        self.key = link.key("results")
        self._queued: dict[str, str | None] = {}     # key → job id, or None to forget
        self._wake = asyncio.Event()
        self._writer: asyncio.Task | None = None

    async def open(self) -> None:
        self._writer = asyncio.create_task(self._write_loop(), name="results-writer")

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.cancel()
            await asyncio.gather(self._writer, return_exceptions=True)
        with contextlib.suppress(ArtingError):
            await self._write()

    async def find(self, key: str) -> str | None:
        if key in self._queued:
            return self._queued[key]
        async with self.link.call() as r:
            return await r.hget(self.key, key)

    def note(self, key: str, job_id: str) -> None:
        self._queued[key] = job_id
        self._wake.set()

    def forget(self, key: str) -> None:
        self._queued[key] = None
        self._wake.set()

    async def _write(self) -> None:
        if not self._queued:
            return
        batch, self._queued = self._queued, {}
        try:
            async with self.link.call() as r:
                pipe = r.pipeline()
                for key, job_id in batch.items():
                    if job_id is None:
                        pipe.hdel(self.key, key)
                    else:
                        pipe.hset(self.key, key, job_id)
                await pipe.execute()
        except BaseException:
            self._queued = {**batch, **self._queued}     # kept for the next try
            raise

    async def _write_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            try:
                await self._write()
            except ArtingError as err:      # Redis away: the entries wait in memory
                log.warning("result cache: %s", err.message)
                await asyncio.sleep(1.0)
                self._wake.set()
