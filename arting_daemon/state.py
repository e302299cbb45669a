"""Typed keys for what the application holds (aiohttp's ``web.AppKey``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import aiohttp
from aiohttp import web

from .config import Settings

if TYPE_CHECKING:
    from .auth import Principal
    from .engine.jobs import Job
    from .facades.a1111_state import A1111State
    from .engine.journal import Journal
    from .engine.runner import Runner
    from .facades.ops import CheckRuns
    from .generation import Catalog, Rules
    from .keys.limits import Gate
    from .keys.ring import KeyRing
    from .metrics import Metrics
    from .providers.arting.provider import ArtingProvider
    from .providers.base import Provider
    from .replicas.link import RedisLink
    from .retention import Retention
    from .sandbox import Sandbox
    from .store import ImageStore
    from .timing import DurationStats
    from .webhooks import Webhooks

SETTINGS = web.AppKey("settings", Settings)
RULES: web.AppKey[Rules] = web.AppKey("rules")
CATALOG: web.AppKey[Catalog] = web.AppKey("catalog")
METRICS: web.AppKey[Metrics] = web.AppKey("metrics")
STATS: web.AppKey[DurationStats] = web.AppKey("stats")
STORE: web.AppKey[ImageStore] = web.AppKey("store")
JOURNAL: web.AppKey[Journal[Job]] = web.AppKey("journal")
HTTP: web.AppKey[aiohttp.ClientSession] = web.AppKey("http", aiohttp.ClientSession)
#: The provider jobs run on (a router when there are several), and the Arting provider
#: named ``arting``, if there is one (its tokens, for the admin API).
PROVIDER: web.AppKey[Provider] = web.AppKey("provider")
ARTING: web.AppKey[ArtingProvider | None] = web.AppKey("arting")
ENGINE: web.AppKey[Runner] = web.AppKey("engine")
#: User keys, and the limits they are held to.
KEYS: web.AppKey[KeyRing] = web.AppKey("keys")
GATE: web.AppKey[Gate] = web.AppKey("gate")
SANDBOX: web.AppKey[Sandbox | None] = web.AppKey("sandbox")
CHECKS: web.AppKey[CheckRuns] = web.AppKey("checks")
#: What AUTOMATIC1111 clients set and run (options, requests in flight).
A1111: web.AppKey[A1111State] = web.AppKey("a1111")
#: With ``redis_url``: the link to the Redis replicas share (else None).
LINK: web.AppKey[RedisLink | None] = web.AppKey("link")
#: The open WebSocket connections (``facades/ws.py``).
WS_CLIENTS: web.AppKey[set] = web.AppKey("ws_clients", set)
#: Webhook deliveries (``webhooks.py``).
WEBHOOKS: web.AppKey[Webhooks] = web.AppKey("webhooks")
#: The bounded store's keeper, or None when the store has no cap.
RETENTION: web.AppKey[Retention | None] = web.AppKey("retention")

#: Per request: its id (for logs), the CORS origin to echo, and who it is from.
REQUEST_ID = web.RequestKey("request_id", str)
CORS_ORIGIN = web.RequestKey("cors_origin", str)
PRINCIPAL: web.RequestKey[Principal] = web.RequestKey("principal")
