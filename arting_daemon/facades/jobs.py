"""The daemon's own job API under ``/arting/v1``, for the plugins and the web page.

* ``POST /jobs`` — submit a generation, or with ``"kind": "upscale"`` an upscale of images
  (``Idempotency-Key`` makes a retried submit return the same job)
* ``GET /jobs`` — recent jobs, newest first, paged with ``before``
* ``GET /jobs/{id}`` — state, progress, ETA, queue position, images, error
* ``GET /jobs/{id}/events`` — the same as server-sent events until the job ends
* ``DELETE /jobs/{id}`` — cancel
* ``GET /images/{hash}.png`` — a stored image (public: the hash is the capability)

What clients send is in ``job_requests.py``, what they see of a job in ``views.py``; the
daemon's state (``GET /status``) is in ``status.py``, what it offers (``GET /catalog``) in
``catalog_view.py``. Errors use OpenAI's envelope,
``{"error": {"message", "type", "param", "code"}}``.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ..auth import generates, principal, public
from ..engine.jobs import Job
from ..errors import ArtingError, InvalidRequest, NotFound
from ..generation import Generation, build_generation
from ..openapi import Doc, Events, operation
from ..state import CATALOG, ENGINE, FOLLOWERS, PROVIDER, RULES, SETTINGS, STORE, WEBHOOKS
from ..upscaling import JobRequest, Upscale, build_upscale, check_request
from .http import (CACHE_ANSWER, CACHE_REQUEST, base_url, cache_headers, event_stream, follow,
                   may_reuse, parse_model, parse_query, read_json, reply)
from .intake import require_img2img, take_init_image, take_source
from .job_requests import GenerateRequest, JobsQuery, UpscaleRequest
from .views import JobError, JobList, JobView, job_view

TICK = 1.0


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
    body=GenerateRequest | UpscaleRequest, headers=_JOB_HEADERS,
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
    body: GenerateRequest | UpscaleRequest = parse_model(UpscaleRequest, data) if upscaling \
        else parse_model(GenerateRequest, data)
    if body.webhook_url is not None:
        await request.config_dict[WEBHOOKS].accept(body.webhook_url)
    job_request: JobRequest
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
    return build_upscale(sources, body.scale, settings.upscale_version, settings.max_images,
                         settings.max_upscale_pixels)


async def _generation(request: web.Request, body: GenerateRequest) -> Generation:
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
        loras=body.loras, nsfw=body.nsfw, init_image=init.hash if init else None,
        strength=body.strength, mask=init.mask if init else None)


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
    "state; `event: error` (`{type, code, message}`) if this daemon stops first "
    "(reconnect to go on), or the caller's key is revoked or expires (`invalid_api_key`: "
    "its unfinished jobs are cancelled).",
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
            with request.config_dict[FOLLOWERS].following(job):
                async for current in follow(request, engine, job, TICK):
                    data = job_view(request, engine, current).model_dump_json(by_alias=True)
                    await resp.write(f"event: job\ndata: {data}\n\n".encode())
        except ArtingError as err:     # this daemon stops, or the caller's key ended
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


def add_routes(app: web.Application) -> None:
    app.router.add_post("/jobs", create_job)
    app.router.add_get("/jobs", list_jobs)
    app.router.add_get("/jobs/{id}", get_job)
    app.router.add_delete("/jobs/{id}", cancel_job)
    app.router.add_get("/jobs/{id}/events", job_events)
    app.router.add_get("/images/{hash:[0-9a-f]{64}}.png", get_image)
