"""Errors in AUTOMATIC1111's shapes, for the ``/sdapi/v1`` routes.

A1111 runs on FastAPI 0.94 with pydantic v1, and clients print what it sends, so:

* a bad request → 422 ``{"detail": [{"loc": ["body", field], "msg", "type"}]}``, with
  pydantic v1's messages and types (``value is not a valid integer``,
  ``type_error.integer``); an unknown script → 422 as A1111's ``HTTPException``
  (``{"error": "HTTPException", "detail": "Script 'x' not found", "body": "",
  "errors": ""}``);
* anything else → ``{"error": ClassName, "detail": message, "body": "", "errors": message}``
  with the status of the error table in docs/api/index.md (upstream failures and timeouts are
  500, as A1111 answers any exception);
* no such route → 404 ``{"detail": "Not Found"}``.
"""

from __future__ import annotations

from aiohttp import web
from pydantic import BaseModel, ConfigDict, ValidationError

from ..errors import ArtingError, InvalidRequest, Unauthorized
from ..openapi import Doc, Api, error_answer


class ValidationItem(BaseModel):
    model_config = ConfigDict(extra="forbid")

    loc: list[str | int]
    msg: str
    type: str


class ValidationErrors(BaseModel):
    """A bad request, as FastAPI 0.94 (pydantic v1) reports it."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"detail": [{
        "loc": ["body", "steps"], "msg": "value is not a valid integer",
        "type": "type_error.integer"}]}]})

    detail: list[ValidationItem]


class A1111Error(BaseModel):
    """Any other failure, as A1111 answers an exception."""

    model_config = ConfigDict(extra="forbid")

    error: str
    detail: str
    body: str
    errors: str

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


def status_of(status: int) -> int:
    """The A1111 column of the taxonomy: client-side statuses stay (and a retryable 503),
    the rest is 500."""
    return status if 400 <= status < 500 and status != 499 or status == 503 else 500


def _error(cause: int) -> tuple[int, Doc]:
    if cause == 400:
        return 422, Doc(ValidationErrors | A1111Error, "A bad request: a field of the "
                        "wrong type, or breaking a rule or a limit (a list in `detail`); "
                        "a script this daemon does not run (`detail`: `Script '…' not "
                        "found`).")
    return status_of(cause), error_answer(A1111Error, cause)


#: The ``/sdapi/v1`` routes: A1111's errors, Bearer or Basic credentials.
A1111_API = Api("AUTOMATIC1111", ("bearer", "basic"), _error)


#: Requests A1111 refuses with FastAPI's ``HTTPException`` (422, its ``detail`` a sentence,
#: not a list): a script it does not have.
HTTP_EXCEPTION_PARAMS = ("script_name", "alwayson_scripts")


def render(err: ArtingError) -> web.Response:
    if isinstance(err, InvalidRequest) and err.param in HTTP_EXCEPTION_PARAMS:
        body = A1111Error(error="HTTPException", detail=err.message, body="", errors="")
        return web.json_response(body.model_dump(), status=422)
    if isinstance(err, InvalidRequest):
        return web.json_response(
            ValidationErrors(detail=invalid_detail(err)).model_dump(), status=422)
    headers: dict[str, str] = {}
    if isinstance(err, Unauthorized):
        headers["WWW-Authenticate"] = 'Basic realm="arting-2api"'
    if (after := err.retry_after_header()) is not None:
        headers["Retry-After"] = after
    body = A1111Error(error=type(err).__name__, detail=err.message, body="", errors=err.message)
    return web.json_response(body.model_dump(), status=status_of(err.status), headers=headers)


@web.middleware
async def middleware(request: web.Request, handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ValidationError as exc:
        return web.json_response(
            ValidationErrors(detail=validation_detail(exc)).model_dump(), status=422)
    except ArtingError as err:
        return render(err)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return web.json_response({"detail": exc.reason}, status=exc.status)
