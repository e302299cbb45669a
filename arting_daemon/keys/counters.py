"""The counts key limits are held to, behind one interface the backend builds: in this
process (``LocalCounters``) or in Redis, shared by replicas (``replicas/limits.py``).

They know nothing of any limit (``keys/limits.py`` does); they keep three kinds of count:

* **windows**: the times of recent events per name (requests per minute), ``hit`` counting
  one when fewer than a limit came in the window;
* **load**: what each owner's unfinished jobs hold (``jobs``: one each; ``images``: those
  they ask for), reserved by ``reserve`` and given back by ``release``, once per job id;
* **used**: what each owner's jobs made per UTC day (``images``), counted by ``release``.

``reserve`` checks a job against every ``Check`` and reserves what it holds in one atomic
step, so concurrent requests cannot together overrun a limit.
"""

from __future__ import annotations

import time
from collections import defaultdict, deque
from typing import NamedTuple, Protocol

from ..clock import Clock
from ..engine.jobs import Job, JobState
from ..engine.journal import JobJournal

WINDOW = 60.0


class Check(NamedTuple):
    """A limit a job is held to: ``counter``'s load (with ``daily``, plus what was made
    today) and what the job holds of it must stay within ``cap``."""

    limit: str
    counter: str
    cap: int
    daily: bool = False


class Standing(NamedTuple):
    """Where an owner stands: what its unfinished jobs hold, what it made today, and its
    requests in the window."""

    load: dict[str, int]
    used: dict[str, int]
    recent_requests: int


def holds(job: Job) -> dict[str, int]:
    """What an unfinished job holds."""
    return {"jobs": 1, "images": job.generation.n}


def made(job: Job) -> dict[str, int]:
    """What a finished job counts for (no image for a result cache hit: it made none)."""
    images = len(job.images) if job.state is JobState.SUCCEEDED and job.cache != "hit" else 0
    return {"images": images}


def utc_day(t: float) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(t))


class Counters(Protocol):
    async def hit(self, name: str, limit: int, window: float, now: float) -> float | None:
        """Count an event of ``name`` if fewer than ``limit`` came in the last ``window``
        seconds; else the seconds until the oldest leaves it."""

    async def reserve(self, job: Job, checks: list[Check],
                      now: float) -> tuple[Check, Standing] | None:
        """Reserve what ``job`` holds if its owner stays within every check; else the first
        check it breaks, and where the owner stands."""

    async def restore(self, job: Job) -> None:
        """Reserve for a job resumed after a restart, whatever the limits."""

    def release(self, job: Job) -> None:
        """The job ended: give back its reservation and count what it made (once)."""

    async def standing(self, owner: str, name: str | None, now: float) -> Standing:
        """Where ``owner`` stands; its requests in the window are ``name``'s."""


class LocalCounters:
    """One daemon's counts, in memory; what was made today is read from the journal at
    start (each job's outcome is there once, so a job resumed after a crash counts once)."""

    def __init__(self, journal: JobJournal[Job], clock: Clock) -> None:
        self.journal = journal
        self.clock = clock
        self._windows: dict[str, deque[float]] = {}
        self._reserved: dict[str, tuple[str, dict[str, int]]] = {}  # job id → (owner, holds)
        self._load: defaultdict[str, defaultdict[str, int]] = defaultdict(
            lambda: defaultdict(int))
        self._day = utc_day(clock.time())
        self._used: defaultdict[str, defaultdict[str, int]] = defaultdict(
            lambda: defaultdict(int))

    async def open(self) -> None:
        """Today's images per owner, as the journal has them."""
        now = self.clock.time()
        for owner, _, _, state, _, images in await self.journal.outcomes(now - now % 86400):
            if state == "succeeded":
                self._used[owner]["images"] += images or 0

    async def close(self) -> None:
        """Nothing to write: the journal has every outcome."""

    async def hit(self, name: str, limit: int, window: float, now: float) -> float | None:
        times = self._windows.setdefault(name, deque())
        while times and times[0] <= now - window:
            times.popleft()
        if len(times) >= limit:
            return times[0] + window - now
        times.append(now)
        return None

    async def reserve(self, job: Job, checks: list[Check],
                      now: float) -> tuple[Check, Standing] | None:
        load, used, asks = self._load[job.owner], self._today(job.owner, now), holds(job)
        for check in checks:
            had = load[check.counter] + (used[check.counter] if check.daily else 0)
            if had + asks.get(check.counter, 0) > check.cap:
                return check, Standing(dict(load), dict(used), 0)
        self._take(job)
        return None

    async def restore(self, job: Job) -> None:
        self._take(job)

    def release(self, job: Job) -> None:
        owner, held = self._reserved.pop(job.id, (None, {}))
        if owner is not None:
            for counter, n in held.items():
                self._load[owner][counter] -= n
        made_now = {k: n for k, n in made(job).items() if n}
        if made_now:
            used = self._today(job.owner, self.clock.time())
            for counter, n in made_now.items():
                used[counter] += n

    async def standing(self, owner: str, name: str | None, now: float) -> Standing:
        times = self._windows.get(name or "", ())
        return Standing(dict(self._load.get(owner, {})), dict(self._today(owner, now)),
                        sum(1 for t in times if t > now - WINDOW))

    def _take(self, job: Job) -> None:
        if job.id in self._reserved:
            return
        self._reserved[job.id] = job.owner, holds(job)
        for counter, n in holds(job).items():
            self._load[job.owner][counter] += n

    def _today(self, owner: str, now: float) -> defaultdict[str, int]:
        day = utc_day(now)
        if day != self._day:
            self._day, self._used = day, defaultdict(lambda: defaultdict(int))
        return self._used[owner]
