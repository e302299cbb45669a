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

Each service (the emulator with ``--sandbox``, the journal, the HTTP session, the
provider, the job runner, webhooks, the bounded store's keeper) has its own cleanup context,
opened in that order and closed in reverse: if one fails to start, those already
started are closed.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import secrets
import time
from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web

from . import auth, datadir, logs
from .config import ConfigError, Settings
from .engine.cache import JournalResults, ResultCache, ResultIndex
from .engine.jobs import Job
from .engine.journal import Journal
from .engine.runner import Limits, Runner
from .facades import (docs, jobs, keys, models, openai_chat, openai_errors, openai_images,
                      ops, sdapi, sdapi_errors, web as web_page, ws)
from .facades.a1111_state import A1111State
from .generation import Catalog, Rules
from .keys.limits import Gate, LocalLedger
from .keys.ring import key_ring
from .metrics import Metrics
from .openapi import API
from .providers.build import Services, open_providers
from .retention import Retention, StoreLimits
from .state import (A1111, ARTING, CATALOG, CORS_ORIGIN, ENGINE, GATE, HTTP, JOURNAL, KEYS, LINK,
                    METRICS, PROVIDER, REQUEST_ID, RETENTION, RULES, SANDBOX, SETTINGS, STATS,
                    STORE, WEBHOOKS, WS_CLIENTS)
from .store import ImageStore
from .timing import DurationStats, Timing
from .webhooks import DeliveryStore, JournalDeliveries, Webhooks, WebhookSettings

log = logging.getLogger(__name__)


def create_app(settings: Settings) -> web.Application:
    app = web.Application(client_max_size=int(settings.max_body_mb * 1024 * 1024),
                          middlewares=[request_context, cors])
    app[SETTINGS] = settings
    app[WS_CLIENTS] = set()
    app.cleanup_ctx.extend([sandbox_context, state_context, redis_context, journal_context,
                            keys_context, http_context, provider_context, runner_context,
                            a1111_context, webhooks_context, retention_context])
    app.on_shutdown.append(drain)
    app.on_response_prepare.append(_stamp_response)

    ops.add_routes(app)
    web_page.add_routes(app)
    docs.add_routes(app)

    openai = web.Application(middlewares=[openai_errors.middleware, auth.middleware()])
    openai[API] = openai_errors.OPENAI
    openai_images.add_routes(openai)
    openai_chat.add_routes(openai)
    models.add_routes(openai)
    app.add_subapp("/v1", openai)

    # A1111 clients (SillyTavern) replace the URL path: these live at the root.
    a1111 = web.Application(middlewares=[sdapi_errors.middleware, auth.middleware(basic=True)])
    a1111[API] = sdapi_errors.A1111_API
    sdapi.add_routes(a1111)
    app.add_subapp("/sdapi/v1", a1111)
    app.router.add_get("/internal/ping", sdapi.ping)

    native = web.Application(middlewares=[openai_errors.middleware, auth.middleware()])
    native[API] = openai_errors.NATIVE
    jobs.add_routes(native)
    keys.add_routes(native)
    ws.add_routes(native)
    ops.add_admin_routes(native)
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
    """With ``--sandbox``, start the Arting emulator first and point the daemon at it."""
    settings = app[SETTINGS]
    if not settings.sandbox:
        app[SANDBOX] = None
        yield
        return
    from .sandbox.replay import start_sandbox

    sandbox = await start_sandbox(settings.sandbox_generation_time, settings.sandbox_replay)
    app[SETTINGS] = sandbox_settings(settings, sandbox.url or "")
    app[SANDBOX] = sandbox
    log.info("sandbox: Arting emulator at %s%s", sandbox.url,
             f", replaying {settings.sandbox_replay}" if settings.sandbox_replay else "")
    try:
        yield
    finally:
        await sandbox.close()


def sandbox_settings(settings: Settings, url: str) -> Settings:
    """The settings with the emulator at ``url`` as Arting. Replaying a record, it stands
    in for the live Arting, so image-to-image and upscaling stay as configured; else
    they are on."""
    update: dict = {"base_url": url}
    if settings.sandbox_replay is None:
        update.update(img2img=True, upscale=True)
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
    yield


async def redis_context(app: web.Application) -> AsyncIterator[None]:
    """With ``redis_url``: the link to the Redis this daemon's replicas share."""
    url = app[SETTINGS].redis_url
    if url is None:
        app[LINK] = None
        yield
        return
    from .replicas.link import RedisLink

    link = RedisLink(url.get_secret_value())
    await link.open()
    app[LINK] = link
    app[METRICS].watch(link)
    try:
        yield
    finally:
        await link.close()


async def journal_context(app: web.Application) -> AsyncIterator[None]:
    """Job records: in the data directory, or (replicas) in Redis."""
    settings, link = app[SETTINGS], app[LINK]
    if link is None:
        journal = Journal(settings.data_dir / "jobs.sqlite3", Job.from_record)
    else:
        from .replicas.jobs import RedisJournal
        journal = RedisJournal(link, Job.from_record, settings.replica_lease)
    await journal.open()
    app[JOURNAL] = journal
    try:
        yield
    finally:
        await journal.close()


async def keys_context(app: web.Application) -> AsyncIterator[None]:
    """User keys and the counts their limits are held to: in the data directory
    (``keys.sqlite3``; today's images from the journal), or (replicas) in Redis."""
    link = app[LINK]
    ring, ledger = key_ring(app[SETTINGS], link), None
    await ring.open()
    try:
        if link is None:
            ledger = LocalLedger(app[JOURNAL])
        else:
            from .replicas.limits import RedisLedger
            ledger = RedisLedger(link)
        await ledger.open()
        app[KEYS], app[GATE] = ring, Gate(ring, app[METRICS], ledger)
        yield
    finally:
        if ledger is not None:
            await ledger.close()
        await ring.close()


async def http_context(app: web.Application) -> AsyncIterator[None]:
    """One HTTP client session for the upstream exchanges that are not Arting's API
    calls or its result images, which have kept-alive connections of their own
    (``providers/arting/wire.py``): the signed upload's PUT, the other providers, the
    check. (Webhooks keep a session of their own.)

    At most 64 exchanges in flight per host: it bounds how many answers one turn of the
    event loop handles when thousands of jobs finish together (bench/RESULTS.md, scale)."""
    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=128, limit_per_host=64, ttl_dns_cache=300),
        cookie_jar=aiohttp.DummyCookieJar())
    app[HTTP] = session
    try:
        yield
    finally:
        await session.close()


