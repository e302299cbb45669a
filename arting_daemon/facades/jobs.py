"""The daemon's own job API under ``/arting/v1``, for the plugins and the web page.

* ``POST /jobs`` — submit a generation, or with ``"kind": "upscale"`` an upscale of images
  (``Idempotency-Key`` makes a retried submit return the same job)
* ``GET /jobs`` — recent jobs, newest first, paged with ``before``
* ``GET /jobs/{id}`` — state, progress, ETA, queue position, images, error
* ``GET /jobs/{id}/events`` — the same as server-sent events until the job ends
* ``DELETE /jobs/{id}`` — cancel
* ``GET /images/{hash}.png`` — a stored image (public: the hash is the capability)
* ``GET /status`` and ``GET /catalog`` — the daemon's state (each provider's health
  with ``[[providers]]``), and what it offers (each model with its provider)

Errors use OpenAI's envelope, ``{"error": {"message", "type", "param", "code"}}``.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from .. import __version__, catalog
from ..auth import generates, principal, public
from ..engine.jobs import Job, JobState
from ..engine.runner import Runner
from ..errors import ArtingError, InvalidRequest, NotFound
from ..generation import Generation, Lora, build_generation
from ..openapi import Answer as Doc, Events, operation
from ..provider_config import Kind
from ..providers.router import FALLBACKS
from ..state import (CATALOG, ENGINE, KEYS, PROVIDER, RETENTION, RULES, SETTINGS, STORE,
                     WEBHOOKS, WS_CLIENTS)
from ..store import ImageStore
from ..upscaling import SCALES, Upscale, build_upscale, check_request
from .http import (CACHE_ANSWER, CACHE_REQUEST, Answer, Sparse, base_url, cache_headers,
                   event_stream, follow, image_link, may_reuse, parse_model, parse_query,
                   read_json, reply)
from .intake import offers, require_img2img, take_init_image, take_source
from .ops import TokenView

TICK = 1.0


WEBHOOK_URL = ("Where to POST the job when it ends, signed as Standard Webhooks do "
               "(needs `webhook_secret`; see webhooks.py).")


class JobRequest(BaseModel):
    """Generate ``n`` images; every field but ``prompt`` has a default (``GET /catalog``
    says which)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"prompt": "a lighthouse at dawn, watercolour", "model": "oneFORALLAnime",
         "size": "512x768", "n": 2, "seed": 42, "loras": [{"id": "add_detail", "weight": 0.6}]}]})

    kind: Literal["generate"] = "generate"
    prompt: str
    negative_prompt: str = ""
    model: str | None = None
    width: int | None = Field(None, ge=1)
    height: int | None = Field(None, ge=1)
    size: str | None = None
    n: int = 1
    seed: int = -1
    steps: int | None = None
    guidance: float | None = None
    sampler: str | None = None
    clip_skip: int | None = None
    loras: list[Lora] = []
    nsfw: bool | None = None
    #: base64 or data URL of an init image (image-to-image)
    init_image: str | None = None
    #: base64 or data URL of a mask: white where the image may change
    mask: str | None = None
    strength: float | None = None
    cache: bool = Field(True, description="false: never answer from the result cache (as "
                                          "`Cache-Control: no-cache`).")
    webhook_url: str | None = Field(None, description=WEBHOOK_URL)


