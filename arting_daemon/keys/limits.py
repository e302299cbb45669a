"""A user key's limits, enforced: requests per minute at the door; for each job, the
models the key may use, its jobs in flight and its images per UTC day.

Images per day count what succeeded: failed, refused and cancelled jobs cost nothing,
nor does an answer from the result cache (``cache == "hit"``): it made no image, so it is
neither held to the quota nor counted in it (only to ``models``). While a job is
unfinished its images are *reserved*, so concurrent requests cannot together overrun
the quota: checking a job and reserving for it is one atomic step, and a job gives its
reservation back when it ends (once: the ledger knows each job by id). The day is the
UTC day; its quota comes back at 00:00 UTC.

Requests per minute are a sliding window: at most N generation requests in any 60
seconds, ``Retry-After`` saying when the oldest of them leaves the window.

Where the counts live is the ledger's business: ``LocalLedger`` in this process (today's
images rebuilt from the journal at start, where each job's outcome is recorded once, so
a job resumed after a crash counts once), or Redis for replicas (``replicas/limits.py``).
"""

from __future__ import annotations

import time
from collections import defaultdict, deque
from typing import NamedTuple, Protocol

from ..auth import Principal
from ..engine.jobs import Job, JobState
from ..engine.journal import Journal
from ..errors import ModelNotAllowed, QuotaExceeded
from ..metrics import Metrics
from .ring import KeyRing, utc_day

WINDOW = 60.0


class Load(NamedTuple):
    """An owner's unfinished jobs, and the images they ask for."""

    jobs: int = 0
    images: int = 0


class Standing(NamedTuple):
    """Where an owner stands: jobs in flight, images made today, requests in the window."""

    load: Load
    used_today: int
    recent_requests: int


class Ledger(Protocol):
    async def hit(self, key_id: str, limit: int, now: float) -> float | None:
        """Count a request if fewer than ``limit`` came in the window; else the seconds
        until the oldest leaves it."""

    async def reserve(self, job: Job, max_jobs: int | None,
                      max_images: int | None) -> tuple[str, Standing] | None:
        """Reserve for ``job`` if its owner stays within both limits; else the limit it
        would break (``max_concurrent`` or ``images_per_day``) and where the owner stands."""

    async def restore(self, job: Job) -> None:
        """Reserve for a job resumed after a restart, whatever the limits."""

    def release(self, job: Job) -> None:
        """The job ended: give back its reservation and count the images it made (once)."""

    async def standing(self, owner: str, key_id: str | None, now: float) -> Standing: ...


class Gate:
    def __init__(self, ring: KeyRing, metrics: Metrics, ledger: Ledger) -> None:
        self.ring = ring
        self.metrics = metrics
        self.ledger = ledger

    # --- at the door ------------------------------------------------------------------------

    async def request(self, principal: Principal) -> None:
        """Count a generation request against the caller's requests per minute."""
        if principal.key is None:
            return
        now = time.time()
        self.ring.count_request(principal.key.id, now)
        self.metrics.key_requests.labels(principal.name).inc()
        rpm = principal.key.limits.requests_per_minute
        if rpm is None:
            return
        wait = await self.ledger.hit(principal.key.id, rpm, now)
        if wait is not None:
            self._refuse(principal.name, "requests_per_minute", QuotaExceeded(
                f"This key may send {rpm} generation requests a minute "
                "(requests_per_minute), and has.", limit="requests_per_minute",
                retry_after=wait))

    # --- for each job (the runner's admission) ------------------------------------------------

    async def admit(self, job: Job) -> None:
        key = self.ring.get(job.owner)
        if key is None:           # an admin, or the local user: no limits, only counts
            await self.ledger.reserve(job, None, None)
            return
        limits, gen = key.limits, job.generation
        # `models` names generation models; an upscale is not one (its images count).
        if limits.models is not None and gen.kind == "generate" and gen.model not in \
                limits.models:
            self._refuse(key.name, "models", ModelNotAllowed(
                f"This key may not use the model `{gen.model}` (its `models`: "
                f"{', '.join(limits.models) or 'none'}).", param="model"))
        if job.cache == "hit":    # finished as it is made, with no new image
            return
        refused = await self.ledger.reserve(job, limits.max_concurrent, limits.images_per_day)
        if refused is None:
            return
        limit, (load, used, _) = refused
        if limit == "max_concurrent":
            self._refuse(key.name, limit, QuotaExceeded(
                f"This key may have {limits.max_concurrent} job(s) in flight "
                "(max_concurrent), and has; try again when one ends.",
                limit=limit, retry_after=5))
        left = max(0, (limits.images_per_day or 0) - used - load.images)
        self._refuse(key.name, limit, QuotaExceeded(
            f"This key may make {limits.images_per_day} images per UTC day "
            f"(images_per_day); {used} are made and {load.images} on their way, so {left} "
            f"more fit, and this asks for {gen.n}.", limit=limit,
            retry_after=until_midnight(time.time())))

    async def restore(self, job: Job) -> None:
        await self.ledger.restore(job)

    def finished(self, job: Job) -> None:
        self.ledger.release(job)
        key = self.ring.get(job.owner)
        if key is not None and counted(job):
            self.metrics.key_images.labels(key.name).inc(counted(job))

    async def standing(self, owner: str) -> Standing:
        key = self.ring.get(owner)
        return await self.ledger.standing(owner, key.id if key else None, time.time())

    def _refuse(self, name: str, limit: str, error: Exception) -> None:
        self.metrics.key_refusals.labels(name, limit).inc()
        raise error


