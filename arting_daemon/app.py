"""The application factory: routes, middlewares, and the services' life cycle.

Each protocol lives in its own sub-application with its own error shape and auth:

    /v1/...          OpenAI           (facades/openai_images.py, openai_chat.py, models.py)
    /sdapi/v1/...    AUTOMATIC1111    (facades/sdapi.py), and /internal/ping
    /arting/v1/...   native job API   (facades/jobs.py, its WebSocket ws.py), token admin
                                      (facades/ops.py)
    /                web page, /healthz, /readyz, /metrics (facades/ops.py),
                     /openapi.json and /docs (facades/docs.py)

Each sub-application says which protocol it speaks (``openapi.API``), for the OpenAPI
document, which is built from the router and the handlers' ``@operation``s.

Each service has its own cleanup context, opened in this order and closed in reverse (if
one fails to start, those already started are closed): the emulators with ``--sandbox``;
what holds no resource (rules, catalogue, metrics, timings, the image store); the backend
where the state is kept (``backends/``: the data directory, or Redis); job records; user
keys and their limits' counts; the outbound HTTP sessions and proxies; the providers; the
job runner with the result cache; AUTOMATIC1111's state; webhooks; the bounded store's
keeper. Every store comes from the backend, chosen once, here.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import secrets
import time
from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web

from . import auth, datadir, imaging, logs
from .backends import choose
from .clock import SYSTEM, Clock
from .config import ConfigError, Settings
from .engine.cache import ResultCache
from .engine.jobs import Job
from .engine.runner import Runner, RunnerSettings
from .expiry import Expiry
from .facades import (catalog_view, docs, jobs, keys, models, openai_chat, openai_errors,
                      openai_images, ops, origin, sdapi, sdapi_errors, status, tokens, views,
                      web as web_page, ws)
from .facades.callers import Followers
from .operator_events import OperatorEvents, OperatorSettings
from .generation import Catalog, Rules
from .keys.gate import Gate
from .keys.revocation import Revocation
from .metrics import Metrics
from .openapi import API
from .provider_config import ProviderConfig, check as check_providers
from .providers.build import Services, open_providers
from .retention import StoreLimits
from .state import (A1111, ARTING, BACKEND, CATALOG, CLOCK, CORS_ORIGIN, ENGINE, EVENTS,
                    EXPIRY, FOLLOWERS, GATE, HTTP, JOURNAL, KEYS, METRICS, PROVIDER,
                    REQUEST_ID, RETENTION, REVOCATION, RULES, SANDBOX, SETTINGS, STATS, STORE,
                    WEBHOOKS, WS_CLIENTS)
from .store import ImageStore
from .timing import DurationStats, Timing
from .transport.director import Sessions, plan_of
from .webhooks import Webhooks, WebhookSettings

log = logging.getLogger(__name__)


def create_app(settings: Settings, clock: Clock = SYSTEM) -> web.Application:
    app = web.Application(client_max_size=int(settings.max_body_mb * 1024 * 1024),
                          middlewares=[request_context, cors])
    app[SETTINGS] = settings
    app[CLOCK] = clock
    app[WS_CLIENTS] = set()
    app[FOLLOWERS] = Followers()
    app.cleanup_ctx.extend([sandbox_context, state_context, backend_context, journal_context,
                            keys_context, http_context, provider_context, runner_context,
                            revocation_context, a1111_context, webhooks_context,
                            retention_context, expiry_context])
    app.on_shutdown.append(drain)
    app.on_response_prepare.append(_stamp_response)

    ops.add_routes(app)
    web_page.add_routes(app)
    docs.add_routes(app)

    # Each API checks Host, Origin and the body's type (facades/origin.py) before the
    # caller, so those refusals come in its own error shape too.
    openai = web.Application(middlewares=[openai_errors.middleware, origin.middleware,
                                          auth.middleware()])
    openai[API] = openai_errors.OPENAI
    openai_images.add_routes(openai)
    openai_chat.add_routes(openai)
    models.add_routes(openai)
    app.add_subapp("/v1", openai)

    # A1111 clients (SillyTavern) replace the URL path: these live at the root.
    a1111 = web.Application(middlewares=[sdapi_errors.middleware, origin.middleware,
                                         auth.middleware(basic=True)])
    a1111[API] = sdapi_errors.A1111_API
    sdapi.add_routes(a1111)
    app.add_subapp("/sdapi/v1", a1111)
    app.router.add_get("/internal/ping", sdapi.ping)

    native = web.Application(middlewares=[openai_errors.middleware, origin.middleware,
                                          auth.middleware()])
    native[API] = openai_errors.NATIVE
    jobs.add_routes(native)
    status.add_routes(native)
    catalog_view.add_routes(native)
    keys.add_routes(native)
    ws.add_routes(native)
    ops.add_admin_routes(native)
    tokens.add_routes(native)
    app.add_subapp("/arting/v1", native)
    return app


def check_exposure(settings: Settings) -> None:
    """Refuse to serve an open API on a network address unless told to.

    In a container the daemon must listen on all interfaces, and what is reachable is
    decided on the host: there the operator's ``published_host`` is what counts."""
    published = settings.published_host
    if settings.auth_required or settings.allow_insecure or is_loopback(settings.host) \
            or (published and is_loopback(published)):
        return
    if published:
        raise ConfigError(
            f"Refusing to serve with no API key: the port is published on {published}, so "
            "anyone on the network could use your Arting account. Set API_MASTER_KEY, or "
            "publish the port on the host's 127.0.0.1 only and set "
            "ARTING_PUBLISHED_HOST=127.0.0.1 (with compose.yaml that one variable does "
            "both), or set ARTING_ALLOW_INSECURE=true if this network is trusted.")
    raise ConfigError(
        f"Refusing to listen on {settings.host} with no API key: anyone on the network "
        "could use your Arting account. Set API_MASTER_KEY (or `api_keys`), or pass "
        "--allow-insecure if this network is trusted. In a container, if its port is "
        "published on the host's loopback only (-p 127.0.0.1:8090:8090), say so with "
        "ARTING_PUBLISHED_HOST=127.0.0.1.")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# --- services --------------------------------------------------------------------------

