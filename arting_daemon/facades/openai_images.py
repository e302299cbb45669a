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
from aiohttp.web_request import FileField
from aiohttp.http_exceptions import HttpProcessingError
from pydantic import BaseModel, ConfigDict, Field

from ..auth import generates, principal
from ..engine.jobs import Job, raise_for_job
from ..engine.runner import Runner
from ..errors import ArtingError, InvalidRequest
from ..generation import Generation, build_generation, parse_loras
from ..openapi import Doc, Events, operation
from ..state import CATALOG, ENGINE, RULES
from . import callers, openai_errors
from .http import (CACHE_ANSWER, CACHE_REQUEST, RETRY_REQUEST, Answer, Base64Png, Sparse,
                   StoredB64, base_url, cache_headers, event_stream, follow, image_url, may_reuse,
                   parse_model, read_json, render_json, reply_with_images, too_large)
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
    """OpenAI's fields (those Arting has no use for are accepted and ignored) and
    Arting's extras; unknown fields are ignored."""

    model_config = ConfigDict(json_schema_extra={"examples": [
        {"prompt": "a red fox in snow", "model": "dall-e-3", "size": "512x768",
         "response_format": "url", "seed": 42, "negative_prompt": "blurry"}]})

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


class ImageData(Sparse):
    url: str | None = Field(None, description="With `response_format=url`: the image in "
                                              "the daemon's store.")
    b64_json: Base64Png | None = None
    revised_prompt: str


class ImagesResponse(Answer):
    created: int
    data: list[ImageData]


class TokenDetails(Answer):
    image_tokens: int
    text_tokens: int


class ImageUsage(Answer):
    input_tokens: int
    output_tokens: int
    total_tokens: int
    input_tokens_details: TokenDetails


class ImageEvent(Answer):
    """One image of a streamed answer (``stream: true``): no partial images."""

    type: Literal["image_generation.completed", "image_edit.completed"]
    b64_json: Base64Png
    created_at: int
    size: str
    quality: Literal["auto"] = "auto"
    background: Literal["auto"] = "auto"
    output_format: Literal["png"] = "png"
    usage: ImageUsage


#: What ``stream: true`` answers with, beside JSON.
EVENTS = {"text/event-stream": Events({"image_generation.completed": ImageEvent,
                                       "image_edit.completed": ImageEvent,
                                       "error": openai_errors.ErrorBody})}


@operation("Generate images", "OpenAI's Images API; Arting's extras as extra fields. "
           "Answers when the images are made (or, with `stream: true`, as events).",
           body=ImagesRequest, headers={**CACHE_REQUEST, **RETRY_REQUEST},
           answers={200: Doc(ImagesResponse, "The images.", alternatives=EVENTS,
                             headers=CACHE_ANSWER)})
@generates
async def generations(request: web.Request) -> web.StreamResponse:
    body = parse_model(ImagesRequest, await read_json(request))
    gen = _build(request, body)
    return await _respond(request, body, gen, "image_generation")


@operation("Edit an image", "Image-to-image, multipart as the OpenAI SDK sends it: "
           "`image` (or `image[]`; the first is used), an optional `mask` (transparent = "
           "edit), and the fields of `generations` as text parts. Needs `img2img = true`.",
           form=ImagesRequest, files=("image", "mask"), headers={**CACHE_REQUEST, **RETRY_REQUEST},
           answers={200: Doc(ImagesResponse, "The images.", alternatives=EVENTS,
                             headers=CACHE_ANSWER)})
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
        elif isinstance(value, FileField):
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
    job = await callers.run(request, gen, source="openai", owner=owner, reuse=reuse,
                            origin=base_url(request))
    return await answer(request, job, body.wants_b64())


async def answer(request: web.Request, job: Job, b64: bool) -> web.Response:
    """The OpenAI answer for a finished job: image links, or the images themselves."""
    gen = job.generation
    assert isinstance(gen, Generation)          # what this protocol makes
    data = [ImageData(revised_prompt=gen.prompt, b64_json=StoredB64(image.hash))
            if b64 else
            ImageData(revised_prompt=gen.prompt, url=image_url(request, image.hash))
            for image in job.images]
    return await reply_with_images(
        request, ImagesResponse(created=int(job.created_at), data=data),
        headers=cache_headers(job))


async def _stream(request: web.Request, engine: Runner, job: Job,
                  event_prefix: str) -> web.StreamResponse:
    """OpenAI's image streaming: no partial images, one ``completed`` event per image,
    with SSE comments while Arting works so no proxy drops the connection."""
    gen = job.generation
    assert isinstance(gen, Generation)          # what this protocol makes
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
        nothing = ImageUsage(input_tokens=0, output_tokens=0, total_tokens=0,
                             input_tokens_details=TokenDetails(image_tokens=0, text_tokens=0))
        for image in job.images:
            event = ImageEvent(type=f"{event_prefix}.completed", b64_json=StoredB64(image.hash),
                               created_at=int(time.time()), size=gen.size, usage=nothing)
            await resp.write(_sse(await render_json(request, event.model_dump()),
                                  f"{event_prefix}.completed"))
    except ArtingError as err:
        await resp.write(_sse(json.dumps(openai_errors.body(err)).encode(), "error"))
    except ConnectionResetError:
        callers.abandon(request, job)  # the client went away
        return resp
    except asyncio.CancelledError:
        callers.abandon(request, job)
        raise
    await resp.write_eof()
    return resp


def _sse(data: bytes, event: str) -> bytes:
    return b"event: %s\ndata: %s\n\n" % (event.encode(), data)


def add_routes(app: web.Application) -> None:
    app.router.add_post("/images/generations", generations)
    app.router.add_post("/images/edits", edits)
