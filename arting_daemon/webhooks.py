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
never read.

Deliveries are journaled in the ``webhooks`` table, queued with the job's final record
(one transaction: a job never ends without its deliveries on disk), and each attempt's
outcome is journaled before the next is planned. After a restart the pending ones go
on where they were, with the same ``webhook-id``: nothing is dropped, and a receiver
sees a message twice only if the daemon died between its 2xx and the journal write
(at-least-once, which the id makes harmless). What became of each delivery is in the
job (``webhooks``), the log and the metrics; targets are shown by origin only, as a
URL's path may hold a token.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import logging
import random
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from prometheus_client.core import GaugeMetricFamily
from pydantic import SecretStr

from . import __version__
from .config import Section, webhook_key
from .engine.jobs import Job
from .engine.journal import Journal
from .engine.runner import Runner
from .errors import ArtingError, DestinationRefused, FeatureDisabled
from .metrics import Metrics
from .outbound import OutboundPolicy

log = logging.getLogger(__name__)

#: Backoff between attempts: FIRST seconds, doubling, at most CAP (with ±20% jitter).
FIRST, CAP = 1.0, 600.0
#: Deliveries being attempted at once.
PARALLEL = 16
_jitter = random.Random()


@dataclass(frozen=True)
class WebhookSettings(Section):
    webhook_urls: list[str]
    webhook_secret: SecretStr | None
    webhook_allow_hosts: list[str]
    webhook_timeout: float
    webhook_retry_for: float


@dataclass
class Delivery:
    """One message to one target, as the ``webhooks`` table keeps it."""

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
    _task: asyncio.Task | None = field(default=None, repr=False)

    def row(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items() if not k.startswith("_")}

    def summary(self) -> dict[str, Any]:
        """What the job shows of it."""
        return {"id": self.id, "target": target(self.url), "state": self.state,
                "attempts": self.attempts, "last_status": self.last_status,
                "last_error": self.last_error, "delivered_at":
                self.done_at if self.state == "delivered" else None}


def target(url: str) -> str:
    """A URL shown without its path and query, which may hold a token."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"


def sign(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` header (Standard Webhooks, ``v1``)."""
    mac = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode("ascii")


