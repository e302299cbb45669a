"""The daemon's OpenAPI 3.1 document, built from its router and its handlers' own models.

Each handler says what it is next to its code (``@operation``): a summary, and the
pydantic models its body and query are parsed with and its answers are built from, so
the document cannot drift from the code. ``document`` walks the router, sub-applications
included: a route is described as soon as it is served, and a route nobody described
makes ``document`` fail (and the tests with it). Each sub-application says which protocol
it speaks (``API``): its tag, its credentials and its error shapes. What the auth
decorators say (``public``, ``admin``, ``generates``) adds the security and the errors
that follow from it.
"""

from __future__ import annotations

import re
import weakref
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

from aiohttp import web
from pydantic import BaseModel, TypeAdapter

from . import __version__

JSON = "application/json"
#: aiohttp's pattern for a path parameter that names none.
DEFAULT_PARAM = "[^{}/]+"


@dataclass(frozen=True)
class Events:
    """A server-sent event stream: each event's name → the type of the JSON its ``data``
    holds (``message``: events sent without a name). ``done`` is a data line that is not
    JSON and ends the stream (OpenAI's ``[DONE]``). OpenAPI 3.1 has a stream's schema
    describe each event, as ``{event, data}``."""

    kinds: Mapping[str, Any]
    done: str | None = None


@dataclass(frozen=True)
class Doc:
    """One documented answer: ``schema`` (a pydantic model or type, ``None`` being JSON's
    null; ``Events``; or a plain JSON schema) of the ``media`` type (``""``: only the
    ``alternatives``)."""

    schema: Any = None
    description: str = ""
    media: str = JSON
    #: More media types for the same status, each with its schema (as ``schema``).
    alternatives: Mapping[str, Any] = field(default_factory=dict)
    #: Response headers: name → description (always sent).
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Operation:
    """What a handler is, for the document (see ``operation``)."""

    summary: str
    description: str = ""
    body: Any = None
    form: type[BaseModel] | None = None
    files: tuple[str, ...] = ()
    query: type[BaseModel] | None = None
    headers: Mapping[str, dict] = field(default_factory=dict)
    answers: Mapping[int, Any] = field(default_factory=dict)
    errors: tuple[int, ...] = ()
    tag: str | None = None
    messages_in: Any = None
    messages_out: Any = None


def operation(summary: str, description: str = "", **details: Any) -> Callable:
    """Describe a handler: ``body`` (the type its JSON body is parsed into), ``form`` and
    ``files`` (multipart: a model of its text parts, the names of its file parts, the
    first one required), ``query`` (a model of the query string), ``headers`` (request
    headers: name → schema), ``answers`` (status → model, type or ``Doc``), ``errors``
    (more taxonomy statuses it may answer, beyond what its traits imply), ``tag`` (else
    its protocol's); a WebSocket's ``messages_in`` and ``messages_out`` (the types of the
    client's and the server's messages: OpenAPI has no words for them, so they go in
    ``x-websocket``)."""
    details["errors"] = tuple(details.get("errors", ()))
    described = Operation(summary, description, **details)

    def mark(handler):
        handler.operation = described
        return handler
    return mark


@dataclass(frozen=True)
class Api:
    """A protocol: the tag of its routes, the credentials it takes, its error answers."""

    tag: str
    #: Security requirement alternatives of its guarded routes.
    security: tuple[str, ...]
    #: A taxonomy status (400, 404, 502 …) → (the status it is sent with, its answer).
    error: Callable[[int], tuple[int, Doc]]


#: Set on each sub-application: the protocol it speaks.
API = web.AppKey("openapi_api", Api)

SCHEMES = {
    "bearer": {"type": "http", "scheme": "bearer", "description":
               "An API key: `API_MASTER_KEY` (the operator's, an admin key) or a user key "
               "(`sk-arting-…`). Needed when the daemon has keys (`api_keys`, or user "
               "keys); with none the API is open."},
    "basic": {"type": "http", "scheme": "basic", "description":
              "AUTOMATIC1111 clients' credentials: a `basic_auth` pair, or any user name "
              "with an API key as the password."},
}

