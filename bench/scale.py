"""2. Scale: thousands of jobs in flight at once, each taking the same generation time.

The daemon and the emulator are separate processes, so the resident memory measured is
the daemon's own (VmHWM, the kernel's high-water mark of the process). Event-loop lag
is measured inside the daemon by the probe ``bench.child`` puts on its loop. The
daemon first runs a few jobs so its poll schedule knows how long jobs take (as any
daemon that has been up for a while does), then all jobs are sent at once through
``/v1/images/generations`` (url format), each on its own connection.

Baselines, same run: the daemon's idle memory and idle loop lag before the burst, and
the total time of a direct client that creates the same jobs, polls each once right
when it is due and downloads the image — the floor for this machine and emulator.
"""

from __future__ import annotations

import asyncio
import math
import resource
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from . import procs
from .clients import DirectClient, create_body, daemon_images, session
from .report import Figure, Section, pct

FIELDS = dict(prompt="a crowded harbour", size="256x256", seed=7, n=1)
MB = 1024 * 1024


@dataclass
class Sizes:
    jobs: int
    seconds: float
    warmup_jobs: int


SIZES = {"full": Sizes(2000, 10.0, 8), "quick": Sizes(500, 5.0, 8),
         "smoke": Sizes(20, 0.3, 5)}
TARGET_RSS_MB, TARGET_LAG_MS = 150, 20


def own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def emulator_view(http: aiohttp.ClientSession, emulator: str, since: float,
                        until: float = math.inf) -> dict:
    """From the emulator's records of the burst's jobs (made from ``since`` to ``until``):
    how long creating them all took (from the burst's start), the median delay from a
    job being done to the daemon's poll that saw it, and polls per job."""
    async with http.get(emulator + "/__sandbox__/jobs") as resp:
        jobs = [j for j in (await resp.json()).values() if since <= j["created_at"] < until]
    async with http.get(emulator + "/__sandbox__/requests", params={"route": "get"}) as resp:
        polls = [p for p in await resp.json() if since <= p["time"] < until]
    arrivals: dict[str, list[float]] = {}
    for poll in polls:
        arrivals.setdefault(poll["body"]["request_id"], []).append(poll["time"])
    # the last poll of a job found it done (the emulator may stamp a poll that arrived
    # just before the job was done, and answer it done)
    notice = [max(0.0, max(arrivals[j["request_id"]]) - j["done_at"]) for j in jobs]
    last_created = max(j["created_at"] for j in jobs)
    return {"spread": last_created - since, "last_created": last_created,
            "first_done": min(j["done_at"] for j in jobs),
            "notice50": pct(notice, 50), "polls": len(polls) / len(jobs)}


async def run(mode: str, workdir: Path) -> Section:
    size = SIZES[mode]
    target_total = size.seconds * 1.1
    section = Section("2. Scale", (
        f"{size.jobs} jobs in flight at once, {size.seconds:g} s generation each "
        f"(256x256, url). Daemon and emulator are separate processes."))
    async with procs.emulator(workdir, generation_time=size.seconds) as emu, \
            session() as http:
        # Baseline: a direct client that polls each job exactly when it is due.
        direct = DirectClient(http, emu.url, create_body(**FIELDS), interval=0.05,
                              first_delay=size.seconds)
        direct_from = time.time()
        started = time.perf_counter()
        await asyncio.gather(*(direct.generate() for _ in range(size.jobs)))
        direct_total = time.perf_counter() - started
        direct_upstream = await emulator_view(http, emu.url, direct_from)

        async with procs.daemon(workdir, emu.url, lag_probe=True,
                                max_active_jobs=size.jobs + 100,
                                max_queued_jobs=size.jobs + 100,
                                token_max_jobs=size.jobs + 100,
                                **procs.mode_settings(mode)) as daemon:
            body = {**FIELDS, "response_format": "url"}
            await asyncio.gather(*(daemon_images(http, daemon.url, body)
                                   for _ in range(size.warmup_jobs)))
            await asyncio.sleep(1.0)
            idle_rss = daemon.rss()
            idle_from = time.time() - 1.0
            burst_from = time.time()
            cpu_before = (daemon.cpu_seconds(), emu.cpu_seconds(), own_cpu())
            started = time.perf_counter()
            await asyncio.gather(*(daemon_images(http, daemon.url, body)
                                   for _ in range(size.jobs)))
            total = time.perf_counter() - started
            cpu, emu_cpu, client_cpu = (after - before for after, before in zip(
                (daemon.cpu_seconds(), emu.cpu_seconds(), own_cpu()), cpu_before))
            burst_to = time.time()
            peak = daemon.peak_rss()
            upstream = await emulator_view(http, emu.url, burst_from)
        lag = daemon.lag_samples()
    idle_lag = [s for t, s in lag if idle_from <= t < burst_from]
    burst_lag = [s for t, s in lag if burst_from <= t <= burst_to]
    # all jobs created upstream, none done yet: what holding them costs
    waiting_lag = [s for t, s in lag if upstream["last_created"] + 0.2 <= t
                   <= upstream["first_done"] - 0.2]
    section.add(
        Figure("peak RSS of the daemon", peak / MB, "MB", idle_rss / MB, "idle daemon",
               f"≤ {TARGET_RSS_MB} MB", peak / MB <= TARGET_RSS_MB),
        Figure("event-loop lag p99", pct(burst_lag, 99) * 1000, "ms",
               pct(idle_lag, 99) * 1000, "idle", f"≤ {TARGET_LAG_MS} ms",
               pct(burst_lag, 99) * 1000 <= TARGET_LAG_MS),
        Figure("event-loop lag max", max(burst_lag, default=0) * 1000, "ms",
               max(idle_lag, default=0) * 1000, "idle"),
        Figure("total time, all jobs", total, "s", direct_total, "direct client",
               f"≤ {target_total:g} s (ideal {size.seconds:g} s)", total <= target_total),
        Figure("time until all jobs were created upstream", upstream["spread"], "s",
               direct_upstream["spread"], "direct client"),
        Figure("noticed after done upstream, p50", upstream["notice50"], "s",
               direct_upstream["notice50"], "direct client"),
        Figure("polls per job", upstream["polls"], "", direct_upstream["polls"],
               "direct client"),
        Figure("daemon CPU per job", cpu / size.jobs * 1000, "ms"),
        Figure("emulator CPU per job (3 requests served)", emu_cpu / size.jobs * 1000, "ms"),
        Figure("bench client CPU per job (1 request made)", client_cpu / size.jobs * 1000,
               "ms"),
    )
    if waiting_lag:
        section.figures.insert(3, Figure(
            "event-loop lag p99 while all jobs wait", pct(waiting_lag, 99) * 1000, "ms",
            pct(idle_lag, 99) * 1000, "idle"))
    per_job = (peak - idle_rss) / size.jobs / 1024
    section.notes.append(f"{len(burst_lag)} lag samples (10 ms probe) during the run, "
                         f"{len(waiting_lag)} while all jobs waited; memory per job in "
                         f"flight ≈ {per_job:.0f} KB")
    return section
