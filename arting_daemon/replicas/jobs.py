"""Job records in Redis, so every replica answers for every job, and jobs outlive the
replica that ran them.

The same interface as the SQLite journal (``engine/journal.py``), plus what replicas
need: each unfinished job is *held* by the replica running it, under a lease that
replica renews (``replica_lease``). A replica that dies stops renewing; once its leases
lapse, another replica claims the jobs and resumes them from their records — polling a
job Arting already has, never sending it again. A replica that shuts down hands its jobs
over at once. Every write of a job record checks the lease in the same Lua script, so a
replica that lost a job (it was too slow, and another took over) cannot overwrite the
record of the one that runs it now; it is told to drop the job instead.

Records are written behind, in batches (``save`` returns at once: a progress tick costs no
round trip); what must be read back by another replica at once waits for ``written``: a
submit is answered only once its job's record is in Redis, so the next request, whichever
replica it reaches, finds the job (read-your-writes).

The usage counts (jobs by outcome, images, per owner, UTC day and model) are kept in the
same script, when a record first becomes terminal: each job counts once.

Keys (prefix ``arting:``): ``job:<id>`` (the record), ``jobs``, ``jobs:owner:<owner>``,
``jobs:state:<state>`` (ids by creation time), ``unfinished`` (ids), ``lease:<id>``
(the holder), ``last:<id>`` (who held it last), ``idem:<owner:key>`` (the job holding an
idempotency key),
``cancel:<id>`` (a cancel asked for), ``usage:<owner>:<day>``, ``quarantine``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, Generic, TypeVar

from ..engine.journal import mentioned
from ..tasks import stop, wait_for
from .link import RedisLink

T = TypeVar("T")
log = logging.getLogger(__name__)

LINGER = 0.005
FLUSH_WAIT = 3.0        # how long a read or a submit waits for this replica's own writes
TERMINAL = ("succeeded", "failed", "cancelled")
SEP = "\x1f"
PAGE = 500              # records read at a time by the expiry's sweep

#: Write a record if this replica holds the job (or nobody does, and it held it last).
#: A record that is terminal already never changes. Returns 1 written, 0 held by another
#: replica, 2 already terminal.
SAVE = """
local id, record, state, created, owner = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local me, ttl, day, model, images = ARGV[6], ARGV[7], ARGV[8], ARGV[9], tonumber(ARGV[10])
local key, lease, last = 'arting:job:' .. id, 'arting:lease:' .. id, 'arting:last:' .. id
local holder = redis.call('GET', lease)
if holder and holder ~= me then return 0 end
if not holder then
  local before = redis.call('GET', last)
  if before and before ~= me then return 0 end
end
local old = redis.call('GET', key)
if old then
  local was = cjson.decode(old)['state']
  if was == 'succeeded' or was == 'failed' or was == 'cancelled' then return 2 end
end
redis.call('SET', key, record)
redis.call('ZADD', 'arting:jobs', created, id)
redis.call('ZADD', 'arting:jobs:owner:' .. owner, created, id)
if state == 'succeeded' or state == 'failed' or state == 'cancelled' then
  redis.call('SREM', 'arting:unfinished', id)
  redis.call('DEL', lease, last)
  redis.call('ZADD', 'arting:jobs:state:' .. state, created, id)
  local usage = 'arting:usage:' .. owner .. ':' .. day
  redis.call('HINCRBY', usage, model .. '\\31' .. state, 1)
  if images > 0 then redis.call('HINCRBY', usage, model .. '\\31images', images) end
  redis.call('SADD', 'arting:usage:owners', owner)
else
  redis.call('SADD', 'arting:unfinished', id)
  redis.call('SET', lease, me, 'PX', ttl)
  redis.call('SET', last, me)
