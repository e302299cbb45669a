"""The other providers (``[[providers]]``): can each be reached, does it take its
credentials, and what does it say of itself (its models, its credits), asked only what
spends nothing (``Provider.probe``: a model list, an empty task list, the balance).

Each provider is made here as the daemon makes it (``providers/build.py``), so the
check sends what the daemon would send, credentials and all.
"""

from __future__ import annotations

from contextlib import AsyncExitStack

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
from .reach import check_reach, check_reach_via
from .report import Report


async def check_providers(settings: Settings, report: Report) -> None:
    """A ``<name> reach`` and a ``<name>`` finding per provider that is not Arting, each
    reached as the daemon would reach it (through its proxy, or the daemon's)."""
    others = [p for p in settings.providers if p.kind != "arting"]
    if not others:
        return
    async with AsyncExitStack() as stack:
        session = aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar())
        stack.push_async_callback(session.close)
        sessions = Sessions(session, plan_of(settings))
        stack.push_async_callback(sessions.close)
        services = Services(settings, sessions, ImageStore(settings.data_dir),
                            DurationStats(Timing.of(settings)), Metrics(),
                            Catalog(Rules.of(settings)))
        for cfg in others:
            await _check_one(services, cfg, report)


async def _check_one(services: Services, cfg: ProviderConfig, report: Report) -> None:
    settings, topic = services.settings, f"{cfg.name} ({cfg.kind})"
    timeout = min(settings.request_timeout, 10.0)
    proxy = services.sessions.plan.replaced(
        cfg.proxy.get_secret_value() if cfg.proxy else None).for_url(cfg.url)
    reach = f"{cfg.name} reach"
    reached = await check_reach_via(proxy, cfg.url, timeout, report, reach, cfg.title) \
        if proxy else await check_reach(cfg.url, timeout, report, reach)
    if not reached:
        report.add(topic, "info", "not asked: it is out of reach.")
        return
    async with AsyncExitStack() as stack:
        provider = await stack.enter_async_context(installed()[cfg.kind].make(services, cfg))
        try:
            learned = await provider.probe()
        except ArtingError as exc:      # its words say what to set, where
            report.add(topic, "fail", exc.message, error=exc.code)
            return
    said = ["it answers and takes its credentials" if provider.health().get(
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
