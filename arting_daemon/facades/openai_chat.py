"""OpenAI Chat Completions as an image generator: ``POST /v1/chat/completions``.

For chat UIs (NextChat, LobeChat, Open WebUI chat): the last user message is the
prompt, ``model`` picks the Arting model exactly as the image API does (every id of
``/v1/models`` works), and the answer is markdown with one image link per image —
links to the daemon's own store, which the browser loads. The non-streamed answer
also carries the images as data URLs in ``message.images`` (OpenRouter's shape, which
LobeChat reads).

Streamed, the wait is narrated: a line when the job is queued, starts, or every
``PROGRESS_EVERY`` seconds with the elapsed time and the ETA, so neither the user nor
a proxy's idle timeout gives up on a long job.
"""

from __future__ import annotations

import re
import time
from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from ..auth import generates, principal
from ..engine.jobs import Job, raise_for_job
from ..engine.runner import Runner
from ..errors import ArtingError, InvalidRequest
from ..generation import Generation, build_generation, prompt_loras
from ..openapi import Answer as Doc, Events, operation
from ..state import CATALOG, ENGINE, RULES
from . import openai_errors
from .http import (CACHE_ANSWER, CACHE_REQUEST, DATA_URL, Answer, DataUrlPng, StoredB64,
                   base_url, cache_headers, event_stream, follow, image_url, may_reuse,
                   parse_model, read_json, render_json, reply_with_images, status_text)
from .intake import InitImage, require_img2img, take_init_image
from .openai_images import ArtingExtras

#: Seconds between progress lines while a job waits or runs (at most 10, see above).
PROGRESS_EVERY = 5.0


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: str
    content: str | list[Any] | None = None


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="ignore")

    include_usage: bool = False


class ChatRequest(ArtingExtras):
    """Chat fields that matter here; the rest (temperature, tools, …) are ignored."""

    model_config = ConfigDict(json_schema_extra={"examples": [
        {"model": "asyncsMIX_v7", "messages": [
            {"role": "user", "content": "a lighthouse at dawn <lora:add_detail:0.6>"}]}]})

    model: str | None = None
    messages: list[ChatMessage]
    stream: bool = False
    stream_options: StreamOptions | None = None
    #: extension field, as on the image API ("512x768", "auto")
    size: str | None = None


def last_user_message(messages: list[ChatMessage]) -> tuple[str, list[str]]:
    """(text, inline image URLs) of the last user message; text parts are joined."""
    for message in reversed(messages):
        if message.role != "user":
            continue
        if isinstance(message.content, str):
            return message.content, []
        texts, images = [], []
        for part in message.content or []:
            if not isinstance(part, dict):
                continue
            if part.get("type") in ("text", "input_text") and isinstance(part.get("text"), str):
                texts.append(part["text"])
            elif part.get("type") == "image_url":
                url = part.get("image_url")
                url = url.get("url") if isinstance(url, dict) else url
                if isinstance(url, str):
                    images.append(url)
        return "\n".join(texts), images
    raise InvalidRequest("messages has no user message: the last user message is the "
                         "image prompt.", param="messages")


async def _generation(request: web.Request, body: ChatRequest) -> Generation:
    models = request.config_dict[CATALOG]
    text, images = last_user_message(body.messages)
    prompt, tagged, _ = prompt_loras(text, models.loras)
    options = body.options()
    options["loras"] = (*options["loras"], *tagged)
    init, size = None, body.size
    if images:  # Arting takes one init image: the first one given is used
        init = await _init_image(request, images[0])
        size = size if size and size != "auto" else init.size
    try:
        return build_generation(request.config_dict[RULES], models, prompt=prompt,
                                model=body.model, size=size, init_image=init and init.hash,
                                **options)
    except InvalidRequest as err:
        if err.param == "prompt":
            err.param = "messages"
        raise


async def _init_image(request: web.Request, url: str) -> InitImage:
    """An image in the user's message makes it image-to-image (when that is on)."""
    require_img2img(request)
    if not url.startswith("data:"):
        raise InvalidRequest("Attach images inline (as data: URLs); this daemon does not "
                             "download images from links.", param="messages")
    return await take_init_image(request, url, "messages")


class ImageUrl(Answer):
    url: DataUrlPng


class ImagePart(Answer):
    type: Literal["image_url"] = "image_url"
    image_url: ImageUrl


class AssistantMessage(Answer):
    role: Literal["assistant"] = "assistant"
    content: str = Field(description="Markdown: a link per image and a caption.")
    refusal: None = None
    images: list[ImagePart] = Field(description="The images as data URLs (OpenRouter's "
                                                "shape).")


class Choice(Answer):
    index: int
    message: AssistantMessage
    logprobs: None = None
    finish_reason: Literal["stop"] = "stop"


class Usage(Answer):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ChatCompletion(Answer):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    system_fingerprint: None = None
    choices: list[Choice]
    usage: Usage


#: With ``stream: true``: chunks in OpenAI's ``chat.completion.chunk`` format (progress
#: lines while the job runs, then the images; the chunks are not modelled here, only
#: their envelope), or its error object, then ``[DONE]``.
EVENTS = {"text/event-stream": Events({"message": dict[str, Any]}, done="[DONE]")}


