"""What the operator sees: ``/metrics``, ``/readyz`` and the token admin API.

* ``GET /metrics`` — Prometheus text format; needs a key (or Basic pair) when set
* ``GET /readyz`` — can this daemon take jobs now? Never calls Arting.
* ``GET /arting/v1/admin/tokens`` — every token's health, and the Cloudflare clearance
* ``POST /arting/v1/admin/tokens/probe`` — probe the unhealthy tokens now
* ``POST /arting/v1/admin/check`` — run ``arting-daemon check``'s no-cost part in-process
  (polls only, never a generation) and answer its report; ``GET`` the last one

Nothing here shows a token or a cookie: tokens appear by label (``token-1``).
"""

from __future__ import annotations

import asyncio
import time

from aiohttp import web

from .. import auth
from ..check import Options, run_check
from ..check.context import Identity
from ..errors import NotFound, Unauthorized
from ..metrics import CONTENT_TYPE
from ..providers.arting.provider import ArtingProvider
from ..state import ARTING, CHECKS, ENGINE, HTTP, LINK, METRICS, PROVIDER, SETTINGS


async def metrics(request: web.Request) -> web.Response:
    """The operator's: an admin key or a ``basic_auth`` pair (with no keys at all: open)."""
    try:
        caller = auth.resolve(request, basic=True)
    except Unauthorized:
        raise web.HTTPUnauthorized(
            text="Send the daemon's API key as `Authorization: Bearer <key>` (in Prometheus: "
                 "`authorization: {credentials: <key>}`), or a `basic_auth` pair.\n",
            headers={"WWW-Authenticate": 'Bearer realm="arting-2api"'}) from None
    if not caller.admin:
        raise web.HTTPForbidden(text="Metrics are the operator's: send an admin key "
                                     "(API_MASTER_KEY), not a user key.\n")
    body = request.config_dict[METRICS].render()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})


@auth.public
async def readyz(request: web.Request) -> web.Response:
    """Ready when jobs can be taken: not shutting down, the queue not full, and the
    provider able to take them (at least one token Arting has not refused). Reads
    local state only."""
    engine = request.config_dict[ENGINE]
    reasons = []
    if not engine.accepting:
        reasons.append("the daemon is shutting down")
    if engine.full:
        reasons.append("the job queue is full (max_queued_jobs)")
    if (trouble := request.config_dict[PROVIDER].unready()) is not None:
        reasons.append(trouble)
    link = request.config_dict[LINK]
    if link is not None and link.down:
        reasons.append(f"{link.down}; requests that need it get a retryable 503")
    if reasons:
        return web.json_response({"status": "not_ready", "reasons": reasons}, status=503)
    return web.json_response({"status": "ready"})


def _arting(request: web.Request) -> ArtingProvider:
    arting = request.config_dict[ARTING]
    if arting is None:
        raise NotFound("This daemon has no provider named `arting`, so no Arting tokens.")
    return arting


def _tokens_view(request: web.Request) -> dict:
    arting = _arting(request)
    pool, solver = arting.pool, arting.client.solver
    return {
        "tokens": pool.snapshot(),
        "max_jobs_per_token": pool.max_jobs,
        "probe_backoff": [pool.backoff, pool.max_backoff],
        "cloudflare": {
            "solver": solver.enabled,
            "cookies": sorted(solver.clearance.cookies),   # names only, never values
            "user_agent": solver.clearance.user_agent,
            "last_failure": solver.last_failure,
        },
        "time": time.time(),
    }


@auth.admin
async def admin_tokens(request: web.Request) -> web.Response:
    return web.json_response(_tokens_view(request))


@auth.admin
async def admin_probe(request: web.Request) -> web.Response:
    probed = await _arting(request).pool.probe_unhealthy()
    return web.json_response({"probed": probed, **_tokens_view(request)})


class CheckRuns:
    """One check at a time; a request that comes while one runs gets its report."""

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.last: dict | None = None


@auth.admin
async def admin_check(request: web.Request) -> web.Response:
    runs = request.config_dict[CHECKS]
    if runs.lock.locked():
        async with runs.lock:
            return web.json_response(runs.last)
    async with runs.lock:
        settings = request.config_dict[SETTINGS]
        identities = [Identity(t.label, t.secret, t.anonymous)
                      for t in _arting(request).pool.tokens]
        report = await run_check(settings, identities, Options(),
                                 mode="sandbox" if settings.sandbox else "live",
                                 session=request.config_dict[HTTP])
        runs.last = report.to_json()
    return web.json_response(runs.last)


@auth.admin
async def last_check(request: web.Request) -> web.Response:
    return web.json_response(request.config_dict[CHECKS].last)


def add_routes(app: web.Application) -> None:
    """On the root application."""
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/readyz", readyz)


def add_admin_routes(app: web.Application) -> None:
    """On the native API's sub-application (its auth middleware guards them)."""
    app.router.add_get("/admin/tokens", admin_tokens)
    app.router.add_post("/admin/tokens/probe", admin_probe)
    app[CHECKS] = CheckRuns()
    app.router.add_post("/admin/check", admin_check)
    app.router.add_get("/admin/check", last_check)
