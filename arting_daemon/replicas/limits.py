"""The key limits' counts in Redis (the counters of ``keys/counters.py``), so a key's
limits hold across every replica: each check-and-count is one Lua script, atomic on the
server.

* windows: ``window:<name>``, a sorted set of event times;
* load: ``load:<owner>`` (a hash: ``jobs``, ``images``), and what each job holds under
  ``reserved:<job id>`` (JSON), given back once;
* used per UTC day: ``used:<day>`` for images (owner → images), ``used:<day>:<counter>``
  for any other counter, each job counted once (``charged:<job id>``).

A reservation outlives the replica that made it: a job taken over by another replica
keeps it, and gives it back when it ends there. Releases are queued and retried while
Redis is away, so none is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets

from ..clock import Clock
from ..engine.jobs import Job
from ..keys.counters import WINDOW, Check, Standing, holds, made, utc_day
from ..tasks import stop, wait_for
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

#: KEYS: load, reserved, then each check's used-today hash. ARGV: owner, ttl, the holds
#: (JSON), then per check: its number, counter, cap, daily (1/0). Returns false when
#: reserved, else the broken check's number and the owner's load and used (JSON).
RESERVE = """
local owner, ttl, asks = ARGV[1], ARGV[2], cjson.decode(ARGV[3])
local load, used = {}, {}
for i = 4, #ARGV, 4 do
  local n, counter, cap, daily = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2]), ARGV[i + 3]
  local had = tonumber(redis.call('HGET', KEYS[1], counter) or '0')
  load[counter] = had
  if daily == '1' then
    local made = tonumber(redis.call('HGET', KEYS[2 + tonumber(n)], owner) or '0')
    used[counter] = made
    had = had + made
  end
  if had + (asks[counter] or 0) > cap then
    return {n, cjson.encode(load), cjson.encode(used)}
  end
end
if redis.call('SET', KEYS[2], ARGV[3], 'NX', 'EX', ttl) then
  for counter, amount in pairs(asks) do redis.call('HINCRBY', KEYS[1], counter, amount) end
end
return false
"""

#: KEYS: load, reserved, charged, then a used-today hash per counter made. ARGV: owner,
#: ttl, then per counter made: its name and amount.
RELEASE = """
local reserved = redis.call('GET', KEYS[2])
if reserved then
  redis.call('DEL', KEYS[2])
  local ok, held = pcall(cjson.decode, reserved)
  if not ok or type(held) ~= 'table' then held = {jobs = 1, images = tonumber(reserved)} end
  for counter, amount in pairs(held) do redis.call('HINCRBY', KEYS[1], counter, -amount) end
end
if #ARGV > 2 and redis.call('SET', KEYS[3], '1', 'NX', 'EX', ARGV[2]) then
  for i = 3, #ARGV, 2 do
    local key = KEYS[4 + (i - 3) / 2]
    redis.call('HINCRBY', key, ARGV[1], tonumber(ARGV[i + 1]))
    redis.call('EXPIRE', key, ARGV[2])
  end
end
return 1
"""


class RedisCounters:
    def __init__(self, link: RedisLink, clock: Clock) -> None:
        self.link = link
        self.clock = clock
        self._hit = link.redis.register_script(HIT)
        self._reserve = link.redis.register_script(RESERVE)
        self._release = link.redis.register_script(RELEASE)
        self._releases: asyncio.Queue[tuple[str, str, dict[str, int], str]] = asyncio.Queue()
        self._task: asyncio.Task | None = None

    async def open(self) -> None:
        self._task = asyncio.create_task(self._release_loop(), name="redis-ledger")

    async def close(self) -> None:
        with contextlib.suppress(asyncio.TimeoutError):
            await wait_for(self._releases.join(), 3)
        await stop(self._task)

    async def hit(self, name: str, limit: int, window: float, now: float) -> float | None:
        async with self.link.call():
            wait = await self._hit(keys=[self.link.key("window", name)],
                                   args=[now, window, limit, f"{now}:{secrets.token_hex(4)}"])
        return float(wait) if wait else None

    async def reserve(self, job: Job, checks: list[Check],
                      now: float) -> tuple[Check, Standing] | None:
        day = utc_day(now)
        args: list[str | int] = [job.owner, DAY_TTL, json.dumps(holds(job))]
        for n, check in enumerate(checks, 1):
            args += [n, check.counter, check.cap, int(check.daily)]
        async with self.link.call():
            refused = await self._reserve(
                keys=[self._load(job.owner), self.link.key("reserved", job.id),
                      *(self._used(day, c.counter) for c in checks)], args=args)
        if not refused:
            return None
        n, load, used = refused
        return checks[int(n) - 1], Standing(_counts(load), _counts(used), 0)

    async def restore(self, job: Job) -> None:
        """The reservation is in Redis already, whichever replica made it."""

    def release(self, job: Job) -> None:
        self._releases.put_nowait((job.owner, job.id, {k: n for k, n in made(job).items() if n},
                                   utc_day(job.finished_at or self.clock.time())))

    async def standing(self, owner: str, name: str | None, now: float) -> Standing:
        async with self.link.call() as r:
            pipe = r.pipeline()
            pipe.hgetall(self._load(owner))
            pipe.hget(self._used(utc_day(now), "images"), owner)
            pipe.zcount(self.link.key("window", name or "-"), now - WINDOW, "+inf")
            load, used, recent = await pipe.execute()
        return Standing({k: int(v) for k, v in load.items()}, {"images": int(used or 0)},
                        int(recent))

    def _load(self, owner: str) -> str:
        return self.link.key("load", owner)

    def _used(self, day: str, counter: str) -> str:
        return self.link.key("used", day) if counter == "images" else \
            self.link.key("used", day, counter)

    async def _release_loop(self) -> None:
        while True:
            owner, job_id, made_now, day = await self._releases.get()
            args: list[str | int] = [owner, DAY_TTL]
            for counter, n in made_now.items():
                args += [counter, n]
            keys = [self._load(owner), self.link.key("reserved", job_id),
                    self.link.key("charged", job_id),
                    *(self._used(day, counter) for counter in made_now)]
            while True:
                try:
                    async with self.link.call():
                        await self._release(keys=keys, args=args)
                    break
                except Exception as exc:
                    log.debug("releasing job %s's reservation failed (%s); retrying",
                              job_id, exc)
                    await asyncio.sleep(1.0)
            self._releases.task_done()


def _counts(text: str) -> dict[str, int]:
    """A Lua table as cjson encodes it (an empty one as ``{}`` or ``[]``)."""
    found = json.loads(text)
    return {k: int(v) for k, v in found.items()} if isinstance(found, dict) else {}