end
redis.call('PUBLISH', 'arting:changed', id)
return 1
"""

#: Claim an unfinished job nobody holds: its record, or nil. The claimer becomes the
#: job's last holder, so the one before cannot write it when it comes back.
CLAIM = """
local id, me, ttl = ARGV[1], ARGV[2], ARGV[3]
if redis.call('SISMEMBER', 'arting:unfinished', id) == 0 then return false end
if not redis.call('SET', 'arting:lease:' .. id, me, 'NX', 'PX', ttl) then return false end
local record = redis.call('GET', 'arting:job:' .. id)
if not record then
  redis.call('SREM', 'arting:unfinished', id)
  redis.call('DEL', 'arting:lease:' .. id)
  return false
end
redis.call('SET', 'arting:last:' .. id, me)
return record
"""

#: Renew the leases this replica holds; returns the ids it no longer holds.
RENEW = """
local me, ttl, lost = ARGV[1], ARGV[2], {}
for i = 3, #ARGV do
  local lease = 'arting:lease:' .. ARGV[i]
  local holder = redis.call('GET', lease)
  if holder == me then redis.call('PEXPIRE', lease, ttl)
  elseif holder or redis.call('GET', 'arting:last:' .. ARGV[i]) ~= me
      or redis.call('SISMEMBER', 'arting:unfinished', ARGV[i]) == 0 then
    table.insert(lost, ARGV[i])
  else redis.call('SET', lease, me, 'PX', ttl) end
end
return lost
"""

#: Let go of leases (a replica shutting down): others claim the jobs at once.
RELEASE = """
for i = 2, #ARGV do
  if redis.call('GET', 'arting:lease:' .. ARGV[i]) == ARGV[1] then
    redis.call('DEL', 'arting:lease:' .. ARGV[i], 'arting:last:' .. ARGV[i])
  end
