"""3. Polling efficiency: generation times drawn from a lognormal (median 8 s, σ 0.6,
capped at 60 s), jobs kept running in a steady stream.

Live: each variant gets its own emulator, all seeded alike, so the n-th job of every
variant takes the same time. The emulator records when each job finished (``done_at``)
and every poll it received; a job is noticed at the first poll that arrives after it
finished. Polls per job-second = all polls / all generation seconds. The first jobs of
each variant are left out of the figures while the daemon learns the distribution.

Variants: the daemon with its default settings; the daemon with ``poll_rate = 1.0``;
and the baseline, a client that polls every 2 s (as most public Arting clients do).

Also, offline: the same schedule code (``arting_daemon.timing``) driven by simulated
jobs over a range of ``poll_rate`` values and fixed intervals (the trade-off curve),
and the bound no polling schedule can beat for this distribution.
"""

from __future__ import annotations

import asyncio
import math
import random
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from arting_daemon.config import Settings
from arting_daemon.timing import DurationStats, Timing

from . import procs
from .clients import DirectClient, closed_loop, create_body, daemon_images, session
from .report import Figure, Section, pct

FIELDS = dict(prompt="a quiet forest", size="256x256", seed=3, n=1)
TARGET_RATE, TARGET_DELAY = 1.0, 0.25   # polls per job-second; seconds (median)


@dataclass
class Sizes:
    median: float
    sigma: float
    cap: float
    jobs: int            # per variant, warm-up included
    warmup: int          # first jobs left out of the figures
    concurrency: int
    simulated: int       # jobs per simulated point
    interval: float = 2.0  # the baseline's fixed poll interval


SIZES = {"full": Sizes(8.0, 0.6, 60.0, 400, 80, 40, 2000),
         "quick": Sizes(8.0, 0.6, 60.0, 200, 60, 40, 600),
         "smoke": Sizes(0.2, 0.6, 1.0, 8, 2, 4, 40, interval=0.2)}


@dataclass
class Outcome:
    rate: float                  # polls per job-second
    delays: list[float]          # seconds from finished to noticed, per job

    @property
    def median(self) -> float:
        return pct(self.delays, 50)

    @property
    def mean(self) -> float:
        return sum(self.delays) / len(self.delays)


# --- live ---------------------------------------------------------------------------------

async def configure(http: aiohttp.ClientSession, emulator: str, size: Sizes) -> None:
    config = {"generation_dist": "lognormal", "generation_median": size.median,
              "generation_sigma": size.sigma, "generation_max": size.cap, "seed": 11}
    async with http.post(emulator + "/__sandbox__/config", json=config) as resp:
        resp.raise_for_status()


async def outcome(http: aiohttp.ClientSession, emulator: str, skip: int) -> Outcome:
    """What the emulator saw: polls and notice delays of its jobs, the first ``skip``
    left out."""
    async with http.get(emulator + "/__sandbox__/jobs") as resp:
        jobs = sorted((await resp.json()).values(), key=lambda j: j["created_at"])[skip:]
    async with http.get(emulator + "/__sandbox__/requests", params={"route": "get"}) as resp:
        polls = await resp.json()
    arrivals: dict[str, list[float]] = {}
    for poll in polls:
        arrivals.setdefault(poll["body"]["request_id"], []).append(poll["time"])
    delays, count, seconds = [], 0, 0.0
    for job in jobs:
        done = job["done_at"]
        noticed = min(t for t in arrivals[job["request_id"]] if t >= done)
        delays.append(noticed - done)
        count += job["polls"]
        seconds += done - job["created_at"]
    return Outcome(count / seconds, delays)


async def live(mode: str, size: Sizes, workdir: Path) -> dict[str, Outcome]:
    body = {**FIELDS, "response_format": "url"}
    results: dict[str, Outcome] = {}
    # every job in flight upstream at once (the defaults allow 4 per token)
    room = dict(max_active_jobs=size.concurrency, token_max_jobs=size.concurrency,
                **procs.mode_settings(mode))
    async with session() as http, \
            procs.emulator(workdir, name="emulator-default") as emu_default, \
            procs.emulator(workdir, name="emulator-rate1") as emu_rate1, \
            procs.emulator(workdir, name="emulator-fixed") as emu_fixed, \
            procs.daemon(workdir, emu_default.url, name="daemon-default",
                         **room) as d_default, \
            procs.daemon(workdir, emu_rate1.url, name="daemon-rate1", poll_rate=1.0,
                         **room) as d_rate1:
        for emu in (emu_default, emu_rate1, emu_fixed):
            await configure(http, emu.url, size)
        fixed = DirectClient(http, emu_fixed.url, create_body(**FIELDS),
                             interval=size.interval, first_delay=size.interval)
        runs = {
            "daemon (default)": (emu_default, lambda: daemon_images(http, d_default.url, body)),
            "daemon (poll_rate=1)": (emu_rate1, lambda: daemon_images(http, d_rate1.url, body)),
            "fixed": (emu_fixed, lambda: fixed.generate(download=False)),
        }
        await asyncio.gather(*(closed_loop(fn, size.concurrency, size.jobs)
                               for _, fn in runs.values()))
        for name, (emu, _) in runs.items():
            results[name] = await outcome(http, emu.url, size.warmup)
    return results


