"""What a web page the user happens to visit may make the daemon do: nothing.

A browser sends requests to any address a page names, the user's credentials with them
(HTTP Basic), and lets the page read the answers once its host name resolves to the
daemon (DNS rebinding). So, on every API route (each protocol's sub-application puts
``middleware`` right after its error middleware, so refusals come in its own shape):

* **Host**: where the daemon answers whoever reaches it (no keys: the local mode) or the
  browser sends credentials by itself (``basic_auth``), a request must name a host the
  daemon answers to: ``localhost``, an IP address (a browser puts one there only when the
  page's own address is that address, so no page of another site can), the listen
  address, ``public_url``'s host and ``allowed_hosts``. Else 421. With bearer keys only, a
  page has no credentials to borrow, and proxies' names need no setting.
* **Origin**: a request that changes something (any method but GET, HEAD and OPTIONS, and
  a WebSocket's handshake) from a page of another origin — its ``Origin`` header, or
  ``Sec-Fetch-Site: cross-site`` — is refused (403) unless ``cors_origins`` lists that
  origin. Clients that are not browsers send no ``Origin`` and pass.
* **Content type**: a body must be JSON (``application/json``, ``application/*+json``, or
  no type at all, as FastAPI takes it), or multipart where the route takes a form (its
  ``@operation(form=...)``). What a page may send without asking first (``text/plain``, a
  form) is 415: a second lock behind the Origin check.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from aiohttp import hdrs, web

from ..config import Settings
from ..errors import HostNotAllowed, OriginNotAllowed, UnsupportedMediaType
from ..state import KEYS, SETTINGS

#: Methods that read only (aiohttp adds HEAD beside GET; OPTIONS is CORS's preflight).
SAFE = frozenset({"GET", "HEAD", "OPTIONS"})
#: What a wildcard listen address is not: a name clients use.
WILDCARDS = frozenset({"", "0.0.0.0", "::"})


def host_name(host: str) -> str:
    """The name of a ``Host`` header (or a URL's netloc): lower-cased, without its port,
    brackets or a trailing dot."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1:].partition("]")[0]
    name, colon, port = host.rpartition(":")
    if not colon or not port.isdigit() or ":" in name:
        name = host
    return name.rstrip(".")


def _is_address(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def host_allowed(name: str, settings: Settings) -> bool:
    """Is ``name`` (from ``host_name``) one the daemon answers to?"""
    if name == "localhost" or _is_address(name):
        return True
    allowed = settings.allowed_hosts
    if "*" in allowed or name in allowed:
        return True
    if any(entry.startswith(".") and (name == entry[1:] or name.endswith(entry))
           for entry in allowed):
        return True
    names = {host_name(settings.host)} - WILDCARDS
    if settings.public_url:
        names.add(host_name(urlsplit(settings.public_url).netloc))
    return name in names


def host_checked(request: web.Request) -> bool:
    """Does this daemon check ``Host``: no keys at all (anyone who reaches it is served),
    or ``basic_auth`` (the browser sends the pair by itself)."""
    settings = request.config_dict[SETTINGS]
    return bool(settings.basic_auth) or \
        not settings.auth_required and not request.config_dict[KEYS].in_use


def check_host(request: web.Request) -> None:
    """``HostNotAllowed`` when the daemon checks ``Host`` and this one is not its own."""
    host = request.headers.get(hdrs.HOST)
    if host is None or not host_checked(request):    # browsers always send one
        return
    name = host_name(host)
    if not host_allowed(name, request.config_dict[SETTINGS]):
        raise HostNotAllowed(
            f"This daemon does not answer to the host {name!r}: a web page reaching it "
            "through a name of its own could read and use it (DNS rebinding). If you reach "
            "the daemon by this name, add it to `allowed_hosts` (ARTING_ALLOWED_HOSTS), or "
            "set `public_url`.")


def listed(origin: str | None, settings: Settings) -> bool:
    """Does ``cors_origins`` let pages of ``origin`` in?"""
    return "*" in settings.cors_origins or origin in settings.cors_origins


def same_origin(origin: str, request: web.Request) -> bool:
    """Is ``origin`` the daemon's own: the host the request was sent to (as the browser
    names it, whatever port it was published on), or ``public_url``'s?"""
    netloc = urlsplit(origin).netloc.lower()
    own = {request.host.lower()}
    public_url = request.config_dict[SETTINGS].public_url
    if public_url:
        own.add(urlsplit(public_url).netloc.lower())
    return bool(netloc) and netloc in own


def check_origin(request: web.Request) -> None:
    """``OriginNotAllowed`` for a change (or a WebSocket) asked for by another origin's
    page."""
    upgrade = request.headers.get(hdrs.UPGRADE, "").lower() == "websocket"
    if request.method in SAFE and not upgrade:
        return
    origin = request.headers.get(hdrs.ORIGIN)
    cross_site = request.headers.get("Sec-Fetch-Site", "").lower() == "cross-site"
    if origin is None and not cross_site or listed(origin, request.config_dict[SETTINGS]):
        return
    if origin is not None and not cross_site and same_origin(origin, request):
        return
    raise OriginNotAllowed(
        f"Refused: a page from {origin or 'another site'} may not use this daemon. If that "
        "page should, add its origin to `cors_origins` (ARTING_CORS_ORIGINS).")


def check_content_type(request: web.Request) -> None:
    """``UnsupportedMediaType`` for a body that is neither JSON nor (where the route takes
    a form) multipart."""
    if request.method in SAFE or not request.body_exists \
            or not request.headers.get(hdrs.CONTENT_TYPE, "").strip():
        return
    kind = request.content_type
    if kind == "application/json" or kind.startswith("application/") and \
            kind.endswith("+json"):
        return
    described = getattr(request.match_info.handler, "operation", None)
    form = described is not None and described.form is not None
    if form and kind == "multipart/form-data":
        return
    raise UnsupportedMediaType(
        f"The body must be JSON, sent with `Content-Type: application/json`"
        f"{' (or multipart/form-data)' if form else ''}; it was {kind}.")


@web.middleware
async def middleware(request: web.Request, handler) -> web.StreamResponse:
    """Host, then Origin, then the body's type (see the module's docstring)."""
    if request.method != "OPTIONS":
        check_host(request)
        check_origin(request)
        check_content_type(request)
    return await handler(request)
