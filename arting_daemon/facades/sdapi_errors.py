"""Errors in AUTOMATIC1111's shapes, for the ``/sdapi/v1`` routes.

A1111 runs on FastAPI 0.94 with pydantic v1, and clients print what it sends, so:

* a bad request → 422 ``{"detail": [{"loc": ["body", field], "msg", "type"}]}``, with
  pydantic v1's messages and types (``value is not a valid integer``,
  ``type_error.integer``);
* anything else → ``{"error": ClassName, "detail": message, "body": "", "errors": message}``
  with the status of the README's taxonomy table (upstream failures and timeouts are
  500, as A1111 answers any exception);
* no such route → 404 ``{"detail": "Not Found"}``.
"""

from __future__ import annotations

from aiohttp import web
from pydantic import ValidationError

from ..errors import ArtingError, InvalidRequest, Unauthorized

#: pydantic v2 error types → pydantic v1's (message, type), as FastAPI 0.94 reported them.
_V1 = {
    "int_type": ("value is not a valid integer", "type_error.integer"),
    "int_parsing": ("value is not a valid integer", "type_error.integer"),
    "int_from_float": ("value is not a valid integer", "type_error.integer"),
    "float_type": ("value is not a valid float", "type_error.float"),
    "float_parsing": ("value is not a valid float", "type_error.float"),
    "bool_type": ("value could not be parsed to a boolean", "type_error.bool"),
    "bool_parsing": ("value could not be parsed to a boolean", "type_error.bool"),
    "string_type": ("str type expected", "type_error.str"),
    "list_type": ("value is not a valid list", "type_error.list"),
    "dict_type": ("value is not a valid dict", "type_error.dict"),
    "model_type": ("value is not a valid dict", "type_error.dict"),
    "missing": ("field required", "value_error.missing"),
}

#: Internal field names (``Generation``'s) → the A1111 field a client sent.
FIELDS = {"n": "batch_size", "guidance": "cfg_scale", "size": "width", "image": "init_images",
          "strength": "denoising_strength", "loras": "prompt",
          "clip_skip": "override_settings"}


def validation_detail(exc: ValidationError) -> list[dict]:
    out = []
    for err in exc.errors():
        msg, kind = _V1.get(err["type"], (str(err["msg"]).removeprefix("Value error, "),
                                          "value_error"))
        out.append({"loc": ["body", *err["loc"]], "msg": msg, "type": kind})
    return out


def invalid_detail(err: InvalidRequest) -> list[dict]:
    loc = ["body", FIELDS.get(err.param, err.param)] if err.param else ["body"]
    return [{"loc": loc, "msg": err.message, "type": "value_error"}]


def status_of(err: ArtingError) -> int:
    """The A1111 column of the taxonomy: client-side statuses stay (and a retryable 503),
    the rest is 500."""
    return err.status if 400 <= err.status < 500 and err.status != 499 or \
        err.status == 503 else 500


def render(err: ArtingError) -> web.Response:
    if isinstance(err, InvalidRequest):
        return web.json_response({"detail": invalid_detail(err)}, status=422)
    headers = {}
    if isinstance(err, Unauthorized):
        headers["WWW-Authenticate"] = 'Basic realm="arting-2api"'
    if err.retry_after is not None:
        headers["Retry-After"] = err.retry_after_header()
    body = {"error": type(err).__name__, "detail": err.message, "body": "",
            "errors": err.message}
    return web.json_response(body, status=status_of(err), headers=headers)


@web.middleware
async def middleware(request: web.Request, handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ValidationError as exc:
        return web.json_response({"detail": validation_detail(exc)}, status=422)
    except ArtingError as err:
        return render(err)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return web.json_response({"detail": exc.reason}, status=exc.status)
