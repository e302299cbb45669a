"""The router: the one provider the runner talks to when there are several.

Each model id belongs to one provider (the catalog knows which: ``Catalog.owner``), and
a job goes to its model's provider, which sees the model as it knows it (without the
provider's prefix). When that provider fails before any image exists with an error of
the upstream's — unreachable, 5xx, a timeout, rate limits, Cloudflare, refused
credentials, a failed generation, a garbled answer; not a request it found invalid, nor
a refused prompt — the job moves on along its model's ``[fallbacks]`` (or those of
``"*"``): model ids, or ``<provider>/*`` for that provider's default model. The job
records where it is (``Job.provider``) and each move (``provider_state["fallbacks"]``,
shown in the job API), and the log says so.

Each provider may bound the jobs it works on at once (``max_jobs``; A1111 runs one at a
time): a job waits there for its turn, still queued. The catalogues of providers that
offer ``"*"`` beyond Arting's (an A1111's checkpoints, an OpenAI server's ``/models``)
are read at start and every ``CATALOGUE_EVERY`` seconds; one that cannot be read keeps
its last list, and the provider's health says why. Health is learned from traffic,
never from calls made only to check.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.core import GaugeMetricFamily

from .. import logs
from ..errors import (ArtingError, CloudflareBlocked, ContentRefused, FeatureDisabled,
                      ModelNotFound, UpstreamAuthError,
                      UpstreamError, UpstreamInvalid, UpstreamRateLimited, UpstreamTimeout,
                      UpstreamUnreachable)
from ..generation import Catalog
from ..metrics import Metrics
from ..provider_config import ProviderConfig
from ..tasks import stop
from ..upscaling import JobRequest, Upscale
from .base import Attempt, OnProgress, Provider, Work

log = logging.getLogger(__name__)

CATALOGUE_EVERY = 300.0
#: The key of ``provider_state`` where a job's moves between providers are kept.
FALLBACKS = "fallbacks"


def no_provider(gen: JobRequest) -> ModelNotFound:
    return ModelNotFound(f"No provider offers the model `{gen.model}` (any more); "
                         "GET /v1/models lists what the providers offer.", param="model")


def falls_back(exc: ArtingError) -> bool:
    """Whether another provider may fare better after ``exc``."""
    return isinstance(exc, UpstreamError) and not isinstance(exc, (ContentRefused,
                                                                   UpstreamInvalid))


@dataclass
class ProviderHealth:
    """What traffic says of a provider: ``unknown`` until a job or a catalogue read went
    through it, then ``ok``, or why not."""

    state: str = "unknown"
    last_error: str | None = None
    last_ok: float | None = None
    last_failure: float | None = None

    def saw(self, error: ArtingError | None) -> None:
        if error is None:
            self.state, self.last_ok = "ok", time.time()
            return
        self.last_error, self.last_failure = error.message, time.time()
        if isinstance(error, UpstreamAuthError):
            self.state = "refused"
        elif isinstance(error, (UpstreamUnreachable, UpstreamTimeout)):
            self.state = "unreachable"
        elif isinstance(error, CloudflareBlocked):
            self.state = "blocked"
        elif isinstance(error, UpstreamRateLimited):
            self.state = "rate-limited"
        else:
            self.state = "failing"


@dataclass(eq=False)
class Member:
    """One provider behind the router, with what the router keeps about it."""

    provider: Provider
    config: ProviderConfig
    #: The model "<name>/*" stands for (None: the upstream's own choice).
    default_model: str | None
    #: What it does beyond generating (``img2img``, ``upscale``).
    features: frozenset[str]
    health: ProviderHealth = field(default_factory=ProviderHealth)
    in_flight: int = 0
    models_read_at: float | None = None

    def __post_init__(self) -> None:
        limit = self.config.jobs_at_once
        self.slots = asyncio.Semaphore(limit) if limit else None

    @property
    def name(self) -> str:
        return self.provider.name

    @property
    def prefix(self) -> str:
        return self.config.model_prefix

    def upstream(self, model_id: str) -> str:
        """``studio/dreamshaper_8`` → ``dreamshaper_8``: the model as the provider knows it."""
        prefix = self.prefix
        return model_id[len(prefix):] if prefix and model_id.lower().startswith(
            prefix.lower()) else model_id

    async def take(self) -> None:
        if self.slots is not None:
            await self.slots.acquire()
        self.in_flight += 1

    def give(self) -> None:
        self.in_flight -= 1
        if self.slots is not None:
            self.slots.release()


@dataclass(frozen=True)
class Target:
    member: Member
    model: str | None


class View:
    """A job as one provider sees it: its model named the way that provider knows it;
    everything else is the job's own (an upscale is the same for every provider)."""

    def __init__(self, job: Work, model: str | None) -> None:
        self._job = job
        self.generation: JobRequest = job.generation if isinstance(job.generation, Upscale) \
            else job.generation.model_copy(update={"model": model or ""})

    @property
    def id(self) -> str:
        return self._job.id

    @property
    def provider(self) -> str:
        return self._job.provider

    @provider.setter
    def provider(self, name: str) -> None:
        self._job.provider = name

    @property
    def provider_state(self) -> dict[str, Any]:
        return self._job.provider_state

    @property
    def submitted_at(self) -> float | None:
        return self._job.submitted_at

    @submitted_at.setter
    def submitted_at(self, when: float | None) -> None:
        self._job.submitted_at = when


