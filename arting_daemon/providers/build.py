"""The providers the settings describe, made at start and closed at the end.

With neither ``[[providers]]`` nor ``[fallbacks]`` the runner gets the Arting provider
itself, made from the flat settings, exactly as before providers existed. Otherwise it
gets the router (``router.py``) with every provider behind it, Arting first.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import TYPE_CHECKING

import aiohttp

from .. import logs
from ..config import Settings
from ..errors import ArtingError
from ..generation import Catalog
from ..metrics import Metrics
from ..provider_config import ARTING, Offers, ProviderConfig, effective, implicit_arting
from ..store import ImageStore
from ..timing import DurationStats
from .a1111 import A1111Provider
from .arting.client import ArtingClient, Upstream
from .arting.provider import ArtingOptions, ArtingProvider
from .arting.tokens import TokenPool, anonymous_identity
from .base import Provider
from .openai import OpenAIProvider
from .remote import RemoteAPI, SyncProvider, endpoint
from .router import Member, Router

if TYPE_CHECKING:
    from ..replicas.link import RedisLink


@dataclasses.dataclass(frozen=True)
class Services:
    """What providers are made with."""

    settings: Settings
    session: aiohttp.ClientSession
    store: ImageStore
    stats: DurationStats
    metrics: Metrics
    catalog: Catalog
    #: With replicas: the Redis link the ``arting`` provider's token board goes through.
    link: RedisLink | None = None


@asynccontextmanager
async def open_providers(s: Services) -> AsyncIterator[tuple[Provider, ArtingProvider | None]]:
    """(the provider the runner talks to, the Arting provider named ``arting`` if any:
    the token admin API's)."""
    settings = s.settings
    async with AsyncExitStack() as stack:
        if not settings.providers and not settings.fallbacks:
            arting = await stack.enter_async_context(open_arting(s, implicit_arting()))
            yield arting, arting
            return
        chain = effective(settings.providers)
        offers = Offers(chain, settings.extra_models, settings.default_model)
        members = []
        for cfg in chain:
            if cfg.kind == "arting":
                provider: Provider = await stack.enter_async_context(open_arting(s, cfg))
            else:
                provider = remote(s, cfg)
            names = {m: s.catalog.models.get(m, m) for m in offers.ids[cfg.name]}
            s.catalog.offer(cfg.name, names, cfg.model_prefix if cfg.models == "*" else "")
            members.append(Member(provider, cfg, default_model(cfg, offers, settings),
                                  features=_features(provider)))
        router = Router(members, s.catalog, settings.fallbacks, s.metrics)
        s.metrics.watch(router)
        router.start()
        stack.push_async_callback(router.close)
        home = router.members.get(ARTING)
        yield router, home.provider if home and isinstance(home.provider, ArtingProvider) \
            else None


@asynccontextmanager
async def open_arting(s: Services, cfg: ProviderConfig) -> AsyncIterator[ArtingProvider]:
    """An Arting provider: its client, its token pool (probing in the background). The
    one named ``arting`` takes the flat settings' tokens (or the anonymous identity), and
    with replicas shares its tokens' health and places through Redis."""
    settings = s.settings
    secrets = cfg.auth_tokens if cfg.auth_tokens is not None else settings.auth_tokens
    tokens = [t.get_secret_value() for t in secrets]
    anonymous = not tokens
    if anonymous:
        tokens = [anonymous_identity(settings.data_dir)]
    logs.add_secrets(*tokens)
    board = None
    if s.link is not None and cfg.name == ARTING:
        from ..replicas.tokens import RedisBoard
        board = RedisBoard(s.link, settings.replica_lease)
    pool = TokenPool(tokens, settings.token_max_jobs, anonymous=anonymous,
                     backoff=settings.token_probe_backoff,
                     max_backoff=settings.token_probe_max_backoff, board=board)
    upstream = dataclasses.replace(Upstream.of(settings),
                                   base_url=cfg.base_url or settings.base_url)
    options = dataclasses.replace(ArtingOptions.of(settings), img2img=settings.img2img
                                  if cfg.img2img is None else cfg.img2img)
    client = ArtingClient(upstream, s.session, s.metrics)
    provider = ArtingProvider(options, client, pool, s.store, s.stats, s.metrics)
    if cfg.name != ARTING or cfg.label:
        provider.name, provider.label = cfg.name, cfg.title
    provider.free_to_repeat = cfg.free_to_repeat
    if cfg.name == ARTING:       # its token gauges; more pools would repeat their names
        s.metrics.watch(pool)
    if board is not None:
        await board.open(pool)
    pool.start_probing(client.check_token)
    try:
        yield provider
    finally:
        await pool.close()
        if board is not None:
            await board.close()
        client.close()


def remote(s: Services, cfg: ProviderConfig) -> SyncProvider:
    api = RemoteAPI(endpoint(cfg, s.settings.request_timeout), s.session)
    kind = A1111Provider if cfg.kind == "a1111" else OpenAIProvider
    return kind(cfg, api, s.store)


def default_model(cfg: ProviderConfig, offers: Offers, settings: Settings) -> str | None:
    """The model ``<name>/*`` stands for: the configured one; for Arting the daemon's
    default model if it is Arting's, else its first; for an OpenAI server its first
    listed model; for A1111 none (the checkpoint it has loaded)."""
    if cfg.default_model:
        return cfg.default_model
    ids = offers.ids[cfg.name]
    if cfg.kind == "arting" and offers.owner(settings.default_model) == cfg.name:
        return settings.default_model.removeprefix(cfg.model_prefix)
    if cfg.kind != "a1111" and ids:
        return ids[0].removeprefix(cfg.model_prefix)
    return None


def _features(provider: Provider) -> frozenset[str]:
    """What the provider does beyond generating."""
    def does(feature: str) -> bool:
        try:
            provider.require(feature)
        except ArtingError:
            return False
        return True
    return frozenset(f for f in ("img2img", "upscale") if does(f))