#: What each tag holds, in the order the docs show them.
TAGS = {
    "OpenAI": "OpenAI's Images, Chat Completions and Models APIs under `/v1`: point an "
              "`openai` SDK (or a chat app) at `/v1`.",
    "AUTOMATIC1111": "AUTOMATIC1111's `/sdapi/v1` API, for Open WebUI, SillyTavern, "
                     "webuiapi and the like. Errors in A1111's shapes.",
    "Job API": "The daemon's own job API (`/arting/v1`, stable and versioned): submit, "
               "follow, download, cancel. What the plugins and the web page use.",
    "Administration": "The operator's: user keys and the Arting tokens' health. Needs an "
                      "admin key.",
    "Operations": "Health, readiness and metrics.",
    "Web page": "The built-in web page and these docs.",
}

WHY = {400: "The request breaks a rule or a limit, the message says which: a size, a picture "
            "past `max_input_pixels` (measured before it is decoded), an upscale past "
            "`max_upscale_pixels`, JSON nested over 32 deep, more than 8 LoRAs.",
       401: "No valid API key.",
       403: "The key may not do this (an admin route, or a model or limit of the key's); "
            "or a page of another origin asked, one `cors_origins` does not list.",
       404: "No such thing (or not the caller's).",
       413: "The body is larger than `max_body_mb`.",
       415: "The body is not JSON (`Content-Type: application/json`; a form where the route "
            "takes one).",
       421: "The `Host` is not a name this daemon answers to (`allowed_hosts`); checked with "
            "no keys or with `basic_auth`.",
       429: "A limit: the queue, the key's quota or Arting's rate limit; see Retry-After.",
       500: "The generation failed (Arting refused, failed or timed out; A1111 answers "
            "those with 500).",
       502: "Arting refused or failed the job, or could not be reached.",
       503: "The daemon cannot serve now (shutting down, or its replicas' shared state is "
            "out of reach); retry.",
       504: "The job or a stage of it timed out."}

#: Errors every route with a trait may answer (taxonomy statuses).
GENERATES = (400, 403, 404, 429, 502, 503, 504)


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    handler: Any
    api: Api | None
    params: dict[str, str]

    @property
    def operation(self) -> Operation | None:
        return getattr(self.handler, "operation", None)


def routes(app: web.Application, api: Api | None = None) -> Iterator[Route]:
    """Every route the application serves, sub-applications included (HEAD, which
    aiohttp adds beside each GET, is left out: it is the GET without a body)."""
    for resource in app.router.resources():
        info = resource.get_info()
        if "app" in info:     # its resources' paths hold its prefix already
            yield from routes(info["app"], info["app"].get(API, api))
            continue
        params = _params(info["pattern"].pattern) if "pattern" in info else {}
        for route in resource:
            if route.method != "HEAD":
                yield Route(route.method, resource.canonical, route.handler, api, params)


def _params(pattern: str) -> dict[str, str]:
    """Path parameter → its regular expression, from aiohttp's compiled pattern."""
    found = re.findall(r"\(\?P<(\w+)>((?:[^()]|\([^()]*\))*)\)", pattern)
    return dict(found)


class Undescribed(LookupError):
    """Routes whose handler has no ``@operation``."""


def document(app: web.Application) -> dict[str, Any]:
    """The OpenAPI document of ``app`` (kept per application: the routes do not change)."""
    cached = _documents.get(app)
    if cached is None:
        cached = _documents[app] = _build(list(routes(app)))
    return cached


_documents: weakref.WeakKeyDictionary[web.Application, dict] = weakref.WeakKeyDictionary()