@operation("An image from a chat", "The last user message is the prompt (an attached "
           "image makes it image-to-image); the answer is markdown with the images.",
           body=ChatRequest, headers=CACHE_REQUEST,
           answers={200: Doc(ChatCompletion, "The answer.", alternatives=EVENTS,
                             headers=CACHE_ANSWER)})
@generates
async def completions(request: web.Request) -> web.StreamResponse:
    body = parse_model(ChatRequest, await read_json(request))
    gen = await _generation(request, body)
    engine, owner = request.config_dict[ENGINE], principal(request).id
    name = body.model or gen.model
    reuse = may_reuse(request, body.seed)
    if body.stream:
        job = await engine.submit(gen, source="chat", owner=owner, reuse=reuse,
                                  origin=base_url(request))
        return await _stream(request, engine, job, body, name)
    job = await engine.run(gen, source="chat", owner=owner, reuse=reuse,
                           origin=base_url(request))
    content = images_markdown(request, job) + f"*{caption(gen)}*\n"
    return await reply_with_images(request, ChatCompletion(
        id=f"chatcmpl-{job.id}", created=int(job.created_at), model=name,
        choices=[Choice(index=0, message=AssistantMessage(content=content,
                                                          images=image_parts(job)))],
        usage=usage(gen.prompt, content)), headers=cache_headers(job))


# --- what the answer says ---------------------------------------------------------------

def caption(gen: Generation) -> str:
    return f"{gen.model} · {gen.width}×{gen.height} · seed {gen.seed}"


def header(gen: Generation) -> str:
    count = f"{gen.n} images" if gen.n > 1 else "an image"
    mode = "Editing your image" if gen.is_img2img else f"Generating {count}"
    return f"{mode}: {caption(gen)}\n\n"


def image_parts(job: Job) -> list[dict[str, Any]]:
    """The images as data URLs, in OpenRouter's ``message.images`` shape (LobeChat)."""
    return [{"type": "image_url", "image_url": {"url": StoredB64(img.hash, prefix=DATA_URL)}}
            for img in job.images]


def images_markdown(request: web.Request, job: Job) -> str:
    alt = re.sub(r"[\[\]()\s]+", " ", job.generation.prompt).strip()[:80] or "image"
    return "".join(f"![{alt}]({image_url(request, img.hash)})\n\n" for img in job.images)


def progress_line(engine: Runner, job: Job, started: float) -> str:
    line = f"- {status_text(engine, job)} · {time.monotonic() - started:.0f} s elapsed"
    _, eta = engine.progress(job)
    if eta is not None and not job.state.terminal:
        line += f" · about {max(1, round(eta))} s left"
    return line + "\n"


def usage(prompt: str, content: str) -> dict[str, int]:
    """A rough count (4 characters a token): clients only record it."""
    prompt_tokens, completion_tokens = max(1, len(prompt) // 4), max(1, len(content) // 4)
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


# --- streaming --------------------------------------------------------------------------

async def _stream(request: web.Request, engine: Runner, job: Job, body: ChatRequest,
                  name: str) -> web.StreamResponse:
    gen = job.generation
    with_usage = bool(body.stream_options and body.stream_options.include_usage)
    base = {"id": f"chatcmpl-{job.id}", "object": "chat.completion.chunk",
            "created": int(job.created_at), "model": name, "system_fingerprint": None}
    written: list[str] = []

    async def write(payload: dict[str, Any]) -> None:
        await resp.write(b"data: " + await render_json(request, payload) + b"\n\n")

    async def send(delta: dict[str, Any], finish: str | None = None) -> None:
        chunk = {**base, "choices": [{"index": 0, "delta": delta, "logprobs": None,
                                      "finish_reason": finish}]}
        if with_usage:
            chunk["usage"] = None
        written.append(delta.get("content") or "")
        await write(chunk)

    resp = event_stream()
    resp.headers.update(cache_headers(job))
    try:
        await resp.prepare(request)
        await send({"role": "assistant", "content": ""})
        await send({"content": header(gen)})
        started, last_line, last_said = time.monotonic(), 0.0, ""
        async for _ in follow(request, engine, job, tick=min(1.0, PROGRESS_EVERY)):
            if job.state.terminal:
                break
            said = status_text(engine, job)
            if said != last_said or time.monotonic() - last_line >= PROGRESS_EVERY:
                await send({"content": progress_line(engine, job, started)})
                last_said, last_line = said, time.monotonic()
        raise_for_job(job)
        await send({"content": f"- done in {time.monotonic() - started:.0f} s\n\n"})
        await send({"content": images_markdown(request, job), "images": image_parts(job)})
        await send({}, "stop")
        if with_usage:
            await write({**base, "choices": [], "usage": usage(gen.prompt, "".join(written))})
        await resp.write(b"data: [DONE]\n\n")
    except ArtingError as err:
        # Said twice: as text for chat UIs that show only content, and as OpenAI's
        # error object, which the SDKs raise.
        await send({"content": f"\n\n**Image generation failed:** {err.message}\n"}, "stop")
        await write(openai_errors.body(err))
    except ConnectionResetError:
        return resp  # the client went away (its job is cancelled below)
    finally:
        engine.cancel(job)  # no-op once it ended; else the client went away
    await resp.write_eof()
    return resp


def add_routes(app: web.Application) -> None:
    app.router.add_post("/chat/completions", completions)
