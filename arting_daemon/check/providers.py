"""The other providers (``[[providers]]``): can each be reached, does it take its
credentials, and what does it say of itself (its models, its credits), asked only what
spends nothing (``Provider.probe``: a model list, an empty task list, the balance);
with ``--generate``, one small image from each that answered (``provider_generate``).

Each provider is made here as the daemon makes it (``providers/build.py``), so the
check sends what the daemon would send, credentials and all.
"""

from __future__ import annotations

import tempfile
from contextlib import AsyncExitStack
from pathlib import Path

import aiohttp

from ..config import Settings
from ..errors import ArtingError
from ..generation import Catalog, Rules
from ..metrics import Metrics
from ..provider_config import ProviderConfig
from ..providers.build import Services
from ..providers.kinds import installed
from ..store import ImageStore
from ..timing import DurationStats, Timing
from ..transport.director import Sessions, plan_of
from .provider_generate import check_generation, generating
from .reach import check_reach, check_reach_via
from .report import Report


async def check_providers(settings: Settings, report: Report, generate: bool = False) -> None:
    """A ``<name> reach`` and a ``<name>`` finding per provider that is not Arting, each
    reached as the daemon would reach it (through its proxy, or the daemon's); with
    ``generate`` a ``<name> generate`` finding too."""
    others = generating(settings)
    if not others:
        return
    async with AsyncExitStack() as stack:
        session = aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar())
        stack.push_async_callback(session.close)
        sessions = Sessions(session, plan_of(settings))
        stack.push_async_callback(sessions.close)
        # what a generation brings stays out of the daemon's store
        store = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="arting-check-"))) \
            if generate else settings.data_dir
        services = Services(settings, sessions, ImageStore(store),
                            DurationStats(Timing.of(settings)), Metrics(),
                            Catalog(Rules.of(settings)))
        for cfg in others:
            await _check_one(services, cfg, report, generate)


async def _check_one(services: Services, cfg: ProviderConfig, report: Report,
                     generate: bool) -> None:
    settings, topic = services.settings, f"{cfg.name} ({cfg.kind})"
    timeout = min(settings.request_timeout, 10.0)
    proxy = services.sessions.plan.replaced(
        cfg.proxy.get_secret_value() if cfg.proxy else None).for_url(cfg.url)
    reach = f"{cfg.name} reach"
    reached = await check_reach_via(proxy, cfg.url, timeout, report, reach, cfg.title) \
        if proxy else await check_reach(cfg.url, timeout, report, reach)
    if not reached:
        report.add(topic, "info", "not asked: it is out of reach.")
        if generate:
            report.add(f"{cfg.name} generate", "info", "not run: it is out of reach.")
        return
    async with AsyncExitStack() as stack:
        provider = await stack.enter_async_context(installed()[cfg.kind].make(services, cfg))
        try:
            learned = await provider.probe()
        except ArtingError as exc:      # its words say what to set, where
            report.add(topic, "fail", exc.message, error=exc.code)
            if generate:
                report.add(f"{cfg.name} generate", "info", "not run: it did not take the "
                           "check's question, so nothing was spent.")
            return
        _found(cfg, provider.health(), learned, report)
        if generate:
            await check_generation(services.settings, provider, cfg, report)


def _found(cfg: ProviderConfig, health: dict, learned: dict, report: Report) -> None:
    topic = f"{cfg.name} ({cfg.kind})"
    said = ["it answers and takes its credentials" if health.get(
        "credentials") == "set" else "it answers (no credentials set)"]
    level = "ok"
    if "models" in learned:
        said.append(f"it offers {learned['models']} models")
    balance = learned.get("balance")
    if balance is not None and balance <= 0:
        level = "warn"
        said.append(f"its balance is {balance:g} credits, so its jobs will be refused "
                    "(HTTP 402) until some are bought")
    elif balance is not None:
        said.append(f"its balance is {balance:g} credits")
    report.add(topic, level, "; ".join(said) + ".", **learned)
