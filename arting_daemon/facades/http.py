"""Small helpers every facade shares: reading bodies, image links, pydantic errors."""

from __future__ import annotations

import asyncio
import base64
import functools
import json
import secrets
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, TypeVar

from aiohttp import web
from pydantic import (BaseModel, ConfigDict, PlainValidator, TypeAdapter, ValidationError,
                      WithJsonSchema, model_serializer)

from ..auth import principal
from ..errors import InvalidRequest, PayloadTooLarge
from ..state import REVOCATION, SETTINGS, STORE
from ..store import ImageStore

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

    from ..engine.jobs import Job
    from ..engine.runner import Runner

M = TypeVar("M", bound=BaseModel)


#: How deeply a request's JSON may nest: no client's body goes past a few levels, and
#: deeper ones would exhaust the parser's stack (a 500) for nothing.
MAX_DEPTH = 32


async def read_json(request: web.Request) -> Any:
    """The body as JSON, or an ``InvalidRequest`` that says what is wrong with it."""
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise too_large(request) from None
    if not raw.strip():
        raise InvalidRequest("The request body is empty; send a JSON object.")
    return parse_json(raw, "The request body")


def parse_json(raw: str | bytes, what: str) -> Any:
    """JSON text a client sent, nested at most ``MAX_DEPTH`` deep, holding only text."""
    try:
        data = json.loads(raw)
    except RecursionError:
        raise too_deep(what) from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidRequest(f"{what} is not valid JSON ({exc}).") from None
    _check(data, MAX_DEPTH, what)
    return data


def too_deep(what: str) -> InvalidRequest:
    return InvalidRequest(f"{what} nests arrays and objects more than {MAX_DEPTH} deep.")


def _check(value: Any, depth: int, what: str) -> None:
    """Refuse nesting past ``MAX_DEPTH``, and lone UTF-16 surrogates: JSON may escape them
    ("\\ud800"), but no UTF-8 text can hold them, so nothing downstream (Arting, logs,
    answers) could carry them."""
    if isinstance(value, str):
        if not value.isascii():
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                raise InvalidRequest(f"{what} holds a lone surrogate escape (like \\ud800), "
                                     "which is not text.") from None
    elif isinstance(value, dict | list):
        if depth <= 0:
            raise too_deep(what)
        items = value.items() if isinstance(value, dict) else enumerate(value)
        for key, item in items:
            _check(key, depth - 1, what)
            _check(item, depth - 1, what)


def too_large(request: web.Request) -> PayloadTooLarge:
    limit = request.config_dict[SETTINGS].max_body_mb
    return PayloadTooLarge(f"The request body is larger than {limit:g} MiB (max_body_mb).")