async def sandbox_context(app: web.Application) -> AsyncIterator[None]:
    """With ``--sandbox``, start the Arting emulator first and point the daemon at it,
    and the emulators of the other providers the sandbox offers (``sandbox_providers``)."""
    settings = app[SETTINGS]
    if not settings.sandbox:
        app[SANDBOX] = None
        yield
        return
    from .sandbox.providers import emulated_providers
    from .sandbox.replay import start_sandbox

    sandbox = await start_sandbox(settings.sandbox_generation_time, settings.sandbox_replay)
    log.info("sandbox: Arting emulator at %s%s", sandbox.url,
             f", replaying {settings.sandbox_replay}" if settings.sandbox_replay else "")
    try:
        async with emulated_providers(settings) as others:
            app[SETTINGS] = sandbox_settings(settings, sandbox.url or "", others)
            app[SANDBOX] = sandbox
            yield
    finally:
        await sandbox.close()


def sandbox_settings(settings: Settings, url: str,
                     others: list[ProviderConfig] | None = None) -> Settings:
    """The settings with the emulator at ``url`` as Arting, and ``others`` (providers at
    their emulators) added. Replaying a record, it stands in for the live Arting, so
    image-to-image and upscaling stay as configured; else they are on."""
    update: dict = {"base_url": url}
    if settings.sandbox_replay is None:
        update.update(img2img=True, upscale=True)
    if others:
        providers = [*settings.providers, *others]
        try:
            check_providers(providers, settings.fallbacks, settings.default_model,
                            settings.extra_models)
            update["providers"] = providers
        except ValueError as exc:
            log.warning("sandbox: the emulated providers are left out (%s)", exc)
    return settings.model_copy(update=update)


async def state_context(app: web.Application) -> AsyncIterator[None]:
    """What holds no resource: the rules, the catalogue, metrics, timings, the store."""
    settings = app[SETTINGS]
    await asyncio.to_thread(datadir.prepare, settings.data_dir)
    logs.add_secrets(*settings.secrets())
    app[RULES] = rules = Rules.of(settings)
    app[CATALOG] = Catalog(rules)
    app[METRICS] = Metrics()
    app[STATS] = DurationStats(Timing.of(settings))
    app[STORE] = ImageStore(settings.data_dir)
    imaging.guard(max(settings.max_input_pixels, settings.max_upscale_pixels))
    yield


