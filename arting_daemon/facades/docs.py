"""The API's description and its interactive docs: ``GET /openapi.json`` and ``GET /docs``.

``/openapi.json`` is the OpenAPI 3.1 document ``openapi.document`` builds from the router.
``/docs`` is Swagger UI, served from the daemon's own files: its page and initializer are
in ``static/`` (``docs.html``, ``docs.js``), Swagger UI itself comes from the
``flask-swagger-ui`` package's copy of its distribution (only the files are used, not
Flask). Nothing is loaded from elsewhere, so it works offline, under the web page's
strict Content-Security-Policy (no inline script); ``data:`` images are allowed for the
icons in Swagger UI's style sheet. *Try it out* calls this daemon with the key given
under *Authorize*, which Swagger UI keeps in the page's memory only.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from aiohttp import web

from ..auth import public
from ..openapi import Answer, document, operation
from .http import base_url
from .web import PAGE_HEADERS, STATIC


def _swagger_ui() -> Path:
    spec = importlib.util.find_spec("flask_swagger_ui")   # finds it, imports nothing
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("flask-swagger-ui (Swagger UI's files) is not installed; "
                           "reinstall arting-2api.")
    return Path(spec.submodule_search_locations[0]) / "dist"


SWAGGER_UI = _swagger_ui()
#: The files of Swagger UI the page loads, and their types.
FILES = {"swagger-ui-bundle.js": "text/javascript", "swagger-ui.css": "text/css"}
DOCS_HEADERS = {**PAGE_HEADERS, "Content-Security-Policy": PAGE_HEADERS[
    "Content-Security-Policy"].replace("img-src 'self'", "img-src 'self' data:")}
TEXT = {"type": "string"}


@operation("This document", "The OpenAPI 3.1 description of every route, generated from "
           "the models the handlers use. Public.", tag="Web page",
           answers={200: Answer({"type": "object"}, "The OpenAPI document.")})
@public
async def openapi_json(request: web.Request) -> web.Response:
    return web.json_response({**document(request.app), "servers": [{"url": base_url(request)}]})


@operation("Interactive docs", "Swagger UI on this document, served by the daemon itself "
           "(works offline). *Authorize* takes your API key; *Try it out* calls this "
           "daemon.", tag="Web page",
           answers={200: Answer(TEXT, "The page.", media="text/html")})
@public
async def docs_page(request: web.Request) -> web.FileResponse:
    return _file(STATIC / "docs.html", "text/html")


@operation("A file of the docs page", "Swagger UI's script and style sheet.",
           tag="Web page",
           answers={200: Answer(TEXT, "The file.", media="", alternatives=dict.fromkeys(
               sorted(set(FILES.values())), TEXT)),
               404: Answer(TEXT, "No such file.", media="text/plain")})
@public
async def docs_file(request: web.Request) -> web.FileResponse:
    name = request.match_info["name"]
    if name not in FILES:
        raise web.HTTPNotFound(text="No such file.")
    return _file(SWAGGER_UI / name, FILES[name])


def _file(path: Path, content_type: str) -> web.FileResponse:
    resp = web.FileResponse(path, headers=DOCS_HEADERS)
    resp.content_type = content_type
    return resp


def add_routes(app: web.Application) -> None:
    app.router.add_get("/openapi.json", openapi_json)
    app.router.add_get("/docs", docs_page)
    app.router.add_get(r"/docs/{name:[A-Za-z0-9_.-]+}", docs_file)
