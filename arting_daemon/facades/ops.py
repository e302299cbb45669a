"""What the operator sees: ``/healthz``, ``/metrics``, ``/readyz`` and the token admin API.

* ``GET /healthz`` — liveness, without touching Arting
* ``GET /metrics`` — Prometheus text format; needs a key (or Basic pair) when set
* ``GET /readyz`` — can this daemon take jobs now? Never calls Arting.
* ``GET /arting/v1/admin/tokens`` — every token's health, and the Cloudflare clearance
* ``POST /arting/v1/admin/tokens/probe`` — probe the unhealthy tokens now (adding,
  rotating and removing them: ``tokens.py``)
* ``POST /arting/v1/admin/check`` — run ``arting-daemon check``'s no-cost part in-process
  (polls only, never a generation) and answer its report; ``GET`` the last one

Nothing here shows a token or a cookie: tokens appear by label (``token-1``).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Literal

from aiohttp import web
from pydantic import Field

from .. import __version__, auth
from ..check import Options, run_check
from ..check.context import Identity
from ..errors import HostNotAllowed, NotFound, Unauthorized
from ..metrics import CONTENT_TYPE
from ..openapi import Doc, operation
from ..providers.arting.provider import ArtingProvider
from ..state import ARTING, BACKEND, CHECKS, ENGINE, METRICS, PROVIDER, SETTINGS
from . import origin
from .http import Answer, Sparse, reply

TEXT = {"type": "string"}


class Liveness(Answer):
    status: Literal["ok"]
    version: str
    sandbox: bool


@operation("Liveness", "`ok` while the daemon runs; never calls Arting. Public.",
           answers={200: Liveness}, tag="Operations")
@auth.public
async def healthz(request: web.Request) -> web.Response:
    settings = request.config_dict[SETTINGS]
    return reply(Liveness(status="ok", version=__version__, sandbox=settings.sandbox))


@operation(
    "Prometheus metrics", "The text exposition format. The operator's: an admin key or a "
    "`basic_auth` pair (with no keys at all: open).", tag="Operations",
    answers={200: Doc(TEXT, "The metrics.", media="text/plain"),
             401: Doc(TEXT, "No valid key.", media="text/plain"),
             403: Doc(TEXT, "A user key: metrics are the operator's.", media="text/plain"),
             421: Doc(TEXT, "A `Host` this daemon does not answer to (`allowed_hosts`).",
                      media="text/plain")})
async def metrics(request: web.Request) -> web.Response:
    """The operator's: an admin key or a ``basic_auth`` pair (with no keys at all: open,
    so to this daemon's own host names only, as the APIs are: ``origin.py``)."""
    try:
        origin.check_host(request)
    except HostNotAllowed as err:
        raise web.HTTPMisdirectedRequest(text=err.message + "\n") from None
    try:
        caller = await auth.resolve(request, basic=True)
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


class Ready(Sparse):
    status: Literal["ready", "not_ready"]
    reasons: list[str] | None = Field(None, description="Why not (with `not_ready`).")


@operation("Readiness", "Whether jobs can be taken now: not shutting down, the queue not "
           "full, some provider able to take one (Arting: a token it has not refused), "
           "and with replicas, Redis in reach. "
           "Reads local state only. Public.", tag="Operations",
           answers={200: Doc(Ready, "Ready."), 503: Doc(Ready, "Not ready, and why.")})
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
    if (down := request.config_dict[BACKEND].trouble()) is not None:
        reasons.append(f"{down}; requests that need it get a retryable 503")
    if reasons:
        return reply(Ready(status="not_ready", reasons=reasons), status=503)
    return reply(Ready(status="ready"))


class TokenView(Answer):
    """One Arting token's health, by label (never the token)."""

    label: str
    anonymous: bool
    state: Literal["ok", "cooling", "blocked", "invalid"]
    retry_in: float = Field(description="Seconds until it is tried or probed again.")
    in_flight: int
    jobs_ok: int
    errors: int
    last_error: str | None
    last_probe: float | None
    probes: dict[str, int] = Field(description="Probes by result: ok, failed, "
                                               "inconclusive.")
    balance: float | None = Field(description="Arting's `remain_balance` at its last poll.")
    balance_at: float | None
    client: str = Field(description="What carries its calls to Arting: the light pool or "
                                    "the browser-like client (curl_cffi), and the proxy.")
    source: Literal["configuration", "runtime"] = Field(
        description="`configuration` (auth_tokens) or `runtime` (added over the API, the "
                    "command line or the page).")
    fingerprint: str | None = Field(description="A runtime token's keyed fingerprint.")
    retired: bool = Field(description="Removed or rotated away: only the jobs it carries "
                                      "use it, then it leaves.")
    cookies: list[str] = Field(description="Names of the Cloudflare cookies pasted with it.")
    daily_limit: int | None = Field(description="Images per UTC day it may create.")
    min_interval: float | None = Field(description="Seconds between two creates.")
    images_today: int = Field(description="Images it created this UTC day (with replicas: "
                                          "all of them, as Redis last told).")
    paced_until: float | None = Field(description="When (Unix time) its pace lets it "
                                                  "create again; null: now.")