def parse_model(model: type[M], data: Any) -> M:
    """Validate ``data`` into ``model``; the first problem becomes an ``InvalidRequest``."""
    if not isinstance(data, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        message, field = describe(exc)
        raise InvalidRequest(message, param=field) from None


def parse_query(model: type[M], request: web.Request) -> M:
    """The query string validated into ``model`` (as ``parse_model`` does a body)."""
    return parse_model(model, dict(request.query))


def describe(exc: ValidationError) -> tuple[str, str | None]:
    """(readable message, offending field) of a pydantic error."""
    err = exc.errors()[0]
    field = ".".join(str(p) for p in err["loc"]) or None
    msg = str(err["msg"]).removeprefix("Value error, ")
    if err["type"] == "missing":
        return f"{field} is required.", field
    if err["type"] == "extra_forbidden":
        return f"Unknown field {field}.", field
    return (f"{field}: {msg}." if field else f"{msg}."), field


def base_url(request: web.Request) -> str:
    """Where clients reach us: ``public_url`` if set, else this request's own origin."""
    configured = request.config_dict[SETTINGS].public_url
    return configured or f"{request.scheme}://{request.host}"


def image_url(request: web.Request, digest: str) -> str:
    return image_link(base_url(request), digest)


def image_link(base: str, digest: str) -> str:
    """A stored image's URL under ``base`` (where the daemon is reached)."""
    return f"{base}/arting/v1/images/{digest}.png"


#: The answer's header saying what the result cache did: ``hit``, ``miss`` or ``bypass``.
CACHE_HEADER = "X-Arting-Cache"
#: For the OpenAPI document: that header, and the request's way to opt out.
CACHE_ANSWER = {CACHE_HEADER: "What the result cache did: `hit` (no upstream job), `miss`, "
                              "or `bypass` (not looked up: a random seed, an opt-out, the "
                              "cache off)."}
CACHE_REQUEST = {"Cache-Control": {"type": "string", "description": (
    "`no-cache` (or `no-store`): never answer from the result cache. Only a request "
    "naming its seed is ever answered from it.")}}


#: A synchronous request's key: sent again with it (after its replica went away, say), it
#: is answered with the job the first one made (``callers.run``).
RETRY_REQUEST = {"Idempotency-Key": {"type": "string", "maxLength": 255, "description": (
    "Sent again with the same key (after a lost connection, or a `503` saying its "
    "replica went away), the request is answered with the job the first one made, not a "
    "second one; per caller.")}}


def may_reuse(request: web.Request, seed: int | None) -> bool:
    """Whether the result cache may answer this request: it named its seed (a random
    one, ``-1`` or none, is never answered from the cache) and did not opt out with
    ``Cache-Control: no-cache`` (or ``no-store``)."""
    if seed is None or seed < 0:
        return False
    directives = {part.split("=", 1)[0].strip().lower()
                  for value in request.headers.getall("Cache-Control", [])
                  for part in value.split(",")}
    return not directives & {"no-cache", "no-store"}


def cache_headers(*jobs: Job) -> dict[str, str]:
    """``X-Arting-Cache`` for an answer made of ``jobs``: ``hit`` when every one came from
    the cache, ``bypass`` when none was looked up, else ``miss``."""
    seen = {job.cache for job in jobs}
    return {CACHE_HEADER: seen.pop() if len(seen) == 1 else "miss"}


def status_text(engine: Runner, job: Job) -> str:
    """What a job is doing, in words for people (chat progress, A1111's ``textinfo``):
    waiting in our queue, generating (Arting's part), fetching the images, or its end."""
    state = job.state.value
    position = engine.queue_position(job) if state == "queued" else None
    if position:
        return f"queued, position {position}"
    return {"queued": "generating", "submitting": "generating", "running": "generating",
            "downloading": "fetching the images"}.get(state, state)


#: What goes before the base64 of a PNG to make it a data URL.
DATA_URL = "data:image/png;base64,"


class StoredB64:
    """Stands in a JSON answer for the base64 of a stored image (see ``render_json``):
    ``prefix`` goes before it (``DATA_URL`` for a data URL), and ``edit``, if given,
    changes the PNG bytes first (A1111's ``parameters`` text chunk). A plain class, not a
    dataclass: dumping an answer model leaves it as it is (a dataclass would become a
    dict)."""

    __slots__ = ("digest", "prefix", "edit")

    def __init__(self, digest: str, prefix: str = "",
                 edit: Callable[[bytes], bytes] | None = None) -> None:
        self.digest, self.prefix, self.edit = digest, prefix, edit


async def render_json(request: web.Request, data: Any) -> bytes:
    """``data`` as JSON, each ``StoredB64`` in it replaced by the base64 of that stored
    image.

    Only the small skeleton goes through ``json.dumps``; the images are read, encoded
    and spliced in off the event loop, each PNG read once, encoded once and copied once
    into the body. (Putting base64 strings in ``data`` would cost two more copies of
    every image and a ``json.dumps`` over megabytes on the event loop.)
    """
    marker = f"\0{secrets.token_hex(8)}\0"     # cannot occur in the request's own text
    images: list[StoredB64] = []

    def stand_in(obj: Any) -> str:
        if isinstance(obj, StoredB64):
            images.append(obj)
            return marker
        raise TypeError(f"{type(obj).__name__} is not JSON serializable")

    body = json.dumps(data, default=stand_in).encode()
    if not images:
        return body
    store = request.config_dict[STORE]
    for image in images:
        store.touch(image.digest)
    return await asyncio.to_thread(_splice, store, body, json.dumps(marker).encode(), images)


async def json_with_images(request: web.Request, data: Any,
                           headers: dict[str, str] | None = None) -> web.Response:
    """A JSON response made by ``render_json``."""
    return web.Response(body=await render_json(request, data), headers=headers,
                        content_type="application/json", charset="utf-8")


def _splice(store: ImageStore, skeleton: bytes, marker: bytes,
            images: list[StoredB64]) -> bytes:
    pieces = skeleton.split(marker)
    out = [pieces[0]]
    for image, rest in zip(images, pieces[1:], strict=True):
        png = store.path(image.digest).read_bytes()
        if image.edit is not None:
            png = image.edit(png)
        out += (b'"', image.prefix.encode("ascii"), base64.b64encode(png), b'"', rest)
    return b"".join(out)


# --- answers --------------------------------------------------------------------------------

class Answer(BaseModel):
    """A JSON answer. Handlers build their answers as these models, and the OpenAPI
    document describes the same models (``openapi.py``); a field the code sends and the
    model lacks fails at once (``extra="forbid"``), so the two cannot drift."""

    model_config = ConfigDict(extra="forbid")


class Sparse(Answer):
    """An answer whose fields that are None are left out (not sent as null): all of them,
    or only those ``omitted`` names."""

    omitted: ClassVar[frozenset[str] | None] = None

    # No return annotation: with one, the document would describe any object instead of
    # the model's fields.
    @model_serializer(mode="wrap")
    def _omit_none(self, handler: Any):
        return {k: v for k, v in handler(self).items()
                if v is not None or (self.omitted is not None and k not in self.omitted)}


def _stored(value: Any) -> StoredB64:
    if not isinstance(value, StoredB64):
        raise ValueError("a stored image (StoredB64) was expected")
    return value


#: A stored PNG sent as base64 (a ``StoredB64``, which ``render_json`` puts in).
Base64Png = Annotated[Any, PlainValidator(_stored), WithJsonSchema({
    "type": "string", "contentEncoding": "base64", "contentMediaType": "image/png",
    "description": "A PNG, base64-encoded (no data: prefix)."})]
#: A stored PNG sent as a ``data:image/png;base64,…`` URL.
DataUrlPng = Annotated[Any, PlainValidator(_stored), WithJsonSchema({
    "type": "string", "pattern": "^data:image/png;base64,",
    "description": "A PNG as a data URL."})]


def reply(answer: Any, status: int = 200, headers: dict[str, str] | None = None, *,
          as_type: Any = None) -> web.Response:
    """``answer`` as JSON: a model, or a value checked against (and built as) ``as_type``,
    the type the OpenAPI document declares (``list[Model]``, ``None`` …)."""
    if as_type is not None:
        adapter = _adapter(as_type)
        answer = adapter.dump_python(adapter.validate_python(answer), mode="json",
                                     by_alias=True)
    elif isinstance(answer, BaseModel):
        answer = answer.model_dump(mode="json", by_alias=True)
    return web.json_response(answer, status=status, headers=headers)


@functools.cache
def _adapter(tp: Any) -> TypeAdapter:
    return TypeAdapter(tp)


async def reply_with_images(request: web.Request, answer: BaseModel,
                            headers: dict[str, str] | None = None) -> web.Response:
    """An answer holding stored images (``Base64Png``, ``DataUrlPng``), made by
    ``render_json``."""
    return await json_with_images(request, answer.model_dump(by_alias=True), headers)


# --- streamed answers -----------------------------------------------------------------------

class ClientGone(ConnectionResetError):
    """The client closed the connection of a streamed answer."""


def event_stream() -> web.StreamResponse:
    """A ``text/event-stream`` response (to prepare): not cached, not buffered by proxies,
    never compressed (chat apps and Open WebUI forward it as it is)."""
    return web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                       "Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


async def follow(request: web.Request, engine: Runner, job: Job,
                 tick: float) -> AsyncIterator[Job]:
    """The job on every change and every ``tick`` seconds, while the client listens.

    A client that hangs up is noticed within a tick (``ClientGone``), not only at the
    next write: aiohttp may hold the hang-up back while the socket still has data to
    send, and a stream may write nothing for several seconds. A caller's key revoked or
    expired meanwhile ends it at once with ``Unauthorized`` (``keys/revocation.py``)."""
    with request.config_dict[REVOCATION].hold(principal(request)) as hold:
        async for current in hold.until(engine.changes(job, tick=tick)):
            transport = request.transport
            if transport is None or transport.is_closing():
                raise ClientGone()
            yield current