class Webhooks:
    def __init__(self, settings: WebhookSettings, journal: Journal[Job], runner: Runner,
                 render: Callable[[Job], dict[str, Any]], metrics: Metrics) -> None:
        self.settings = settings
        self.key = webhook_key(settings.webhook_secret) if settings.webhook_secret else None
        self.policy = OutboundPolicy(settings.webhook_allow_hosts)
        self.journal = journal
        self.runner = runner
        self.render = render
        self.counts = metrics.webhook_deliveries
        self._pending: dict[str, Delivery] = {}
        self._slots = asyncio.Semaphore(PARALLEL)
        self._session: aiohttp.ClientSession | None = None

    # --- life cycle -------------------------------------------------------------------

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(resolver=self.policy.resolver(), limit=PARALLEL),
            cookie_jar=aiohttp.DummyCookieJar(), auto_decompress=False)
        rows = await self.journal.rows(
            "SELECT id, job_id, url, body, created_at, next_at, attempts, state, "
            "last_status, last_error, done_at FROM webhooks WHERE state = 'pending'")
        for row in rows:
            self._schedule(Delivery(*row))
        if rows:
            log.info("webhooks: %d delivery(ies) resumed from the journal", len(rows))
        self.runner.on_finished.append(self.job_ended)

    async def close(self) -> None:
        with contextlib.suppress(ValueError):
            self.runner.on_finished.remove(self.job_ended)
        tasks = [d._task for d in self._pending.values() if d._task]
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

    # --- deliveries ---------------------------------------------------------------------

    def job_ended(self, job: Job) -> None:
        """Plan the job's deliveries, queued with its final record (the runner calls this
        right after queuing it)."""
        urls = list(dict.fromkeys([*self.settings.webhook_urls,
                                   *([job.webhook_url] if job.webhook_url else [])]))
        if not urls or self.key is None:
            return
        now = time.time()
        body = json.dumps({
            "type": f"job.{job.state.value}",
            "timestamp": datetime.fromtimestamp(now, timezone.utc).isoformat(
                timespec="milliseconds").replace("+00:00", "Z"),
            "data": self.render(job)})
        for url in urls:
            delivery = Delivery(id=f"msg_{uuid.uuid4().hex}", job_id=job.id, url=url,
                                body=body, created_at=now, next_at=now)
            self.journal.put("webhooks", delivery.row())
            job.webhooks.append(delivery.summary())
            self._schedule(delivery)
        self.runner.update(job)

    def _schedule(self, delivery: Delivery) -> None:
        self._pending[delivery.id] = delivery
        delivery._task = asyncio.create_task(self._deliver(delivery),
                                             name=f"webhook-{delivery.id}")

    async def _deliver(self, delivery: Delivery) -> None:
        """Attempt until delivered or given up (each outcome journaled)."""
        try:
            while delivery.state == "pending":
                await asyncio.sleep(max(0.0, delivery.next_at - time.time()))
                async with self._slots:
                    retry_after = await self._attempt(delivery)
                await self._record(delivery, retry_after)
        finally:
            self._pending.pop(delivery.id, None)

    async def _attempt(self, delivery: Delivery) -> float | None:
        """One POST; sets the outcome on ``delivery``; returns a Retry-After, if given."""
        assert self._session is not None and self.key is not None
        body = delivery.body.encode()
        stamp = int(time.time())
        headers = {"Content-Type": "application/json", "User-Agent": f"arting-2api/{__version__}",
                   "webhook-id": delivery.id, "webhook-timestamp": str(stamp),
                   "webhook-signature": sign(self.key, delivery.id, stamp, body)}
        delivery.attempts += 1
        delivery.last_status = None
        try:
            await self.policy.check_webhook(delivery.url)
            async with self._session.post(
                    delivery.url, data=body, headers=headers, allow_redirects=False,
                    timeout=aiohttp.ClientTimeout(total=self.settings.webhook_timeout)) as resp:
                delivery.last_status = resp.status      # the body is never read
                if 200 <= resp.status < 300:
                    delivery.state, delivery.last_error = "delivered", None
                    return None
                delivery.last_error = f"answered HTTP {resp.status}"
                return _retry_after(resp) if resp.status in (429, 503) else None
        except ArtingError as err:
            delivery.last_error = err.message
        except asyncio.TimeoutError:
            delivery.last_error = f"no answer within {self.settings.webhook_timeout:g} s"
        except (aiohttp.ClientError, OSError) as err:
            delivery.last_error = f"{type(err).__name__}: {str(err)[:200]}"
        return None

    async def _record(self, delivery: Delivery, retry_after: float | None) -> None:
        now = time.time()
        if delivery.state == "pending":
            wait = retry_after if retry_after is not None else backoff(delivery.attempts)
            delivery.next_at = now + wait
            if delivery.next_at > delivery.created_at + self.settings.webhook_retry_for:
                delivery.state = "failed"
        if delivery.state != "pending":
            delivery.done_at = now
        self.counts.labels({"pending": "retry"}.get(delivery.state, delivery.state)).inc()
        log.log(logging.WARNING if delivery.state == "failed" else logging.INFO,
                "webhook %s for job %s to %s: %s after %d attempt(s)%s", delivery.id,
                delivery.job_id, target(delivery.url),
                {"pending": "will retry", "delivered": "delivered",
                 "failed": "given up"}[delivery.state], delivery.attempts,
                f" ({delivery.last_error})" if delivery.last_error else "")
        self.journal.put("webhooks", delivery.row())
        job = await self.runner.get(delivery.job_id)
        if job is not None:
            job.webhooks = [delivery.summary() if w.get("id") == delivery.id else w
                            for w in job.webhooks]
            self.runner.update(job)
        await self.journal.flush()     # on disk before the next attempt is planned

    # --- what the operator sees -----------------------------------------------------------

    def collect(self) -> Iterator[GaugeMetricFamily]:
        yield GaugeMetricFamily("arting_webhooks_pending",
                                "Webhook deliveries not yet delivered or given up.",
                                value=len(self._pending))


def backoff(attempt: int) -> float:
    """Seconds before attempt ``attempt + 1``: FIRST, doubling up to CAP, ±20%."""
    return min(CAP, FIRST * 2 ** (attempt - 1)) * _jitter.uniform(0.8, 1.2)


def _retry_after(resp: aiohttp.ClientResponse) -> float | None:
    try:
        return min(CAP, max(0.0, float(resp.headers.get("Retry-After", ""))))
    except ValueError:
        return None