class ClearanceView(Answer):
    """The Cloudflare clearance in use: cookie names (never values)."""

    solver: bool
    cookies: list[str]
    user_agent: str | None
    last_failure: str | None


class TokensView(Answer):
    tokens: list[TokenView]
    max_jobs_per_token: int
    probe_backoff: tuple[float, float] = Field(description="First and longest pause "
                                                           "between probes, in seconds.")
    cloudflare: ClearanceView
    time: float


class ProbeView(TokensView):
    probed: dict[str, Literal["ok", "failed", "inconclusive"]] = Field(
        description="Each unhealthy token's probe result, by label.")


def _arting(request: web.Request) -> ArtingProvider:
    arting = request.config_dict[ARTING]
    if arting is None:
        raise NotFound("This daemon has no provider named `arting`, so no Arting tokens.")
    return arting


def tokens_view(request: web.Request) -> dict:
    arting = _arting(request)
    pool, solver = arting.pool, arting.client.solver
    return {
        "tokens": arting.tokens(),
        "max_jobs_per_token": pool.max_jobs,
        "probe_backoff": (pool.backoff, pool.max_backoff),
        "cloudflare": ClearanceView(
            solver=solver.enabled,
            cookies=sorted(solver.clearance.cookies),   # names only, never values
            user_agent=solver.clearance.user_agent, last_failure=solver.last_failure),
        "time": time.time(),
    }


@operation("Token health", "Every Arting token's health by label, and the Cloudflare "
           "clearance in use. 404 when no provider is named `arting`.",
           answers={200: TokensView}, errors=(404,))
@auth.admin
async def admin_tokens(request: web.Request) -> web.Response:
    return reply(TokensView(**tokens_view(request)))


@operation("Probe the unhealthy tokens now", "Instead of waiting for their backoff (after "
           "you fixed something). A probe is a poll, never a generation.",
           answers={200: ProbeView}, errors=(404,))
@auth.admin
async def admin_probe(request: web.Request) -> web.Response:
    probed = await _arting(request).pool.probe_unhealthy()
    return reply(ProbeView(probed=probed, **tokens_view(request)))


class CheckRuns:
    """One check at a time; a request that comes while one runs gets its report."""

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.last: CheckReport | None = None


class CheckTarget(Answer):
    """What was checked, and how."""

    base_url: str
    mode: Literal["live", "sandbox"]
    identities: list[str] = Field(description="The tokens' labels.")
    generate: bool
    img2img: bool


class FindingView(Answer):
    topic: str = Field(description="What was looked at: `reach`, `cloudflare`, a token's "
                                   "label, `image host` …")
    level: Literal["ok", "info", "warn", "fail"] = Field(description="`fail`: the daemon "
                                                        "would not work as configured.")
    message: str
    lines: list[str] = Field(description="The arting.toml lines it calls for.")
    data: dict[str, Any] = Field(description="What was measured.")


class CheckReport(Answer):
    ok: bool = Field(description="No finding failed: everything the daemon needs works.")
    summary: str
    target: CheckTarget
    started_at: float
    duration: float
    findings: list[FindingView]
    config_lines: list[str] = Field(description="Every arting.toml line the findings call "
                                                "for.")
    overridden_by_environment: dict[str, str] = Field(
        description="Proposed keys an environment variable sets (it wins over arting.toml): "
                    "key → variable.")


@operation("Run the check", "`arting-daemon check`'s no-cost part, in-process: reach, "
           "Cloudflare, every token, the envelope (polls only, never a generation). One at "
           "a time: a call while one runs gets that run's report. Needs the provider "
           "named `arting` (404 without one).",
           answers={200: Doc(CheckReport | None, "The report. A call that waited for a run "
                                                 "that failed gets the one before (null: "
                                                 "none).")},
           errors=(404,))
@auth.admin
async def admin_check(request: web.Request) -> web.Response:
    runs = request.config_dict[CHECKS]
    if runs.lock.locked():
        async with runs.lock:
            return reply(runs.last, as_type=CheckReport | None)
    async with runs.lock:
        settings = request.config_dict[SETTINGS]
        identities = [Identity(t.label, t.secret, t.anonymous)
                      for t in _arting(request).pool.live()]
        report = await run_check(settings, identities, Options(),
                                 mode="sandbox" if settings.sandbox else "live")
        runs.last = CheckReport.model_validate(report.to_json())
    return reply(runs.last)


@operation("The last check's report", "`null` before the first run.",
           answers={200: Doc(CheckReport | None, "The report, or null.")})
@auth.admin
async def last_check(request: web.Request) -> web.Response:
    return reply(request.config_dict[CHECKS].last, as_type=CheckReport | None)


def add_routes(app: web.Application) -> None:
    """On the root application."""
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/readyz", readyz)


def add_admin_routes(app: web.Application) -> None:
    """On the native API's sub-application (its auth middleware guards them)."""
    app.router.add_get("/admin/tokens", admin_tokens)
    app.router.add_post("/admin/tokens/probe", admin_probe)
    app[CHECKS] = CheckRuns()
    app.router.add_post("/admin/check", admin_check)
    app.router.add_get("/admin/check", last_check)
