"""Token checks for the sandbox's auth modes (``docs/protocol/arting.md`` §2.1, §9.3).

Arting reads ``Authorization`` as a bare token: a UUID (anonymous identity) or an
HS256 JWT of a logged-in user. The sandbox never checks JWT signatures; it only looks
at the shape, the ``alg`` and the ``exp`` claim.
"""

from __future__ import annotations

import base64
import binascii
import json
import re

from .envelope import EXPIRED_TOKEN, INVALID_TOKEN

_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.I)
_B64URL = re.compile(r"[A-Za-z0-9_-]+")


def token_problem(mode: str, token: str | None, now: float) -> str | None:
    """Why ``token`` is refused in ``mode`` ("invalid token" / "token expired"), or None."""
    if mode == "lenient":
        return None
    token = token or ""
    if mode == "uuid":
        return None if is_uuid(token) else INVALID_TOKEN
    if mode == "jwt":
        return jwt_problem(token, now)
    if token.startswith("Bearer "):
        return INVALID_TOKEN
    return None if is_uuid(token) else jwt_problem(token, now)


def is_uuid(token: str) -> bool:
    return _UUID.fullmatch(token) is not None


def jwt_problem(token: str, now: float) -> str | None:
    """None for an HS256-looking JWT whose ``exp`` lies in the future."""
    parts = token.split(".")
    if len(parts) != 3 or not all(_B64URL.fullmatch(p) for p in parts):
        return INVALID_TOKEN
    header, payload = _json_part(parts[0]), _json_part(parts[1])
    if not isinstance(header, dict) or header.get("alg") != "HS256":
        return INVALID_TOKEN
    exp = payload.get("exp") if isinstance(payload, dict) else None
    if isinstance(exp, bool) or not isinstance(exp, (int, float)):
        return INVALID_TOKEN
    return None if exp > now else EXPIRED_TOKEN


def _json_part(part: str) -> object:
    try:
        return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    except (binascii.Error, ValueError):
        return None