async def backend_context(app: web.Application) -> AsyncIterator[None]:
    """Where the state is kept (``backends/``), chosen here once: the data directory, or
    with ``redis_url`` the Redis replicas share. Every store below comes from it."""
    backend = choose(app[SETTINGS], app[CLOCK])
    await backend.open(app[METRICS])
    app[BACKEND] = backend
    try:
        yield
    finally:
        await backend.close()


async def journal_context(app: web.Application) -> AsyncIterator[None]:
    """Job records."""
    async with app[BACKEND].journal(Job.from_record) as journal:
        app[JOURNAL] = journal
        yield


async def keys_context(app: web.Application) -> AsyncIterator[None]:
    """User keys, and the counts their limits are held to."""
    backend = app[BACKEND]
    async with backend.keys() as ring, backend.counters(app[JOURNAL]) as counters:
        app[KEYS], app[GATE] = ring, Gate(ring, app[METRICS], counters, app[CLOCK])
        yield


async def http_context(app: web.Application) -> AsyncIterator[None]:
    """The proxies every outbound request goes through (said at start, masked), and the
    HTTP client sessions for the exchanges that are not Arting's, whose requests the
    director carries (``transport/director.py``): the other providers. (Webhooks keep a
    session of their own.)

    At most 64 exchanges in flight per host: it bounds how many answers one turn of the
    event loop handles when thousands of jobs finish together (bench/RESULTS.md, scale)."""
    settings = app[SETTINGS]
    plan = plan_of(settings)
    logs.add_secrets(*plan.secrets())
    said = plan.describe()
    if said:
        log.info("outbound requests go through the proxy %s", said)
    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=128, limit_per_host=64, ttl_dns_cache=300),
        cookie_jar=aiohttp.DummyCookieJar())
    app[HTTP] = sessions = Sessions(session, plan)
    try:
        yield
    finally:
        await sessions.close()
        await session.close()


async def provider_context(app: web.Application) -> AsyncIterator[None]:
    """The providers (``providers/build.py``): Arting from the settings, and with
    ``[[providers]]`` the others behind a router; token pools probe in the background
    (the ``arting`` provider's shares its tokens' health and places on the backend's
    board)."""
    services = Services(app[SETTINGS], app[HTTP], app[STORE], app[STATS], app[METRICS],
                        app[CATALOG], app[BACKEND].board, app[CLOCK],
                        await app[BACKEND].fingerprint_key(), app[BACKEND].vault)
    events = OperatorEvents(OperatorSettings.of(app[SETTINGS]), app[METRICS], app[CLOCK])
    async with open_providers(services) as (provider, arting):
        app[PROVIDER], app[ARTING], app[EVENTS] = provider, arting, events
        if arting is not None:      # its tokens' troubles are the operator's to hear
            arting.pool.on_event.append(events.raised)
        yield


async def runner_context(app: web.Application) -> AsyncIterator[None]:
    """The job runner, and the result cache's index; at start the runner resumes what the
    journal says was unfinished."""
    settings = app[SETTINGS]
    async with contextlib.AsyncExitStack() as stack:
        cache = None
        if settings.result_cache:
            index = await stack.enter_async_context(app[BACKEND].results(app[JOURNAL]))
            cache = ResultCache(index, app[STORE], "sandbox" if settings.sandbox
                                else settings.base_url)
        runner = Runner(RunnerSettings.of(settings), app[PROVIDER], app[STORE], app[JOURNAL],
                        app[STATS], app[METRICS], admission=app[GATE], cache=cache,
                        clock=app[CLOCK])
        app[METRICS].watch(runner)
        app[ENGINE] = runner
        stack.push_async_callback(runner.close)
        await runner.start()
        yield


async def revocation_context(app: web.Application) -> AsyncIterator[None]:
    """A key revoked or expired ends its open connections and its unfinished jobs."""
    revocation = Revocation(app[KEYS], app[ENGINE], app[CLOCK])
    app[REVOCATION] = revocation
    await revocation.start()
    try:
        yield
    finally:
        await revocation.close()


