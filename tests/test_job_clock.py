"""The Arting provider's sense of time, against the emulator over real sockets: a job's
clock starts when Arting can have the create."""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from arting_daemon.config import Settings
from arting_daemon.connections import Connector
from arting_daemon.generation import Catalog, Generation, Rules, build_generation
from arting_daemon.metrics import Metrics
from arting_daemon.providers.arting.client import ArtingClient, Upstream
from arting_daemon.providers.arting.provider import ArtingOptions, ArtingProvider
from arting_daemon.providers.arting.tokens import TokenPool
from arting_daemon.store import ImageStore
from arting_daemon.timing import DurationStats, Timing

TOKEN = "5f0c8a52-7d7e-4f53-9a1b-0c2d4e6f8a9b"


@dataclass
class Work:
    generation: Generation
    id: str = "job-1"
    submitted_at: float | None = None
    provider: str = "arting"
    provider_state: dict[str, Any] = field(default_factory=dict)


def arting(settings: Settings, session: aiohttp.ClientSession, data: Path) -> ArtingProvider:
    return ArtingProvider(ArtingOptions.of(settings),
                          ArtingClient(Upstream.of(settings), session),
                          TokenPool([TOKEN], 4), ImageStore(data),
                          DurationStats(Timing.of(settings)), Metrics())


def generation() -> Generation:
    rules = Rules.of(Settings())
    return build_generation(rules, Catalog(rules), prompt="a lighthouse", seed=7)


@contextlib.asynccontextmanager
async def holder():
    """A server whose one route answers only once ``release`` is set: a request to it
    holds its connection until then."""
    arrived, release = asyncio.Event(), asyncio.Event()

    async def hold(request: web.Request) -> web.Response:
        arrived.set()
        await release.wait()
        return web.Response(text="released")

    app = web.Application()
    app.router.add_get("/", hold)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}/", arrived, release
    finally:
        release.set()
        await runner.cleanup()


async def test_a_jobs_clock_starts_when_its_create_gets_a_connection(sandbox, tmp_path):
    """In a burst a create waits for one of the pooled connections, and Arting starts
    the job only once it is written. Here the only connection is held by another
    request until ``released``: the create began waiting before that, and the job's
    clock starts after it, and no later than Arting made the job."""
    queued = asyncio.Event()

    async def on_queued(*_: object) -> None:
        queued.set()

    watch = aiohttp.TraceConfig()
    watch.on_connection_queued_start.append(on_queued)
    async with holder() as (url, arrived, release), aiohttp.ClientSession(
            connector=Connector(limit=1), trace_configs=[watch],
            cookie_jar=aiohttp.DummyCookieJar()) as session:
        provider = arting(Settings(base_url=sandbox.url), session, tmp_path)
        work = Work(generation())
        async with provider.attempt(work, time.time() + 60) as attempt:
            held = asyncio.ensure_future(session.get(url))
            await arrived.wait()
            submitting = asyncio.ensure_future(attempt.submit())
            await queued.wait()                  # the create waits for the connection
            released = time.time()
            release.set()
            sent = await submitting
            (await held).release()
    upstream = sandbox.jobs[work.provider_state["request_id"]]
    assert released <= sent <= upstream.created_at
