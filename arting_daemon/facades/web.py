"""The built-in web page at ``/`` and its static files (``arting_daemon/static/``).

The page is hand-written HTML, CSS and JavaScript modules: nothing to build, nothing
fetched from elsewhere. It talks only to the native job API (``/arting/v1``), so the
headers below forbid it to load or send anything to any other origin, and it keeps
the API key in the browser's ``localStorage``, sent only as an ``Authorization`` header.
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from ..auth import public
from ..openapi import Doc, operation

STATIC = Path(__file__).resolve().parent.parent / "static"

#: Every answer for the page: same-origin only, no inline script, never framed.
#: ``no-cache`` makes the browser revalidate, so an upgraded daemon is never paired
#: with yesterday's scripts.
PAGE_HEADERS = {
    "Cache-Control": "no-cache",
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
        "connect-src 'self'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'"),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}

_TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css",
          ".svg": "image/svg+xml", ".json": "application/json"}


def _file(path: Path) -> web.FileResponse:
    resp = web.FileResponse(path, headers=PAGE_HEADERS)
    resp.content_type = _TYPES.get(path.suffix, "application/octet-stream")
    return resp


@operation("The web page", "Generate, follow jobs, browse results, manage keys.",
           tag="Web page", answers={200: Doc({"type": "string"}, "The page.",
                                                media="text/html")})
@public
async def index(request: web.Request) -> web.FileResponse:
    return _file(STATIC / "index.html")


@operation("A file of the web page",
           "Its scripts, style sheet, icon and word catalogues (one per language).",
           tag="Web page",
           answers={200: Doc({"type": "string"}, "The file.", media="",
                                alternatives=dict.fromkeys(sorted(set(_TYPES.values())),
                                                            {"type": "string"})),
                    404: Doc({"type": "string"}, "No such file.", media="text/plain")})
@public
async def static_file(request: web.Request) -> web.FileResponse:
    """One file of ``static/`` (flat: the name may not leave the folder)."""
    name = request.match_info["name"]
    path = STATIC / name
    if path.suffix not in _TYPES or not path.is_file():
        raise web.HTTPNotFound(text="No such file.")
    return _file(path)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/", index)
    app.router.add_get(r"/static/{name:[A-Za-z0-9_-]+\.[a-z]+}", static_file)
