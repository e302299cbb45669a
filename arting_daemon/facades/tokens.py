"""Arting tokens at runtime, under ``/arting/v1/admin``: the operator's.

* ``POST /admin/tokens`` — add one or many: a token, or what was copied from the browser
  (an ``Authorization`` value, "Copy as cURL", "Copy request headers"); deduplicated
* ``PATCH /admin/tokens/{label}`` — rotate a token under its label, or change its pace
* ``DELETE /admin/tokens/{label}`` — remove it: new jobs stop using it at once, the jobs
  it carries finish with it
* ``GET /admin/tokens/export`` — labels and fingerprints, never the tokens

Tokens from the configuration are listed (``source: configuration``) but changed only
there. No answer holds a token or a cookie's value.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, model_validator

from .. import auth
from ..errors import FeatureDisabled, InvalidRequest, NotFound
from ..openapi import Doc, operation
from ..providers.arting.paste import Pasted, parse
from ..providers.arting.provider import ArtingProvider
from ..providers.arting.vault import Entry, Vault, new_entry
from ..state import ARTING
from .http import Answer, parse_model, read_json, reply
from .ops import TokensView, tokens_view


class Pace(BaseModel):
    model_config = ConfigDict(extra="forbid")

    daily_limit: int | None = Field(None, ge=1, description="Images per UTC day (null: "
                                    "`token_daily_limit`).")
    min_interval: float | None = Field(None, ge=0, description="Seconds between two creates "
                                       "(null: `token_min_interval`).")


class NewToken(Pace):
    """One token: ``token`` (the `Authorization` value) or ``paste`` (what was copied from
    the browser: a cURL command, a request-headers block, or tokens one a line)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"paste": "curl 'https://api.arting.ai/api/cg/text-to-image/create' -H "
                  "'authorization: eyJ…' -H 'user-agent: Mozilla/5.0 …' -b "
                  "'cf_clearance=…'", "label": "alice", "daily_limit": 100}]})

    token: str | None = Field(None, min_length=1, max_length=8192)
    paste: str | None = Field(None, min_length=1, max_length=65536)
    label: str | None = Field(None, min_length=1, max_length=64,
                              description="Default: `added-N`.")

    @model_validator(mode="after")
    def one_source(self) -> NewToken:
        if (self.token is None) == (self.paste is None):
            raise ValueError("send either `token` or `paste`")
        return self


class NewTokens(NewToken):
    """One token as ``NewToken``, or several in ``tokens``."""

    model_config = ConfigDict(extra="forbid")

    tokens: list[NewToken] | None = Field(None, min_length=1, max_length=100)

    @model_validator(mode="after")
    def one_source(self) -> NewTokens:
        if self.tokens is None and (self.token is None) == (self.paste is None):
            raise ValueError("send `tokens`, or one `token` or `paste`")
        if self.tokens is not None and (self.token is not None or self.paste is not None):
            raise ValueError("send `tokens`, or one `token` or `paste`, not both")
        return self


class TokenChange(Pace):
    """A new token for the label (``token`` or ``paste``), or a new pace, or both."""

    token: str | None = Field(None, min_length=1, max_length=8192)
    paste: str | None = Field(None, min_length=1, max_length=65536)


class ExportedToken(Answer):
    label: str
    fingerprint: str | None = Field(description="The vault's keyed fingerprint (runtime "
                                                "tokens).")
    source: str = Field(description="`configuration` or `runtime`.")
    daily_limit: int | None
    min_interval: float | None


class TokenExport(Answer):
    tokens: list[ExportedToken]


class AddedTokens(TokensView):
    added: list[str] = Field(description="The labels added.")
    duplicates: list[str] = Field(description="Labels of tokens already there (by "
                                              "fingerprint), left as they were.")


def _vault(request: web.Request) -> tuple[ArtingProvider, Vault]:
    arting = request.config_dict[ARTING]
    if arting is None or arting.vault is None:
        raise NotFound("This daemon has no provider named `arting`, so no Arting tokens.")
    return arting, arting.vault


def _pasted(item: NewToken | TokenChange) -> list[Pasted]:
    if item.paste is not None:
        return parse(item.paste)
    assert item.token is not None
    return parse(item.token)


def _runtime(request: web.Request, arting: ArtingProvider, vault: Vault) -> Entry:
    label = request.match_info["label"]
    entry = vault.entries.get(label)
    if entry is not None:
        return entry
    if any(t.label == label and not t.retired for t in arting.pool.tokens):
        raise FeatureDisabled(f"The token {label} comes from the configuration "
                              "(auth_tokens, ARTING_AUTH_TOKEN): change it there, or add "
                              "its replacement here and drop it from there.", param="label")
    raise NotFound(f"No token labelled {label!r}; GET /arting/v1/admin/tokens lists them.",
                   param="label")


