"""The providers the settings describe, made at start and closed at the end.

With neither ``[[providers]]`` nor ``[fallbacks]`` the runner gets the Arting provider
itself, made from the flat settings, exactly as before providers existed. Otherwise it
gets the router (``router.py``) with every provider behind it, Arting first. Each is
made by its kind's ``make`` (``kinds.py``: the built-in kinds, ``builtin.py``, and the
installed plugins); a plugin left out is logged here, once per start.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager

from pydantic import SecretStr

from .. import logs
from ..clock import Clock
from ..config import Settings
from ..errors import ArtingError
from ..generation import Catalog
from ..metrics import Metrics
from ..provider_config import ARTING, Offers, ProviderConfig, effective, implicit_arting
from ..store import ImageStore
from ..timing import DurationStats
from ..transport.director import Director, Sessions
from .a1111 import A1111Provider
from .arting.client import ArtingClient, Upstream
from .arting.provider import ArtingOptions, ArtingProvider
from .arting.tokens import Board, Token, TokenPool, anonymous_identity
from .arting.vault import Vault
from .base import Provider
from .kinds import installed
from .openai import OpenAIProvider
from .remote import SyncProvider, endpoint, funnel
from .router import Member, Router


log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Services:
    """What providers are made with."""

    settings: Settings
    #: The outbound aiohttp sessions, and the daemon's proxies (``sessions.plan``).
    sessions: Sessions
    store: ImageStore
    stats: DurationStats
    metrics: Metrics
    catalog: Catalog
    #: Where the ``arting`` provider's token pool shares its tokens (the backend's board).
    board: Callable[[], Board] = Board
    clock: Clock = dataclasses.field(default_factory=Clock)
    #: What token fingerprints are made with (the backend's; None: this process's own).
    fingerprint_key: bytes | None = None
    #: Where the ``arting`` provider's runtime tokens are kept (the backend's vault).
    vault: Callable[[], Vault] | None = None


@asynccontextmanager
async def open_providers(s: Services) -> AsyncIterator[tuple[Provider, ArtingProvider | None]]:
    """(the provider the runner talks to, the Arting provider named ``arting`` if any:
    the token admin API's)."""
    settings = s.settings
    kinds = installed()
    for problem in kinds.problems:
        log.warning("%s", problem)
    async with AsyncExitStack() as stack:
        if not settings.providers and not settings.fallbacks:
            arting = await stack.enter_async_context(open_arting(s, implicit_arting()))
            yield arting, arting
            return
        chain = effective(settings.providers)
        offers = Offers(chain, settings.extra_models, settings.default_model)
        members = []
        for cfg in chain:
            kind = kinds[cfg.kind]
            provider = await stack.enter_async_context(kind.make(s, cfg))
            if isinstance(provider, ArtingProvider):
                provider.alone = False      # the router's fallbacks may take its jobs
            own = kind.models
            names = {m: own.get(m.removeprefix(cfg.model_prefix)) or s.catalog.models.get(m, m)
                     for m in offers.ids[cfg.name]}
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
    shares its tokens' health and places on the backend's board (with replicas, Redis)."""
    settings = s.settings
    secrets = cfg.auth_tokens if cfg.auth_tokens is not None else settings.auth_tokens
    tokens = [t.get_secret_value() for t in secrets]
    anonymous = not tokens
    if anonymous:
        tokens = [anonymous_identity(settings.data_dir)]
    logs.add_secrets(*tokens)
    board = s.board() if cfg.name == ARTING else Board()
    pool = TokenPool(tokens, settings.token_max_jobs, anonymous=anonymous,
                     backoff=settings.token_probe_backoff,
                     max_backoff=settings.token_probe_max_backoff, board=board, clock=s.clock,
                     key=s.fingerprint_key, daily_limit=settings.token_daily_limit,
                     min_interval=settings.token_min_interval)
    upstream = dataclasses.replace(Upstream.of(settings),
                                   base_url=cfg.base_url or settings.base_url)
    options = dataclasses.replace(ArtingOptions.of(settings), img2img=settings.img2img
                                  if cfg.img2img is None else cfg.img2img)
    director = Director(s.sessions.plan.replaced(_secret(cfg.proxy)), settings.impersonate,
                        upstream.base_url)
    director.names.update((t.secret, t.label) for t in pool.tokens)
    client = ArtingClient(upstream, director, s.metrics)
    provider = ArtingProvider(options, client, pool, s.store, s.stats, s.metrics)
    if cfg.name != ARTING or cfg.label:
        provider.name, provider.label = cfg.name, cfg.title
    provider.free_to_repeat = cfg.free_to_repeat
    if cfg.name == ARTING:       # its token gauges; more pools would repeat their names
        s.metrics.watch(pool)

    def join(token: Token) -> None:
        """A runtime token joins: its name in the logs, its own Cloudflare clearance."""
        logs.add_secrets(token.secret, *token.cookies.values())
        director.names[token.secret] = token.label
        client.own_clearance(token.secret, token.user_agent, token.cookies)

    pool.on_join.append(join)
    vault = s.vault() if cfg.name == ARTING and s.vault is not None else None
    provider.vault = vault
    if vault is not None:
        await vault.open()
        vault.on_change.append(lambda: pool.sync(list(vault.entries.values())))
        pool.sync(list(vault.entries.values()))
    await board.open(pool)
    pool.start_probing(client.check_token)
    try:
        yield provider
    finally:
        await pool.close()
        await board.close()
        if vault is not None:
            await vault.close()
        await client.close()


def remote(s: Services, cfg: ProviderConfig) -> SyncProvider:
    kind = A1111Provider if cfg.kind == "a1111" else OpenAIProvider
    api = funnel(endpoint(cfg, s.settings.request_timeout), s.sessions, cfg.proxy)
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


def _secret(value: SecretStr | None) -> str | None:
    return value.get_secret_value() if value is not None else None


def _features(provider: Provider) -> frozenset[str]:
    """What the provider does beyond generating."""
    def does(feature: str) -> bool:
        try:
            provider.require(feature)
        except ArtingError:
            return False
        return True
    return frozenset(f for f in ("img2img", "upscale") if does(f))
