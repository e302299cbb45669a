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
from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, create_model

from .. import auth
from ..errors import Forbidden, InvalidRequest, NotFound
from ..keys.limits import LIMITS, NO_LIMITS, KeyLimits
from ..keys.store import ApiKey
from ..keys.usage import report
from ..openapi import Doc, operation
from ..state import CATALOG, GATE, JOURNAL, KEYS
from .http import Answer, Sparse, parse_model, parse_query, read_json, reply
from .views import Caller, JobCounts, caller_of

MAX_DAYS = 90


class KeySettings(KeyLimits):
    """A key's limits (``keys/limits.py``: null, or absent, is no limit) and expiry, as
    clients send them."""

    model_config = ConfigDict(frozen=False)

    expires_at: datetime | None = None


class NewKey(KeySettings):
    model_config = ConfigDict(json_schema_extra={"examples": [
        {"name": "alice", "images_per_day": 200, "requests_per_minute": 20,
         "max_concurrent": 2, "models": ["oneFORALLAnime"], "expires_at": "2030-01-01T00:00:00Z"}]})

    name: str = Field(min_length=1, max_length=100)


class KeyChange(KeySettings):
    name: str | None = Field(None, min_length=1, max_length=100)


# --- answers -------------------------------------------------------------------------------

class KeyView(KeyLimits):
    """A user key, without its secret (``key_prefix`` shows its first characters), and its
    limits."""

    model_config = ConfigDict(frozen=False)

    id: str
    name: str
    key_prefix: str
    created_at: float
    expires_at: float | None
    revoked_at: float | None


class NewKeyView(KeyView):
    key: str = Field(description="The secret: shown this once, never again.")


class ModelUsage(Answer):
    jobs: int
    images: int


class DayUsage(Answer):
    day: str = Field(description="A UTC day, YYYY-MM-DD.")
    requests: int
    jobs: JobCounts
    images: int
    models: dict[str, ModelUsage]


class Totals(Answer):
    requests: int
    jobs: JobCounts
    images: int


class InFlight(Answer):
    jobs: int
    images: int


class Today(Answer):
    day: str
    images: int


#: What is left of each limit that counts (null: no limit), one field per limit.
_LEFT: dict[str, Any] = {limit.left: (int | None, Field(title=limit.left_title))
                         for limit in LIMITS if limit.left is not None}
Remaining = create_model(
    "Remaining", __base__=Answer, __doc__="What is left of each limit (null: no limit).",
    window_seconds=(float, Field(description="The window of the per-minute counts, in "
                                             "seconds.")), **_LEFT)


class OwnerUsage(Sparse):
    """One owner's usage: a user key's, or the operator's (``admin``) or the keyless
    local user's (``local``); ``key`` and ``remaining`` only for user keys."""

    owner: str
    name: str
    key: KeyView | None = None
    totals: Totals
    days: list[DayUsage]
    in_flight: InFlight
    today: Today
    remaining: Remaining | None = None


class UsageReport(Answer):
    object: Literal["usage"] = "usage"
    days: int
    caller: Caller
    data: list[OwnerUsage]


class KeyUsage(Answer):
    today: Today
    totals: Totals
    remaining: Remaining


class KeyWithUsage(KeyView):
    usage: KeyUsage


class KeyList(Answer):
    object: Literal["list"] = "list"
    data: list[KeyWithUsage]


class UsageQuery(BaseModel):
    model_config = ConfigDict(extra="ignore")

    days: int = Field(7, description=f"How many UTC days, today included (1 to {MAX_DAYS}; "
                                     "others are clamped).")
    key: str | None = Field(None, description="An admin: one key's id (or `admin`, "
                                              "`local`); `all` or none: every owner.")


def _limits(request: web.Request, body: KeySettings,
            base: KeyLimits = NO_LIMITS) -> KeyLimits:
    """The limits ``body`` sets, over ``base`` (a field left out keeps its value)."""
    given = body.model_dump(exclude_unset=True, include=set(KeyLimits.model_fields))
    if given.get("models") is not None:
        catalog = request.config_dict[CATALOG]
        unknown = [m for m in given["models"] if not catalog.has_model(m)]
        if unknown:
            raise InvalidRequest(f"Unknown model(s) {', '.join(unknown)}; GET /v1/models lists "
                                 "them.", param="models")
        given["models"] = tuple(catalog.resolve_model(m) for m in given["models"])
    return base.model_copy(update=given)


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