class UpscaleRequest(BaseModel):
    """Upscale pictures 2× or 4×: each one the hash of a stored image (a result), or the
    image itself as base64 or a data URL."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"kind": "upscale", "images": ["<the hash of a result image>"], "scale": 4}]})

    kind: Literal["upscale"]
    images: list[str] = []
    image: str | None = None
    scale: int = 2
    webhook_url: str | None = Field(None, description=WEBHOOK_URL)


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


class JobImage(Answer):
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
    kind: Literal["generate", "upscale"]
    request: Generation | Upscale = Field(description="The request as it runs: every "
                                                      "value resolved (the seed too).")
    images: list[JobImage]
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


class JobsQuery(BaseModel):
    model_config = ConfigDict(extra="ignore")

    limit: int = Field(20, description="How many (1 to 100; others are clamped).")
    before: float | None = Field(None, description="Only jobs made before this time "
                                                   "(`next_before` of the previous page).")
    state: JobState | None = Field(None, description="Only jobs in this state.")


def job_view(request: web.Request, engine: Runner, job: Job) -> JobView:
    """What clients see of a job."""
    return job_dict(base_url(request), request.config_dict[STORE], engine, job)


def job_dict(base: str, store: ImageStore, engine: Runner, job: Job) -> JobView:
    """A job as clients see it, its links under ``base`` (``provider``: where it is
    made; ``fallbacks``: the providers it left, and why). Images removed from a bounded
    store are ``expired``."""
    progress, eta = engine.progress(job)
    images = [JobImage(hash=i.hash, url=image_link(base, i.hash), seed=i.seed, width=i.width,
                       height=i.height, expired=not store.exists(i.hash)) for i in job.images]
    return JobView(
        id=job.id, state=job.state, source=job.source, provider=job.provider,
        fallbacks=job.provider_state.get(FALLBACKS, []), created_at=job.created_at,
        started_at=job.started_at, finished_at=job.finished_at,
        progress=round(progress, 4), eta_seconds=None if eta is None else round(eta, 1),
        queue_position=engine.queue_position(job), kind=job.generation.kind,
        request=job.generation, images=images,
        images_expired=any(i.expired for i in images),
        error=JobError(**job.error.to_dict()) if job.error else None,
        cache=job.cache, cached_from=job.cached_from, webhooks=job.webhooks,
        links=JobLinks(self=f"{base}/arting/v1/jobs/{job.id}",
                       events=f"{base}/arting/v1/jobs/{job.id}/events"))


_JOB_HEADERS = {
    "Idempotency-Key": {"type": "string", "maxLength": 255, "description":
                        "Makes a retried submit return the same job (200) instead of a "
                        "second one; per caller."},
    "X-Arting-Client": {"type": "string", "description":
                        "Who is submitting (a plugin's name), kept as the job's `source`."},
    **CACHE_REQUEST,
}


@operation(
    "Submit a job", "Queue a generation, or with `\"kind\": \"upscale\"` an upscale "
    "of stored images. Answers at once with the job (`202`); follow it by "
    "`GET /jobs/{id}` or its events. With `Idempotency-Key`, a retried submit answers "
    "the job it made before (`200`).",
    body=JobRequest | UpscaleRequest, headers=_JOB_HEADERS,
    answers={202: Doc(JobView, "Queued (a cache hit: already succeeded).",
                      headers={"Location": "The job's URL.", **CACHE_ANSWER}),
             200: Doc(JobView, "The job this `Idempotency-Key` already made.",
                      headers=CACHE_ANSWER)})
@generates
async def create_job(request: web.Request) -> web.Response:
    key = request.headers.get("Idempotency-Key") or None
    job, new = await submit_job(request, await read_json(request), key)
    view = job_view(request, request.config_dict[ENGINE], job)
    if not new:
        return reply(view, headers=cache_headers(job))
    return reply(view, status=202, headers={"Location": view.links.self, **cache_headers(job)})


async def submit_job(request: web.Request, data: Any, key: str | None) -> tuple[Job, bool]:
    """Validate a job request (the body of ``POST /jobs``) and submit it: (the job,
    whether it is new — not when ``key``, an idempotency key, named one already)."""
    engine, owner = request.config_dict[ENGINE], principal(request).id
    if key is not None and len(key) > 255:
        raise InvalidRequest("Idempotency-Key is longer than 255 characters.")
    if key is not None:
        known = await engine.get_by_key(key, owner)
        if known is not None:
            return known, False
    upscaling = isinstance(data, dict) and data.get("kind") == "upscale"
    body = parse_model(UpscaleRequest if upscaling else JobRequest, data)
    if body.webhook_url is not None:
        await request.config_dict[WEBHOOKS].accept(body.webhook_url)
    if isinstance(body, UpscaleRequest):
        job_request, reuse = await _upscale(request, body), False
    else:
        job_request = await _generation(request, body)
        reuse = body.cache and may_reuse(request, body.seed)
    job = await engine.submit(job_request,
                              source=request.headers.get("X-Arting-Client", "api")[:32],
                              owner=owner, idempotency_key=key, reuse=reuse,
                              webhook_url=body.webhook_url, origin=base_url(request))
    return job, True


async def _upscale(request: web.Request, body: UpscaleRequest) -> Upscale:
    request.config_dict[PROVIDER].require("upscale")
    images = body.images + ([body.image] if body.image else [])
    settings = request.config_dict[SETTINGS]
    check_request(len(images), body.scale, settings.max_images)
    sources = [await take_source(request, image, f"images.{i}") for i, image in
               enumerate(images)]
    return build_upscale(sources, body.scale, settings.upscale_version, settings.max_images)


async def _generation(request: web.Request, body: JobRequest) -> Generation:
    if body.mask and not body.init_image:
        raise InvalidRequest("mask needs init_image.", param="mask")
    init = None
    if body.init_image:
        require_img2img(request)
        init = await take_init_image(request, body.init_image, "init_image", mask=body.mask)
        if body.width is None and body.height is None and body.size is None:
            body.width, body.height = init.width, init.height
    return build_generation(
        request.config_dict[RULES], request.config_dict[CATALOG], prompt=body.prompt,
        negative_prompt=body.negative_prompt, model=body.model, size=body.size,
        width=body.width, height=body.height, n=body.n, seed=body.seed, steps=body.steps,
        guidance=body.guidance, sampler=body.sampler, clip_skip=body.clip_skip,
        loras=body.loras, nsfw=body.nsfw, init_image=init and init.hash,
        strength=body.strength, mask=init and init.mask)


async def find_job(request: web.Request, job_id: str) -> Job:
    """The job ``job_id``, if the caller may see it: their own (an admin: any). Another
    user's job is "not found", as if it did not exist. (Every route that names a job
    looks it up here: its path, a WebSocket subscription.)"""
    job = await request.config_dict[ENGINE].get(job_id)
    caller = principal(request)
    if job is None or not (caller.admin or job.owner == caller.id):
        raise NotFound(f"No job {job_id!r}.", param="id")
    return job


async def _job(request: web.Request) -> Job:
    return await find_job(request, request.match_info["id"])


@operation("A job", "State, progress, ETA, queue position, images, error, what the cache "
           "did and its webhook deliveries.", answers={200: JobView})
async def get_job(request: web.Request) -> web.Response:
    engine, job = request.config_dict[ENGINE], await _job(request)
    await request.config_dict[WEBHOOKS].refresh([job])
    return reply(job_view(request, engine, job))


@operation("Cancel a job", "Ends the job (`cancelled`) unless it has ended already; "
           "answers the job as it is then.", answers={200: JobView})
async def cancel_job(request: web.Request) -> web.Response:
    engine = request.config_dict[ENGINE]
    job = await _job(request)
    engine.cancel(job)
    await engine.wait(job, timeout=5)
    return reply(job_view(request, engine, job))


@operation(
    "Follow a job", "Server-sent events: `event: job` with the job (as `GET /jobs/{id}` "
    "answers it) on every change and every second while it runs, ending with its final "
    "state; `event: error` (`{type, code, message}`) if this daemon stops first. "
    "Reconnect to go on.",
    answers={200: Doc(Events({"job": JobView, "error": JobError}), "The event stream.",
                      media="text/event-stream")})
async def job_events(request: web.Request) -> web.StreamResponse:
    """Server-sent events: one ``job`` event per change (and every second while it
    runs, as progress and ETA move), ending with the terminal state."""
    engine = request.config_dict[ENGINE]
    job = await _job(request)
    resp = event_stream()
    try:
        await resp.prepare(request)
        await resp.write(b"retry: 1000\n\n")
        try:
            async for current in follow(request, engine, job, TICK):
                data = job_view(request, engine, current).model_dump_json(by_alias=True)
                await resp.write(f"event: job\ndata: {data}\n\n".encode())
        except ArtingError as err:     # this daemon stops: the client reconnects elsewhere
            data = JobError(**err.to_dict()).model_dump_json()
            await resp.write(f"event: error\ndata: {data}\n\n".encode())
        await resp.write_eof()
    except ConnectionResetError:
        pass  # the watcher left; the job goes on
    return resp


@operation("Recent jobs", "Newest first (a user's own; an admin's: everyone's).",
           query=JobsQuery, answers={200: JobList})
async def list_jobs(request: web.Request) -> web.Response:
    engine = request.config_dict[ENGINE]
    query = parse_query(JobsQuery, request)
    limit = min(100, max(1, query.limit))
    caller = principal(request)
    jobs = await engine.recent(limit, query.before, query.state and query.state.value,
                               owner=None if caller.admin else caller.id)
    await request.config_dict[WEBHOOKS].refresh(jobs)
    return reply(JobList(data=[job_view(request, engine, j) for j in jobs],
                         next_before=jobs[-1].created_at if len(jobs) == limit else None))


@operation("A stored image", "A PNG by its sha256 (a job's `images[].hash`). Public: "
           "its hash is its capability, so chat apps can show it.",
           answers={200: Doc({"type": "string", "contentMediaType": "image/png"}, "The PNG.",
                             media="image/png")}, errors=(404,))
@public
async def get_image(request: web.Request) -> web.StreamResponse:
    digest = request.match_info["hash"]
    store = request.config_dict[STORE]
    if not store.exists(digest):
        raise NotFound("No such image (a store with store_max_gb or store_max_images "
                       "removes the least recently served ones).")
    store.touch(digest)
    return web.FileResponse(store.path(digest), headers={
        "Content-Type": "image/png", "Cache-Control": "public, max-age=31536000, immutable"})


class Caller(Answer):
    """Who is calling: a user key's id and name, ``admin``, or ``local`` (no keys)."""

    id: str
    name: str
    admin: bool


