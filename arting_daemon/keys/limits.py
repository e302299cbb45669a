"""What a user key may do: one schema of its limits (``KeyLimits``), and one small class
per limit that enforces it (``LIMITS``).

Everything that shows or takes a key's limits reads them from here: the admin API's
bodies and answers (``facades/keys.py``), ``arting-daemon keys`` (``keys/cli.py``), the
usage report's ``remaining`` (``keys/usage.py``), what the keys are stored as. A new limit
is a field of ``KeyLimits`` and a class in ``LIMITS``; the gate (``keys/gate.py``) applies
them all, over counts the backend keeps (``keys/counters.py``: in this process, or in
Redis for replicas).

A limit is checked at one of two moments, or both:

* at the door, per generation request (``at_door``): requests per minute, a sliding
  window (at most N requests in any 60 seconds; ``Retry-After`` says when the oldest
  leaves it);
* per job, when the runner admits it (``allows``, then ``check``): the models the key may
  use; its jobs in flight; its images per UTC day. A job's images are *reserved* while it
  is unfinished, so concurrent requests cannot together overrun the quota: checking a job
  and reserving for it is one atomic step (the counters'), and the reservation is given
  back when the job ends, counting what it made (once: the counters know each job by id).
  Failed, refused and cancelled jobs cost nothing, nor does an answer from the result
  cache (it made no image): it is held only to ``models``. The day is the UTC day; its
  quota comes back at 00:00 UTC.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field

from ..engine.jobs import Job
from ..errors import ArtingError, ModelNotAllowed, QuotaExceeded
from .counters import WINDOW, Check, Counters, Standing


class KeyLimits(BaseModel):
    """What one key may do; null (or absent) is no limit."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    requests_per_minute: int | None = Field(
        None, ge=1, title="Requests per minute",
        description="Generation requests in any 60 seconds.")
    images_per_day: int | None = Field(
        None, ge=0, title="Images per day",
        description="Images made per UTC day (a result cache hit makes none).")
    max_concurrent: int | None = Field(
        None, ge=1, title="Jobs at once", description="Jobs unfinished at once.")
    models: tuple[str, ...] | None = Field(
        None, title="Models", description="The model ids the key may use (null: any).")


#: A key with no limit set.
NO_LIMITS = KeyLimits()


class Limit:
    """One field of ``KeyLimits``, enforced. Each class overrides what applies to it."""

    #: Its field in ``KeyLimits``, and how a listing shows a value ("20 req/min").
    field: ClassVar[str]
    unit: ClassVar[str] = ""
    #: What the usage report calls what is left of it (None: nothing to count).
    left: ClassVar[str | None] = None
    left_title: ClassVar[str] = ""

    async def at_door(self, cap: int, key_id: str, counters: Counters,
                      now: float) -> ArtingError | None:
        """A generation request of the key's: why it is refused, or None (counted)."""
        return None

    def allows(self, cap: object, job: Job) -> ArtingError | None:
        """Why ``job`` may not be made at all with this key, or None."""
        return None

    def check(self, cap: int) -> Check | None:
        """What the counters hold a new job to, checked and reserved in one step."""
        return None

    def refusal(self, cap: int, job: Job, standing: Standing, now: float) -> ArtingError:
        """Why the counters refused ``job`` under this limit's check."""
        raise NotImplementedError

    def remaining(self, cap: int, standing: Standing) -> int:
        """What is left of the limit, as the usage report shows it."""
        raise NotImplementedError

    def spent(self, cap: int, now: float) -> ArtingError:
        """Why a request is refused at the door when nothing is left of the limit."""
        raise NotImplementedError


class RequestsPerMinute(Limit):
    field, unit = "requests_per_minute", "req/min"
    left, left_title = "requests_this_minute", "Requests this minute"

    async def at_door(self, cap: int, key_id: str, counters: Counters,
                      now: float) -> ArtingError | None:
        wait = await counters.hit(key_id, cap, WINDOW, now)
        if wait is None:
            return None
        return QuotaExceeded(f"This key may send {cap} generation requests a minute "
                             "(requests_per_minute), and has.", limit=self.field,
                             retry_after=wait)

    def remaining(self, cap: int, standing: Standing) -> int:
        return max(0, cap - standing.recent_requests)


class MaxConcurrent(Limit):
    field, unit = "max_concurrent", "in flight"
    left, left_title = "jobs_in_flight", "Jobs in flight"

    def check(self, cap: int) -> Check:
        return Check(self.field, "jobs", cap)

    def refusal(self, cap: int, job: Job, standing: Standing, now: float) -> ArtingError:
        return self.spent(cap, now)

    def remaining(self, cap: int, standing: Standing) -> int:
        return max(0, cap - standing.load.get("jobs", 0))

    def spent(self, cap: int, now: float) -> ArtingError:
        return QuotaExceeded(f"This key may have {cap} job(s) in flight (max_concurrent), "
                             "and has; try again when one ends.", limit=self.field,
                             retry_after=5)


class ImagesPerDay(Limit):
    field, unit = "images_per_day", "images/day"
    left, left_title = "images_today", "Images today"

    def check(self, cap: int) -> Check:
        return Check(self.field, "images", cap, daily=True)

    def refusal(self, cap: int, job: Job, standing: Standing, now: float) -> ArtingError:
        used, coming = standing.used.get("images", 0), standing.load.get("images", 0)
        left = max(0, cap - used - coming)
        return QuotaExceeded(
            f"This key may make {cap} images per UTC day (images_per_day); {used} are made "
            f"and {coming} on their way, so {left} more fit, and this asks for "
            f"{job.generation.n}.", limit=self.field, retry_after=until_midnight(now))

    def remaining(self, cap: int, standing: Standing) -> int:
        return max(0, cap - standing.used.get("images", 0) - standing.load.get("images", 0))

    def spent(self, cap: int, now: float) -> ArtingError:
        return QuotaExceeded(f"This key may make {cap} images per UTC day (images_per_day), "
                             "and none is left.", limit=self.field,
                             retry_after=until_midnight(now))


class Models(Limit):
    field = "models"

    def allows(self, cap: object, job: Job) -> ArtingError | None:
        # `models` names generation models; an upscale is not one (its images count).
        gen = job.generation
        assert isinstance(cap, tuple)
        if gen.kind == "generate" and gen.model not in cap:
            return ModelNotAllowed(f"This key may not use the model `{gen.model}` (its "
                                   f"`models`: {', '.join(cap) or 'none'}).", param="model")
        return None


#: Every limit, in the order they are checked: the first a job breaks is the one named.
LIMITS: tuple[Limit, ...] = (RequestsPerMinute(), MaxConcurrent(), ImagesPerDay(), Models())


def until_midnight(now: float) -> float:
    """Seconds until 00:00 UTC."""
    return 86400 - now % 86400