async def webhooks_context(app: web.Application) -> AsyncIterator[None]:
    """Webhook deliveries: those a previous run left pending go on."""
    settings, runner = app[SETTINGS], app[ENGINE]
    store, fallback = app[STORE], f"http://{settings.host}:{settings.port}"

    def render(job: Job) -> dict:
        """The job as a delivery carries it: as the job API shows it."""
        view = views.job_dict(settings.public_url or job.origin or fallback, store, runner, job)
        return view.model_dump(mode="json", by_alias=True, exclude={"webhooks"})

    async with app[BACKEND].deliveries(app[JOURNAL]) as deliveries:
        webhooks = Webhooks(WebhookSettings.of(settings), deliveries, runner, render,
                            app[METRICS], app[CLOCK])
        await webhooks.start()
        app[METRICS].watch(webhooks)
        app[WEBHOOKS] = webhooks
        app[EVENTS].attach(webhooks)        # the operator's events go the same way
        try:
            yield
        finally:
            app[EVENTS].attach(None)
            await webhooks.close()


async def retention_context(app: web.Application) -> AsyncIterator[None]:
    """With ``store_max_gb`` or ``store_max_images``, keep the store under its caps."""
    limits = StoreLimits.of(app[SETTINGS])
    if not limits.bounded:
        app[RETENTION] = None
        yield
        return
    retention = app[BACKEND].retention(limits, app[STORE], app[JOURNAL], app[ENGINE].pinned)
    app[METRICS].watch(retention)
    app[RETENTION] = retention
    retention.start()
    try:
        yield
    finally:
        await retention.close()


async def expiry_context(app: web.Application) -> AsyncIterator[None]:
    """Job records expire after ``job_retention``; images no record names are removed."""
    expiry = Expiry(app[SETTINGS].job_retention, app[JOURNAL], app[STORE], app[ENGINE],
                    app[CLOCK], bounded=app[RETENTION])
    app[EXPIRY] = expiry
    expiry.start()
    try:
        yield
    finally:
        await expiry.close()


async def a1111_context(app: web.Application) -> AsyncIterator[None]:
    """What AUTOMATIC1111 clients set (kept across restarts) and run (for progress)."""
    async with app[BACKEND].a1111(app[ENGINE]) as state:
        app[A1111] = state
        yield


async def drain(app: web.Application) -> None:
    """On shutdown: stop taking jobs, let running ones finish within the grace period;
    the rest stay in the journal and resume at the next start."""
    await app[ENGINE].close(grace=app[SETTINGS].shutdown_grace)


# --- middlewares and small routes ---------------------------------------------------------

@web.middleware
async def request_context(request: web.Request, handler) -> web.StreamResponse:
    """Give every request an id (ours, or the caller's X-Request-Id) for its log lines."""
    given = request.headers.get("X-Request-Id", "")
    rid = given if given.isascii() and given.replace("-", "").isalnum() and len(given) <= 64 \
        else secrets.token_hex(6)
    request[REQUEST_ID] = rid
    token = logs.request_id.set(rid)
    started = time.perf_counter()
    try:
        response = await handler(request)
        log.debug("%s %s -> %s in %.1f ms", request.method, request.path, response.status,
                  (time.perf_counter() - started) * 1000)
        return response
    finally:
        logs.request_id.reset(token)


@web.middleware
async def cors(request: web.Request, handler) -> web.StreamResponse:
    """CORS, off unless ``cors_origins`` lists the caller's origin (or ``*``)."""
    origins = request.config_dict[SETTINGS].cors_origins
    origin = request.headers.get("Origin")
    allowed = bool(origin) and ("*" in origins or origin in origins)
    if allowed and request.method == "OPTIONS" and "Access-Control-Request-Method" in \
            request.headers:
        assert origin is not None
        return web.Response(status=204, headers={
            "Access-Control-Allow-Origin": origin,
            "Access-Control-Allow-Methods": "GET, POST, PATCH, DELETE, OPTIONS",
            "Access-Control-Allow-Headers": request.headers.get(
                "Access-Control-Request-Headers", "Authorization, Content-Type"),
            "Access-Control-Max-Age": "600", "Vary": "Origin"})
    if allowed and origin:
        request[CORS_ORIGIN] = origin
    return await handler(request)


async def _stamp_response(request: web.Request, response: web.StreamResponse) -> None:
    """Headers every answer carries, streamed ones too."""
    response.headers["X-Request-Id"] = request.get(REQUEST_ID, "-")
    if request.get(CORS_ORIGIN):
        response.headers["Access-Control-Allow-Origin"] = request[CORS_ORIGIN]
        response.headers["Vary"] = "Origin"