class QueueView(Answer):
    active: int
    queued: int
    max_active: int
    max_queued: int


class LastOutcomes(Answer):
    succeeded_at: float | None
    failed_at: float | None
    failure: JobError | None


class JobCounts(Answer):
    succeeded: int
    failed: int
    cancelled: int


class EndedJobs(JobCounts):
    cached: int = Field(description="Of those, answered from the result cache.")


class StoreView(Answer):
    """The image store, kept under ``store_max_gb`` and ``store_max_images``."""

    images: int
    bytes: int
    max_images: int | None
    max_gb: float | None
    removed: int = Field(description="Images removed to keep it under its caps since "
                                     "this daemon started.")


class ProviderView(Sparse):
    """One provider behind the router, as traffic shows it; Arting's adds ``tokens``,
    the others ``base_url`` and ``credentials``."""

    omitted: ClassVar = frozenset({"tokens", "base_url", "credentials"})

    name: str
    label: str
    kind: Kind
    models: int = Field(description="How many models it offers.")
    prefix: str = Field(description="The prefix of its model ids (may be empty).")
    img2img: bool
    upscale: bool
    free_to_repeat: bool
    max_jobs: int | None = Field(description="Its jobs at once (null: no limit).")
    in_flight: int
    state: Literal["unknown", "ok", "refused", "unreachable", "blocked", "rate-limited",
                   "failing"] = Field(description="What its last exchange said.")
    last_error: str | None
    last_ok: float | None
    last_failure: float | None
    models_read_at: float | None = Field(description="When its catalogue was last read.")
    tokens: list[TokenView] | None = None
    base_url: str | None = None
    credentials: Literal["set", "none"] | None = None