def _build(served: list[Route]) -> dict[str, Any]:
    missing = [f"{r.method} {r.path}" for r in served if r.operation is None]
    if missing:
        raise Undescribed("Routes without @operation (describe them next to their "
                          f"handler): {', '.join(missing)}")
    schemas = _Schemas()
    paths: dict[str, dict] = {}
    for route in served:
        paths.setdefault(route.path, {})[route.method.lower()] = _operation(route, schemas)
    used = {tag for item in paths.values() for op in item.values() for tag in op["tags"]}
    return {
        "openapi": "3.1.0",
        "info": {"title": "arting-2api", "version": __version__, "description": (
            "Arting.ai's image models behind the protocols your tools speak: OpenAI "
            "(`/v1`), AUTOMATIC1111 (`/sdapi/v1`) and the daemon's own job API "
            "(`/arting/v1`). Use *Authorize* with your API key when the daemon has "
            "keys. [The web page](/)")},
        "tags": [{"name": t, "description": d} for t, d in TAGS.items() if t in used],
        "paths": paths,
        "components": {"schemas": schemas.resolve(), "securitySchemes": SCHEMES},
    }


def _operation(route: Route, schemas: _Schemas) -> dict[str, Any]:
    op = route.operation
    assert op is not None
    public = getattr(route.handler, "public", False)
    admin = getattr(route.handler, "admin", False)
    tag = op.tag or ("Administration" if admin else route.api.tag if route.api else None)
    out: dict[str, Any] = {
        "operationId": re.sub(r"\W+", "_", f"{route.method} {route.path}").strip("_").lower(),
        "summary": op.summary, "tags": [tag] if tag else [],
    }
    if op.description:
        out["description"] = op.description
    parameters = [_path_param(name, route.params.get(name, DEFAULT_PARAM))
                  for name in re.findall(r"{(\w+)}", route.path)]
    if op.query is not None:
        parameters += _query_params(op.query, schemas)
    parameters += [{"name": name, "in": "header", "required": False, "schema": schema}
                   for name, schema in op.headers.items()]
    if parameters:
        out["parameters"] = parameters
    if op.body is not None:
        out["requestBody"] = {"required": True, "content": {
            JSON: {"schema": schemas.ref(op.body, "validation")}}}
    elif op.form is not None:
        out["requestBody"] = {"required": True, "content": {
            "multipart/form-data": {"schema": _form(op, schemas)}}}
    if op.messages_in is not None or op.messages_out is not None:
        out["x-websocket"] = {"client": schemas.ref(op.messages_in, "validation"),
                              "server": schemas.ref(op.messages_out, "serialization")}
    security = route.api.security if route.api else ("bearer", "basic")
    out["security"] = [] if public else [{name: []} for name in security]
    out["responses"] = _responses(route, op, public, admin, schemas)
    return out


def _responses(route: Route, op: Operation, public: bool, admin: bool,
               schemas: _Schemas) -> dict[str, Any]:
    answers = {status: _answer(a, schemas) for status, a in op.answers.items()}
    if route.api is None:
        return {str(s): a for s, a in sorted(answers.items())}
    errors = set(op.errors) | {421}         # facades/origin.py: Host, Origin, body type
    if route.method != "GET" or op.messages_in is not None:
        errors.add(403)
    if route.method != "GET":
        errors.add(415)
    if not public:
        errors |= {401, 503}
    if admin:
        errors.add(403)
    if getattr(route.handler, "generates", False):
        errors.update(GENERATES)
    if op.body is not None or op.form is not None:
        errors |= {400, 413}
    if op.query is not None:
        errors.add(400)
    if "{" in route.path:
        errors.add(404)
    for cause in sorted(errors):
        status, answer = route.api.error(cause)
        described = answers.get(status)
        if described is None:
            answers[status] = _answer(answer, schemas)
        elif WHY.get(cause) and WHY[cause] not in described["description"]:
            described["description"] += " " + WHY[cause]
    return {str(s): a for s, a in sorted(answers.items())}


def error_answer(schema: Any, cause: int) -> Doc:
    """The answer of an error of taxonomy status ``cause``, in a protocol's ``schema``."""
    return Doc(schema, WHY.get(cause, HTTPStatus(cause).phrase))


