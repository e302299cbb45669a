"""OpenAI Images: ``POST /v1/images/generations`` and ``POST /v1/images/edits``.

Accepts every field OpenAI clients send (unknown ones are ignored) plus Arting's own
as extension fields, turns them into one ``Generation``, runs it through the engine,
and answers with ``{"created", "data": [{"url" | "b64_json", "revised_prompt"}]}``.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any, Literal

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from pydantic import BaseModel, ConfigDict

from ..auth import generates, principal
from ..engine.jobs import Job, raise_for_job
from ..engine.runner import Runner
from ..errors import ArtingError, InvalidRequest
from ..generation import Generation, build_generation, parse_loras
from ..state import CATALOG, ENGINE, RULES
from . import openai_errors
from .http import (StoredB64, base_url, cache_headers, event_stream, follow, image_url,
                   json_with_images, may_reuse, parse_model, read_json, render_json,
                   too_large)
from .intake import require_img2img, take_init_image

KEEPALIVE = 10.0


class ArtingExtras(BaseModel):
    """Arting's own knobs, accepted as extension fields by the OpenAI routes."""

    model_config = ConfigDict(extra="ignore")

    negative_prompt: str | None = None
    seed: int | None = None
    steps: int | None = None
    guidance: float | None = None
    cfg_scale: float | None = None
    sampler: str | None = None
    clip_skip: int | None = None
    loras: list[Any] | None = None
    lora_ids: str | None = None
    lora_weight: str | float | None = None
    nsfw: bool | None = None
    is_nsfw: bool | None = None
    strength: float | None = None

    def options(self) -> dict[str, Any]:
        """Keyword arguments for ``build_generation``."""
        return dict(
            negative_prompt=self.negative_prompt, seed=self.seed, steps=self.steps,
            guidance=self.guidance if self.guidance is not None else self.cfg_scale,
            sampler=self.sampler, clip_skip=self.clip_skip,
            loras=parse_loras(self.loras, self.lora_ids, self.lora_weight),
            nsfw=self.nsfw if self.nsfw is not None else self.is_nsfw,
            strength=self.strength)


class ImagesRequest(ArtingExtras):
    prompt: Any = None
    model: str | None = None
    n: int | None = None
    size: str | None = None
    response_format: Literal["url", "b64_json"] | None = None
    stream: bool = False
    # Accepted and ignored: Arting has no equivalent.
    quality: str | None = None
    style: str | None = None
    user: Any = None
    background: str | None = None
    output_format: str | None = None
    output_compression: int | None = None
    moderation: str | None = None
    partial_images: int | None = None
    input_fidelity: str | None = None

    def wants_b64(self) -> bool:
        """gpt-image models always answer base64; dall-e ones default to URLs."""
        if self.response_format:
            return self.response_format == "b64_json"
        return (self.model or "").lower().startswith(("gpt-image", "chatgpt-image"))


@generates
async def generations(request: web.Request) -> web.StreamResponse:
    body = parse_model(ImagesRequest, await read_json(request))
    gen = _build(request, body)
    return await _respond(request, body, gen, "image_generation")


@generates
async def edits(request: web.Request) -> web.StreamResponse:
    require_img2img(request)
    fields, files = await _read_form(request)
    images = [data for key, data in files if key == "image" or key.startswith("image[")]
    if not images:
        raise InvalidRequest("image is required: send the picture to edit as a file part "
                             "named `image` (or `image[]`).", param="image")
    body = parse_model(ImagesRequest, fields)
    # Arting takes a single init image: the first one given is used.
    mask = next((data for key, data in files if key == "mask"), None) or None
    init = await take_init_image(request, images[0], "image", mask=mask, mask_from="alpha")
    size = body.size if body.size and body.size != "auto" else init.size
    gen = _build(request, body, size=size, init_image=init.hash, mask=init.mask)
    return await _respond(request, body, gen, "image_edit")