async def _with_usage(request: web.Request, keys: list[ApiKey]) -> list[KeyWithUsage]:
    usage = await _report(request, [k.id for k in keys], days=1)
    return [KeyWithUsage(**k.public(), usage=KeyUsage(today=u["today"], totals=u["totals"],
                                                      remaining=u["remaining"]))
            for k, u in zip(keys, usage)]


async def _report(request: web.Request, owners: list[str], days: int) -> list[dict]:
    app = request.config_dict
    return await report(owners, days, app[KEYS], app[JOURNAL], app[GATE])


@operation("Make a user key", "With optional limits and expiry. The answer holds the "
           "secret (`key`), shown this once.", body=NewKey,
           answers={201: Doc(NewKeyView, "Made.")})
@auth.admin
async def create_key(request: web.Request) -> web.Response:
    if auth.principal(request) is auth.LOCAL:
        raise Forbidden("Set an admin key (API_MASTER_KEY) before making user keys: once a "
                        "user key exists every request needs a key, and without an admin key "
                        "nobody could manage keys here (`arting-daemon keys` still can).")
    body = parse_model(NewKey, await read_json(request))
    key, secret = await request.config_dict[KEYS].create(
        body.name, _limits(request, body), _expiry(body.expires_at))
    return reply(NewKeyView(**key.public(), key=secret), status=201)


@operation("Every user key", "Without secrets, with today's usage and what is left.",
           answers={200: KeyList})
@auth.admin
async def list_keys(request: web.Request) -> web.Response:
    keys = request.config_dict[KEYS].all()
    return reply(KeyList(data=await _with_usage(request, keys)))


@operation("A user key", answers={200: KeyWithUsage})
@auth.admin
async def get_key(request: web.Request) -> web.Response:
    return reply((await _with_usage(request, [await _key(request)]))[0])


@operation("Change a user key", "Its name, limits (`null` removes one) or expiry; what "
           "is left out stays.", body=KeyChange, answers={200: KeyView})
@auth.admin
async def change_key(request: web.Request) -> web.Response:
    key = await _key(request)
    body = parse_model(KeyChange, await read_json(request))
    changes: dict[str, Any] = {"name": body.name, "limits": _limits(request, body, key.limits)}
    if "expires_at" in body.model_fields_set:
        changes["expires_at"] = _expiry(body.expires_at)
    changed = await request.config_dict[KEYS].update(key.id, **changes)
    assert changed is not None
    return reply(KeyView(**changed.public()))


@operation("Revoke a user key", "Refused at once from then on; it stays listed, with "
           "`revoked_at`.", answers={200: KeyView})
@auth.admin
async def revoke_key(request: web.Request) -> web.Response:
    key = await request.config_dict[KEYS].revoke((await _key(request)).id)
    assert key is not None
    return reply(KeyView(**key.public()))


@operation("Usage", "The caller's requests, jobs by outcome and images, per UTC day and "
           "model, jobs in flight, and what is left of each limit. An admin gets every "
           "owner's, or one key's.", query=UsageQuery, answers={200: UsageReport},
           errors=(404,))
async def usage(request: web.Request) -> web.Response:
    """The caller's usage; an admin may ask for any key's (``key``) or every owner's."""
    caller = auth.principal(request)
    query = parse_query(UsageQuery, request)
    days = min(MAX_DAYS, max(1, query.days))
    wanted = query.key
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
    return reply(UsageReport(days=days, caller=caller_of(request),
                             data=await _report(request, owners, days)))


def add_routes(app: web.Application) -> None:
    app.router.add_post("/admin/keys", create_key)
    app.router.add_get("/admin/keys", list_keys)
    app.router.add_get("/admin/keys/{id}", get_key)
    app.router.add_patch("/admin/keys/{id}", change_key)
    app.router.add_delete("/admin/keys/{id}", revoke_key)
    app.router.add_get("/usage", usage)