class StatusView(Sparse):
    """The daemon's state, and the providers' health: Arting's ``tokens``, and with
    ``[[providers]]`` each one's (``providers``)."""

    omitted: ClassVar = frozenset({"providers"})

    version: str
    sandbox: bool
    upstream: str
    img2img: bool = Field(description="Whether some provider does image-to-image.")
    upscale: bool = Field(description="Whether some provider upscales.")
    auth_required: bool
    caller: Caller
    tokens: list[TokenView] = Field(description="The `arting` provider's tokens (none "
                                                "without one).")
    providers: list[ProviderView] | None = None
    queue: QueueView
    jobs: EndedJobs = Field(description="Jobs ended since this daemon started.")
    last_outcomes: LastOutcomes
    store: StoreView | None = Field(description="The bounded store (null: unbounded).")
    websocket_clients: int = Field(description="Connections to `/arting/v1/ws`.")


async def last_outcomes(engine: Runner) -> LastOutcomes:
    """When a job last succeeded and last failed (from the journal, so restarts keep it):
    the only evidence of whether Arting is reachable that costs Arting nothing."""
    succeeded = await engine.last_upstream(JobState.SUCCEEDED)
    failure = await engine.last_upstream(JobState.FAILED)
    return LastOutcomes(
        succeeded_at=succeeded.finished_at if succeeded else None,
        failed_at=failure.finished_at if failure else None,
        failure=JobError(**failure.error.to_dict()) if failure and failure.error else None)


def caller_of(request: web.Request) -> Caller:
    who = principal(request)
    return Caller(id=who.id, name=who.name, admin=who.admin)


