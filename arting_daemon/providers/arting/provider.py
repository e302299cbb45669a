"""The Arting provider: a job as Arting runs it, with a token from the pool.

An attempt holds one token while Arting works on the job (each token has a bound on
jobs in flight). ``submit`` creates the job; it is sent again only when that cannot
make a second job (the connection was refused, Arting answered 5xx or 429, or refused
the token), on another token where the pool has one, with exponential backoff and full
jitter inside ``retry_budget``. ``follow`` polls on the schedule learned from recent
durations and rides out transient faults; Arting saying the job failed ends it at once.

Two kinds of job: a ``Generation`` (text- or image-to-image) and an ``Upscale``, which
uploads each picture and has Arting's image-enhance make it 2 or 4 times larger (one
task per picture). A picture Arting must read goes up the signed-URL way
(``client.upload``); an upload makes nothing upstream, so it is retried like a create
that surely made no job.

What a restart needs is kept in the job's provider state: Arting's ``request_id`` (or
an upscale's ``tasks``), the fingerprint of the token it was created with (never the
token), and the polls spent.
"""

from __future__ import annotations

import base64
import logging
from dataclasses import dataclass
from functools import partial
from collections.abc import Awaitable, Callable
from typing import Literal, TypeVar

from ...config import Section
from ...generation import Generation
from ...errors import ArtingError, FeatureDisabled, UpstreamAuthError, UpstreamRateLimited
from ...metrics import Metrics
from ...retry import backoff, poll
from ...store import ImageStore
from ...timing import DurationStats
from ...upscaling import JobRequest, Upscale
from ..base import Attempt, OnProgress, Provider, Work
from .client import ArtingClient
from .wire import SendTime
from .tokens import Token, TokenPool, TokenState
from .vault import Vault

log = logging.getLogger(__name__)

MAX_CREATE_ATTEMPTS = 6
MAX_POLL_REFUSALS = 3       # refused polls in a row before a (paid) job is given up
T = TypeVar("T")


@dataclass(frozen=True)
class ArtingOptions(Section):
    img2img: bool
    img2img_transport: Literal["signed_url", "data_url"]
    upscale: bool
    submit_timeout: float
    retry_budget: float
    poll_max_interval: float
    low_balance: int | None


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
        #: Where runtime tokens are kept (the provider named ``arting`` only).
        self.vault: Vault | None = None
        #: Not behind a router: a job no token can take is refused before it is queued
        #: (behind one, the router's fallbacks may take it).
        self.alone = True

    def require(self, feature: str) -> None:
        if feature == "img2img" and self.options.img2img:
            return
        if feature == "upscale" and self.options.upscale:
            return
        if feature == "img2img":
            raise FeatureDisabled(
                "Image-to-image is switched off on this daemon, because Arting's "
                "image-to-image endpoint is unconfirmed. Set `img2img = true` in arting.toml "
                "(ARTING_IMG2IMG=1) to try it, or run the daemon with --sandbox.",
                param="image")
        if feature == "upscale":
            raise FeatureDisabled(
                "Upscaling is switched off on this daemon (`upscale = false`). It uses "
                "Arting's image-enhance API, which public clients show but Arting does not "
                "document; set `upscale = true` in arting.toml (ARTING_UPSCALE=1) to use it.",
                param="scale")
        raise FeatureDisabled(f"Arting does not offer {feature}.")

    def admit(self, gen: JobRequest) -> str:
        """Refuse a job no token could take (all refused, or past their pace) before it
        is queued, with the reason, rather than after a wait."""
        name = super().admit(gen)
        refusal = self.pool.refusal() if self.alone else None
        if refusal is not None:
            raise refusal
        return name

    def submitted(self, work: Work) -> bool:
        state = work.provider_state
        return state.get("request_id") is not None or state.get("tasks") is not None

    def foreign(self, work: Work) -> str | None:
        """A job's ids are its upstream's: polled elsewhere (another replica's own
        ``--sandbox`` emulator) the id names nothing, or another job."""
        sent_to = work.provider_state.get("upstream")
        if sent_to is None or sent_to == self.client.base:
            return None
        return (f"This job was sent to {sent_to}, and the replica that took it over talks "
                f"to {self.client.base}: replicas must share one upstream (`base_url`; with "
                "--sandbox each replica has an emulator of its own). Submit it again.")

    def attempt(self, work: Work, deadline: float) -> ArtingAttempt:
        if isinstance(work.generation, Upscale):
            return UpscaleAttempt(self, work, deadline)
        return GenerationAttempt(self, work, deadline)

    async def fetch(self, work: Work, output: str) -> bytes:
        return await self.client.download(output)

    def health(self) -> dict:
        return {"tokens": self.tokens()}

    def tokens(self) -> list[dict]:
        """Each token's health, and what carries its calls (the director's choice)."""
        return [{**view, "client": self.client.director.carrier(token.secret)}
                for view, token in zip(self.pool.snapshot(), self.pool.tokens)]

    def unready(self) -> str | None:
        if all(t.state is TokenState.INVALID for t in self.pool.live()):
            return "Arting refused every token; see /arting/v1/admin/tokens"
        return None

    async def token_for(self, work: Work, until: float) -> Token:
        """A token for this job; a resumed job gets the one it was created with if it can.
        Busy tokens are waited for until ``until``; rate-limited or blocked ones only
        within the retry budget."""
        token = await self.pool.acquire(max(0.0, until - self.pool.clock.time()),
                                        prefer=work.provider_state.get("token"),
                                        patience=self.options.retry_budget)
        work.provider_state["token"] = token.fingerprint
        return token


