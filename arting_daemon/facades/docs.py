"""The API's description and its interactive docs: ``GET /openapi.json`` and ``GET /docs``.

``/openapi.json`` is the OpenAPI 3.1 document ``openapi.document`` builds from the router.
``/docs`` is Swagger UI, served from the daemon's own files: its page and initializer are
in ``static/`` (``docs.html``, ``docs.js``), Swagger UI's script and style sheet in
``static/swagger-ui/``, fetched from npm when arting-2api was installed (``swagger_ui``).
Nothing is loaded from elsewhere, so it works offline, under the web page's
strict Content-Security-Policy (no inline script); ``data:`` images are allowed for the
icons in Swagger UI's style sheet. *Try it out* calls this daemon with the key given
under *Authorize*, which Swagger UI keeps in the page's memory only.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path

from aiohttp import web

from .. import swagger_ui
from ..auth import public
from ..openapi import Doc, document, operation
from .http import base_url
from .web import PAGE_HEADERS, STATIC


log = logging.getLogger(__name__)
MISSING = ("Swagger UI's files are not installed (they are fetched from npm when "
           "arting-2api is installed): run `python -m arting_daemon.swagger_ui`, or "
           "install arting-2api again.")
#: The files of Swagger UI the page loads, and their types.
FILES = {"swagger-ui-bundle.js": "text/javascript", "swagger-ui.css": "text/css"}
DOCS_HEADERS = {**PAGE_HEADERS, "Content-Security-Policy": PAGE_HEADERS[
    "Content-Security-Policy"].replace("img-src 'self'", "img-src 'self' data:")}
TEXT = {"type": "string"}


@operation("This document", "The OpenAPI 3.1 description of every route, generated from "
           "the models the handlers use. Public.", tag="Web page",
           answers={200: Doc({"type": "object"}, "The OpenAPI document.")})
@public
async def openapi_json(request: web.Request) -> web.Response:
    return web.json_response({**document(request.app), "servers": [{"url": base_url(request)}]})


@operation("Interactive docs", "Swagger UI on this document, served by the daemon itself "
           "(works offline). *Authorize* takes your API key; *Try it out* calls this "
           "daemon.", tag="Web page",
           answers={200: Doc(TEXT, "The page.", media="text/html")})
@public
async def docs_page(request: web.Request) -> web.FileResponse:
    return _file(STATIC / "docs.html", "text/html")


@operation("A file of the docs page", "Swagger UI's script and style sheet.",
           tag="Web page",
           answers={200: Doc(TEXT, "The file.", media="", alternatives=dict.fromkeys(
               sorted(set(FILES.values())), TEXT)),
               404: Doc(TEXT, "No such file.", media="text/plain"),
               503: Doc(TEXT, "Swagger UI's files are not installed.",
                           media="text/plain")})
@public
async def docs_file(request: web.Request) -> web.FileResponse:
    name = request.match_info["name"]
    if name not in FILES:
        raise web.HTTPNotFound(text="No such file.")
    if not _installed():
        raise web.HTTPServiceUnavailable(text=MISSING)
    return _file(swagger_ui.DIRECTORY / name, FILES[name])


@functools.cache
def _installed() -> bool:
    """Looked at once, when the app is made (not on the event loop)."""
    return swagger_ui.installed()


def _file(path: Path, content_type: str) -> web.FileResponse:
    resp = web.FileResponse(path, headers=DOCS_HEADERS)
    resp.content_type = content_type
    return resp


def add_routes(app: web.Application) -> None:
    if not _installed():
        log.warning("/docs will not work: %s", MISSING)
    app.router.add_get("/openapi.json", openapi_json)
    app.router.add_get("/docs", docs_page)
    app.router.add_get(r"/docs/{name:[A-Za-z0-9_.-]+}", docs_file)
