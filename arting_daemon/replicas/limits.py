"""The limits' counts in Redis (the ledger of ``keys/limits.py``), so a key's limits hold
across every replica: each check-and-count is one Lua script, atomic on the server.

* requests per minute: ``window:<key>``, a sorted set of request times;
* jobs in flight and images reserved: ``load:<owner>`` (``jobs``, ``images``), and each
  job's reservation under ``reserved:<job id>``, given back once;
* images per UTC day: ``used:<day>`` (owner → images), each job counted once
  (``charged:<job id>``).

A reservation outlives the replica that made it: a job taken over by another replica
keeps it, and gives it back when it ends there. Releases are queued and retried while
Redis is away, so none is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time

from ..engine.jobs import Job
from ..keys.limits import WINDOW, Load, Standing, counted
from ..keys.ring import utc_day
from ..tasks import stop
from .link import RedisLink

log = logging.getLogger(__name__)

DAY_TTL = 3 * 86400

HIT = """
local key, now, window, limit = KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
if redis.call('ZCARD', key) >= limit then
  local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
  return tostring(tonumber(oldest[2]) + window - now)
end
redis.call('ZADD', key, now, ARGV[4])
redis.call('PEXPIRE', key, math.ceil(window * 1000))
return false
"""

#: KEYS: load, used, reserved. ARGV: owner, images, max jobs (-1: none), max images, ttl.
RESERVE = """
local jobs = tonumber(redis.call('HGET', KEYS[1], 'jobs') or '0')
local images = tonumber(redis.call('HGET', KEYS[1], 'images') or '0')
local used = tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '0')
local n, max_jobs, max_images = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
if max_jobs >= 0 and jobs >= max_jobs then return {'max_concurrent', jobs, images, used} end
if max_images >= 0 and used + images + n > max_images then
  return {'images_per_day', jobs, images, used}
end
if redis.call('SET', KEYS[3], ARGV[2], 'NX', 'EX', ARGV[5]) then
  redis.call('HINCRBY', KEYS[1], 'jobs', 1)
  redis.call('HINCRBY', KEYS[1], 'images', n)
end
return false
"""

#: KEYS: load, used, reserved, charged. ARGV: owner, images made.
RELEASE = """
local reserved = redis.call('GET', KEYS[3])
if reserved then
  redis.call('DEL', KEYS[3])
  redis.call('HINCRBY', KEYS[1], 'jobs', -1)
  redis.call('HINCRBY', KEYS[1], 'images', -tonumber(reserved))
end
local made = tonumber(ARGV[2])
if made > 0 and redis.call('SET', KEYS[4], '1', 'NX', 'EX', ARGV[3]) then
  redis.call('HINCRBY', KEYS[2], ARGV[1], made)
  redis.call('EXPIRE', KEYS[2], ARGV[3])
end
return 1
"""


class RedisLedger:
    def __init__(self, link: RedisLink) -> None:
        self.link = link
        self._hit = link.redis.register_script(HIT)
        self._reserve = link.redis.register_script(RESERVE)
        self._release = link.redis.register_script(RELEASE)
        self._releases: asyncio.Queue[tuple[str, str, int, str]] = asyncio.Queue()
        self._task: asyncio.Task | None = None

    async def open(self) -> None:
        self._task = asyncio.create_task(self._release_loop(), name="redis-ledger")

    async def close(self) -> None:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._releases.join(), 3)
        await stop(self._task)

    async def hit(self, key_id: str, limit: int, now: float) -> float | None:
        async with self.link.call():
            wait = await self._hit(keys=[self.link.key("window", key_id)],
                                   args=[now, WINDOW, limit, f"{now}:{secrets.token_hex(4)}"])
        return float(wait) if wait else None

    async def reserve(self, job: Job, max_jobs: int | None,
                      max_images: int | None) -> tuple[str, Standing] | None:
        async with self.link.call():
            refused = await self._reserve(
                keys=self._keys(job.owner, job.id)[:3],
                args=[job.owner, job.generation.n, -1 if max_jobs is None else max_jobs,
                      -1 if max_images is None else max_images, DAY_TTL])
        if not refused:
            return None
        limit, jobs, images, used = refused
        return limit, Standing(Load(int(jobs), int(images)), int(used), 0)

    async def restore(self, job: Job) -> None:
        """The reservation is in Redis already, whichever replica made it."""

    def release(self, job: Job) -> None:
        self._releases.put_nowait((job.owner, job.id, counted(job),
                                   utc_day(job.finished_at or 0)))

    async def standing(self, owner: str, key_id: str | None, now: float) -> Standing:
        async with self.link.call() as r:
            pipe = r.pipeline()
            pipe.hgetall(self.link.key("load", owner))
            pipe.hget(self.link.key("used", utc_day(now)), owner)
            pipe.zcount(self.link.key("window", key_id or "-"), now - WINDOW, "+inf")
            load, used, recent = await pipe.execute()
        return Standing(Load(int(load.get("jobs", 0)), int(load.get("images", 0))),
                        int(used or 0), int(recent))

    def _keys(self, owner: str, job_id: str, day: str | None = None) -> list[str]:
        k = self.link.key
        return [k("load", owner), k("used", day or utc_day(time.time())),
                k("reserved", job_id), k("charged", job_id)]

    async def _release_loop(self) -> None:
        while True:
            owner, job_id, made, day = await self._releases.get()
            while True:
                try:
                    async with self.link.call():
                        await self._release(keys=self._keys(owner, job_id, day),
                                            args=[owner, made, DAY_TTL])
                    break
                except Exception as exc:
                    log.debug("releasing job %s's reservation failed (%s); retrying",
                              job_id, exc)
                    await asyncio.sleep(1.0)
            self._releases.task_done()