class Router(Provider):
    name, label = "router", "the providers"

    def __init__(self, members: list[Member], catalog: Catalog,
                 fallbacks: dict[str, list[str]], metrics: Metrics) -> None:
        self.members = {m.name: m for m in members}
        self.catalog = catalog
        self.fallbacks = {key.lower(): targets for key, targets in fallbacks.items()}
        self.metrics = metrics
        self._refresher: asyncio.Task | None = None

    # --- life cycle -----------------------------------------------------------------------

    def start(self) -> None:
        """Read the catalogues now, and again every ``CATALOGUE_EVERY`` seconds."""
        self._refresher = asyncio.create_task(self._refresh(), name="provider-catalogues")

    async def close(self) -> None:
        await stop(self._refresher)

    async def _refresh(self) -> None:
        logs.request_id.set("catalogues")
        readable = [m for m in self.members.values() if m.config.models == "*"]
        while readable:
            read = await asyncio.gather(*(self.read_catalogue(m) for m in readable))
            readable = [m for m, has in zip(readable, read) if has]
            if readable:
                await asyncio.sleep(CATALOGUE_EVERY)

    async def read_catalogue(self, member: Member) -> bool:
        """Read its catalogue; False when it has none to read (a fixed one, or Arting's)."""
        try:
            models = await member.provider.catalogue()
        except ArtingError as exc:
            member.health.saw(exc)
            log.warning("could not read the models of provider %s: %s", member.name,
                        exc.message)
            return True
        if models is None:
            return False
        member.health.saw(None)
        member.models_read_at = time.time()
        self.catalog.offer(member.name, {member.prefix + m: name for m, name in models.items()},
                           member.prefix)
        log.info("provider %s offers %d model(s)", member.name, len(models))
        return True

    # --- routing --------------------------------------------------------------------------

    def chain(self, gen: JobRequest) -> list[Target]:
        """Where ``gen``'s job may go, in order: its model's provider, then its fallbacks
        (those that can make it: image-to-image needs a provider that does it). An
        upscale has no model: it goes to the providers that upscale, in order."""
        if isinstance(gen, Upscale):
            makers = {s.origin.provider for s in gen.images if s.origin is not None}
            able = [m for m in self.members.values()
                    if "upscale" in m.features and m.provider.upscales(gen)]
            return [Target(m, None) for m in sorted(able, key=lambda m: m.name not in makers)]
        model_id = gen.model
        owner = self.members.get(self.catalog.owner(model_id) or "")
        targets = [Target(owner, owner.upstream(model_id))] if owner else []
        entries = self.fallbacks.get(model_id.lower(), self.fallbacks.get("*", []))
        for entry in entries:
            target = self._target(entry)
            if target is not None and target not in targets:
                targets.append(target)
        return [t for t in targets if t.member.features.issuperset(gen.features)]

    def _target(self, entry: str) -> Target | None:
        if entry.endswith("/*"):
            member = self.members.get(entry[:-2])
            return Target(member, member.default_model) if member else None
        model_id = self.catalog.find(entry)
        member = self.members.get(self.catalog.owner(model_id) or "") if model_id else None
        return Target(member, member.upstream(model_id)) if member and model_id else None

    def targets(self, work: Work) -> list[Target]:
        """The job's chain from where it is (a resumed job stays where it was): as many
        steps along as it moved, or, if the chain changed since, at its provider."""
        chain = self.chain(work.generation)
        here = len(work.provider_state.get(FALLBACKS, []))
        if here >= len(chain) or chain[here].member.name != work.provider:
            here = next((i for i, t in enumerate(chain) if t.member.name == work.provider), 0)
        return chain[here:]

    def _member(self, work: Work) -> Member:
        member = self.members.get(work.provider)
        if member is not None:
            return member
        chain = self.chain(work.generation)
        return chain[0].member if chain else next(iter(self.members.values()))

    # --- the provider interface -----------------------------------------------------------

    def require(self, feature: str) -> None:
        """Refused only when no provider does ``feature`` (the job's own route is checked
        when it is admitted)."""
        errors = []
        for member in self.members.values():
            try:
                member.provider.require(feature)
                return
            except ArtingError as exc:
                errors.append(exc)
        raise errors[0]

    def admit(self, gen: JobRequest) -> str:
        chain = self.chain(gen)
        upscalers = [m.provider.label for m in self.members.values() if "upscale" in m.features]
        if not chain and isinstance(gen, Upscale) and upscalers:
            one = len(upscalers) == 1
            raise FeatureDisabled(
                f"No provider here upscales these pictures: {', '.join(upscalers)} "
                f"upscale{'s' if one else ''} only the pictures {'it' if one else 'they'} "
                "made.", param="images")
        if not chain:
            owner = self.members.get(self.catalog.owner(gen.model) or "")
            for feature in gen.features:        # its provider's own words, if it has one
                (owner or next(iter(self.members.values()))).provider.require(feature)
            raise no_provider(gen)
        first = chain[0]
        first.member.provider.admit(gen if isinstance(gen, Upscale) else
                                    gen.model_copy(update={"model": first.model or ""}))
        return first.member.name

    def for_job(self, work: Work) -> Provider:
        return self._member(work).provider

    def lineup(self) -> list[Provider]:
        return [m.provider for m in self.members.values()]

    def submitted(self, work: Work) -> bool:
        member = self.members.get(work.provider)
        return member is not None and member.provider.submitted(work)

    def foreign(self, work: Work) -> str | None:
        member = self.members.get(work.provider)
        return member.provider.foreign(work) if member is not None else None

    def attempt(self, work: Work, deadline: float) -> RoutedAttempt:
        return RoutedAttempt(self, work, deadline)

    async def fetch(self, work: Work, output: str) -> bytes:
        """From the provider that made it."""
        return await self.for_job(work).fetch(work, output)

    def seeds(self, work: Work, outputs: list[str]) -> list[int] | None:
        return self.for_job(work).seeds(work, outputs)

    async def cancel(self, work: Work) -> None:
        member = self.members.get(work.provider)
        if member is not None:
            await member.provider.cancel(work)

    def health(self) -> dict[str, Any]:
        arting = self.members.get("arting")
        tokens = arting.provider.health().get("tokens", []) if arting else []
        return {"tokens": tokens, "providers": [self._view(m) for m in self.members.values()]}

    def _view(self, m: Member) -> dict[str, Any]:
        models = sum(1 for owner in self.catalog.owners.values() if owner == m.name)
        return {
            "name": m.name, "label": m.provider.label, "kind": m.config.kind,
            "models": models, "prefix": m.prefix, "img2img": "img2img" in m.features,
            "upscale": "upscale" in m.features,
            "free_to_repeat": m.provider.free_to_repeat, "max_jobs": m.config.jobs_at_once,
            "in_flight": m.in_flight, "state": m.health.state,
            "last_error": m.health.last_error, "last_ok": m.health.last_ok,
            "last_failure": m.health.last_failure, "models_read_at": m.models_read_at,
            **m.provider.health(),
        }

    def unready(self) -> str | None:
        """Only when no provider can take a job: one that can is enough."""
        reasons = []
        for m in self.members.values():
            why = m.provider.unready() or (f"{m.provider.label} refused the credentials"
                                           if m.health.state == "refused" else None)
            if why is None:
                return None
            reasons.append(why)
        return "; ".join(reasons)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        """Per provider, at scrape time: jobs in flight, whether its last exchange went
        through, and the models it offers."""
        in_flight = GaugeMetricFamily("arting_provider_in_flight",
                                      "Jobs each provider is working on.", labels=["provider"])
        up = GaugeMetricFamily("arting_provider_up", "0 when a provider's last exchange "
                               "failed, else 1.", labels=["provider"])
        for m in self.members.values():
            in_flight.add_metric([m.name], m.in_flight)
            up.add_metric([m.name], float(m.health.state in ("ok", "unknown")))
        yield in_flight
        yield up

    # --- what attempts report -----------------------------------------------------------------

    def failed(self, member: Member, exc: ArtingError) -> None:
        member.health.saw(exc)
        self.metrics.provider_failures.labels(member.name, type(exc).__name__).inc()

    def succeeded(self, member: Member) -> None:
        member.health.saw(None)


