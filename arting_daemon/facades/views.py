"""What clients see of a job (the job API, its events and WebSocket, webhooks), and of
who is calling: the answer models, and how a job becomes one."""

from __future__ import annotations

from typing import Literal

from aiohttp import web
from pydantic import Field

from ..auth import principal
from ..engine.jobs import Job, JobState
from ..engine.runner import Runner
from ..generation import Generation
from ..providers.base import UPSTREAM_QUEUE
from ..providers.router import FALLBACKS
from ..store import ImageStore
from ..state import STORE
from ..upscaling import Upscale
from .http import Answer, Sparse, base_url, image_link


class JobError(Sparse):
    """Why a job failed (or was cancelled): the error's class, its stable ``code``, a
    message for people, and what the error knows besides."""

    type: str
    code: str
    message: str
    param: str | None = None
    retry_after: float | None = None
    #: QuotaExceeded: the limit used up; StageTimeout: the stage; UpstreamRejected:
    #: Arting's own code; CloudflareBlocked: challenge or block.
    limit: str | None = None
    stage: str | None = None
    upstream_code: int | None = None
    kind: str | None = None


class ImageView(Answer):
    hash: str = Field(pattern=r"^[0-9a-f]{64}$", description="sha256 of the PNG")
    url: str = Field(description="Where to download it (public: the hash is the "
                                 "capability).")
    seed: int
    width: int
    height: int
    expired: bool = Field(description="Removed from a bounded store (`store_max_gb`, "
                                      "`store_max_images`): its URL answers 404.")


class JobLinks(Answer):
    self: str
    events: str


class FallbackError(Answer):
    code: str
    message: str


class Fallback(Answer):
    """A move of a job from a provider that failed it to the next in its chain."""

    from_: str = Field(alias="from", description="The provider it left.")
    to: str
    model: str | None = Field(description="The model it asked the next one for (null: "
                                          "that provider's own choice).")
    at: float
    error: FallbackError = Field(description="Why it left.")


class WebhookView(Answer):
    """A webhook delivery of the job, its target shown by origin only (a URL's path may
    hold a token)."""

    id: str = Field(description="The message's `webhook-id`.")
    target: str
    state: Literal["pending", "delivered", "failed"] = Field(
        description="`failed`: given up after `webhook_retry_for`.")
    attempts: int
    last_status: int | None = Field(description="The status of the last answer.")
    last_error: str | None
    delivered_at: float | None


class JobView(Answer):
    """A job as clients see it."""

    id: str
    state: JobState
    source: str = Field(description="Who made it: `api`, `openai`, `chat`, `a1111`, or "
                                    "the `X-Arting-Client` header.")
    provider: str = Field(description="The provider making it (its name in the settings; "
                                      "`arting` without `[[providers]]`).")
    fallbacks: list[Fallback] = Field(description="The providers it left, and why, in "
                                                  "order.")
    created_at: float
    started_at: float | None
    finished_at: float | None
    progress: float = Field(ge=0, le=1)
    eta_seconds: float | None
    queue_position: int | None
    upstream_queue_position: int | None = Field(
        description="While its provider holds it in a queue of its own (a Midjourney "
                    "proxy's code 22), its place there.")
    kind: Literal["generate", "upscale"]
    request: Generation | Upscale = Field(description="The request as it runs: every "
                                                      "value resolved (the seed too).")
    images: list[ImageView]
    images_expired: bool = Field(description="Some of its images were removed from a "
                                             "bounded store.")
    error: JobError | None
    cache: Literal["hit", "miss", "bypass"] = Field(description=(
        "What the result cache did: `hit` (the images of job `cached_from`, no upstream "
        "job), `miss`, or `bypass` (not looked up: a random seed, an opt-out, the cache "
        "off, an upscale)."))
    cached_from: str | None = Field(description="With `hit`: the job whose images these are.")
    webhooks: list[WebhookView] = Field(description="Its webhook deliveries, with "
                                                    "`webhook_url` or `webhook_urls`.")
    links: JobLinks


class JobList(Answer):
    object: Literal["list"] = "list"
    data: list[JobView]
    next_before: float | None = Field(description="Pass as `before` for the next page "
                                                  "(null: no more).")


def job_view(request: web.Request, engine: Runner, job: Job) -> JobView:
    """What clients see of a job."""
    return job_dict(base_url(request), request.config_dict[STORE], engine, job)


def job_dict(base: str, store: ImageStore, engine: Runner, job: Job) -> JobView:
    """A job as clients see it, its links under ``base`` (``provider``: where it is
    made; ``fallbacks``: the providers it left, and why). Images removed from a bounded
    store are ``expired``."""
    progress, eta = engine.progress(job)
    images = [ImageView(hash=i.hash, url=image_link(base, i.hash), seed=i.seed, width=i.width,
                       height=i.height, expired=not store.exists(i.hash)) for i in job.images]
    return JobView(
        id=job.id, state=job.state, source=job.source, provider=job.provider,
        fallbacks=job.provider_state.get(FALLBACKS, []), created_at=job.created_at,
        started_at=job.started_at, finished_at=job.finished_at,
        progress=round(progress, 4), eta_seconds=None if eta is None else round(eta, 1),
        queue_position=engine.queue_position(job),
        upstream_queue_position=None if job.state.terminal else
        job.provider_state.get(UPSTREAM_QUEUE),
        kind=job.generation.kind,
        request=job.generation, images=images,
        images_expired=any(i.expired for i in images),
        error=JobError(**job.error.to_dict()) if job.error else None,
        cache=job.cache, cached_from=job.cached_from, webhooks=job.webhooks,
        links=JobLinks(self=f"{base}/arting/v1/jobs/{job.id}",
                       events=f"{base}/arting/v1/jobs/{job.id}/events"))


class Caller(Answer):
    """Who is calling: a user key's id and name, ``admin``, or ``local`` (no keys)."""

    id: str
    name: str
    admin: bool


def caller_of(request: web.Request) -> Caller:
    who = principal(request)
    return Caller(id=who.id, name=who.name, admin=who.admin)


class JobCounts(Answer):
    succeeded: int
    failed: int
    cancelled: int
