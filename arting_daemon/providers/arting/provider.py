"""The Arting provider: a job as Arting runs it, with a token from the pool.

An attempt holds one token while Arting works on the job (each token has a bound on
jobs in flight). ``submit`` creates the job; it is sent again only when that cannot
make a second job (the connection was refused, Arting answered 5xx or 429, or refused
the token), on another token where the pool has one, with exponential backoff and full
jitter inside ``retry_budget``. ``follow`` polls on the schedule learned from recent
durations and rides out transient faults; Arting saying the job failed ends it at once.

What a restart needs is kept in the job's provider state: Arting's ``request_id``, the
fingerprint of the token it was created with (never the token), and the polls spent.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from dataclasses import dataclass
from typing import Literal

from ...config import Section
from ...errors import ArtingError, FeatureDisabled, UpstreamAuthError, UpstreamRateLimited
from ...metrics import Metrics
from ...retry import backoff
from ...store import ImageStore
from ...timing import DurationStats
from ..base import Attempt, Progress, Provider, Work
from .client import ArtingClient
from .tokens import Token, TokenPool, TokenState

log = logging.getLogger(__name__)

MAX_CREATE_ATTEMPTS = 6
MAX_POLL_REFUSALS = 3       # refused polls in a row before a (paid) job is given up


@dataclass(frozen=True)
class ArtingOptions(Section):
    img2img: bool
    img2img_transport: Literal["upload", "data_url"]
    submit_timeout: float
    retry_budget: float
    poll_max_interval: float


class ArtingProvider(Provider):
    name, label = "arting", "Arting"

    def __init__(self, options: ArtingOptions, client: ArtingClient, pool: TokenPool,
                 store: ImageStore, stats: DurationStats, metrics: Metrics) -> None:
        self.options = options
        self.client = client
        self.pool = pool
        self.store = store
        self.stats = stats
        self.metrics = metrics

    def require(self, feature: str) -> None:
        if feature == "img2img" and self.options.img2img:
            return
        if feature == "img2img":
            raise FeatureDisabled(
                "Image-to-image is switched off on this daemon, because Arting's "
                "image-to-image endpoint is unconfirmed. Set `img2img = true` in arting.toml "
                "(ARTING_IMG2IMG=1) to try it, or run the daemon with --sandbox.",
                param="image")
        raise FeatureDisabled(f"Arting does not offer {feature}.")

    def submitted(self, work: Work) -> bool:
        return work.provider_state.get("request_id") is not None

    def attempt(self, work: Work, deadline: float) -> ArtingAttempt:
        return ArtingAttempt(self, work, deadline)

    async def fetch(self, output: str) -> bytes:
        return await self.client.download(output)

    def health(self) -> dict:
        return {"tokens": self.pool.snapshot()}

    def unready(self) -> str | None:
        if all(t.state is TokenState.INVALID for t in self.pool.tokens):
            return "Arting refused every token; see /arting/v1/admin/tokens"
        return None

    async def token_for(self, work: Work, until: float) -> Token:
        """A token for this job; a resumed job gets the one it was created with if it can.
        Busy tokens are waited for until ``until``; rate-limited or blocked ones only
        within the retry budget."""
        token = await self.pool.acquire(max(0.0, until - time.time()),
                                        prefer=work.provider_state.get("token"),
                                        patience=self.options.retry_budget)
        work.provider_state["token"] = token.fingerprint
        return token


class ArtingAttempt(Attempt):
    def __init__(self, provider: ArtingProvider, work: Work, deadline: float) -> None:
        self.provider = provider
        self.work = work
        self.state = work.provider_state
        self.deadline = deadline
        self.token: Token | None = None

    async def __aenter__(self) -> ArtingAttempt:
        self.token = await self.provider.token_for(self.work, self.deadline)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.token is not None:
            await self.provider.pool.release(self.token)
            self.token = None

    # --- submit -------------------------------------------------------------------------

    async def submit(self) -> float:
        """Create the job upstream. Sent again only when no job can have been made, and
        only while the retry budget (waits included) and the stage's deadline allow."""
        p, gen = self.provider, self.work.generation
        image_url = await self._init_image_url() if gen.is_img2img else None
        now = time.time()
        retry_until = min(self.deadline, now + p.options.submit_timeout,
                          now + p.options.retry_budget)
        attempt = 0
        while True:
            assert self.token is not None
            try:
                # Arting starts the job between sending and answering; under load the
                # answer can be late, so the job's clock starts at the sending.
                sent = time.time()
                self.state["request_id"] = await p.client.create(gen, self.token.secret,
                                                                 image_url)
                break
            except ArtingError as exc:
                await p.pool.report(self.token, exc)
                attempt += 1
                if not exc.safe_to_resubmit or attempt >= MAX_CREATE_ATTEMPTS:
                    raise
                if exc.token_fault:
                    await self._switch_token(exc, retry_until)
                else:
                    wait = backoff(attempt)
                    if time.time() + wait >= retry_until:
                        raise
                    await asyncio.sleep(wait)
                p.metrics.create_retries.labels(type(exc).__name__).inc()
                log.info("create attempt %d of job %s failed (%s); sending it again with %s",
                         attempt, self.work.id, type(exc).__name__, self.token.label)
        await p.pool.report(self.token, None)
        return sent

    async def _switch_token(self, exc: ArtingError, retry_until: float) -> None:
        """After a 429 or a refused token (the pool has marked it): take the next
        eligible token, or wait for one within the budget. If none comes in time, the
        create's own error is raised, with the pool's Retry-After."""
        assert self.token is not None
        await self.provider.pool.release(self.token)
        self.token = None
        try:
            self.token = await self.provider.token_for(self.work, retry_until)
        except UpstreamRateLimited as none_free:
            if isinstance(exc, UpstreamRateLimited):
                exc.retry_after = max(exc.retry_after or 0.0, none_free.retry_after or 0.0)
                raise exc from None
            raise

    async def _init_image_url(self) -> str:
        gen = self.work.generation
        assert gen.init_image is not None and self.token is not None
        data = await self.provider.store.read(gen.init_image)
        if self.provider.options.img2img_transport == "upload":
            return await self.provider.client.upload(data, self.token.secret)
        return "data:image/png;base64," + base64.b64encode(data).decode()

    # --- follow -------------------------------------------------------------------------

    async def follow(self, progress: Progress) -> list[str]:
        """Poll on the learned schedule; transient faults are retried until the stage's
        deadline, three refusals of the token in a row are not."""
        p, gen = self.provider, self.work.generation
        schedule = p.stats.schedule(gen.model, gen.width, gen.height)
        submitted = self.work.submitted_at or time.time()
        failures = refusals = 0
        pending = None      # when the last poll that found the job running was sent
        while True:
            assert self.token is not None
            elapsed = time.time() - submitted
            polls = self.state.get("polls", 0)
            delay = (schedule.next_delay(elapsed, polls) if failures == 0 else
                     min(p.options.poll_max_interval, backoff(failures)))
            await asyncio.sleep(delay)
            sent = time.time() - submitted
            try:
                result = await p.client.poll(self.state["request_id"], self.token.secret,
                                             gen.is_img2img)
            except ArtingError as exc:
                if exc.token_fault and not exc.retryable:   # refused, or Cloudflare
                    await p.pool.report(self.token, exc)
                if isinstance(exc, UpstreamAuthError):
                    # Arting has the job already, and polls seem not to be bound to the
                    # token (arting_protocol.md §2.1): ride out a refusal or two.
                    refusals += 1
                    if refusals >= MAX_POLL_REFUSALS:
                        raise
                elif not exc.retryable:
                    raise
                elif exc.retry_after:
                    await asyncio.sleep(exc.retry_after)
                failures += 1
                log.info("poll of job %s failed (%s); retrying", self.work.id,
                         type(exc).__name__)
                continue
            failures = refusals = 0
            self.state["polls"] = polls + 1
            if result.done:
                p.stats.record(gen.model, gen.width, gen.height,
                               schedule.finished_at(sent, pending))
                return result.urls
            pending = sent