class ArtingAttempt(Attempt):
    """What every Arting job does: hold a token, send with safe retries, poll on the
    learned schedule. ``GenerationAttempt`` and ``UpscaleAttempt`` say what is sent."""

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

    def retry_until(self) -> float:
        """Until when a send may be retried: the retry budget, within the stage's deadline."""
        now = self.provider.pool.clock.time()
        options = self.provider.options
        return min(self.deadline, now + options.submit_timeout, now + options.retry_budget)

    # --- sending ------------------------------------------------------------------------

    async def send_stamped(self, call: Callable[[str], Awaitable[T]],
                           retry_until: float) -> tuple[T, float]:
        """``send`` a request that starts a job upstream, and when the one that was taken
        left (wall time). Arting starts the job between our sending and its answer, which
        under load can be late, and in a burst the request may first wait for one of the
        pooled connections: the job's clock starts when it got one (``wire.py``)."""
        sent = SendTime(self.provider.pool.clock)

        async def stamped(token: str) -> T:
            with sent.measuring():
                return await call(token)

        return await self.send(stamped, retry_until), sent.at

    async def send(self, call: Callable[[str], Awaitable[T]], retry_until: float, *,
                   makes_nothing: bool = False) -> T:
        """``call(token)`` with the token held, sent again only when that cannot make a
        second job upstream (always, after a transient fault, when ``makes_nothing``),
        while the retry budget (waits included) and the stage's deadline allow. A refusal
        marks the token either way; only a send that makes a job counts as one of its jobs
        (and gets the zero-balance note on a refusal)."""
        p = self.provider
        attempt = 0
        while True:
            assert self.token is not None
            try:
                result = await call(self.token.secret)
                break
            except ArtingError as exc:
                if not makes_nothing:
                    p.pool.explain(self.token, exc)
                await p.pool.report(self.token, exc)
                attempt += 1
                safe = exc.safe_to_resubmit or (makes_nothing and exc.retryable)
                if not safe or attempt >= MAX_CREATE_ATTEMPTS:
                    raise
                if exc.token_fault:
                    await self._switch_token(exc, retry_until)
                else:
                    wait = backoff(attempt)
                    if p.pool.clock.time() + wait >= retry_until:
                        raise
                    await p.pool.clock.sleep(wait)
                if not makes_nothing:
                    p.metrics.create_retries.labels(type(exc).__name__).inc()
                log.info("attempt %d of job %s failed (%s); sending it again with %s",
                         attempt, self.work.id, type(exc).__name__, self.token.label)
        if not makes_nothing:
            await p.pool.report(self.token, None)
        return result

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

    async def upload(self, digest: str, retry_until: float) -> str:
        """Put a stored picture where Arting can read it; returns its URL."""
        data = await self.provider.store.read(digest)
        return await self.send(lambda token: self.provider.client.upload(data, token),
                               retry_until, makes_nothing=True)

    # --- polling ------------------------------------------------------------------------

    async def poll_until(self, look: Callable[[str], Awaitable[list[str] | None]]) -> list[str]:
        """Call ``look(token)`` on the learned schedule until it returns the outputs;
        transient faults are retried until the stage's deadline, three refusals of the
        token in a row are not."""
        p, request = self.provider, self.work.generation
        key = (request.model, request.width, request.height)
        schedule = p.stats.schedule(*key)
        clock = p.pool.clock        # the job's times; the pauses between polls are real
        submitted = self.work.submitted_at or clock.time()
        refusals = 0
        pending: float | None = None    # when the last poll that found it running was sent

        def delay() -> float:
            return schedule.next_delay(clock.time() - submitted, self.state.get("polls", 0))

        async def one() -> list[str] | None:
            nonlocal refusals, pending
            assert self.token is not None
            sent = clock.time() - submitted
            outputs = await look(self.token.secret)
            refusals = 0
            self.state["polls"] = self.state.get("polls", 0) + 1
            if outputs is not None:
                p.stats.record(*key, schedule.finished_at(sent, pending))
            pending = sent
            return outputs

        async def failed(exc: Exception, failures: int) -> float:
            nonlocal refusals
            if not isinstance(exc, ArtingError):
                raise exc
            assert self.token is not None
            if exc.token_fault and not exc.retryable:       # refused, or Cloudflare
                await p.pool.report(self.token, exc)
            asked = 0.0         # what a rate limit asked for, before the backoff
            if isinstance(exc, UpstreamAuthError):
                # Arting has the job already, and polls seem not to be bound to the
                # token (docs/protocol/arting.md §2.1): ride out a refusal or two.
                refusals += 1
                if refusals >= MAX_POLL_REFUSALS:
                    raise exc
            elif not exc.retryable:
                raise exc
            elif exc.retry_after:
                asked = exc.retry_after
            log.info("poll of job %s failed (%s); retrying", self.work.id, type(exc).__name__)
            return asked + min(p.options.poll_max_interval, backoff(failures))

        return await poll(one, delay, failed)

    def saw_balance(self, balance: int | None) -> None:
        if balance is not None and self.token is not None:
            self.provider.pool.note_balance(self.token, balance, self.provider.options.low_balance)