end
return 1
"""


class RedisJournal(Generic[T]):
    def __init__(self, link: RedisLink, load: Callable[[dict], T], lease: float) -> None:
        self.link = link
        self._load = load
        self.lease_ms = int(lease * 1000)
        self.quarantined: list[tuple[str, str]] = []
        self._pending: dict[str, dict] = {}
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._saved = 0                  # records queued so far
        self._written = 0                # how many of the first ones are in Redis
        self._wrote = asyncio.Event()    # set (and replaced) as each batch is written
        self._held: set[str] = set()
        self._watchers: dict[str, set[asyncio.Event]] = {}
        self._takeover_now = asyncio.Event()
        self._adopt = self._cancel = self._drop = None
        self._tasks: list[asyncio.Task] = []
        self._save = link.redis.register_script(SAVE)
        self._claim = link.redis.register_script(CLAIM)
        self._renew = link.redis.register_script(RENEW)
        self._release = link.redis.register_script(RELEASE)
        link.listen("changed", self._changed)
        link.listen("cancel", self._cancel_asked)
        link.listen("handover", lambda _replica: self._kick())

    async def open(self) -> None:
        self._tasks = [asyncio.create_task(self._write_loop(), name="redis-journal-writer")]

    async def close(self) -> None:
        await self.flush()
        if self._pending:
            log.error("%d job record(s) could not be written to Redis before stopping",
                      len(self._pending))
        await stop(*self._tasks)
        self._tasks = []

    def attach(self, *, adopt, cancel, drop) -> None:
        """The runner's callbacks: adopt a job another replica left, cancel one it runs
        on request, drop one another replica took over. Takeovers start now."""
        self._adopt, self._cancel, self._drop = adopt, cancel, drop
        self._tasks.append(asyncio.create_task(self._keep_leases(), name="redis-leases"))

    # --- records ----------------------------------------------------------------------

    def save(self, record: dict[str, Any]) -> None:
        """Queue a job record for writing; returns at once."""
        self._pending[record["id"]] = record
        self._saved += 1
        self._idle.clear()
        self._wake.set()

    async def written(self) -> None:
        """Until the records saved so far (not those saved later) are in Redis, where
        every replica reads them; a while at most: with Redis away (the writer says so
        in the log) the records wait in memory, and the caller goes on."""
        target = self._saved
        deadline = asyncio.get_running_loop().time() + FLUSH_WAIT
        while self._written < target:
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                return
            with contextlib.suppress(asyncio.TimeoutError):
                await wait_for(self._wrote.wait(), left)

    async def flush(self) -> None:
        """Wait (a while: Redis may be away) until this replica's writes are in Redis."""
        with contextlib.suppress(asyncio.TimeoutError):
            await wait_for(self._idle.wait(), FLUSH_WAIT)

    async def get(self, job_id: str) -> T | None:
        await self.written()
        async with self.link.call() as r:
            text = await r.get(self.link.key("job", job_id))
        return self._parsed(job_id, text) if text else None

    async def by_idempotency_key(self, key: str) -> T | None:
        async with self.link.call() as r:
            job_id = await r.get(self.link.key("idem", key))
        return await self.get(job_id) if job_id else None

    async def claim_key(self, key: str, job_id: str) -> str:
        async with self.link.call() as r:
            if await r.set(self.link.key("idem", key), job_id, nx=True):
                return job_id
            return await r.get(self.link.key("idem", key)) or job_id

    async def unfinished(self) -> list[T]:
        """The unfinished jobs no replica holds, now held here."""
        return [job for _, job in await self._claim_orphans()]

    async def recent(self, limit: int, before: float | None = None,
                     state: str | None = None, owner: str | None = None) -> list[T]:
        index = (self.link.key("jobs", "state", state) if state in TERMINAL else
                 self.link.key("jobs", "owner", owner) if owner else self.link.key("jobs"))
        top = f"({before}" if before is not None else "+inf"
        found: list[T] = []
        async with self.link.call() as r:
            while len(found) < limit:
                ids = await r.zrevrangebyscore(index, top, "-inf", start=0, num=limit * 2,
                                               withscores=True)
                if not ids:
                    break
                texts = await r.mget([self.link.key("job", i) for i, _ in ids])
                for (job_id, _), text in zip(ids, texts):
                    job: Any = self._parsed(job_id, text) if text else None
                    if job is not None and (state is None or job.state.value == state) and \
                            (owner is None or job.owner == owner):
                        found.append(job)
                top = f"({ids[-1][1]}"
        return found[:limit]

    async def last_upstream(self, state: str, pages: int = 4) -> T | None:
        """The newest job in ``state`` that was not answered from the result cache
        (looking back ``pages`` pages of 50 at most)."""
        before = None
        for _ in range(pages):
            jobs = await self.recent(50, before, state)
            found = next((j for j in jobs if getattr(j, "cache", None) != "hit"), None)
            if found is not None or len(jobs) < 50:
                return found
            before = getattr(jobs[-1], "created_at", None)
        return None

    async def outcomes(self, since: float, owner: str | None = None) -> list[tuple]:
        """(owner, UTC day, model, state, jobs, images) since ``since``, from the counts
        kept when each job ended."""
        days = [time.strftime("%Y-%m-%d", time.gmtime(t))
                for t in range(int(since - since % 86400), int(time.time()) + 1, 86400)]
        async with self.link.call() as r:
            owners = [owner] if owner else sorted(await r.smembers(
                self.link.key("usage", "owners")))
            pipe = r.pipeline()
            for who in owners:
                for day in days:
                    pipe.hgetall(self.link.key("usage", who, day))
            counts = await pipe.execute()
        rows = []
        pairs = ((who, day) for who in owners for day in days)
        for (who, day), fields in zip(pairs, counts):
            images = {k.split(SEP)[0]: int(v) for k, v in fields.items()
                      if k.endswith(SEP + "images")}
            for name, value in fields.items():
                model, _, state = name.partition(SEP)
                if state in TERMINAL:
                    rows.append((who, day, model, state, int(value),
                                 images.get(model, 0) if state == "succeeded" else 0))
        return rows

    async def expire(self, before: float) -> list[T]:
        """Remove the records of the jobs that finished before ``before`` (``job_retention``),
        with every key that names them; returns them."""
        gone: list[T] = []
        async with self.link.call() as r:
            for state in TERMINAL:
                index = self.link.key("jobs", "state", state)
                # created before the cut: the only ones that can have finished before it
                ids = await r.zrangebyscore(index, "-inf", f"({before}")
                for start in range(0, len(ids), PAGE):
                    gone += await self._expire(r, index, ids[start:start + PAGE], before)
        return gone

    async def _expire(self, r: Any, index: str, ids: list[str], before: float) -> list[T]:
        texts = await r.mget([self.link.key("job", i) for i in ids])
        expired: list[tuple[str, dict]] = []
        jobs: list[T] = []
        for job_id, text in zip(ids, texts):
            record = json.loads(text) if text else {}
            if (record.get("finished_at") or 0) < before:
                expired.append((job_id, record))
                if text and (job := self._parsed(job_id, text)) is not None:
                    jobs.append(job)
        idems = [self.link.key("idem", rec["idempotency_key"]) for _, rec in expired
                 if rec.get("idempotency_key")]
        holders = dict(zip(idems, await r.mget(idems))) if idems else {}
        pipe = r.pipeline(transaction=False)
        for job_id, record in expired:
            pipe.delete(*(self.link.key(kind, job_id) for kind in ("job", "cancel", "lease",
                                                                   "last")))
            pipe.zrem(index, job_id)
            pipe.zrem(self.link.key("jobs"), job_id)
            pipe.zrem(self.link.key("jobs", "owner", record.get("owner") or "local"), job_id)
        for idem, holder in holders.items():
            if holder in {job_id for job_id, _ in expired}:
                pipe.delete(idem)
        await pipe.execute()
        return jobs

    async def references(self) -> set[str]:
        found: set[str] = set()
        for record in list(self._pending.values()):
            found |= mentioned(json.dumps(record))
        async with self.link.call() as r:
            keys = [key async for key in r.scan_iter(match=self.link.key("job", "*"),
                                                      count=PAGE)]
            for start in range(0, len(keys), PAGE):
                for text in await r.mget(keys[start:start + PAGE]):
                    if text:
                        found |= mentioned(text)
        return found

    # --- what replicas share ------------------------------------------------------------

    async def cancel_requested(self, job_id: str) -> bool:
        async with self.link.call() as r:
            return bool(await r.exists(self.link.key("cancel", job_id)))

    async def request_cancel(self, job_id: str) -> None:
        """Ask whichever replica runs the job to cancel it (and the one that adopts it
        next, if none does now)."""
        async with self.link.call() as r:
            await r.set(self.link.key("cancel", job_id), "1", ex=3600)
            await r.publish(self.link.key("cancel"), job_id)

    async def handover(self) -> None:
        """Shutting down: write what is pending, let go of every job held, and tell the
        others to take them now rather than when the leases lapse."""
        await self.flush()
        held, self._held = sorted(self._held), set()
        if held:
            try:
                async with self.link.call():
                    await self._release(args=[self.link.name, *held])
                    await self.link.send("handover", self.link.name)
                log.info("handed %d unfinished job(s) over to the other replicas", len(held))
            except Exception:
                log.warning("could not hand %d job(s) over; their leases lapse in %g s",
                            len(held), self.lease_ms / 1000)

    @asynccontextmanager
    async def watch(self, job_id: str) -> AsyncIterator[asyncio.Event]:
        event = asyncio.Event()
        self._watchers.setdefault(job_id, set()).add(event)
        try:
            yield event
        finally:
            watchers = self._watchers.get(job_id, set())
            watchers.discard(event)
            if not watchers:
                self._watchers.pop(job_id, None)

    # --- internals ----------------------------------------------------------------------

    def _parsed(self, job_id: str, text: str) -> T | None:
        try:
            return self._load(json.loads(text))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            reason = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
            self.quarantined.append((job_id, reason))
            log.warning("the record of job %s does not describe a job (%s); skipped",
                        job_id, reason)
            return None

    def _changed(self, job_id: str) -> None:
        for event in self._watchers.get(job_id, ()):
            event.set()

    def _cancel_asked(self, job_id: str) -> None:
        if self._cancel is not None and job_id in self._held:
            self._cancel(job_id)

    def _kick(self) -> None:
        """Look for jobs to take over now (a replica handed its jobs over)."""
        self._takeover_now.set()

    async def _write_loop(self) -> None:
        failures = 0
        while True:
            await self._wake.wait()
            await asyncio.sleep(LINGER)          # one round trip for what comes with it
            self._wake.clear()
            batch, self._pending, taken = self._pending, {}, self._saved
            try:
                await self._write(batch)
                failures = 0
                self._written = taken
                self._wrote.set()
                self._wrote = asyncio.Event()
            except Exception as exc:             # Redis away: keep the records, try again
                for job_id, record in batch.items():
                    self._pending.setdefault(job_id, record)
                failures += 1
                if failures == 1:
                    log.warning("cannot write %d job record(s) to Redis (%s); retrying",
                                len(batch), exc)
                await asyncio.sleep(min(2.0, 0.1 * 2 ** failures))
                self._wake.set()
                continue
            if not self._pending:
                self._idle.set()

    async def _write(self, batch: dict[str, dict]) -> None:
        me = self.link.name
        pipe = self.link.redis.pipeline(transaction=False)
        for record in batch.values():
            finished = record.get("finished_at") or time.time()
            images = len(record.get("images") or []) \
                if record["state"] == "succeeded" and record.get("cache") != "hit" else 0
            await self._save(args=[
                record["id"], json.dumps(record), record["state"], record["created_at"],
                record.get("owner") or "local", me, self.lease_ms,
                time.strftime("%Y-%m-%d", time.gmtime(finished)),
                record["generation"].get("model", ""), images], client=pipe)
        results = await pipe.execute()
        for record, result in zip(batch.values(), results):
            job_id, terminal = record["id"], record["state"] in TERMINAL
            if result == 0 or (result == 2 and not terminal):
                self._held.discard(job_id)
                log.warning("job %s is another replica's now; this one stops it", job_id)
                if self._drop is not None:
                    self._drop(job_id)
            elif terminal:
                self._held.discard(job_id)
            else:
                self._held.add(job_id)

    async def _keep_leases(self) -> None:
        """Renew what this replica holds; take over what nobody holds."""
        every = self.lease_ms / 3000
        while True:
            with contextlib.suppress(asyncio.TimeoutError):
                await wait_for(self._takeover_now.wait(), every)
            self._takeover_now.clear()
            try:
                await self._renew_held()
                for job_id, job in await self._claim_orphans():
                    log.info("took over job %s from a replica that left", job_id)
                    if self._adopt is not None:
                        await self._adopt(job)
            except Exception as exc:
                log.debug("lease round failed: %s", exc)

    async def _renew_held(self) -> None:
        held = sorted(self._held)
        if not held:
            return
        async with self.link.call():
            lost = await self._renew(args=[self.link.name, self.lease_ms, *held])
        for job_id in lost:
            self._held.discard(job_id)
            log.warning("lost the lease of job %s to another replica; stopping it here",
                        job_id)
            if self._drop is not None:
                self._drop(job_id)

    async def _claim_orphans(self) -> list[tuple[str, T]]:
        claimed = []
        async with self.link.call() as r:
            ids = sorted(await r.smembers(self.link.key("unfinished")))
            candidates = [i for i in ids if i not in self._held]
            if not candidates:
                return []
            pipe = r.pipeline(transaction=False)
            for job_id in candidates:
                pipe.exists(self.link.key("lease", job_id))
            leased = await pipe.execute()
            for job_id, taken in zip(candidates, leased):
                if taken:
                    continue
                text = await self._claim(args=[job_id, self.link.name, self.lease_ms])
                if not text:
                    continue
                self._held.add(job_id)
                job = self._parsed(job_id, text)
                if job is None:
                    await r.srem(self.link.key("unfinished"), job_id)
                    await r.hset(self.link.key("quarantine"), job_id, text)
                    self._held.discard(job_id)
                    continue
                claimed.append((job_id, job))
        return claimed