# --- offline: the trade-off curve and the bound --------------------------------------------

def simulate(settings: Settings | None, size: Sizes, seed: int = 1,
             fixed: float | None = None) -> Outcome:
    """Jobs one after another through ``DurationStats``/``PollSchedule`` as the engine
    uses them (or a fixed interval), with durations drawn like the emulator's."""
    rng = random.Random(seed)
    stats = DurationStats(Timing.of(settings or Settings()))
    polls, seconds, delays = 0, 0.0, []
    for n in range(size.simulated + size.warmup):
        duration = min(rng.lognormvariate(math.log(size.median), size.sigma), size.cap)
        schedule = stats.schedule("m", 256, 256)
        elapsed, pending, count = 0.0, None, 0
        while True:
            elapsed += fixed if fixed else schedule.next_delay(elapsed, count)
            count += 1
            if elapsed >= duration:
                break
            pending = elapsed
        finished_at = getattr(schedule, "finished_at", None)   # absent before this bench
        stats.record("m", 256, 256, finished_at(elapsed, pending) if finished_at else elapsed)
        if n >= size.warmup:
            polls, seconds = polls + count, seconds + duration
            delays.append(elapsed - duration)
    return Outcome(polls / seconds, delays)


def bound(size: Sizes) -> tuple[float, float]:
    """What no polling schedule can beat, for this lognormal.

    A poll made while the job may still run costs one request with probability S(a)
    (the job outlived the poll before it, at a) and catches, within a delay d, only
    jobs that finished in the last d before it: probability ≤ S(a)·d·h*, h* the
    largest hazard rate f/S. To notice half the jobs within d takes E[polls] ≥
    0.5/(d·h*). Returns (least polls per job-second for d = 250 ms, least median
    delay at 1 poll per job-second).
    """
    mu, sigma = math.log(size.median), size.sigma

    def cdf(t: float) -> float:
        return 0.5 * (1 + math.erf((math.log(t) - mu) / (sigma * math.sqrt(2))))

    def pdf(t: float) -> float:
        return math.exp(-(math.log(t) - mu) ** 2 / (2 * sigma ** 2)) / (
            t * sigma * math.sqrt(2 * math.pi))

    step = size.cap / 20000
    grid = [step * i for i in range(1, 20000)]
    hazard = max(pdf(t) / (1 - cdf(t)) for t in grid)
    mean = sum((1 - cdf(t)) * step for t in grid)   # E[min(T, cap)]
    atom = 1 - cdf(size.cap)                        # jobs cut at the cap: caught free
    least_polls = (0.5 - atom) / (TARGET_DELAY * hazard) / mean
    least_delay = (0.5 - atom) / (TARGET_RATE * mean * hazard)
    return least_polls, least_delay


# --- the section ------------------------------------------------------------------------------

async def run(mode: str, workdir: Path) -> Section:
    size = SIZES[mode]
    section = Section("3. Polling efficiency", (
        f"Lognormal generation times: median {size.median:g} s, σ {size.sigma:g}, capped at "
        f"{size.cap:g} s; {size.jobs} jobs per variant, {size.concurrency} at a time, the "
        f"first {size.warmup} left out. Baseline: a client polling every {size.interval:g} s."))
    results = await live(mode, size, workdir)
    base, fixed = results["fixed"], f"fixed {size.interval:g} s"
    for name in ("daemon (default)", "daemon (poll_rate=1)"):
        got, judged = results[name], name == "daemon (default)"
        section.add(
            Figure(f"{name}: polls per job-second", got.rate, "", base.rate, fixed,
                   f"≤ {TARGET_RATE:g} and < baseline" if judged else "",
                   got.rate <= TARGET_RATE and got.rate < base.rate if judged else None),
            Figure(f"{name}: median notice delay", got.median, "s", base.median, fixed,
                   f"≤ {TARGET_DELAY:g} s and < baseline" if judged else "",
                   got.median <= TARGET_DELAY and got.median < base.median
                   if judged else None),
            Figure(f"{name}: mean notice delay", got.mean, "s", base.mean, fixed),
            Figure(f"{name}: p90 notice delay", pct(got.delays, 90), "s",
                   pct(base.delays, 90), fixed))

    least_polls, least_delay = bound(size)
    section.add(
        Figure("bound: fewest polls/job-s for a 250 ms median", least_polls, ""),
        Figure("bound: least median delay at 1 poll/job-s", least_delay, "s"))

    section.notes.append(f"Simulated with the same schedule code, {size.simulated} jobs "
                         "each (polls/job-s → median / mean / p90 delay):")
    curve = [("fixed 1 s", simulate(None, size, fixed=1.0)),
             ("fixed 2 s", simulate(None, size, fixed=2.0))]
    curve += [(f"poll_rate={rate:g}", simulate(Settings(poll_rate=rate), size))
              for rate in (0.3, 0.5, 0.7, 1.0, 1.3, 1.6)]
    for name, o in curve:
        section.notes.append(f"  {name:13} {o.rate:.2f} → {o.median * 1000:.0f} / "
                             f"{o.mean * 1000:.0f} / {pct(o.delays, 90) * 1000:.0f} ms")
    return section
