"""The Arting provider's sense of time, against the emulator over real sockets: a job's
clock starts when Arting can have the create."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


from arting_daemon.config import Settings
from arting_daemon.generation import Catalog, Generation, Rules, build_generation
from arting_daemon.metrics import Metrics
from arting_daemon.providers.arting.client import ArtingClient, Upstream
from arting_daemon.providers.arting.provider import ArtingOptions, ArtingProvider
from arting_daemon.providers.arting.tokens import TokenPool
from arting_daemon.store import ImageStore
from arting_daemon.timing import DurationStats, Timing
from arting_daemon.transport.director import Director
from arting_daemon.transport.proxies import ProxyPlan

TOKEN = "5f0c8a52-7d7e-4f53-9a1b-0c2d4e6f8a9b"


@dataclass
class Work:
    generation: Generation
    id: str = "job-1"
    submitted_at: float | None = None
    provider: str = "arting"
    provider_state: dict[str, Any] = field(default_factory=dict)


def arting(settings: Settings, data: Path) -> ArtingProvider:
    one = Director(ProxyPlan.of("direct", [], {}), "off", settings.base_url, limit=1)
    return ArtingProvider(ArtingOptions.of(settings), ArtingClient(Upstream.of(settings), one),
                          TokenPool([TOKEN], 4), ImageStore(data),
                          DurationStats(Timing.of(settings)), Metrics())


def generation() -> Generation:
    rules = Rules.of(Settings())
    return build_generation(rules, Catalog(rules), prompt="a lighthouse", seed=7)


async def test_a_jobs_clock_starts_when_its_create_gets_a_connection(sandbox, tmp_path):
    """In a burst a create waits for one of the pooled connections to Arting's API, and
    Arting starts the job only once it is written. Here the pool has one connection, and
    a poll Arting answers only after a second holds it: the create began waiting before
    that, and the job's clock starts once it had the connection, no later than Arting
    made the job."""
    settings = Settings(base_url=sandbox.url)
    provider = arting(settings, tmp_path)
    client = provider.client
    try:
        earlier = await client.create(generation(), TOKEN)
        sandbox.add_fault("slow", route="get", delay=1.0)
        held = asyncio.ensure_future(client.poll(earlier, TOKEN))
        while not sandbox.requests_for("get"):       # the poll has the connection
            await asyncio.sleep(0.01)
        work = Work(generation())
        async with provider.attempt(work, time.time() + 60) as attempt:
            began = time.time()
            sent = await attempt.submit()
        await held
    finally:
        await client.close()
    upstream = sandbox.jobs[work.provider_state["request_id"]]
    assert began + 0.5 <= sent <= upstream.created_at
