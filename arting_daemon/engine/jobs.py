"""A job: one generation (or upscale) on its way from the queue to images in the store.

``queued → submitting → running → downloading → succeeded | failed | cancelled``

What the provider that runs it needs to remember (Arting's request id, the token it was
sent with, ...) lives in ``provider_state``: opaque here, journaled with the job, so a
restart can pick the job up where the provider left it.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from ..errors import ArtingError, Cancelled, Unavailable, error_from_dict
from ..upscaling import JobRequest, job_request


class JobState(str, Enum):
    QUEUED = "queued"
    SUBMITTING = "submitting"
    RUNNING = "running"
    DOWNLOADING = "downloading"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED)


@dataclass(frozen=True)
class JobImage:
    hash: str
    seed: int
    width: int
    height: int


@dataclass(eq=False)
class Job:
    id: str
    #: What the job makes: a ``Generation``, or an ``Upscale`` of stored images.
    generation: JobRequest
    source: str = "api"
    #: Who submitted it (a key id, ``admin`` or ``local``): who may see and cancel it.
    owner: str = "local"
    idempotency_key: str | None = None
    state: JobState = JobState.QUEUED
    created_at: float = field(default_factory=time.time)
    started_at: float | None = None
    submitted_at: float | None = None
    finished_at: float | None = None
    #: The provider running the job, and what it keeps about it (opaque, journaled).
    provider: str = ""
    provider_state: dict[str, Any] = field(default_factory=dict)
    #: Where the finished images are upstream (for the provider's ``fetch``), kept so
    #: that a restart during the download fetches them again instead of regenerating.
    outputs: list[str] = field(default_factory=list)
    images: list[JobImage] = field(default_factory=list)
    error: ArtingError | None = None
    #: The result cache: ``hit`` (the images of job ``cached_from``, no upstream job),
    #: ``miss`` (looked up, not found) or ``bypass`` (not looked up: a random seed, the
    #: client opted out, or the cache is off).
    cache: str = "bypass"
    cached_from: str | None = None
    #: Where the job's own webhook goes (besides the configured ``webhook_urls``), and
    #: the base URL of the request that made it (for the links in what is sent later).
    webhook_url: str | None = None
    origin: str | None = None
    #: What became of each webhook delivery (``webhooks.py``): id, target, state, ...
    webhooks: list[dict[str, Any]] = field(default_factory=list)
    #: Progress the provider reported (0..1), if it knows better than the clock.
    reported_progress: float | None = field(default=None, repr=False)
    #: The highest progress the clock's estimate has shown (it never goes back).
    _progress_shown: float = field(default=0.0, repr=False)
    _changed: asyncio.Event = field(default_factory=asyncio.Event, repr=False)
    #: Set when the job ended, or when this daemon stopped before it did: whoever waits
    #: for the job wakes either way, in one turn of the event loop.
    _settled: asyncio.Event = field(default_factory=asyncio.Event, repr=False)
    #: Images stored for the job while it downloads (before ``images`` is set).
    _held: set[str] = field(default_factory=set, repr=False)
    #: The generation's JSON form, made once: it is frozen, and every record carries it.
    _generation: dict[str, Any] | None = field(default=None, repr=False)

    def record(self) -> dict[str, Any]:
        """The journal's JSON form."""
        if self._generation is None:
            self._generation = self.generation.model_dump(mode="json")
        return {
            "id": self.id, "generation": self._generation,
            "source": self.source, "owner": self.owner,
            "idempotency_key": self.idempotency_key,
            "state": self.state.value, "created_at": self.created_at,
            "started_at": self.started_at, "submitted_at": self.submitted_at,
            "finished_at": self.finished_at, "provider": self.provider,
            "provider_state": self.provider_state, "outputs": self.outputs,
            "images": [vars(i) for i in self.images],
            "error": self.error.to_dict() if self.error else None,
            "cache": self.cache, "cached_from": self.cached_from,
            "webhook_url": self.webhook_url, "origin": self.origin,
            "webhooks": self.webhooks,
        }

    @classmethod
    def from_record(cls, rec: dict[str, Any]) -> Job:
        """A job from its journal record; raises (KeyError, ValueError, TypeError) when the
        record does not describe one."""
        job = cls(id=str(rec["id"]), generation=job_request(rec["generation"]),
                  source=rec.get("source", "api"), owner=rec.get("owner") or "local",
                  idempotency_key=rec.get("idempotency_key"),
                  state=JobState(rec["state"]), created_at=float(rec["created_at"]),
                  started_at=rec.get("started_at"), submitted_at=rec.get("submitted_at"),
                  finished_at=rec.get("finished_at"), provider=rec.get("provider", ""),
                  provider_state=dict(rec.get("provider_state") or {}),
                  outputs=[str(u) for u in rec.get("outputs") or []],
                  images=[JobImage(**i) for i in rec.get("images") or []],
                  error=error_from_dict(rec["error"]) if rec.get("error") else None,
                  cache=str(rec.get("cache") or "bypass"), cached_from=rec.get("cached_from"),
                  webhook_url=rec.get("webhook_url"), origin=rec.get("origin"),
                  webhooks=[dict(w) for w in rec.get("webhooks") or []])
        if job.state.terminal:
            job._settled.set()
        return job


def raise_for_job(job: Job) -> Job:
    """The job if it succeeded, else its error."""
    if job.state is JobState.SUCCEEDED:
        return job
    if job.error is not None:
        raise job.error
    raise Cancelled("The job was cancelled.")


def shutting_down() -> Unavailable:
    """What a caller waiting for a job is told when this daemon stops first."""
    return Unavailable("This daemon is shutting down; send the request again (with "
                       "several replicas, another one takes it).", retry_after=2)