class GenerationAttempt(ArtingAttempt):
    """Text- or image-to-image: one create, one request id to poll."""

    async def submit(self) -> float:
        p, gen = self.provider, self.work.generation
        assert isinstance(gen, Generation)
        retry_until = self.retry_until()
        image_url = await self._init_image_url(retry_until) if gen.is_img2img else None
        self.state["upstream"] = p.client.base
        self.state["request_id"], sent = await self.send_stamped(
            lambda token: p.client.create(gen, token, image_url), retry_until)
        assert self.token is not None
        await p.pool.spend(self.token, gen.n)
        return sent

    async def _init_image_url(self, retry_until: float) -> str:
        gen = self.work.generation
        assert gen.init_image is not None
        if self.provider.options.img2img_transport == "signed_url":
            return await self.upload(gen.init_image, retry_until)
        data = await self.provider.store.read(gen.init_image)
        return "data:image/png;base64," + base64.b64encode(data).decode()

    async def follow(self, progress: OnProgress) -> list[str]:
        gen = self.work.generation

        async def look(token: str) -> list[str] | None:
            result = await self.provider.client.poll(self.state["request_id"], token,
                                                     gen.is_img2img)
            self.saw_balance(result.balance)
            return result.urls if result.done else None

        return await self.poll_until(look)


class UpscaleAttempt(ArtingAttempt):
    """An upscale: each picture uploaded, then one image-enhance task per picture. The
    tasks are kept only once all are created, so a restart in between (which cannot
    tell what Arting has) fails the job instead of paying twice."""

    async def submit(self) -> float:
        p, upscale = self.provider, self.work.generation
        assert isinstance(upscale, Upscale)
        retry_until = self.retry_until()
        tasks, started = [], None
        for source in upscale.images:
            url = await self.upload(source.hash, retry_until)
            task, sent = await self.send_stamped(
                partial(p.client.enhance, url, upscale.scale), retry_until)
            assert self.token is not None
            await p.pool.spend(self.token, 1)
            tasks.append(task)
            started = started or sent
        self.state["upstream"], self.state["tasks"] = p.client.base, tasks
        return started or self.provider.pool.clock.time()

    async def follow(self, progress: OnProgress) -> list[str]:
        tasks: list[str] = self.state["tasks"]
        done: dict[str, str] = {}

        async def look(token: str) -> list[str] | None:
            for task in tasks:
                if task not in done:
                    result = await self.provider.client.enhance_poll(task, token)
                    self.saw_balance(result.balance)
                    if result.done:
                        done[task] = result.urls[0]
            if len(done) == len(tasks):
                return [done[task] for task in tasks]
            if done:
                progress(len(done) / len(tasks))
            return None

        return await self.poll_until(look)
