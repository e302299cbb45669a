"""Who is calling: the operator (admin), a user with a key, or — with no keys anywhere —
the one local user.

Each request's credentials are resolved once, by the middleware, into a ``Principal``
kept on the request, which the facades (job ownership), the runner (whose quota) and
the usage report all read. The operator's keys (``api_keys`` / ``API_MASTER_KEY``) and
``basic_auth`` pairs make an admin; user keys (``keys/``) make a user, who sees only
their own jobs and never the administration. Operator keys are compared in constant
time, against every configured key, so neither the answer's timing nor an early exit
tells how much of a guess was right; a user key is found by the SHA-256 of what was
sent.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from dataclasses import dataclass
from typing import TYPE_CHECKING

from aiohttp import web

from .config import Settings
from .errors import Forbidden, Unauthorized
from .state import CLOCK, GATE, KEYS, PRINCIPAL, SETTINGS

if TYPE_CHECKING:
    from .keys.ring import KeyStore
    from .keys.store import ApiKey


@dataclass(frozen=True)
class Principal:
    """Who a request is from. ``id`` owns the jobs it submits."""

    id: str
    name: str
    admin: bool
    key: ApiKey | None = None


LOCAL = Principal("local", "local", admin=True)
OPERATOR = Principal("admin", "admin", admin=True)


def _matches(candidate: str, secrets: list[str]) -> bool:
    given = candidate.encode()
    found = False
    for secret in secrets:
        found |= hmac.compare_digest(given, secret.encode())
    return found


def credentials(request: web.Request) -> tuple[str, str]:
    """(scheme, value) of the Authorization header, scheme lower-cased."""
    scheme, _, value = request.headers.get("Authorization", "").strip().partition(" ")
    return scheme.lower(), value.strip()


def is_authorized(request: web.Request, settings: Settings, *, basic: bool = False) -> bool:
    """True when no operator key is set, or the request carries one (or a Basic pair).

    A Basic password that equals an API key is accepted too, so A1111 clients that can
    only send Basic credentials work with the same key as everyone else.
    """
    if not settings.auth_required:
        return True
    keys = [k.get_secret_value() for k in settings.api_keys]
    scheme, value = credentials(request)
    if scheme == "bearer" and value:
        return _matches(value, keys)
    password = _basic_password(value, settings) if scheme == "basic" and basic else None
    return password is True or (isinstance(password, str) and _matches(password, keys))


def _basic_password(value: str, settings: Settings) -> bool | str | None:
    """True for a configured ``basic_auth`` pair, else the pair's password (None when
    the header is not Basic credentials)."""
    try:
        pair = base64.b64decode(value, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    pairs = [p.get_secret_value() for p in settings.basic_auth]
    if pairs and _matches(pair, pairs):
        return True
    return pair.partition(":")[2]


async def resolve(request: web.Request, *, basic: bool = False) -> Principal:
    """The request's principal; ``Unauthorized`` saying what is wrong when there is none."""
    settings, ring = request.config_dict[SETTINGS], request.config_dict[KEYS]
    if not settings.auth_required and not ring.in_use:
        return LOCAL
    if is_authorized(request, settings, basic=basic) and settings.auth_required:
        return OPERATOR
    scheme, value = credentials(request)
    secret = value if scheme == "bearer" else None
    if scheme == "basic" and basic:
        password = _basic_password(value, settings)
        secret = password if isinstance(password, str) else None
    hint = " or HTTP Basic credentials" if basic else ""
    return await _user(ring, secret, f"Send `Authorization: Bearer <key>`{hint}",
                       request.config_dict[CLOCK].time())


async def resolve_key(request: web.Request, secret: str) -> Principal:
    """The principal of a key sent outside the Authorization header (a WebSocket's first
    message, as browsers cannot set headers there); ``Unauthorized`` if none."""
    settings, ring = request.config_dict[SETTINGS], request.config_dict[KEYS]
    if not settings.auth_required and not ring.in_use:
        return LOCAL
    if settings.auth_required and secret and \
            _matches(secret, [k.get_secret_value() for k in settings.api_keys]):
        return OPERATOR
    return await _user(ring, secret, 'Send {"auth": "<key>"} first',
                       request.config_dict[CLOCK].time())


async def _user(ring: KeyStore, secret: str | None, how: str, now: float) -> Principal:
    """The user whose key ``secret`` is, if it may be used at ``now``. A key not known
    here may have been made a moment ago on another replica: looked for again once the
    keys are caught up."""
    key = ring.find(secret) if secret else None
    if key is None and secret and await ring.catch_up():
        key = ring.find(secret)
    if key is None:
        raise Unauthorized(f"Incorrect API key provided. {how} with a key this daemon knows "
                           "(API_MASTER_KEY, or a user key from the operator).")
    refusal = key.refusal(now)
    if refusal:
        raise Unauthorized(refusal)
    return Principal(key.id, key.name, admin=False, key=key)


def public(handler):
    """Mark a handler as open to everyone (content-addressed images, health checks)."""
    handler.public = True
    return handler


def admin(handler):
    """Mark a handler as the operator's (tokens, keys, the daemon's administration)."""
    handler.admin = True
    return handler


def generates(handler):
    """Mark a handler that starts generations (counted as a request of the caller's)."""
    handler.generates = True
    return handler


def middleware(*, basic: bool = False):
    """Resolve who is calling (refusing requests without valid credentials, unless the
    route is ``public``), keep users out of ``admin`` routes, and count the requests of
    ``generates`` routes against the caller's requests per minute."""
    @web.middleware
    async def check(request: web.Request, handler) -> web.StreamResponse:
        route = request.match_info.handler
        if request.method != "OPTIONS" and not getattr(route, "public", False):
            principal = await resolve(request, basic=basic)
            if getattr(route, "admin", False) and not principal.admin:
                raise Forbidden("This is the operator's: it needs an admin key "
                                "(API_MASTER_KEY); a user key cannot use it.")
            if getattr(route, "generates", False):
                await request.config_dict[GATE].request(principal)
            request[PRINCIPAL] = principal
        return await handler(request)

    return check


def principal(request: web.Request) -> Principal:
    """Who the request is from (set by ``middleware``)."""
    return request.get(PRINCIPAL, LOCAL)