def until_midnight(now: float) -> float:
    """Seconds until 00:00 UTC."""
    return 86400 - now % 86400


def counted(job: Job) -> int:
    """The images a finished job counts for (none for a result cache hit: it made none)."""
    return len(job.images) if job.state is JobState.SUCCEEDED and job.cache != "hit" else 0


class LocalLedger:
    """The counts of one daemon, in memory: today's images come from the journal."""

    def __init__(self, journal: Journal) -> None:
        self.journal = journal
        self._windows: dict[str, deque[float]] = {}
        self._reserved: dict[str, tuple[str, int]] = {}      # job id → (owner, images)
        self._loads: defaultdict[str, Load] = defaultdict(Load)
        self._day = utc_day(time.time())
        self._used: defaultdict[str, int] = defaultdict(int)

    async def open(self) -> None:
        """Today's images per owner, as the journal has them."""
        now = time.time()
        for owner, _, _, state, _, images in await self.journal.outcomes(now - now % 86400):
            if state == "succeeded":
                self._used[owner] += images or 0

    async def close(self) -> None:
        """Nothing to write: the journal has every outcome."""

    async def hit(self, key_id: str, limit: int, now: float) -> float | None:
        window = self._windows.setdefault(key_id, deque())
        while window and window[0] <= now - WINDOW:
            window.popleft()
        if len(window) >= limit:
            return window[0] + WINDOW - now
        window.append(now)
        return None

    async def reserve(self, job: Job, max_jobs: int | None,
                      max_images: int | None) -> tuple[str, Standing] | None:
        load, used = self._loads[job.owner], self._today(job.owner)
        if max_jobs is not None and load.jobs >= max_jobs:
            return "max_concurrent", Standing(load, used, 0)
        if max_images is not None and used + load.images + job.generation.n > max_images:
            return "images_per_day", Standing(load, used, 0)
        self._take(job)
        return None

    async def restore(self, job: Job) -> None:
        self._take(job)

    def release(self, job: Job) -> None:
        owner, images = self._reserved.pop(job.id, (None, 0))
        if owner is not None:
            jobs, reserved = self._loads[owner]
            self._loads[owner] = Load(jobs - 1, reserved - images)
        if counted(job):
            self._today(job.owner)
            self._used[job.owner] += counted(job)

    async def standing(self, owner: str, key_id: str | None, now: float) -> Standing:
        window = self._windows.get(key_id or "", ())
        return Standing(self._loads.get(owner, Load()), self._today(owner),
                        sum(1 for t in window if t > now - WINDOW))

    def _take(self, job: Job) -> None:
        if job.id in self._reserved:
            return
        self._reserved[job.id] = (job.owner, job.generation.n)
        jobs, images = self._loads[job.owner]
        self._loads[job.owner] = Load(jobs + 1, images + job.generation.n)

    def _today(self, owner: str) -> int:
        day = utc_day(time.time())
        if day != self._day:
            self._day, self._used = day, defaultdict(int)
        return self._used[owner]
