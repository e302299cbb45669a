"""OpenAI Chat Completions as an image generator: ``POST /v1/chat/completions``.

For chat UIs (NextChat, LobeChat, Open WebUI chat): the last user message is the
prompt, ``model`` picks the Arting model exactly as the image API does (every id of
``/v1/models`` works), and the answer is markdown with one image link per image —
links to the daemon's own store, which the browser loads (or, ``inline``, the images
themselves as data URLs, for front ends that block other origins' media).

The images also go as data URLs in OpenRouter's ``images`` extension, but only where
the client reads them, so no front end shows an image twice: a client that asks the
OpenRouter way (``modalities`` with ``image``) gets them there instead of the links;
a non-streamed answer (programs, LobeChat's image generation through a chat model) has
both; a streamed one (what chat UIs use: Open WebUI would save ``delta.images`` as a
second copy) has only the links. The front ends' own background tasks (a title, tags, a
summary …) are answered with text, without a generation (``chat_tasks``).

Streamed, the wait is narrated: a line when the job is queued, starts, or every
``PROGRESS_EVERY`` seconds with the elapsed time and the ETA, so neither the user nor
a proxy's idle timeout gives up on a long job.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import re
import time
import uuid
from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from ..auth import generates, principal
from ..engine.jobs import Job, raise_for_job
from ..engine.runner import Runner
from ..errors import ArtingError, InvalidRequest
from ..generation import Generation, build_generation, prompt_loras
from ..openapi import Doc, Events, operation
from ..state import CATALOG, ENGINE, RULES, SETTINGS, STORE
from . import callers, chat_tasks, openai_errors
from .http import (CACHE_ANSWER, CACHE_REQUEST, DATA_URL, RETRY_REQUEST, Answer, DataUrlPng,
                   Sparse, StoredB64, base_url, cache_headers, event_stream, follow, image_url,
                   may_reuse, parse_model, read_json, render_json, reply, reply_with_images,
                   status_text)
from .intake import InitImage, require_img2img, take_init_image
from .openai_images import ArtingExtras

log = logging.getLogger(__name__)

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
    #: OpenRouter's: ``["image", "text"]`` asks for the images in ``images``
    modalities: list[str] | None = None
    #: extension fields: the size, as on the image API ("512x768", "auto"), and whether
    #: the markdown carries the images inline (``chat_inline_images`` for this request)
    size: str | None = None
    inline_images: bool | None = None

    def images_apart(self) -> bool:
        """Whether the client asked for the images in ``images`` (OpenRouter's
        ``modalities``), and not as markdown links."""
        return "image" in (self.modalities or [])


def text_of(message: ChatMessage) -> str:
    """A message's text: its content, or its text parts joined by newlines."""
    if isinstance(message.content, str):
        return message.content
    return "\n".join(part["text"] for part in message.content or []
                     if isinstance(part, dict) and part.get("type") in ("text", "input_text")
                     and isinstance(part.get("text"), str))


def last_user_message(messages: list[ChatMessage]) -> tuple[str, list[str]]:
    """(text, inline image URLs) of the last user message; text parts are joined."""
    for message in reversed(messages):
        if message.role != "user":
            continue
        images = []
        for part in message.content if isinstance(message.content, list) else []:
            if isinstance(part, dict) and part.get("type") == "image_url":
                url = part.get("image_url")
                url = url.get("url") if isinstance(url, dict) else url
                if isinstance(url, str):
                    images.append(url)
        return text_of(message), images
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
                                model=body.model, size=size,
                                init_image=init.hash if init else None,
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


class AssistantMessage(Sparse):
    omitted = frozenset({"images"})

    role: Literal["assistant"] = "assistant"
    content: str = Field(description="Markdown: a link per image and a caption (only the "
                                     "caption when the images are in `images`); or the "
                                     "text of a front end's own task.")
    refusal: None = None
    images: list[ImagePart] | None = Field(None, description=(
        "The images as data URLs (OpenRouter's shape); absent from a front end's task."))


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
           body=ChatRequest, headers={**CACHE_REQUEST, **RETRY_REQUEST},
           answers={200: Doc(ChatCompletion, "The answer.", alternatives=EVENTS,
                             headers=CACHE_ANSWER)})
@generates
async def completions(request: web.Request) -> web.StreamResponse:
    body = parse_model(ChatRequest, await read_json(request))
    task = chat_tasks.recognise([(m.role, text_of(m)) for m in body.messages])
    if task is not None:
        log.info("chat request: %s's %s task, answered without a generation", task.client,
                 task.kind)
        return await _task_answer(request, body, task.answer)
    gen = await _generation(request, body)
    engine, owner = request.config_dict[ENGINE], principal(request).id
    name = body.model or gen.model
    reuse = may_reuse(request, body.seed)
    if body.stream:
        job = await engine.submit(gen, source="chat", owner=owner, reuse=reuse,
                                  origin=base_url(request))
        return await _stream(request, engine, job, body, name)
    job = await callers.run(request, gen, source="chat", owner=owner, reuse=reuse,
                            origin=base_url(request))
    links = "" if body.images_apart() else await images_markdown(request, job,
                                                                  _inline(request, body))
    content = links + f"*{caption(gen)}*\n"
    return await reply_with_images(request, ChatCompletion(
        id=f"chatcmpl-{job.id}", created=int(job.created_at), model=name,
        choices=[Choice(index=0, message=AssistantMessage(content=content,
                                                          images=image_parts(job)))],
        usage=usage(gen.prompt, content)), headers=cache_headers(job))


