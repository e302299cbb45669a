"""1. Added latency: the same instant jobs by a direct client of the emulator (create →
poll → download) and through the daemon's ``/v1/images/generations`` (b64 and url).

Both run closed loops of ``concurrency`` workers against the same emulator process; the
daemon is a process of its own. "Added" is the daemon path's percentile minus the
direct path's. The daemon's CPU time per request is read from /proc, because at high
concurrency added latency is mostly queueing behind that CPU time.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from . import procs
from .clients import DirectClient, closed_loop, create_body, daemon_images, session
from .report import Figure, Section, pct

PROMPT = "a lighthouse at dawn"
FIELDS = dict(prompt=PROMPT, size="512x768", seed=1234, n=1)


@dataclass
class Sizes:
    concurrency: tuple[int, ...]
    requests: int
    warmup: int


SIZES = {"full": Sizes((50, 200), 2000, 200), "quick": Sizes((50, 200), 600, 100),
         "smoke": Sizes((2, 5), 10, 4)}
TARGET_P50, TARGET_P99 = 1.0, 5.0   # ms


async def run(mode: str, workdir: Path) -> Section:
    size = SIZES[mode]
    section = Section("1. Added latency", (
        f"Instant generation; {size.requests} requests per run in a closed loop; 512x768, "
        "n=1. Baseline: a direct client of the same emulator doing create → poll → "
        "download itself. Added latency = value − baseline."))
    body = create_body(**FIELDS)
    openai_body = {**FIELDS, "model": "oneFORALLAnime"}
    async with procs.emulator(workdir) as emu, \
            procs.daemon(workdir, emu.url, max_active_jobs=1000, max_queued_jobs=1000,
                         token_max_jobs=1000, **procs.mode_settings(mode)) as daemon, \
            session() as http:
        direct = DirectClient(http, emu.url, body)
        paths = {
            "direct": direct.generate,
            "b64": lambda: daemon_images(http, daemon.url,
                                         {**openai_body, "response_format": "b64_json"}),
            "url": lambda: daemon_images(http, daemon.url,
                                         {**openai_body, "response_format": "url"}),
        }
        for fn in paths.values():                       # connections, caches, history
            await closed_loop(fn, 4, size.warmup)
        for concurrency in (1, *size.concurrency):
            total = size.requests if concurrency > 1 else max(10, size.requests // 10)
            lat: dict[str, list[float]] = {name: [] for name in paths}
            cpu: dict[str, float] = {name: 0.0 for name in paths}
            # two rounds in mirrored order, so a drift of the machine's load hits all alike
            for order in (list(paths), list(paths)[::-1]):
                for name in order:
                    before = daemon.cpu_seconds()
                    got, _ = await closed_loop(paths[name], concurrency, total // 2)
                    cpu[name] += daemon.cpu_seconds() - before
                    lat[name].extend(got)
            for fmt in ("b64", "url"):
                for q, target in ((50, TARGET_P50), (99, TARGET_P99)):
                    daemon_ms, direct_ms = (pct(lat[path], q) * 1000 for path in (fmt, "direct"))
                    judged = concurrency > 1
                    section.add(Figure(
                        f"c={concurrency} {fmt}: p{q}", daemon_ms, "ms", direct_ms, "direct",
                        f"added ≤ {target:g} ms" if judged else "",
                        daemon_ms - direct_ms <= target if judged else None))
                section.add(Figure(f"c={concurrency} {fmt}: daemon CPU per request",
                                   cpu[fmt] / len(lat[fmt]) * 1000, "ms"))
    section.notes.append(
        "c=1 (one request at a time) is the daemon's own per-request cost without "
        "queueing; at c=50/200 a closed loop keeps that many requests waiting, so "
        "added latency ≈ queueing behind the daemon's CPU time per request.")
    return section
