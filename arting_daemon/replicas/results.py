"""The result cache's index in Redis (hash ``arting:results``: key → job id), which every
replica shares: a generation made by one replica answers a request on another.

Entries are written by a writer task right after the job's final record is queued (not
in one transaction with it: a replica that dies in between forgets that result, and the
next such request makes it anew). Until written, this replica's own lookups see them.
"""

from __future__ import annotations

from .link import RedisLink, WriteBehind


class RedisResults:
    def __init__(self, link: RedisLink) -> None:
        self.link = link
        self.key = link.key("results")
        self._queued: dict[str, str | None] = {}     # key → job id, or None to forget
        self._writer = WriteBehind(self._write, "result cache")

    async def open(self) -> None:
        self._writer.start()

    async def close(self) -> None:
        await self._writer.stop()

    async def find(self, key: str) -> str | None:
        if key in self._queued:
            return self._queued[key]
        async with self.link.call() as r:
            return await r.hget(self.key, key)

    def note(self, key: str, job_id: str) -> None:
        self._queued[key] = job_id
        self._writer.wake()

    def forget(self, key: str) -> None:
        self._queued[key] = None
        self._writer.wake()

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
