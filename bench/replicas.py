"""6. Replicas: the same load through 1, 2 and 3 daemons sharing one Redis, beside one
daemon alone (no Redis).

A closed loop of ``concurrency`` clients sends ``/v1/images/generations`` (url answers)
round-robin to the replicas; the emulator takes ``generation_time`` per job. Figures per
setup: throughput, latency p50/p99 (and what Redis adds over the daemon alone), and the
Redis commands each job costs (``INFO stats``, read before and after). On one 2-core
machine every process shares the same cores, so more replicas cannot add throughput
here; the figures show what sharing state costs, not how replicas scale.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import shutil
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from . import procs
from .clients import closed_loop, daemon_images, session
from .report import Figure, Section, pct

FIELDS = dict(prompt="a lighthouse", size="512x768", n=1, model="oneFORALLAnime",
              response_format="url")


@dataclass
class Sizes:
    jobs: int
    concurrency: int
    generation_time: float


#: Round trips to Redis a job may cost, background traffic included: a handful of record
#: writes (pipelined), admission, release, and the replicas' periodic checks.
MAX_ROUND_TRIPS = 12

SIZES = {"full": Sizes(600, 60, 1.0), "quick": Sizes(200, 40, 0.5),
         "smoke": Sizes(6, 3, 0.0)}


@contextlib.asynccontextmanager
async def redis_server(workdir: Path) -> AsyncIterator[tuple[str, int]]:
    """A redis-server of the bench's own on a free loopback port (nothing kept on disk)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = await asyncio.create_subprocess_exec(
        "redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
        "--appendonly", "no", "--dir", str(workdir), stdout=asyncio.subprocess.DEVNULL)
    procs._live.add(proc.pid)
    try:
        for _ in range(100):
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.close()
                break
            except OSError:
                await asyncio.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0", port
    finally:
        proc.terminate()
        await proc.wait()
        procs._live.discard(proc.pid)


async def commands(port: int) -> int:
    """Commands Redis has processed so far."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"INFO stats\r\n")
    await writer.drain()
    text = b""
    while b"total_commands_processed" not in text or not text.endswith(b"\r\n\r\n"):
        chunk = await reader.read(65536)
        if not chunk:
            break
        text += chunk
    writer.close()
    for line in text.decode().splitlines():
        if line.startswith("total_commands_processed:"):
            return int(line.split(":")[1])
    return 0


async def round_trips(urls: list[str]) -> float:
    """Round trips to Redis the replicas have made so far (their /metrics)."""
    total = 0.0
    async with session() as http:
        for url in urls:
            async with http.get(url + "/metrics") as resp:
                for line in (await resp.text()).splitlines():
                    if line.startswith("arting_redis_round_trips_total "):
                        total += float(line.split()[1])
    return total


async def measure(urls: list[str], size: Sizes) -> tuple[list[float], float]:
    turn = itertools.cycle(urls)
    async with session() as http:
        await closed_loop(lambda: daemon_images(http, next(turn), FIELDS), 4, 8)   # warm up
        return await closed_loop(lambda: daemon_images(http, next(turn), FIELDS),
                                 size.concurrency, size.jobs)


async def run(mode: str, workdir: Path) -> Section:
    size = SIZES[mode]
    section = Section("6. Replicas", (
        f"{size.jobs} jobs of {size.generation_time:g} s, {size.concurrency} clients in a "
        "closed loop, round-robin over the replicas; one Redis; baseline: one daemon "
        "without Redis. All processes share this machine's cores."))
    if shutil.which("redis-server") is None:
        section.notes.append("skipped: redis-server is not installed")
        return section
    limits = dict(max_active_jobs=1000, max_queued_jobs=1000, token_max_jobs=1000,
                  **procs.mode_settings(mode))
    async with procs.emulator(workdir, generation_time=size.generation_time) as emu:
        async with procs.daemon(workdir, emu.url, name="alone", **limits) as alone:
            base, base_wall = await measure([alone.url], size)
        base_rate = size.jobs / base_wall
        section.add(Figure("alone: throughput", base_rate, "jobs/s"))
        for q in (50, 99):
            section.add(Figure(f"alone: p{q}", pct(base, q) * 1000, "ms"))
        for count in (1, 2, 3):
            async with redis_server(workdir) as (url, port), contextlib.AsyncExitStack() as stack:
                replicas = [await stack.enter_async_context(procs.daemon(
                    workdir, emu.url, name=f"r{count}-{i}", data_dir=workdir / f"shared{count}",
                    redis_url=url, **limits)) for i in range(count)]
                urls = [r.url for r in replicas]
                before, trips = await commands(port), await round_trips(urls)
                lat, wall = await measure(urls, size)
                used = await commands(port) - before
                trips = await round_trips(urls) - trips
            jobs = size.jobs + 8
            section.add(Figure(f"{count} replica(s): throughput", size.jobs / wall, "jobs/s",
                               base_rate, "alone"))
            for q in (50, 99):
                section.add(Figure(f"{count} replica(s): p{q}", pct(lat, q) * 1000, "ms",
                                   pct(base, q) * 1000, "alone"))
            section.add(Figure(f"{count} replica(s): Redis round trips per job", trips / jobs,
                               "", target=f"≤ {MAX_ROUND_TRIPS}",
                               met=trips / jobs <= MAX_ROUND_TRIPS))
            section.add(Figure(f"{count} replica(s): Redis commands per job", used / jobs, ""))
    section.notes.append(
        "Round trips: requests the replicas sent (a pipeline counts once), read from their "
        "/metrics; commands: what Redis executed (INFO stats), commands inside Lua scripts "
        "included. Both include the background traffic during the run (pings every "
        "second, lease renewals, key checks), spread over the jobs.")
    return section
