"""Typed keys for what the application holds (aiohttp's ``web.AppKey``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from .config import Settings

if TYPE_CHECKING:
    from .auth import Principal
    from .backends import Backend
    from .clock import Clock
    from .engine.jobs import Job
    from .expiry import Expiry
    from .engine.journal import JobJournal
    from .engine.runner import Runner
    from .facades.a1111_state import A1111Store
    from .facades.callers import Followers
    from .facades.ops import CheckRuns
    from .generation import Catalog, Rules
    from .keys.gate import Gate
    from .keys.revocation import Revocation
    from .keys.ring import KeyStore
    from .metrics import Metrics
    from .operator_events import OperatorEvents
    from .providers.arting.provider import ArtingProvider
    from .providers.base import Provider
    from .retention import Retention
    from .sandbox import Sandbox
    from .store import ImageStore
    from .timing import DurationStats
    from .transport.director import Sessions
    from .webhooks import Webhooks

SETTINGS = web.AppKey("settings", Settings)
#: The time every service reads (``clock.py``).
CLOCK: web.AppKey[Clock] = web.AppKey("clock")
#: Where the state is kept (``backends/``), chosen once at start.
BACKEND: web.AppKey[Backend] = web.AppKey("backend")
RULES: web.AppKey[Rules] = web.AppKey("rules")
CATALOG: web.AppKey[Catalog] = web.AppKey("catalog")
METRICS: web.AppKey[Metrics] = web.AppKey("metrics")
STATS: web.AppKey[DurationStats] = web.AppKey("stats")
STORE: web.AppKey[ImageStore] = web.AppKey("store")
JOURNAL: web.AppKey[JobJournal[Job]] = web.AppKey("journal")
#: The outbound aiohttp sessions (the shared one, one per SOCKS proxy) and the proxies.
HTTP: web.AppKey[Sessions] = web.AppKey("http")
#: The provider jobs run on (a router when there are several), and the Arting provider
#: named ``arting``, if there is one (its tokens, for the admin API).
PROVIDER: web.AppKey[Provider] = web.AppKey("provider")
ARTING: web.AppKey[ArtingProvider | None] = web.AppKey("arting")
#: What the operator must hear about the tokens (``operator_events.py``).
EVENTS: web.AppKey[OperatorEvents] = web.AppKey("operator_events")
ENGINE: web.AppKey[Runner] = web.AppKey("engine")
#: User keys, and the limits they are held to.
KEYS: web.AppKey[KeyStore] = web.AppKey("keys")
GATE: web.AppKey[Gate] = web.AppKey("gate")
#: What ends a revoked or expired key's connections and jobs (``keys/revocation.py``).
REVOCATION: web.AppKey[Revocation] = web.AppKey("revocation")
SANDBOX: web.AppKey[Sandbox | None] = web.AppKey("sandbox")
CHECKS: web.AppKey[CheckRuns] = web.AppKey("checks")
#: What AUTOMATIC1111 clients set and run (options, requests in flight).
A1111: web.AppKey[A1111Store] = web.AppKey("a1111")
#: Who follows which job over the job API (``facades/callers.py``).
FOLLOWERS: web.AppKey[Followers] = web.AppKey("followers")
#: The open WebSocket connections (``facades/ws.py``).
WS_CLIENTS: web.AppKey[set] = web.AppKey("ws_clients", set)
#: Webhook deliveries (``webhooks.py``).
WEBHOOKS: web.AppKey[Webhooks] = web.AppKey("webhooks")
#: The bounded store's keeper, or None when the store has no cap.
RETENTION: web.AppKey[Retention | None] = web.AppKey("retention")
#: What removes expired job records and the images no record names.
EXPIRY: web.AppKey[Expiry] = web.AppKey("expiry")

#: Per request: its id (for logs), the CORS origin to echo, and who it is from.
REQUEST_ID = web.RequestKey("request_id", str)
CORS_ORIGIN = web.RequestKey("cors_origin", str)
PRINCIPAL: web.RequestKey[Principal] = web.RequestKey("principal")
