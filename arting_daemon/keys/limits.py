"""A user key's limits, enforced: requests per minute at the door; for each job, the
models the key may use, its jobs in flight and its images per UTC day.

Images per day count what succeeded (``finished``): failed, refused and cancelled jobs
cost nothing, nor does an answer from the result cache (``cache == "hit"``): it made no
image, so it is neither held to the quota nor counted in it (only to ``models``). While a job is unfinished its images are *reserved*, so concurrent
requests cannot together overrun the quota: admission reads the key's unfinished jobs
and today's count and decides with no pause in between (no ``await``), and a job that
fails gives its reservation back. Today's counts are rebuilt from the journal at start,
where each job's outcome is recorded exactly once, so a job resumed after a crash is
counted once too. The day is the UTC day; its quota comes back at 00:00 UTC.

Requests per minute are a sliding window: at most N generation requests in any 60
seconds, ``Retry-After`` saying when the oldest of them leaves the window.
"""

from __future__ import annotations

import time
from collections import defaultdict, deque
from dataclasses import dataclass

from ..auth import Principal
from ..engine.jobs import Job, JobState
from ..engine.runner import Load
from ..errors import ModelNotAllowed, QuotaExceeded
from ..metrics import Metrics
from .ring import KeyRing, utc_day

WINDOW = 60.0


@dataclass
class _Today:
    day: str
    images: defaultdict[str, int]


class Gate:
    def __init__(self, ring: KeyRing, metrics: Metrics) -> None:
        self.ring = ring
        self.metrics = metrics
        self._windows: dict[str, deque[float]] = {}
        self._today = _Today(utc_day(time.time()), defaultdict(int))

    def start_day(self, images: dict[str, int]) -> None:
        """Today's images per owner, as the journal has them."""
        self._today = _Today(utc_day(time.time()), defaultdict(int, images))

    # --- at the door ------------------------------------------------------------------------

    def request(self, principal: Principal) -> None:
        """Count a generation request against the caller's requests per minute."""
        now = time.time()
        if principal.key is None:
            return
        self.ring.count_request(principal.key.id, now)
        self.metrics.key_requests.labels(principal.name).inc()
        rpm = principal.key.limits.requests_per_minute
        if rpm is None:
            return
        window = self._windows.setdefault(principal.key.id, deque())
        while window and window[0] <= now - WINDOW:
            window.popleft()
        if len(window) >= rpm:
            self._refuse(principal.name, "requests_per_minute", QuotaExceeded(
                f"This key may send {rpm} generation requests a minute "
                "(requests_per_minute), and has.", limit="requests_per_minute",
                retry_after=window[0] + WINDOW - now))
        window.append(now)

    # --- for each job (the runner's admission) ------------------------------------------------

    def admit(self, job: Job, load: Load) -> None:
        key = self.ring.get(job.owner)
        if key is None:           # an admin, or the local user: no limits
            return
        limits, gen = key.limits, job.generation
        if limits.models is not None and gen.model not in limits.models:
            self._refuse(key.name, "models", ModelNotAllowed(
                f"This key may not use the model `{gen.model}` (its `models`: "
                f"{', '.join(limits.models) or 'none'}).", param="model"))
        if job.cache == "hit":    # finished as it is made, with no new image
            return
        if limits.max_concurrent is not None and load.jobs >= limits.max_concurrent:
            self._refuse(key.name, "max_concurrent", QuotaExceeded(
                f"This key may have {limits.max_concurrent} job(s) in flight "
                "(max_concurrent), and has; try again when one ends.",
                limit="max_concurrent", retry_after=5))
        if limits.images_per_day is not None:
            used = self._used(job.owner)
            if used + load.images + gen.n > limits.images_per_day:
                left = max(0, limits.images_per_day - used - load.images)
                self._refuse(key.name, "images_per_day", QuotaExceeded(
                    f"This key may make {limits.images_per_day} images per UTC day "
                    f"(images_per_day); {used} are made and {load.images} on their way, "
                    f"so {left} more fit, and this asks for {gen.n}.",
                    limit="images_per_day", retry_after=_until_midnight()))

    def finished(self, job: Job) -> None:
        """Count a job's images once it has them (made by it: not a cache hit's)."""
        if job.state is not JobState.SUCCEEDED or not job.images or job.cache == "hit":
            return
        self._used(job.owner)
        self._today.images[job.owner] += len(job.images)
        key = self.ring.get(job.owner)
        if key is not None:
            self.metrics.key_images.labels(key.name).inc(len(job.images))

    def used_today(self, owner: str) -> int:
        return self._used(owner)

    def recent_requests(self, key_id: str, now: float) -> int:
        """Generation requests of the key in the last minute (the window's)."""
        return sum(1 for t in self._windows.get(key_id, ()) if t > now - WINDOW)

    # --- internals ----------------------------------------------------------------------

    def _used(self, owner: str) -> int:
        day = utc_day(time.time())
        if day != self._today.day:
            self._today = _Today(day, defaultdict(int))
        return self._today.images[owner]

    def _refuse(self, name: str, limit: str, error: Exception) -> None:
        self.metrics.key_refusals.labels(name, limit).inc()
        raise error


def _until_midnight() -> float:
    now = time.time()
    return 86400 - now % 86400
