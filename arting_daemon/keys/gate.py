"""The gate: a user key's limits (``keys/limits.py``) applied at the door and to each job
(the runner's admission), over the backend's counters (``keys/counters.py``).

Requests and jobs of the operator and of the keyless local user are counted (for the
usage report) but never refused.
"""

from __future__ import annotations

from typing import Any

from ..auth import Principal
from ..clock import Clock
from ..engine.jobs import Job
from ..errors import ArtingError
from ..metrics import Metrics
from .counters import Counters, Standing, made
from .limits import LIMITS, KeyLimits, Limit
from .ring import KeyStore


class Gate:
    def __init__(self, ring: KeyStore, metrics: Metrics, counters: Counters,
                 clock: Clock) -> None:
        self.ring = ring
        self.metrics = metrics
        self.counters = counters
        self.clock = clock

    # --- at the door ------------------------------------------------------------------------

    async def request(self, principal: Principal) -> None:
        """Count a generation request against the caller's limits."""
        if principal.key is None:
            return
        now = self.clock.time()
        key = principal.key
        self.ring.count_request(key.id, now)
        self.metrics.key_requests.labels(principal.name).inc()
        for limit, cap in _set(key.limits):
            refused = await limit.at_door(cap, key.id, self.counters, now)
            if refused is not None:
                self._refuse(principal.name, limit.field, refused)

    async def room(self, principal: Principal) -> None:
        """Refuse a key with nothing left of a counted limit (its images today, its jobs in
        flight) before the pictures it sends are taken in, so they are never stored.
        Whether a job fits is still decided when the runner admits it."""
        key = principal.key
        if key is None:
            return
        counted = [(limit, cap) for limit, cap in _set(key.limits)
                   if limit.left is not None and limit.check(cap) is not None]
        if not counted:
            return
        standing = await self.standing(principal.id)
        for limit, cap in counted:
            if limit.remaining(cap, standing) <= 0:
                self._refuse(key.name, limit.field, limit.spent(cap, self.clock.time()))

    # --- for each job (the runner's admission) ------------------------------------------------

    async def admit(self, job: Job) -> None:
        key = self.ring.get(job.owner)
        now = self.clock.time()
        if key is None:           # an admin, or the local user: no limits, only counts
            await self.counters.reserve(job, [], now)
            return
        limits = _set(key.limits)
        for limit, cap in limits:
            if (refused := limit.allows(cap, job)) is not None:
                self._refuse(key.name, limit.field, refused)
        if job.cache == "hit":    # finished as it is made, with no new image
            return
        checks = {check: limit for limit, cap in limits
                  if (check := limit.check(cap)) is not None}
        broken = await self.counters.reserve(job, list(checks), now)
        if broken is not None:
            check, standing = broken
            limit = checks[check]
            self._refuse(key.name, limit.field, limit.refusal(check.cap, job, standing, now))

    async def restore(self, job: Job) -> None:
        await self.counters.restore(job)

    def finished(self, job: Job) -> None:
        self.counters.release(job)
        key = self.ring.get(job.owner)
        images = made(job)["images"]
        if key is not None and images:
            self.metrics.key_images.labels(key.name).inc(images)

    async def standing(self, owner: str) -> Standing:
        key = self.ring.get(owner)
        return await self.counters.standing(owner, key.id if key else None, self.clock.time())

    def _refuse(self, name: str, limit: str, error: ArtingError) -> None:
        self.metrics.key_refusals.labels(name, limit).inc()
        raise error


def _set(limits: KeyLimits) -> list[tuple[Limit, Any]]:
    """The key's limits that are set, each with its value, in ``LIMITS`` order."""
    return [(limit, value) for limit in LIMITS
            if (value := getattr(limits, limit.field)) is not None]
