"""Who may call the API: Bearer keys, and HTTP Basic pairs for A1111 clients.

Keys are compared in constant time, against every configured key, so neither the
answer's timing nor an early exit tells how much of a guess was right.
"""

from __future__ import annotations

import base64
import binascii
import hmac

from aiohttp import web

from .config import Settings
from .errors import Unauthorized
from .state import SETTINGS


def _matches(candidate: str, secrets: list[str]) -> bool:
    given = candidate.encode()
    found = False
    for secret in secrets:
        found |= hmac.compare_digest(given, secret.encode())
    return found


def key_accepted(key: str, settings: Settings) -> bool:
    """Whether ``key`` (given outside a header: a WebSocket's first message) is one of
    the configured API keys, or auth is off."""
    if not settings.auth_required:
        return True
    return bool(key) and _matches(key, [k.get_secret_value() for k in settings.api_keys])


def credentials(request: web.Request) -> tuple[str, str]:
    """(scheme, value) of the Authorization header, scheme lower-cased."""
    scheme, _, value = request.headers.get("Authorization", "").strip().partition(" ")
    return scheme.lower(), value.strip()


def is_authorized(request: web.Request, settings: Settings, *, basic: bool = False) -> bool:
    """True when auth is off, or the request carries a configured key or Basic pair.

    A Basic password that equals an API key is accepted too, so A1111 clients that can
    only send Basic credentials work with the same key as everyone else.
    """
    if not settings.auth_required:
        return True
    keys = [k.get_secret_value() for k in settings.api_keys]
    scheme, value = credentials(request)
    if scheme == "bearer" and value:
        return _matches(value, keys)
    if scheme == "basic" and value and basic:
        try:
            pair = base64.b64decode(value, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return False
        pairs = [p.get_secret_value() for p in settings.basic_auth]
        password = pair.partition(":")[2]
        return _matches(pair, pairs) | _matches(password, keys)
    return False


def public(handler):
    """Mark a handler as open to everyone (content-addressed images, health checks)."""
    handler.public = True
    return handler


def middleware(*, basic: bool = False):
    """Refuse requests without valid credentials, unless the route is ``public``."""
    @web.middleware
    async def check(request: web.Request, handler) -> web.StreamResponse:
        if request.method != "OPTIONS" and not getattr(request.match_info.handler, "public",
                                                       False):
            if not is_authorized(request, request.config_dict[SETTINGS], basic=basic):
                hint = " or HTTP Basic credentials" if basic else ""
                raise Unauthorized("Incorrect API key provided. Send `Authorization: Bearer "
                                   f"<key>`{hint} with a key this daemon is configured with "
                                   "(API_MASTER_KEY).")
        return await handler(request)

    return check