def _build(request: web.Request, body: ImagesRequest, **extra: Any) -> Generation:
    options = body.options()
    return build_generation(
        request.config_dict[RULES], request.config_dict[CATALOG],
        prompt=body.prompt, model=body.model, n=body.n or 1,
        size=extra.pop("size", body.size), **options, **extra)


async def _read_form(request: web.Request) -> tuple[dict[str, str], list[tuple[str, bytes]]]:
    """Multipart text fields (empty ones dropped, as the SDK sends None as ""), and the
    file parts in order."""
    if not request.content_type.startswith("multipart/"):
        raise InvalidRequest("Send image edits as multipart/form-data.")
    try:
        post = await request.post()
    except web.HTTPRequestEntityTooLarge:
        raise too_large(request) from None
    except (ValueError, HttpProcessingError) as exc:   # no boundary, a broken part header
        reason = getattr(exc, "message", None) or str(exc)
        raise InvalidRequest(f"The multipart body could not be read ({reason}).") from None
    fields, files = {}, []
    for key, value in post.items():
        if isinstance(value, str):
            if value != "":
                fields[key] = value
        else:
            files.append((key, value.file.read()))
    return fields, files


async def _respond(request: web.Request, body: ImagesRequest, gen: Generation,
                   event_prefix: str) -> web.StreamResponse:
    engine, owner = request.config_dict[ENGINE], principal(request).id
    reuse = may_reuse(request, body.seed)
    if body.stream:
        job = await engine.submit(gen, source="openai", owner=owner, reuse=reuse,
                                  origin=base_url(request))
        return await _stream(request, engine, job, event_prefix)
    job = await engine.run(gen, source="openai", owner=owner, reuse=reuse,
                           origin=base_url(request))
    return await answer(request, job, body.wants_b64())


async def answer(request: web.Request, job: Job, b64: bool) -> web.Response:
    """The OpenAI answer for a finished job: image links, or the images themselves."""
    data = []
    for image in job.images:
        item: dict[str, Any] = {"revised_prompt": job.generation.prompt}
        if b64:
            item["b64_json"] = StoredB64(image.hash)
        else:
            item["url"] = image_url(request, image.hash)
        data.append(item)
    return await json_with_images(request, {"created": int(job.created_at), "data": data},
                                  headers=cache_headers(job))


async def _stream(request: web.Request, engine: Runner, job: Job,
                  event_prefix: str) -> web.StreamResponse:
    """OpenAI's image streaming: no partial images, one ``completed`` event per image,
    with SSE comments while Arting works so no proxy drops the connection."""
    gen = job.generation
    resp = event_stream()
    resp.headers.update(cache_headers(job))
    try:
        await resp.prepare(request)
        said = time.monotonic()
        async for _ in follow(request, engine, job, tick=1.0):
            if not job.state.terminal and time.monotonic() - said >= KEEPALIVE:
                await resp.write(b": generating\n\n")
                said = time.monotonic()
        raise_for_job(job)
        for image in job.images:
            event = {"type": f"{event_prefix}.completed",
                     "b64_json": StoredB64(image.hash),
                     "created_at": int(time.time()), "size": gen.size, "quality": "auto",
                     "background": "auto", "output_format": "png",
                     "usage": {"input_tokens": 0, "output_tokens": 0, "total_tokens": 0,
                               "input_tokens_details": {"image_tokens": 0, "text_tokens": 0}}}
            await resp.write(_sse(await render_json(request, event),
                                  f"{event_prefix}.completed"))
    except ArtingError as err:
        await resp.write(_sse(json.dumps(openai_errors.body(err)).encode(), "error"))
    except ConnectionResetError:
        engine.cancel(job)  # the client went away: so does its job
        return resp
    except asyncio.CancelledError:
        engine.cancel(job)
        raise
    await resp.write_eof()
    return resp


def _sse(data: bytes, event: str) -> bytes:
    return b"event: %s\ndata: %s\n\n" % (event.encode(), data)


def add_routes(app: web.Application) -> None:
    app.router.add_post("/images/generations", generations)
    app.router.add_post("/images/edits", edits)
