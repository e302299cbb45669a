"""7. Against the seed's approach: a burst of concurrent jobs, all taking the same time,
through the daemon and through a stand-in of the seed project, on one emulator.

One emulator serves four runs of the same burst, one after another, each measured on
its own: a direct client (no proxy, every job polled exactly when due: the floor); a
cold daemon (a fresh data directory: no duration history, so its poll schedule is the
prior around ``expected_duration``); a warm daemon (a fresh one that first ran a few
jobs, as any daemon that has been up a while has); and the seed-style stand-in
(``bench.seedstyle``: FastAPI + uvicorn, one worker, synchronous cloudscraper calls in
a thread pool, a poll every 2 s). The daemons' limits are raised to let the whole burst
in. Daemons and stand-in answer ``POST /v1/images/generations`` (url format); the
daemon downloads and stores each image before it answers, the stand-in hands back
Arting's links, the direct client downloads the image itself.

CPU per job is the process's user + system time over the burst (``/proc``, all its
threads) divided by the jobs; polls per job-second are the emulator's polls of the
burst's jobs divided by their seconds of generation.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from . import procs
from .clients import DirectClient, create_body, daemon_images, session
from .report import Figure, Section
from .scale import emulator_view

FIELDS = dict(prompt="a lighthouse in the rain", size="256x256", seed=11, n=1)
TARGET_CPU_SHARE, TARGET_WALL = 1 / 3, 1.15


@dataclass
class Sizes:
    jobs: int
    seconds: float
    warmup_jobs: int
    settle: float = 1.0         # seconds the warm daemon idles between warm-up and burst
    seed_poll: float = 2.0      # the stand-in's poll interval (the seed's own: 2 s)


SIZES = {"full": Sizes(1000, 5.0, 8), "quick": Sizes(300, 5.0, 8),
         "smoke": Sizes(10, 0.3, 3, settle=0.1, seed_poll=0.3)}


@dataclass
class Run:
    wall: float          # seconds from the first request to the last answer
    cpu: float           # CPU seconds per job of the process in the middle (0: none)
    view: dict           # what the emulator saw (scale.emulator_view)


async def burst(http: aiohttp.ClientSession, emulator: str, jobs: int, send,
                proxy: procs.Child | None = None) -> Run:
    """``jobs`` calls of ``send`` at once; the proxy's CPU and the emulator's view."""
    since = time.time()
    cpu = proxy.cpu_seconds() if proxy else 0.0
    started = time.perf_counter()
    await asyncio.gather(*(send() for _ in range(jobs)))
    wall = time.perf_counter() - started
    cpu = (proxy.cpu_seconds() - cpu) / jobs if proxy else 0.0
    return Run(wall, cpu, await emulator_view(http, emulator, since, time.time()))


async def through_daemon(http: aiohttp.ClientSession, workdir: Path, emulator: str,
                         mode: str, size: Sizes, warm: bool) -> Run:
    name = "daemon-warm" if warm else "daemon-cold"
    room = size.jobs + 100
    async with procs.daemon(workdir, emulator, name=name, max_active_jobs=room,
                            max_queued_jobs=room, token_max_jobs=room,
                            **procs.mode_settings(mode)) as daemon:
        body = {**FIELDS, "response_format": "url"}
        if warm:
            await asyncio.gather(*(daemon_images(http, daemon.url, body)
                                   for _ in range(size.warmup_jobs)))
            await asyncio.sleep(size.settle)
        return await burst(http, emulator, size.jobs,
                           lambda: daemon_images(http, daemon.url, body), daemon)


async def through_seedstyle(http: aiohttp.ClientSession, workdir: Path, emulator: str,
                            size: Sizes) -> Run:
    async with procs.seedstyle(workdir, emulator, size.seed_poll) as seed:
        async def send() -> None:
            async with http.post(seed.url + "/v1/images/generations", json=FIELDS) as resp:
                answer = await resp.json()
                if resp.status != 200 or not answer["data"]:
                    raise RuntimeError(f"the seed-style server answered {resp.status}: "
                                       f"{answer}")
        return await burst(http, emulator, size.jobs, send, seed)


async def run(mode: str, workdir: Path) -> Section:
    size = SIZES[mode]
    section = Section("7. Seed-style baseline", (
        f"{size.jobs} jobs at once, {size.seconds:g} s generation each (256x256, url), one "
        "emulator; in turn: a direct client, a cold daemon, a warm daemon, the seed-style "
        "stand-in (FastAPI + uvicorn, cloudscraper in a thread pool, a poll every "
        f"{size.seed_poll:g} s)."))
    async with procs.emulator(workdir, generation_time=size.seconds) as emu, \
            session() as http:
        direct_client = DirectClient(http, emu.url, create_body(**FIELDS), interval=0.05,
                                     first_delay=size.seconds)
        direct = await burst(http, emu.url, size.jobs, direct_client.generate)
        cold = await through_daemon(http, workdir, emu.url, mode, size, warm=False)
        warm = await through_daemon(http, workdir, emu.url, mode, size, warm=True)
        seed = await through_seedstyle(http, workdir, emu.url, size)

    def rate(r: Run) -> float:
        return r.view["polls"] / size.seconds

    section.add(
        Figure("cold daemon: polls per job-second", rate(cold), "", rate(warm), "warm daemon",
               "≤ warm daemon", rate(cold) <= rate(warm)),
        Figure("warm daemon: polls per job-second", rate(warm), "", rate(seed), "seed-style"),
        Figure("daemon CPU per job (warm)", warm.cpu * 1000, "ms", seed.cpu * 1000,
               "seed-style", f"≤ {TARGET_CPU_SHARE:.2f}× baseline",
               warm.cpu <= TARGET_CPU_SHARE * seed.cpu),
        Figure("daemon CPU per job (cold)", cold.cpu * 1000, "ms", seed.cpu * 1000,
               "seed-style"),
        Figure("wall time, warm daemon", warm.wall, "s", direct.wall, "direct client",
               f"≤ {TARGET_WALL:g}× baseline", warm.wall <= TARGET_WALL * direct.wall),
        Figure("wall time, cold daemon", cold.wall, "s", direct.wall, "direct client"),
        Figure("wall time, seed-style", seed.wall, "s", direct.wall, "direct client"),
        Figure("noticed after done upstream, p50, warm daemon", warm.view["notice50"], "s",
               direct.view["notice50"], "direct client"),
        Figure("noticed after done upstream, p50, cold daemon", cold.view["notice50"], "s",
               direct.view["notice50"], "direct client"),
        Figure("noticed after done upstream, p50, seed-style", seed.view["notice50"], "s",
               direct.view["notice50"], "direct client"),
        Figure("time until all jobs were created upstream, warm daemon",
               warm.view["spread"], "s", direct.view["spread"], "direct client"),
        Figure("time until all jobs were created upstream, seed-style",
               seed.view["spread"], "s", direct.view["spread"], "direct client"),
    )
    return section
