"""User keys and usage under ``/arting/v1``: the operator manages keys, everyone reads
their own usage.

* ``POST /admin/keys`` — make a key; ``201`` with its secret, shown this once
* ``GET /admin/keys`` — every key, without secrets, with today's usage
* ``GET``/``PATCH``/``DELETE /admin/keys/{id}`` — one key; change its limits; revoke it
* ``GET /usage`` — the caller's usage and what is left of its limits (an admin: every
  owner's, or ``?key=<id>``)
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from .. import auth
from ..errors import Forbidden, InvalidRequest, NotFound
from ..keys.store import ApiKey, Limits
from ..keys.usage import report
from ..state import CATALOG, GATE, JOURNAL, KEYS
from .http import parse_model, read_json

MAX_DAYS = 90


class KeyLimits(BaseModel):
    """A key's limits as clients send them; null (or absent) is no limit."""

    model_config = ConfigDict(extra="forbid")

    requests_per_minute: int | None = Field(None, ge=1)
    images_per_day: int | None = Field(None, ge=0)
    max_concurrent: int | None = Field(None, ge=1)
    models: list[str] | None = None
    expires_at: datetime | None = None


class NewKey(KeyLimits):
    name: str = Field(min_length=1, max_length=100)


class KeyChange(KeyLimits):
    name: str | None = Field(None, min_length=1, max_length=100)


def _limits(request: web.Request, body: KeyLimits, base: Limits = Limits()) -> Limits:
    """The limits ``body`` sets, over ``base`` (a field left out keeps its value)."""
    given = body.model_dump(exclude_unset=True, exclude={"expires_at", "name"})
    if given.get("models") is not None:
        catalog = request.config_dict[CATALOG]
        unknown = [m for m in given["models"] if not catalog.has_model(m)]
        if unknown:
            raise InvalidRequest(f"Unknown model(s) {', '.join(unknown)}; GET /v1/models lists "
                                 "them.", param="models")
        given["models"] = tuple(catalog.resolve_model(m) for m in given["models"])
    current = {name: getattr(base, name) for name in Limits.__dataclass_fields__}
    return Limits(**{**current, **given})


def _expiry(value: datetime | None) -> float | None:
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.timestamp()


async def _key(request: web.Request) -> ApiKey:
    key = request.config_dict[KEYS].get(request.match_info["id"])
    if key is None:
        raise NotFound(f"No key {request.match_info['id']!r}.", param="id")
    return key


async def _with_usage(request: web.Request, keys: list[ApiKey]) -> list[dict[str, Any]]:
    usage = await _report(request, [k.id for k in keys], days=1)
    return [{**k.public(), "usage": {"today": u["today"], "totals": u["totals"],
                                     "remaining": u["remaining"]}}
            for k, u in zip(keys, usage)]


async def _report(request: web.Request, owners: list[str], days: int) -> list[dict]:
    app = request.config_dict
    return await report(owners, days, app[KEYS], app[JOURNAL], app[GATE])


@auth.admin
async def create_key(request: web.Request) -> web.Response:
    if auth.principal(request) is auth.LOCAL:
        raise Forbidden("Set an admin key (API_MASTER_KEY) before making user keys: once a "
                        "user key exists every request needs a key, and without an admin key "
                        "nobody could manage keys here (`arting-daemon keys` still can).")
    body = parse_model(NewKey, await read_json(request))
    key, secret = await request.config_dict[KEYS].create(
        body.name, _limits(request, body), _expiry(body.expires_at))
    return web.json_response({**key.public(), "key": secret}, status=201)


@auth.admin
async def list_keys(request: web.Request) -> web.Response:
    keys = request.config_dict[KEYS].all()
    return web.json_response({"object": "list", "data": await _with_usage(request, keys)})


@auth.admin
async def get_key(request: web.Request) -> web.Response:
    return web.json_response((await _with_usage(request, [await _key(request)]))[0])


@auth.admin
async def change_key(request: web.Request) -> web.Response:
    key = await _key(request)
    body = parse_model(KeyChange, await read_json(request))
    changes: dict[str, Any] = {"name": body.name, "limits": _limits(request, body, key.limits)}
    if "expires_at" in body.model_fields_set:
        changes["expires_at"] = _expiry(body.expires_at)
    changed = await request.config_dict[KEYS].update(key.id, **changes)
    assert changed is not None
    return web.json_response(changed.public())


@auth.admin
async def revoke_key(request: web.Request) -> web.Response:
    key = await request.config_dict[KEYS].revoke((await _key(request)).id)
    assert key is not None
    return web.json_response(key.public())


async def usage(request: web.Request) -> web.Response:
    """The caller's usage; an admin may ask for any key's (``key``) or every owner's."""
    caller = auth.principal(request)
    try:
        days = min(MAX_DAYS, max(1, int(request.query.get("days", "7"))))
    except ValueError:
        raise InvalidRequest("days must be a whole number.", param="days") from None
    wanted = request.query.get("key")
    if not caller.admin:
        if wanted not in (None, caller.id):
            raise NotFound(f"No key {wanted!r}.", param="key")
        owners = [caller.id]
    elif wanted and wanted != "all":
        if request.config_dict[KEYS].get(wanted) is None and wanted not in ("admin", "local"):
            raise NotFound(f"No key {wanted!r}.", param="key")
        owners = [wanted]
    else:
        owners = ["admin", "local", *(k.id for k in request.config_dict[KEYS].all())]
    return web.json_response({"object": "usage", "days": days, "caller": {
        "id": caller.id, "name": caller.name, "admin": caller.admin},
        "data": await _report(request, owners, days)})


def add_routes(app: web.Application) -> None:
    app.router.add_post("/admin/keys", create_key)
    app.router.add_get("/admin/keys", list_keys)
    app.router.add_get("/admin/keys/{id}", get_key)
    app.router.add_patch("/admin/keys/{id}", change_key)
    app.router.add_delete("/admin/keys/{id}", revoke_key)
    app.router.add_get("/usage", usage)