class RoutedAttempt(Attempt):
    """A try at a job along its chain of providers: an attempt on the provider it is at,
    and on the next one when that one fails in a way another may not."""

    def __init__(self, router: Router, work: Work, deadline: float) -> None:
        self.router = router
        self.work = work
        self.deadline = deadline
        self.chain = router.targets(work)
        self.current: tuple[Member, AbstractAsyncContextManager[Attempt], Attempt] | None = None

    async def __aenter__(self) -> RoutedAttempt:
        await self._open()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self._close(*exc)

    async def submit(self) -> float:
        while True:
            assert self.current is not None
            try:
                return await self.current[2].submit()
            except ArtingError as exc:
                await self._next(exc)

    async def follow(self, progress: OnProgress) -> list[str]:
        while True:
            assert self.current is not None
            member, _, attempt = self.current
            try:
                outputs = await attempt.follow(progress)
            except ArtingError as exc:
                await self._next(exc)
                progress(0.0)
                self.work.submitted_at = await self.submit()
                continue
            self.router.succeeded(member)
            return outputs

    async def _open(self) -> None:
        """An attempt on the job's current provider, or on the next ones while opening
        it fails in a way another may not (say, every Arting token is rate-limited)."""
        if not self.chain:
            raise no_provider(self.work.generation)
        while True:
            target = self.chain[0]
            member = target.member
            self.work.provider = member.name
            await member.take()
            manager = member.provider.attempt(View(self.work, target.model), self.deadline)
            try:
                attempt = await manager.__aenter__()
            except ArtingError as exc:
                member.give()
                self._move_on(exc)
                continue
            except BaseException:
                member.give()
                raise
            self.current = (member, manager, attempt)
            return

    async def _close(self, *exc: Any) -> None:
        if self.current is None:
            return
        member, manager, _ = self.current
        self.current = None
        try:
            await manager.__aexit__(*exc)
        finally:
            member.give()

    async def _next(self, exc: ArtingError) -> None:
        await self._close(type(exc), exc, exc.__traceback__)
        self._move_on(exc)
        await self._open()

    def _move_on(self, exc: ArtingError) -> None:
        """Record the failure, and move the job to the next provider; raises ``exc`` when
        it may not fall back or nothing is left."""
        member = self.chain[0].member
        self.router.failed(member, exc)
        if not falls_back(exc) or len(self.chain) < 2:
            raise exc
        self.chain = self.chain[1:]
        to = self.chain[0]
        state = self.work.provider_state
        moves = [*state.get(FALLBACKS, []), {
            "from": member.name, "to": to.member.name, "model": to.model, "at": time.time(),
            "error": {"code": exc.code, "message": exc.message}}]
        state.clear()
        state[FALLBACKS] = moves
        self.work.provider, self.work.submitted_at = to.member.name, None
        self.router.metrics.fallbacks.labels(member.name, to.member.name).inc()
        log.warning("job %s: %s failed (%s); falling back to %s%s", self.work.id,
                    member.provider.label, exc.message, to.member.provider.label,
                    f" ({to.model})" if to.model else "")
