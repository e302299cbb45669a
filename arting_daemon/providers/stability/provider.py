"""Stability AI as a provider: one call per image, upscales, and the account's credits.

A generation of ``n`` images is ``n`` calls (``protocol.py`` says what each sends), at
most ``max_jobs`` of this provider's calls at once, each with its own seed (``seed``,
``seed+1``, ...: the seed each image came with is kept and shown). The images are kept
in the store as they come (outputs ``store:<hash>``), as for every provider whose
upstream answers in one call: such a call cannot be followed after a restart, so a job
caught in flight is failed ("submit it again") unless ``free_to_repeat``.

An upscale runs ``upscale/fast`` (about 4×) or ``conservative`` the same way;
``creative`` is asynchronous: each picture's generation id is kept
(``provider_state["results"]``) once all are accepted, and ``/v2beta/results/{id}`` is
polled until it answers 200, so a restart follows them instead of paying again. The
result is made exactly as many times larger as asked.

``GET /v1/user/balance`` is read after each job (where it answers), as Arting's balance
comes with its polls, and shown as the provider's ``balance`` in the status.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, TypeVar

from ... import imaging, logs
from ...errors import ArtingError, FeatureDisabled, InvalidRequest
from ...generation import Generation
from ...provider_config import ProviderConfig
from ...retry import poll
from ...store import ImageStore
from ...upscaling import JobRequest, Upscale
from ..base import Attempt, OnProgress, Work
from ..remote import (STORED, Endpoint, Polling, RemoteAPI, RemoteAttempt, RemoteProvider,
                      funnel)
from . import protocol as sai
from .settings import StabilitySettings

if TYPE_CHECKING:
    from ..build import Services

log = logging.getLogger(__name__)
T = TypeVar("T")


@asynccontextmanager
async def make(s: Services, cfg: ProviderConfig) -> AsyncIterator[StabilityProvider]:
    options: StabilitySettings = cfg.options
    headers = {"Accept": "application/json"}
    if options.api_key is not None:
        headers["Authorization"] = f"Bearer {options.api_key.get_secret_value()}"
        logs.add_secrets(options.api_key.get_secret_value())
    where = Endpoint(cfg.name, cfg.title, cfg.kind, cfg.url, headers,
                     s.settings.request_timeout, cfg.timeout)
    provider = StabilityProvider(cfg, options, funnel(where, s.sessions, cfg.proxy), s.store,
                                 Polling.of(s.settings))
    try:
        yield provider
    finally:
        await provider.close()


class StabilityProvider(RemoteProvider):
    def __init__(self, cfg: ProviderConfig, options: StabilitySettings, api: RemoteAPI,
                 store: ImageStore, polling: Polling) -> None:
        super().__init__(cfg, api, store)
        self.options = options
        self.polling = polling
        limit = cfg.jobs_at_once
        self.calls = asyncio.Semaphore(limit) if limit else None
        self.balance: float | None = None
        self.balance_at: float | None = None
        self._balance: asyncio.Task | None = None

    # --- what it does -------------------------------------------------------------------

    def require(self, feature: str) -> None:
        if feature == "img2img" and self.img2img:
            return
        if feature == "upscale" and self.options.upscale != "off":
            return
        if feature == "img2img":
            raise FeatureDisabled(f"{self.label} does no image-to-image here (`img2img = "
                                  f"false` for provider `{self.name}`).", param="image")
        raise FeatureDisabled(f"{self.label} does no {feature} here."
                              + (f" Set `upscale` of provider `{self.name}` to fast, "
                                 "conservative or creative." if feature == "upscale" else ""))

    def admit(self, gen: JobRequest) -> str:
        if isinstance(gen, Generation) and gen.is_img2img and sai.route(gen.model) == "core":
            raise InvalidRequest(f"{self.label}'s model `core` does no image-to-image; use "
                                 "`ultra` or an `sd3.5-*` model.", param="model")
        return super().admit(gen)

    def submitted(self, work: Work) -> bool:
        return "results" in work.provider_state

    def attempt(self, work: Work, deadline: float) -> Attempt:
        if isinstance(work.generation, Upscale) and self.options.upscale == "creative":
            return CreativeAttempt(self, work)
        return CallAttempt(self, work)

    async def fetch(self, work: Work, output: str) -> bytes:
        return await self.store.read(output.removeprefix(STORED))

    def seeds(self, work: Work, outputs: list[str]) -> list[int] | None:
        seeds = work.provider_state.get("seeds")
        if isinstance(seeds, list) and len(seeds) == len(outputs) and \
                all(isinstance(s, int) for s in seeds):
            return seeds
        return None

    def health(self) -> dict[str, Any]:
        return {**super().health(), "balance": self.balance, "balance_at": self.balance_at}

    # --- the exchanges ------------------------------------------------------------------

    async def call(self, path: str, fields: dict[str, Any], image: bytes | None = None
                   ) -> sai.Made:
        """One synchronous call (a generation or an upscale), within ``max_jobs``."""
        async with self.calls or contextlib.nullcontext():
            reply = await self.api.exchange(
                "POST", path, form=sai.multipart(fields, {"image": image} if image else None),
                long=True)
        return sai.made(self.label, reply.status, reply.headers, reply.body,
                        self.api.where.advice)

    async def keep(self, work: Work, made: list[sai.Made]) -> list[str]:
        """Store the images; their seeds go with the job."""
        stored = [await self.store.put(m.image) for m in made]
        seeds = [m.seed for m in made]
        if all(s is not None for s in seeds):
            work.provider_state["seeds"] = seeds
        return [STORED + s.hash for s in stored]

    async def upscaled(self, work: Work, images: list[bytes]) -> list[bytes]:
        """Each result exactly ``scale`` times its picture (fast makes about 4×)."""
        upscale = work.generation
        assert isinstance(upscale, Upscale)
        return [await asyncio.to_thread(imaging.resize, data, s.width * upscale.scale,
                                        s.height * upscale.scale)
                for data, s in zip(images, upscale.images)]

    async def probe(self) -> dict[str, Any]:
        """The balance: it needs the key, and costs nothing."""
        return {"balance": sai.credits(await self.api.call("GET", sai.BALANCE))}

    def read_balance(self) -> None:
        """Read the credits in the background (one read at a time; failures are logged
        and leave the last value)."""
        if not self.options.balance or (self._balance and not self._balance.done()):
            return
        self._balance = asyncio.create_task(self._read_balance(),
                                            name=f"{self.name}-balance")

    async def _read_balance(self) -> None:
        try:
            found = sai.credits(await self.api.call("GET", sai.BALANCE))
        except ArtingError as exc:
            log.info("could not read the balance of provider %s: %s", self.name, exc.message)
            return
        if found is not None:
            self.balance, self.balance_at = found, time.time()

    async def close(self) -> None:
        if self._balance is not None:
            self._balance.cancel()
            await asyncio.gather(self._balance, return_exceptions=True)


async def _each(count: int, make_one: Callable[[int], Awaitable[T]],
                progress: OnProgress) -> list[T]:
    """``make_one(i)`` for each ``i`` at once, reporting progress as they come."""
    done = 0

    async def one(i: int) -> T:
        nonlocal done
        result = await make_one(i)
        done += 1
        progress(done / count)
        return result

    return list(await asyncio.gather(*(one(i) for i in range(count))))


class CallAttempt(RemoteAttempt):
    """A generation, or a synchronous upscale: the calls are made in ``follow``."""

    provider: StabilityProvider

    async def submit(self) -> float:
        return time.time()      # nothing goes ahead of the calls

    async def follow(self, progress: OnProgress) -> list[str]:
        p, request = self.provider, self.work.generation
        try:
            if isinstance(request, Upscale):
                path = sai.UPSCALE + p.options.upscale

                async def upscale_one(i: int) -> sai.Made:
                    source = request.images[i]
                    return await p.call(path, sai.upscale_fields(p.options, source.seed),
                                        await p.store.read(source.hash))

                made = await _each(request.n, upscale_one, progress)
                images = await p.upscaled(self.work, [m.image for m in made])
                return [STORED + (await p.store.put(image)).hash for image in images]
            path = sai.GENERATE + sai.route(request.model)
            init = await p.store.read(request.init_image) if request.init_image else None
            made = await _each(request.n, lambda i: p.call(
                path, sai.generation_fields(request, p.options, request.seed + i), init),
                progress)
            return await p.keep(self.work, made)
        finally:
            p.read_balance()


class CreativeAttempt(RemoteAttempt):
    """The asynchronous creative upscale: accepted ids kept, then polled."""

    provider: StabilityProvider

    async def submit(self) -> float:
        p, upscale = self.provider, self.work.generation
        assert isinstance(upscale, Upscale)
        sent, ids = time.time(), []
        for source in upscale.images:
            form = sai.multipart(sai.upscale_fields(p.options, source.seed),
                                 {"image": await p.store.read(source.hash)})
            reply = await p.api.exchange("POST", sai.UPSCALE + "creative", form=form)
            ids.append(sai.accepted_id(p.label, reply.status, reply.headers, reply.body,
                                       p.api.where.advice))
        self.state["results"] = ids
        return sent

    async def follow(self, progress: OnProgress) -> list[str]:
        p = self.provider
        ids: list[str] = self.state["results"]
        images = []
        try:
            for i, result in enumerate(ids):
                images.append(await self._result(result))
                progress((i + 1) / len(ids))
        finally:
            p.read_balance()
        return [STORED + (await p.store.put(image)).hash
                for image in await p.upscaled(self.work, images)]

    async def _result(self, result: str) -> bytes:
        """Poll ``/v2beta/results/{id}`` until it is ready (202 while it works)."""
        p, polls = self.provider, 0

        async def look() -> bytes | None:
            nonlocal polls
            polls += 1
            reply = await p.api.exchange("GET", sai.RESULTS + result)
            if reply.status == 202:
                return None
            return sai.made(p.label, reply.status, reply.headers, reply.body,
                            p.api.where.advice).image

        async def failed(exc: Exception, failures: int) -> float:
            if not isinstance(exc, ArtingError) or not exc.retryable:
                raise exc
            log.info("poll of %s result %s failed (%s); retrying", p.name, result,
                     type(exc).__name__)
            return p.polling.delay(polls, failures)

        return await poll(look, lambda: p.polling.delay(polls), failed)
