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

import json
from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from .. import __version__, catalog
from ..auth import generates, principal, public
from ..engine.jobs import Job, JobState
from ..engine.runner import Runner
from ..errors import ArtingError, InvalidRequest, NotFound
from ..generation import Generation, Lora, build_generation
from ..providers.router import FALLBACKS
from ..state import (CATALOG, ENGINE, KEYS, PROVIDER, RETENTION, RULES, SETTINGS, STORE,
                     WEBHOOKS, WS_CLIENTS)
from ..store import ImageStore
from ..upscaling import SCALES, Upscale, build_upscale, check_request
from .http import (base_url, cache_headers, event_stream, follow, image_link, may_reuse,
                   parse_model, read_json)
from .intake import offers, require_img2img, take_init_image, take_source

TICK = 1.0


class JobRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

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
    #: False: never answer from the result cache (as ``Cache-Control: no-cache``)
    cache: bool = True
    #: Where to POST the job when it ends (signed; see webhooks.py)
    webhook_url: str | None = None


class UpscaleRequest(BaseModel):
    """Upscale pictures 2× or 4×: each one the hash of a stored image (a result), or the
    image itself as base64 or a data URL."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["upscale"]
    images: list[str] = []
    image: str | None = None
    scale: int = 2
    #: Where to POST the job when it ends (signed; see webhooks.py)
    webhook_url: str | None = None


def job_view(request: web.Request, engine: Runner, job: Job) -> dict[str, Any]:
    """What clients see of a job."""
    return job_dict(base_url(request), request.config_dict[STORE], engine, job)


def job_dict(base: str, store: ImageStore, engine: Runner, job: Job) -> dict[str, Any]:
    """A job as clients see it, its links under ``base`` (``provider``: where it is
    made; ``fallbacks``: the providers it left, and why). Images removed from a bounded
    store are ``expired``."""
    progress, eta = engine.progress(job)
    images = [{"hash": i.hash, "url": image_link(base, i.hash), "seed": i.seed,
               "width": i.width, "height": i.height, "expired": not store.exists(i.hash)}
              for i in job.images]
    return {
        "id": job.id,
        "state": job.state.value,
        "source": job.source,
        "provider": job.provider,
        "fallbacks": job.provider_state.get(FALLBACKS, []),
        "created_at": job.created_at,
        "started_at": job.started_at,
        "finished_at": job.finished_at,
        "progress": round(progress, 4),
        "eta_seconds": None if eta is None else round(eta, 1),
        "queue_position": engine.queue_position(job),
        "kind": job.generation.kind,
        "request": job.generation.model_dump(mode="json"),
        "images": images,
        "images_expired": any(i["expired"] for i in images),
        "error": job.error.to_dict() if job.error else None,
        "cache": job.cache,
        "cached_from": job.cached_from,
        "webhooks": job.webhooks,
        "links": {"self": f"{base}/arting/v1/jobs/{job.id}",
                  "events": f"{base}/arting/v1/jobs/{job.id}/events"},
    }


@generates
async def create_job(request: web.Request) -> web.Response:
    key = request.headers.get("Idempotency-Key") or None
    job, new = await submit_job(request, await read_json(request), key)
    view = job_view(request, request.config_dict[ENGINE], job)
    if not new:
        return web.json_response(view, status=200, headers=cache_headers(job))
    return web.json_response(view, status=202, headers={"Location": view["links"]["self"],
                                                        **cache_headers(job)})


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


async def get_job(request: web.Request) -> web.Response:
    engine, job = request.config_dict[ENGINE], await _job(request)
    await request.config_dict[WEBHOOKS].refresh([job])
    return web.json_response(job_view(request, engine, job))


async def cancel_job(request: web.Request) -> web.Response:
    engine = request.config_dict[ENGINE]
    job = await _job(request)
    engine.cancel(job)
    await engine.wait(job, timeout=5)
    return web.json_response(job_view(request, engine, job))


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
                data = json.dumps(job_view(request, engine, current))
                await resp.write(f"event: job\ndata: {data}\n\n".encode())
        except ArtingError as err:     # this daemon stops: the client reconnects elsewhere
            await resp.write(f"event: error\ndata: {json.dumps(err.to_dict())}\n\n".encode())
        await resp.write_eof()
    except ConnectionResetError:
        pass  # the watcher left; the job goes on
    return resp


async def list_jobs(request: web.Request) -> web.Response:
    engine = request.config_dict[ENGINE]
    try:
        limit = min(100, max(1, int(request.query.get("limit", "20"))))
        before = float(request.query["before"]) if "before" in request.query else None
    except ValueError:
        raise InvalidRequest("limit must be an integer and before a timestamp.") from None
    state = request.query.get("state")
    if state is not None and state not in {s.value for s in JobState}:
        raise InvalidRequest(f"state must be one of {', '.join(s.value for s in JobState)}.",
                             param="state")
    caller = principal(request)
    jobs = await engine.recent(limit, before, state, owner=None if caller.admin else caller.id)
    await request.config_dict[WEBHOOKS].refresh(jobs)
    return web.json_response({
        "object": "list",
        "data": [job_view(request, engine, j) for j in jobs],
        "next_before": jobs[-1].created_at if len(jobs) == limit else None,
    })


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


async def last_outcomes(engine: Runner) -> dict[str, Any]:
    """When a job last succeeded and last failed (from the journal, so restarts keep it):
    the only evidence of whether Arting is reachable that costs Arting nothing."""
    succeeded = await engine.last_upstream(JobState.SUCCEEDED)
    failure = await engine.last_upstream(JobState.FAILED)
    return {
        "succeeded_at": succeeded.finished_at if succeeded else None,
        "failed_at": failure.finished_at if failure else None,
        "failure": failure.error.to_dict() if failure and failure.error else None,
    }


async def status(request: web.Request) -> web.Response:
    settings, engine = request.config_dict[SETTINGS], request.config_dict[ENGINE]
    return web.json_response({
        "version": __version__,
        "sandbox": settings.sandbox,
        "upstream": settings.base_url,
        "img2img": offers(request, "img2img"),
        "upscale": offers(request, "upscale"),
        "auth_required": settings.auth_required or request.config_dict[KEYS].in_use,
        "caller": {"id": principal(request).id, "name": principal(request).name,
                   "admin": principal(request).admin},
        **request.config_dict[PROVIDER].health(),
        "queue": {"active": len(engine.active), "queued": engine.queued,
                  "max_active": settings.max_active_jobs,
                  "max_queued": settings.max_queued_jobs},
        "jobs": dict(engine.counters),
        "last_outcomes": await last_outcomes(engine),
        "store": retention.view() if (retention := request.config_dict[RETENTION]) else None,
        "websocket_clients": len(request.config_dict[WS_CLIENTS]),
    })


@public
async def get_catalog(request: web.Request) -> web.Response:
    settings, models = request.config_dict[SETTINGS], request.config_dict[CATALOG]
    return web.json_response({
        "models": [{"id": k, "name": v, "provider": models.owner(k)}
                   for k, v in models.models.items()],
        "providers": [{"name": p.name, "label": p.label}
                      for p in request.config_dict[PROVIDER].lineup()],
        "default_model": models.default_model,
        "loras": [{"id": k, "name": v} for k, v in models.loras.items()],
        "samplers": list(catalog.SAMPLERS),
        "sizes": list(catalog.SIZE_PRESETS),
        "default_size": settings.default_size,
        "defaults": {"steps": _default("steps"), "guidance": _default("guidance"),
                     "sampler": _default("sampler"), "clip_skip": _default("clip_skip"),
                     "nsfw": settings.default_nsfw},
        "limits": {"max_images": settings.max_images, "min_side": settings.min_side,
                   "max_side": settings.max_side, "max_pixels": settings.max_pixels,
                   "size_multiple": settings.size_multiple,
                   "max_prompt_chars": settings.max_prompt_chars},
        "img2img": offers(request, "img2img"),
        "upscale": offers(request, "upscale"),
        "upscale_scales": list(SCALES),
    })


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