@operation("Add Arting tokens", "One (`token`, or `paste`: an `Authorization` value, a "
           "browser's \"Copy as cURL\" command for bash or cmd, or a \"Copy request "
           "headers\" block, from which the Cloudflare cookies and the User-Agent are taken "
           "too) or many (`tokens`, or several lines of tokens). Deduplicated by "
           "fingerprint. Used by every replica at once, and kept across restarts.",
           body=NewTokens, answers={201: Doc(AddedTokens, "Added (or already there).")},
           errors=(404,))
@auth.admin
async def add_tokens(request: web.Request) -> web.Response:
    arting, vault = _vault(request)
    body = parse_model(NewTokens, await read_json(request))
    taken = {t.label for t in arting.pool.tokens if not t.retired} | set(vault.entries)
    secrets = {t.secret: t.label for t in arting.pool.tokens if not t.retired}
    entries: list[Entry] = []
    duplicates: list[str] = []
    for item in body.tokens or [body]:
        found = _pasted(item)
        for n, pasted in enumerate(found):
            label = item.label if item.label is None or len(found) == 1 \
                else f"{item.label}-{n + 1}"
            known = secrets.get(pasted.token) or (
                e.label if (e := vault.find(pasted.token)) is not None else None)
            if known is not None:
                duplicates.append(known)
                continue
            if label is not None and label in taken:
                raise InvalidRequest(f"A token is labelled {label} already: PATCH "
                                     f"/arting/v1/admin/tokens/{label} replaces it.",
                                     param="label")
            entry = new_entry(label, pasted.token, taken, cookies=pasted.cookies,
                              user_agent=pasted.user_agent, daily_limit=item.daily_limit,
                              min_interval=item.min_interval)
            taken.add(entry.label)
            secrets[entry.secret] = entry.label
            entries.append(entry)
    added: list[Entry] = []
    if entries:     # against the vault as it is by then; the pool follows (``on_change``)
        added, seen = await vault.add(entries, frozenset(taken))
        duplicates += seen
    return reply(AddedTokens(added=[e.label for e in added], duplicates=duplicates,
                             **tokens_view(request)), status=201)


@operation("Rotate or pace an Arting token", "A new token under the same label (`token` "
           "or `paste`; the jobs the old one carries finish with it), or a new pace, or "
           "both. Runtime tokens only: those from the configuration are changed there.",
           body=TokenChange, answers={200: TokensView}, errors=(404,))
@auth.admin
async def change_token(request: web.Request) -> web.Response:
    arting, vault = _vault(request)
    entry = _runtime(request, arting, vault)
    body = parse_model(TokenChange, await read_json(request))
    changes: dict[str, Any] = {k: v for k, v in body.model_dump(exclude_unset=True).items()
                               if k in Pace.model_fields}
    if body.token is not None or body.paste is not None:
        found = _pasted(body)
        if len(found) != 1:
            raise InvalidRequest("A token is rotated to one new token; this held "
                                 f"{len(found)}.", param="paste")
        changes.update(secret=found[0].token, cookies=found[0].cookies,
                       user_agent=found[0].user_agent)
    fresh = new_entry(entry.label, changes.pop("secret", entry.secret), set(),
                      cookies=changes.pop("cookies", entry.cookies),
                      user_agent=changes.pop("user_agent", entry.user_agent),
                      daily_limit=changes.get("daily_limit", entry.daily_limit),
                      min_interval=changes.get("min_interval", entry.min_interval))
    await vault.put([fresh])
    return reply(TokensView(**tokens_view(request)))


@operation("Remove an Arting token", "New jobs stop using it at once; the jobs it carries "
           "finish with it. Runtime tokens only (400 for one from the configuration).",
           answers={200: TokensView}, errors=(400, 404))
@auth.admin
async def remove_token(request: web.Request) -> web.Response:
    arting, vault = _vault(request)
    entry = _runtime(request, arting, vault)
    await vault.remove(entry.label)
    return reply(TokensView(**tokens_view(request)))


@operation("Export the Arting tokens' list", "Labels, fingerprints and pace: never the "
           "tokens (to compare what replicas or backups hold).", answers={200: TokenExport},
           errors=(404,))
@auth.admin
async def export_tokens(request: web.Request) -> web.Response:
    arting, vault = _vault(request)
    listed = [ExportedToken(label=t.label, fingerprint=t.mark, source=t.source,
                            daily_limit=t.daily_limit, min_interval=t.min_interval)
              for t in arting.pool.tokens if not t.retired and not t.anonymous]
    return reply(TokenExport(tokens=listed))


def add_routes(app: web.Application) -> None:
    """On the native API's sub-application (its auth middleware guards them)."""
    app.router.add_post("/admin/tokens", add_tokens)
    app.router.add_get("/admin/tokens/export", export_tokens)
    app.router.add_patch("/admin/tokens/{label}", change_token)
    app.router.add_delete("/admin/tokens/{label}", remove_token)
