"""Nothing is kept for ever: a finished job's record expires ``job_retention`` seconds
after it ended (SQLite rows or Redis keys, with its result-cache entry), and a stored
image no job record names any more is removed once it is ``ORPHAN_GRACE`` old: the
results and pictures of expired jobs, and what was stored for no job (a picture whose
request was refused after it was read, a local upscale's answer).

A sweep runs every ``EVERY`` seconds of the daemon's clock; tests call ``sweep`` with a
clock of their own. Nothing a remaining record names is removed, nor an image of an
unfinished job (the runner's ``pinned``), nor one stored or served within the grace
(a result-cache hit serves its images as it answers). With replicas every replica
sweeps what they share in Redis (their one image folder); doing it twice is harmless.
"""

from __future__ import annotations

import asyncio
import logging
import time

from .clock import Clock
from .engine.jobs import Job
from .engine.journal import JobJournal
from .engine.runner import Runner
from .retention import Retention
from .store import ImageStore
from .tasks import stop

log = logging.getLogger(__name__)

#: Seconds between two sweeps.
EVERY = 3600.0
#: Seconds an image no record names is kept after it was stored: a job is recorded within
#: milliseconds of the pictures it was sent being stored.
ORPHAN_GRACE = 3600.0


class Expiry:
    def __init__(self, job_retention: float | None, journal: JobJournal[Job],
                 store: ImageStore, runner: Runner, clock: Clock,
                 bounded: Retention | None = None) -> None:
        self.job_retention = job_retention
        self.journal = journal
        self.store = store
        self.runner = runner
        self.clock = clock
        #: The bounded store's keeper (``retention.py``), told what was removed.
        self.bounded = bounded
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="expiry")

    async def close(self) -> None:
        await stop(self._task)

    async def _loop(self) -> None:
        while True:
            await self.clock.sleep(EVERY)
            try:
                await self.sweep()
            except Exception:
                log.exception("expiry: the sweep failed; trying again in %g s", EVERY)

    async def sweep(self) -> tuple[list[Job], list[str]]:
        """Remove expired job records (and their cache entries), then the images no record
        names; returns both."""
        now = self.clock.time()
        jobs: list[Job] = []
        if self.job_retention is not None:
            before = now - self.job_retention
            self.runner.expire(before)
            jobs = await self.journal.expire(before)
            if self.runner.cache is not None:
                for job in jobs:
                    await self.runner.cache.expire(job)
        images = await self._orphans(now)
        if images and self.bounded is not None:
            await self.bounded.forget(images)
        if jobs or images:
            log.info("expiry: removed %d job record(s) older than job_retention and %d "
                     "image(s) no job names", len(jobs), len(images))
        return jobs, images

    async def _orphans(self, now: float) -> list[str]:
        began = time.time()
        files = await asyncio.to_thread(self.store.scan)
        old = [digest for digest, (_, stored) in files.items() if stored < now - ORPHAN_GRACE]
        if not old:
            return []
        keep = await self.journal.references() | self.runner.pinned()
        unnamed = [digest for digest in old
                   if digest not in keep and not self.store.served_since(digest, began)]
        return await asyncio.to_thread(
            lambda: [d for d in unnamed if self.store.remove(d, ORPHAN_GRACE, now)])