@operation("The daemon's state", "Version, sandbox or live, features, token pool health "
           "(and with `[[providers]]` each provider's), queue, who is calling, and when a "
           "job last succeeded and failed.",
           answers={200: StatusView})
async def status(request: web.Request) -> web.Response:
    settings, engine = request.config_dict[SETTINGS], request.config_dict[ENGINE]
    retention = request.config_dict[RETENTION]
    return reply(StatusView(
        version=__version__, sandbox=settings.sandbox, upstream=settings.base_url,
        img2img=offers(request, "img2img"), upscale=offers(request, "upscale"),
        auth_required=settings.auth_required or request.config_dict[KEYS].in_use,
        caller=caller_of(request), **request.config_dict[PROVIDER].health(),
        queue=QueueView(active=len(engine.active), queued=engine.queued,
                        max_active=settings.max_active_jobs,
                        max_queued=settings.max_queued_jobs),
        jobs=EndedJobs(**engine.counters), last_outcomes=await last_outcomes(engine),
        store=retention and StoreView(**retention.view()),
        websocket_clients=len(request.config_dict[WS_CLIENTS])))


class Named(Answer):
    id: str
    name: str


class Defaults(Answer):
    """What a job gets for what it leaves out."""

    steps: int
    guidance: float
    sampler: str
    clip_skip: int
    nsfw: bool


class CatalogLimits(Answer):
    max_images: int
    min_side: int
    max_side: int
    max_pixels: int
    size_multiple: int
    max_prompt_chars: int


class ModelView(Named):
    provider: str = Field(description="The provider offering it.")


class ProviderName(Answer):
    name: str = Field(description="As in the settings (`arting` without `[[providers]]`).")
    label: str = Field(description="As messages name it.")


class CatalogView(Answer):
    """What this daemon offers (``img2img``, ``upscale``: whether some provider does)."""

    models: list[ModelView]
    providers: list[ProviderName] = Field(description="In routing order.")
    default_model: str
    loras: list[Named]
    samplers: list[str]
    sizes: list[str]
    default_size: str
    defaults: Defaults
    limits: CatalogLimits
    img2img: bool
    upscale: bool
    upscale_scales: list[int]


@operation("What the daemon offers", "Models (each with its provider), the providers, LoRAs, "
           "samplers, size presets, limits, the defaults, and whether image-to-image and "
           "upscaling are on. Public.",
           answers={200: CatalogView})
@public
async def get_catalog(request: web.Request) -> web.Response:
    settings, models = request.config_dict[SETTINGS], request.config_dict[CATALOG]
    return reply(CatalogView(
        models=[ModelView(id=k, name=v, provider=models.owners[k])
                for k, v in models.models.items()],
        providers=[ProviderName(name=p.name, label=p.label)
                   for p in request.config_dict[PROVIDER].lineup()],
        default_model=models.default_model,
        loras=[Named(id=k, name=v) for k, v in models.loras.items()],
        samplers=list(catalog.SAMPLERS), sizes=list(catalog.SIZE_PRESETS),
        default_size=settings.default_size,
        defaults=Defaults(steps=_default("steps"), guidance=_default("guidance"),
                          sampler=_default("sampler"), clip_skip=_default("clip_skip"),
                          nsfw=settings.default_nsfw),
        limits=CatalogLimits(max_images=settings.max_images, min_side=settings.min_side,
                             max_side=settings.max_side, max_pixels=settings.max_pixels,
                             size_multiple=settings.size_multiple,
                             max_prompt_chars=settings.max_prompt_chars),
        img2img=offers(request, "img2img"), upscale=offers(request, "upscale"),
        upscale_scales=list(SCALES)))


def _default(field: str) -> Any:
    """What ``build_generation`` uses when a request leaves ``field`` out."""
    return Generation.model_fields[field].default


def add_routes(app: web.Application) -> None:
    app.router.add_post("/jobs", create_job)
    app.router.add_get("/jobs", list_jobs)
    app.router.add_get("/jobs/{id}", get_job)
    app.router.add_delete("/jobs/{id}", cancel_job)
    app.router.add_get("/jobs/{id}/events", job_events)
    app.router.add_get("/images/{hash:[0-9a-f]{64}}.png", get_image)
    app.router.add_get("/status", status)
    app.router.add_get("/catalog", get_catalog)