async def provider_context(app: web.Application) -> AsyncIterator[None]:
    """The providers (``providers/build.py``): Arting from the settings, and with
    ``[[providers]]`` the others behind a router; token pools probe in the background
    (with replicas, Arting's shares its tokens' health and places through Redis)."""
    services = Services(app[SETTINGS], app[HTTP], app[STORE], app[STATS], app[METRICS],
                        app[CATALOG], app[LINK])
    async with open_providers(services) as (provider, arting):
        app[PROVIDER], app[ARTING] = provider, arting
        yield


async def runner_context(app: web.Application) -> AsyncIterator[None]:
    """The job runner; at start it resumes what the journal says was unfinished."""
    settings, link = app[SETTINGS], app[LINK]
    index: ResultIndex | None = None
    if settings.result_cache and link is None:
        index = JournalResults(app[JOURNAL])
    elif settings.result_cache:
        from .replicas.results import RedisResults
        index = RedisResults(link)
    cache = None
    if index is not None:
        await index.open()
        cache = ResultCache(index, app[STORE], "sandbox" if settings.sandbox
                            else settings.base_url)
    runner = Runner(Limits.of(settings), app[PROVIDER], app[STORE], app[JOURNAL],
                    app[STATS], app[METRICS], admission=app[GATE], cache=cache)
    app[METRICS].watch(runner)
    app[ENGINE] = runner
    try:
        await runner.start()
        yield
    finally:
        await runner.close()
        if index is not None:
            await index.close()


async def webhooks_context(app: web.Application) -> AsyncIterator[None]:
    """Webhook deliveries (in the journal, or with replicas in Redis): those a previous
    run left pending go on."""
    settings, runner = app[SETTINGS], app[ENGINE]
    store, fallback = app[STORE], f"http://{settings.host}:{settings.port}"

    def render(job: Job) -> dict:
        """The job as a delivery carries it: as the job API shows it."""
        view = jobs.job_dict(settings.public_url or job.origin or fallback, store, runner, job)
        return view.model_dump(mode="json", by_alias=True, exclude={"webhooks"})

    if app[LINK] is None:
        deliveries: DeliveryStore = JournalDeliveries(app[JOURNAL])
    else:
        from .replicas.webhooks import RedisDeliveries
        deliveries = RedisDeliveries(app[LINK], settings.webhook_timeout)
    webhooks = Webhooks(WebhookSettings.of(settings), deliveries, runner, render,
                        app[METRICS])
    await webhooks.start()
    app[METRICS].watch(webhooks)
    app[WEBHOOKS] = webhooks
    try:
        yield
    finally:
        await webhooks.close()


async def retention_context(app: web.Application) -> AsyncIterator[None]:
    """With ``store_max_gb`` or ``store_max_images``, keep the store under its caps."""
    limits = StoreLimits.of(app[SETTINGS])
    if not limits.bounded:
        app[RETENTION] = None
        yield
        return
    if app[LINK] is not None:
        raise ConfigError("store_max_gb and store_max_images do not work with redis_url yet: "
                          "the replicas share one image folder, and trimming it needs them "
                          "to agree. Leave them unset with replicas.")
    retention = Retention(limits, app[STORE], app[JOURNAL], app[ENGINE].pinned)
    app[METRICS].watch(retention)
    app[RETENTION] = retention
    retention.start()
    try:
        yield
    finally:
        await retention.close()


async def a1111_context(app: web.Application) -> AsyncIterator[None]:
    """What AUTOMATIC1111 clients set (kept across restarts) and run (for progress)."""
    if app[LINK] is None:
        state = A1111State(app[SETTINGS].data_dir / "a1111.json")
    else:
        from .replicas.a1111 import RedisA1111State
        state = RedisA1111State(app[LINK], app[ENGINE], app[SETTINGS].replica_lease)
    await state.open()
    app[A1111] = state
    try:
        yield
    finally:
        await state.close()


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
        return web.Response(status=204, headers={
            "Access-Control-Allow-Origin": origin,
            "Access-Control-Allow-Methods": "GET, POST, PATCH, DELETE, OPTIONS",
            "Access-Control-Allow-Headers": request.headers.get(
                "Access-Control-Request-Headers", "Authorization, Content-Type"),
            "Access-Control-Max-Age": "600", "Vary": "Origin"})
    if allowed:
        request[CORS_ORIGIN] = origin
    return await handler(request)


async def _stamp_response(request: web.Request, response: web.StreamResponse) -> None:
    """Headers every answer carries, streamed ones too."""
    response.headers["X-Request-Id"] = request.get(REQUEST_ID, "-")
    if request.get(CORS_ORIGIN):
        response.headers["Access-Control-Allow-Origin"] = request[CORS_ORIGIN]
        response.headers["Vary"] = "Origin"

