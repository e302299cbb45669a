"""The bench's HTTP clients: a direct client of the emulator (the baseline: what a
program that talks to Arting itself does) and requests through the daemon."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable

import aiohttp

from arting_daemon.config import Settings
from arting_daemon.generation import Catalog, Rules, build_generation
from arting_daemon.providers.arting.client import TXT2IMG, ArtingClient, Upstream

TOKEN = "0d4b5d8e-2222-4a2b-9c3d-5e6f7a8b9c0d"
HEADERS = {"Content-Type": "application/json", "Authorization": TOKEN}


def session(connections: int = 0) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=connections, limit_per_host=connections),
        timeout=aiohttp.ClientTimeout(total=600), cookie_jar=aiohttp.DummyCookieJar())


def create_body(**fields) -> bytes:
    """The create body the daemon would send for these OpenAI-style fields, byte for byte
    (built by the daemon's own code), so both paths ask the emulator for the same job."""
    settings = Settings()
    rules = Rules.of(settings)
    gen = build_generation(rules, Catalog(rules), **fields)
    client = ArtingClient(Upstream.of(settings))
    return json.dumps(client.create_body(gen)).encode()


class DirectClient:
    """Create → poll → download against the emulator, as a hand-written client would."""

    def __init__(self, http: aiohttp.ClientSession, upstream: str, body: bytes,
                 interval: float = 0.0, first_delay: float = 0.0) -> None:
        self.http, self.base, self.body = http, upstream, body
        self.interval, self.first_delay = interval, first_delay

    async def _call(self, path: str, data: bytes) -> dict:
        async with self.http.post(self.base + TXT2IMG + path, data=data,
                                  headers=HEADERS) as resp:
            payload = await resp.json()
        if payload.get("code") != 100000:
            raise RuntimeError(f"emulator refused {path}: {payload}")
        return payload["data"]

    async def generate(self, download: bool = True) -> int:
        """One job end to end; returns the bytes of images received."""
        request_id = (await self._call("/create", self.body))["request_id"]
        if self.first_delay:
            await asyncio.sleep(self.first_delay)
        poll = json.dumps({"request_id": request_id}).encode()
        while True:
            data = await self._call("/get", poll)
            if data.get("output"):
                break
            await asyncio.sleep(self.interval)
        received = 0
        if download:
            for url in data["output"]:
                async with self.http.get(url) as resp:
                    received += len(await resp.read())
        return received


async def daemon_images(http: aiohttp.ClientSession, daemon: str, body: dict) -> int:
    """POST /v1/images/generations; returns the bytes of the answer."""
    async with http.post(daemon + "/v1/images/generations", json=body) as resp:
        raw = await resp.read()
        if resp.status != 200:
            raise RuntimeError(f"daemon answered {resp.status}: {raw[:300]!r}")
    return len(raw)


async def closed_loop(fn: Callable[[], Awaitable[object]], concurrency: int,
                      total: int) -> tuple[list[float], float]:
    """``total`` calls of ``fn`` by ``concurrency`` workers, each starting its next call
    when the last one ends. Returns each call's latency (s) and the wall time."""
    latencies: list[float] = []
    remaining = total

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            started = time.perf_counter()
            await fn()
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies, time.perf_counter() - started
