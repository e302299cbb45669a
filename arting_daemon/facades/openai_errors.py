"""Errors in OpenAI's shape: ``{"error": {"message", "type", "param", "code"}}``.

Used by the OpenAI routes and by the native job API, which shares the envelope.
Retry hints follow what the openai SDK reads: ``Retry-After`` / ``retry-after-ms``
when waiting helps, ``x-should-retry: false`` when repeating cannot help.
"""

from __future__ import annotations

import json

from aiohttp import web
from pydantic import BaseModel, ConfigDict

from ..errors import ArtingError, NotFound, PayloadTooLarge
from ..openapi import Doc, Api, error_answer


class ErrorDetail(BaseModel):
    model_config = ConfigDict(extra="forbid")

    message: str
    type: str
    param: str | None
    code: str | None


class ErrorBody(BaseModel):
    """OpenAI's error envelope."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"error": {
        "message": "n: Input should be a valid integer.", "type": "invalid_request_error",
        "param": "n", "code": "invalid_request"}}]})

    error: ErrorDetail


def _error(cause: int) -> tuple[int, Doc]:
    return cause, error_answer(ErrorBody, cause)


#: The OpenAI routes, and the job API (which shares the envelope).
OPENAI = Api("OpenAI", ("bearer",), _error)
NATIVE = Api("Job API", ("bearer",), _error)


def error_type(err: ArtingError) -> str:
    if err.status == 429:
        return "requests"
    if err.status == 403:
        return "permission_error"
    if err.status >= 500:
        return "server_error"
    return "invalid_request_error"


def detail(err: ArtingError) -> ErrorDetail:
    """What the envelope holds (a WebSocket's ``error`` events carry it too)."""
    return ErrorDetail(message=err.message, type=error_type(err), param=err.param,
                       code=err.code)


def body(err: ArtingError) -> dict:
    """The error object, as answers and streams (SSE ``error`` events) carry it."""
    return ErrorBody(error=detail(err)).model_dump()


def render(err: ArtingError) -> web.Response:
    headers: dict[str, str] = {}
    if err.retry_after is not None and (after := err.retry_after_header()) is not None:
        headers["Retry-After"] = after
        headers["retry-after-ms"] = str(int(err.retry_after * 1000))
    if err.status >= 408 and not err.retryable:
        headers["x-should-retry"] = "false"
    return web.json_response(body(err), status=err.status, headers=headers,
                             dumps=lambda o: json.dumps(o, ensure_ascii=False))


def from_http(exc: web.HTTPException, request: web.Request) -> ArtingError:
    """aiohttp's own refusals (no route, wrong method, body too big) as our errors."""
    if exc.status == 413:
        return PayloadTooLarge("The request body is too large (max_body_mb).")
    if exc.status == 404:
        return NotFound(f"Unknown route: {request.method} {request.path}")
    err = ArtingError(f"{exc.reason}: {request.method} {request.path}")
    err.status, err.code = exc.status, exc.reason.lower().replace(" ", "_")
    return err


@web.middleware
async def middleware(request: web.Request, handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ArtingError as err:
        return render(err)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return render(from_http(exc, request))