def _answer(answer: Any, schemas: _Schemas) -> dict[str, Any]:
    if not isinstance(answer, Doc):
        answer = Doc(answer)
    out: dict[str, Any] = {"description": answer.description or "OK"}
    content = {media: {"schema": _schema(schema, schemas)} for media, schema in
               [(answer.media, answer.schema), *answer.alternatives.items()] if media}
    if content:
        out["content"] = content
    if answer.headers:
        out["headers"] = {name: {"description": text, "required": True,
                                 "schema": {"type": "string"}}
                          for name, text in answer.headers.items()}
    return out


def _schema(value: Any, schemas: _Schemas) -> dict[str, Any]:
    if isinstance(value, dict):
        return value
    if isinstance(value, Events):
        return {"anyOf": [_event(name, tp, value.done if name == "message" else None, schemas)
                          for name, tp in value.kinds.items()]}
    return schemas.ref(value, "serialization")


def _event(name: str, tp: Any, done: str | None, schemas: _Schemas) -> dict[str, Any]:
    data: dict[str, Any] = {"type": "string", "contentMediaType": JSON,
                            "contentSchema": schemas.ref(tp, "serialization")}
    if done is not None:
        data = {"anyOf": [data, {"const": done}]}
    return {"type": "object", "required": ["event", "data"],
            "properties": {"event": {"const": name}, "data": data}}


def _path_param(name: str, pattern: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True,
            "schema": {"type": "string", "pattern": f"^{pattern}$"}}


def _query_params(model: type[BaseModel], schemas: _Schemas) -> list[dict[str, Any]]:
    schema = TypeAdapter(model).json_schema(mode="validation", ref_template=_Schemas.TEMPLATE)
    schemas.adopt(schema.pop("$defs", {}))
    required = set(schema.get("required", ()))
    out = []
    for name, prop in schema["properties"].items():
        description = prop.pop("description", None)
        prop.pop("title", None)
        param = {"name": name, "in": "query", "required": name in required, "schema": prop}
        if description:
            param["description"] = description
        out.append(param)
    return out


def _form(op: Operation, schemas: _Schemas) -> dict[str, Any]:
    """A multipart body: the model's fields as text parts, and the file parts."""
    assert op.form is not None
    schema = TypeAdapter(op.form).json_schema(mode="validation", ref_template=_Schemas.TEMPLATE)
    schemas.adopt(schema.pop("$defs", {}))
    files = {name: {"type": "string", "contentMediaType": "image/png",
                    "description": "A picture (PNG, JPEG or WebP)."} for name in op.files}
    return {"type": "object", "properties": {**files, **schema["properties"]},
            "required": [*op.files[:1], *schema.get("required", ())]}


class _Schemas:
    """The component schemas, generated together so a model used by several routes is
    described once (pydantic names a model whose input and output differ ``-Input`` and
    ``-Output``)."""

    TEMPLATE = "#/components/schemas/{model}"

    def __init__(self) -> None:
        self._wanted: list[tuple[tuple[int, str], str, TypeAdapter]] = []
        self._refs: list[tuple[dict, tuple[int, str]]] = []
        self._adopted: dict[str, Any] = {}

    def ref(self, tp: Any, mode: str) -> dict[str, Any]:
        """A placeholder for ``tp``'s schema, filled in by ``resolve``."""
        key = (id(tp), mode)
        if not any(k == key for k, _, _ in self._wanted):
            self._wanted.append((key, mode, TypeAdapter(tp)))
        placeholder: dict[str, Any] = {}
        self._refs.append((placeholder, key))
        return placeholder

    def adopt(self, definitions: dict[str, Any]) -> None:
        self._adopted.update(definitions)

    def resolve(self) -> dict[str, Any]:
        found, definitions = TypeAdapter.json_schemas(
            [(key, mode, adapter) for key, mode, adapter in self._wanted],  # type: ignore[misc]
            ref_template=self.TEMPLATE)
        for placeholder, key in self._refs:
            placeholder.update(found[(key, key[1])])  # type: ignore[index]
        return dict(sorted({**self._adopted, **definitions.get("$defs", {})}.items()))