async def _task_answer(request: web.Request, body: ChatRequest,
                       text: str) -> web.StreamResponse:
    """A front end's own task, answered with ``text`` (streamed if it asked so)."""
    name = body.model or request.config_dict[CATALOG].default_model
    prompt = text_of(body.messages[-1])
    if body.stream:
        chunks = Chunks(request, f"chatcmpl-{uuid.uuid4().hex}", int(time.time()), name, body)
        await chunks.open()
        await chunks.send({"role": "assistant", "content": ""})
        await chunks.send({"content": text})
        await chunks.finish(prompt)
        return chunks.resp
    return reply(ChatCompletion(
        id=f"chatcmpl-{uuid.uuid4().hex}", created=int(time.time()), model=name,
        choices=[Choice(index=0, message=AssistantMessage(content=text))],
        usage=usage(prompt, text)))


def _inline(request: web.Request, body: ChatRequest) -> bool:
    if body.inline_images is not None:
        return body.inline_images
    return request.config_dict[SETTINGS].chat_inline_images


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


async def images_markdown(request: web.Request, job: Job, inline: bool) -> str:
    """One markdown image per image: a link to the daemon's store, or (``inline``) the
    image itself as a data URL."""
    gen = job.generation
    assert isinstance(gen, Generation)          # what this protocol makes
    alt = re.sub(r"[\[\]()\s]+", " ", gen.prompt).strip()[:80] or "image"
    if inline:
        store = request.config_dict[STORE]
        for img in job.images:
            store.touch(img.hash)

        def data_urls() -> list[str]:
            return [DATA_URL + base64.b64encode(store.path(img.hash).read_bytes()).decode()
                    for img in job.images]
        urls = await asyncio.to_thread(data_urls)
    else:
        urls = [image_url(request, img.hash) for img in job.images]
    return "".join(f"![{alt}]({url})\n\n" for url in urls)


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

class Chunks:
    """A streamed answer: OpenAI's ``chat.completion.chunk`` events, all with one id, then
    ``stop``, the usage chunk when ``stream_options.include_usage`` asks for it, and
    ``[DONE]``."""

    def __init__(self, request: web.Request, id: str, created: int, model: str,
                 body: ChatRequest) -> None:
        self.request = request
        self.with_usage = bool(body.stream_options and body.stream_options.include_usage)
        self.base = {"id": id, "object": "chat.completion.chunk", "created": created,
                     "model": model, "system_fingerprint": None}
        self.resp = event_stream()
        self.written: list[str] = []

    async def open(self) -> None:
        await self.resp.prepare(self.request)

    async def write(self, payload: dict[str, Any]) -> None:
        await self.resp.write(b"data: " + await render_json(self.request, payload) + b"\n\n")

    async def send(self, delta: dict[str, Any], finish: str | None = None) -> None:
        chunk = {**self.base, "choices": [{"index": 0, "delta": delta, "logprobs": None,
                                           "finish_reason": finish}]}
        if self.with_usage:
            chunk["usage"] = None
        self.written.append(delta.get("content") or "")
        await self.write(chunk)

    async def finish(self, prompt: str) -> None:
        await self.send({}, "stop")
        if self.with_usage:
            await self.write({**self.base, "choices": [],
                              "usage": usage(prompt, "".join(self.written))})
        await self.resp.write(b"data: [DONE]\n\n")
        await self.resp.write_eof()


async def _stream(request: web.Request, engine: Runner, job: Job, body: ChatRequest,
                  name: str) -> web.StreamResponse:
    gen = job.generation
    assert isinstance(gen, Generation)          # what this protocol makes
    chunks = Chunks(request, f"chatcmpl-{job.id}", int(job.created_at), name, body)
    chunks.resp.headers.update(cache_headers(job))
    try:
        await chunks.open()
        await chunks.send({"role": "assistant", "content": ""})
        await chunks.send({"content": header(gen)})
        started, last_line, last_said = time.monotonic(), 0.0, ""
        async for _ in follow(request, engine, job, tick=min(1.0, PROGRESS_EVERY)):
            if job.state.terminal:
                break
            said = status_text(engine, job)
            if said != last_said or time.monotonic() - last_line >= PROGRESS_EVERY:
                await chunks.send({"content": progress_line(engine, job, started)})
                last_said, last_line = said, time.monotonic()
        raise_for_job(job)
        await chunks.send({"content": f"- done in {time.monotonic() - started:.0f} s\n\n"})
        if body.images_apart():
            await chunks.send({"content": "", "images": image_parts(job)})
        else:
            await chunks.send({"content": await images_markdown(request, job,
                                                                _inline(request, body))})
        await chunks.finish(gen.prompt)
    except ArtingError as err:
        # Said twice: as text for chat UIs that show only content, and as OpenAI's
        # error object, which the SDKs raise.
        await chunks.send({"content": f"\n\n**Image generation failed:** {err.message}\n"},
                          "stop")
        await chunks.write(openai_errors.body(err))
        await chunks.resp.write_eof()
    except ConnectionResetError:
        pass  # the client went away (its job is abandoned below)
    finally:
        callers.abandon(request, job)  # no-op once it ended; else the client went away
    return chunks.resp


def add_routes(app: web.Application) -> None:
    app.router.add_post("/chat/completions", completions)
