"""Webhooks: when a job ends, it is POSTed as JSON to the configured ``webhook_urls`` and
to the job's own ``webhook_url``, signed the Standard Webhooks way.

Each delivery is a message: ``{"type": "job.succeeded" | "job.failed" | "job.cancelled",
"timestamp", "data": <the job, as GET /arting/v1/jobs/{id} shows it>}``, with the headers
``webhook-id`` (the message's id, the same on every retry, for receivers to drop
duplicates), ``webhook-timestamp`` (Unix seconds of this attempt) and
``webhook-signature`` (``v1,`` and the base64 HMAC-SHA256 of ``id.timestamp.body`` keyed
with ``webhook_secret``, a ``whsec_<base64>`` secret).

A 2xx answer delivers it; anything else (an error status, a redirect, no answer within
``webhook_timeout``, a refused address) is retried with exponential backoff (or after a
429/503's ``Retry-After``) until ``webhook_retry_for`` seconds after the job ended; then
it is given up. Targets pass the outbound policy (``outbound.py``). The answer's body is
never read. Deliveries go direct, unless ``webhook_proxy`` names a proxy: then the
policy's check of the target's name before each attempt still holds, and the proxy
makes the connection.

Operator events (``operator_events.py``) go the same way, as deliveries of no job.

Deliveries live in a store: the journal's ``webhooks`` table (``JournalDeliveries``,
queued with the job's final record, so one transaction holds both), or Redis for
replicas (``replicas/webhooks.py``). A loop takes the deliveries that are due, claimed
for this process (with replicas, one replica attempts a delivery at a time, and any
replica goes on with those a dead one left), attempts each and stores the outcome before
the next attempt is planned. After a restart the pending ones go on where they were,
with the same ``webhook-id``: nothing is dropped, and a receiver sees a message twice
only if the daemon died between its 2xx and storing that (at-least-once, which the id
makes harmless). What became of each delivery is in the job (``webhooks``, read from
the store when a job is asked for), the log and the metrics; targets are shown by origin
only, as a URL's path may hold a token.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import logging
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, fields
from datetime import datetime, timezone
from typing import Any, Protocol
from urllib.parse import urlsplit

import aiohttp
from python_socks import ProxyError as SocksError
from prometheus_client.core import GaugeMetricFamily
from pydantic import SecretStr

from . import __version__
from .clock import SYSTEM, Clock
from .config import Section, webhook_key
from .engine.jobs import Job
from .engine.journal import Journal
from .engine.runner import Runner
from .errors import ArtingError, DestinationRefused, FeatureDisabled
from .metrics import Metrics
from .outbound import OutboundPolicy
from .retry import backoff, retry_after
from .transport.director import aiohttp_failure, aiohttp_proxy, socks_session
from .transport.proxies import parse

log = logging.getLogger(__name__)

#: Backoff between attempts: FIRST seconds, doubling, at most CAP (with ±20% jitter).
FIRST, CAP = 1.0, 600.0
#: Deliveries being attempted at once (by this process).
PARALLEL = 16


@dataclass(frozen=True)
class WebhookSettings(Section):
    webhook_urls: list[str]
    webhook_secret: SecretStr | None
    webhook_allow_hosts: list[str]
    webhook_timeout: float
    webhook_retry_for: float
    webhook_proxy: SecretStr | None


@dataclass
class Delivery:
    """One message to one target, as the store keeps it."""

    id: str
    job_id: str
    url: str
    body: str
    created_at: float
    next_at: float
    attempts: int = 0
    state: str = "pending"            # pending, delivered, failed
    last_status: int | None = None
    last_error: str | None = None
    done_at: float | None = None

    def row(self) -> dict[str, Any]:
        return dict(vars(self))

    def summary(self) -> dict[str, Any]:
        """What the job shows of it."""
        return {"id": self.id, "target": target(self.url), "state": self.state,
                "attempts": self.attempts, "last_status": self.last_status,
                "last_error": self.last_error, "delivered_at":
                self.done_at if self.state == "delivered" else None}


COLUMNS = ", ".join(f.name for f in fields(Delivery))


class DeliveryStore(Protocol):
    """Where deliveries are kept, and who attempts which."""

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    def add(self, delivery: Delivery) -> None:
        """Keep a new delivery (queued with the job's final record where it can be)."""

    def pending(self) -> int:
        """How many deliveries this process knows to be pending (for the metrics)."""

    def next_look(self, busy: set[str]) -> float | None:
        """When to look for due deliveries next (None: when told to)."""

    async def due(self, now: float, limit: int, busy: set[str]) -> list[Delivery]:
        """Up to ``limit`` pending deliveries due by ``now``, not in ``busy``, claimed for
        this process until ``save``."""

    async def save(self, delivery: Delivery) -> None:
        """Keep an attempt's outcome (and release the claim), on disk when it returns."""

    async def load(self, ids: list[str]) -> list[Delivery]: ...


class JournalDeliveries:
    """Deliveries in the SQLite journal's ``webhooks`` table: one daemon attempts them,
    and knows when each pending one is due."""

    def __init__(self, journal: Journal[Job]) -> None:
        self.journal = journal
        self._due: dict[str, float] = {}        # pending: id → when due

    async def open(self) -> None:
        self._due = dict(await self.journal.rows(
            "SELECT id, next_at FROM webhooks WHERE state = 'pending'"))

    async def close(self) -> None:
        """Everything is in the journal already."""

    def add(self, delivery: Delivery) -> None:
        self.journal.put("webhooks", delivery.row())
        self._due[delivery.id] = delivery.next_at

    def pending(self) -> int:
        return len(self._due)

    def next_look(self, busy: set[str]) -> float | None:
        return min((t for i, t in self._due.items() if i not in busy), default=None)

    async def due(self, now: float, limit: int, busy: set[str]) -> list[Delivery]:
        ready = sorted((t, i) for i, t in self._due.items() if t <= now and i not in busy)
        return await self.load([i for _, i in ready[:limit]])

    async def save(self, delivery: Delivery) -> None:
        self.journal.put("webhooks", delivery.row())
        if delivery.state == "pending":
            self._due[delivery.id] = delivery.next_at
        else:
            self._due.pop(delivery.id, None)
        await self.journal.flush()

    async def load(self, ids: list[str]) -> list[Delivery]:
        if not ids:
            return []
        marks = ",".join("?" * len(ids))
        rows = await self.journal.rows(f"SELECT {COLUMNS} FROM webhooks WHERE id IN ({marks})",
                                       tuple(ids))
        return [Delivery(*row) for row in rows]


def target(url: str) -> str:
    """A URL shown without its path and query, which may hold a token."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"


def message(kind: str, at: float, data: dict[str, Any]) -> str:
    """A delivery's body: ``{"type", "timestamp", "data"}``."""
    return json.dumps({"type": kind, "timestamp": datetime.fromtimestamp(
        at, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "data": data})


def sign(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` header (Standard Webhooks, ``v1``)."""
    mac = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode("ascii")


class Webhooks:
    def __init__(self, settings: WebhookSettings, store: DeliveryStore, runner: Runner,
                 render: Callable[[Job], dict[str, Any]], metrics: Metrics,
                 clock: Clock = SYSTEM) -> None:
        self.settings = settings
        self.key = webhook_key(settings.webhook_secret) if settings.webhook_secret else None
        self.policy = OutboundPolicy(webhook_allow_hosts=settings.webhook_allow_hosts)
        self.store = store
        self.runner = runner
        self.render = render
        self.counts = metrics.webhook_deliveries
        self.clock = clock
        self._busy: dict[str, asyncio.Task] = {}
        self._wake = asyncio.Event()
        self._loop: asyncio.Task | None = None
        self._session: aiohttp.ClientSession | None = None
        self.proxy = parse(settings.webhook_proxy.get_secret_value()) \
            if settings.webhook_proxy else None
        self._extra = aiohttp_proxy(self.proxy) if self.proxy and not self.proxy.socks else {}

    # --- life cycle -------------------------------------------------------------------

    async def start(self) -> None:
        """Go on with the pending deliveries; nothing runs when webhooks are off (no
        ``webhook_secret``: no delivery can be made)."""
        if self.key is None:
            return
        if self.proxy is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(resolver=self.policy.resolver(),
                                               limit=PARALLEL),
                cookie_jar=aiohttp.DummyCookieJar(), auto_decompress=False)
        elif self.proxy.socks:
            self._session = socks_session(self.proxy, limit=PARALLEL)
        else:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=PARALLEL),
                cookie_jar=aiohttp.DummyCookieJar(), auto_decompress=False)
        if self.proxy is not None:
            log.info("webhooks go through the proxy %s (webhook_proxy)", self.proxy)
        if self.store.pending():
            log.info("webhooks: %d delivery(ies) go on from the journal",
                     self.store.pending())
        self.runner.on_finished.append(self.job_ended)
        self._loop = asyncio.create_task(self._run(), name="webhooks")

    async def close(self) -> None:
        with contextlib.suppress(ValueError):
            self.runner.on_finished.remove(self.job_ended)
        tasks = [t for t in (self._loop, *self._busy.values()) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()

    # --- what clients ask for -------------------------------------------------------------

    async def accept(self, url: str) -> None:
        """Check a job's ``webhook_url`` as it is submitted (raises a 400 to send back)."""
        if self.key is None:
            raise FeatureDisabled("Webhooks are off: the operator has to set webhook_secret "
                                  "(deliveries are signed with it).", param="webhook_url")
        if len(url) > 2048:
            raise DestinationRefused("webhook_url is longer than 2048 characters.",
                                     param="webhook_url")
        await self.policy.check_webhook(url, param="webhook_url")

    async def refresh(self, jobs: Iterable[Job]) -> None:
        """Bring the jobs' ``webhooks`` up to date from the store (their records keep the
        deliveries as planned when they ended)."""
        by_id = {w["id"]: job for job in jobs for w in job.webhooks}
        if not by_id:
            return
        for delivery in await self.store.load(list(by_id)):
            job = by_id[delivery.id]
            job.webhooks = [delivery.summary() if w["id"] == delivery.id else w
                            for w in job.webhooks]

    # --- deliveries ---------------------------------------------------------------------

    def job_ended(self, job: Job) -> None:
        """Plan the job's deliveries, queued with its final record (the runner calls this
        right after queuing it)."""
        urls = list(dict.fromkeys([*self.settings.webhook_urls,
                                   *([job.webhook_url] if job.webhook_url else [])]))
        if not urls or self.key is None:
            return
        now = self.clock.time()
        body = message(f"job.{job.state.value}", now, self.render(job))
        for url in urls:
            delivery = Delivery(id=f"msg_{uuid.uuid4().hex}", job_id=job.id, url=url,
                                body=body, created_at=now, next_at=now)
            self.store.add(delivery)
            job.webhooks.append(delivery.summary())
        self.runner.update(job)
        self._wake.set()

    def send(self, url: str, msg_id: str, kind: str, at: float, data: dict[str, Any]) -> None:
        """A message that is no job's (an operator event, ``operator_events.py``): kept and
        attempted as a job's are, so it too survives a restart; ``msg_id`` is its
        ``webhook-id``, the same on every attempt."""
        if self.key is None:
            return
        now = self.clock.time()
        self.store.add(Delivery(id=msg_id, job_id="", url=url, body=message(kind, at, data),
                                created_at=now, next_at=now))
        self._wake.set()

    async def _run(self) -> None:
        """Attempt what is due, as slots allow; look again when told or when it is time."""
        while True:
            try:
                free = PARALLEL - len(self._busy)
                if free > 0:
                    for delivery in await self.store.due(self.clock.time(), free,
                                                         set(self._busy)):
                        self._busy[delivery.id] = asyncio.create_task(
                            self._deliver(delivery), name=f"webhook-{delivery.id}")
            except ArtingError as err:       # the store is out of reach (Redis): later
                log.warning("webhooks: %s", err.message)
            self._wake.clear()
            look = self.store.next_look(set(self._busy))
            with contextlib.suppress(asyncio.TimeoutError):
                await self.clock.wait_for(
                    self._wake.wait(), None if look is None else max(0.0, look - self.clock.time()))

    async def _deliver(self, delivery: Delivery) -> None:
        try:
            retry_after = await self._attempt(delivery)
            await self._record(delivery, retry_after)
        except Exception:   # a bug, or a store out of reach: the claim lapses, it comes again
            log.exception("webhook %s: the attempt could not be recorded", delivery.id)
        finally:
            self._busy.pop(delivery.id, None)
            self._wake.set()

    async def _attempt(self, delivery: Delivery) -> float | None:
        """One POST; sets the outcome on ``delivery``; returns a Retry-After, if given."""
        assert self._session is not None and self.key is not None
        body = delivery.body.encode()
        stamp = int(self.clock.time())
        headers = {"Content-Type": "application/json", "User-Agent": f"arting-2api/{__version__}",
                   "webhook-id": delivery.id, "webhook-timestamp": str(stamp),
                   "webhook-signature": sign(self.key, delivery.id, stamp, body)}
        delivery.attempts += 1
        delivery.last_status = None
        try:
            await self.policy.check_webhook(delivery.url)
            async with self._session.post(
                    delivery.url, data=body, headers=headers, allow_redirects=False,
                    timeout=aiohttp.ClientTimeout(total=self.settings.webhook_timeout),
                    **self._extra) as resp:
                delivery.last_status = resp.status      # the body is never read
                if 200 <= resp.status < 300:
                    delivery.state, delivery.last_error = "delivered", None
                    return None
                delivery.last_error = f"answered HTTP {resp.status}"
                asked = retry_after(resp.headers.get("Retry-After"), self.clock.time()) \
                    if resp.status in (429, 503) else None
                return None if asked is None else min(CAP, asked)
        except ArtingError as err:
            delivery.last_error = err.message
        except asyncio.TimeoutError:
            delivery.last_error = f"no answer within {self.settings.webhook_timeout:g} s"
        except (aiohttp.ClientError, OSError, SocksError) as err:
            failed = aiohttp_failure(err, self.proxy, delivery.url)
            delivery.last_error = failed.message if failed else \
                f"{type(err).__name__}: {str(err)[:200]}"
        return None

    async def _record(self, delivery: Delivery, retry_after: float | None) -> None:
        now = self.clock.time()
        if delivery.state == "pending":
            wait = retry_after if retry_after is not None else \
                backoff(delivery.attempts, first=FIRST, cap=CAP, jitter="spread")
            delivery.next_at = now + wait
            if delivery.next_at > delivery.created_at + self.settings.webhook_retry_for:
                delivery.state = "failed"
        if delivery.state != "pending":
            delivery.done_at = now
        await self.store.save(delivery)       # stored before the next attempt is planned
        self.counts.labels({"pending": "retry"}.get(delivery.state, delivery.state)).inc()
        log.log(logging.WARNING if delivery.state == "failed" else logging.INFO,
                "webhook %s for %s to %s: %s after %d attempt(s)%s", delivery.id,
                f"job {delivery.job_id}" if delivery.job_id else "an operator event",
                target(delivery.url),
                {"pending": "will retry", "delivered": "delivered",
                 "failed": "given up"}[delivery.state], delivery.attempts,
                f" ({delivery.last_error})" if delivery.last_error else "")

    # --- what the operator sees -----------------------------------------------------------

    def collect(self) -> Iterator[GaugeMetricFamily]:
        yield GaugeMetricFamily("arting_webhooks_pending",
                                "Webhook deliveries not yet delivered or given up (those "
                                "this process knows of).", value=self.store.pending())

