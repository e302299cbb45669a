"""4. Start-up: from spawning ``python -m arting_daemon --port 0`` to its first 200 on
``/healthz``, in a fresh data directory each time.

Baselines, same run: the same measurement for a minimal aiohttp server that only
answers ``/healthz`` (what any aiohttp daemon costs on this machine) and for a bare
``python -c pass`` (the interpreter alone).
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

import aiohttp

from . import procs
from .report import Figure, Section, pct

RUNS = {"full": 7, "quick": 3, "smoke": 1}
TARGET = 0.5

MINIMAL = """
from aiohttp import web
async def healthz(request):
    return web.json_response({"status": "ok"})
app = web.Application()
app.router.add_get("/healthz", healthz)
async def main():
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    print("listening on http://127.0.0.1:%d" % runner.addresses[0][1], flush=True)
    await asyncio.Event().wait()
import asyncio
asyncio.run(main())
"""


async def time_to_healthy(child: procs.Child) -> float:
    """Seconds from spawning ``child`` to a 200 on its /healthz."""
    async with child, aiohttp.ClientSession() as http:
        while True:
            try:
                async with http.get(child.url + "/healthz") as resp:
                    if resp.status == 200:
                        return time.perf_counter() - child.started_at
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.005)


async def interpreter_start() -> float:
    started = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", "pass")
    await proc.wait()
    return time.perf_counter() - started


async def run(mode: str, workdir: Path) -> Section:
    runs = RUNS[mode]
    section = Section("4. Start-up", (
        f"Process spawn to first 200 on /healthz, {runs} runs each (median), fresh data "
        "directory every time."))
    daemon, minimal, bare = [], [], []
    for n in range(runs):
        data = workdir / f"run{n}"
        data.mkdir()
        daemon.append(await time_to_healthy(procs.Child(
            f"daemon{n}", "arting_daemon", ["--port", "0", "--data-dir", str(data / "data")],
            procs.clean_env(), data, wrap=False)))
        script = data / "minimal.py"
        script.write_text(MINIMAL)
        minimal.append(await time_to_healthy(procs.Child(
            f"minimal{n}", "minimal", [], procs.clean_env(PYTHONPATH=str(data)), data,
            wrap=False)))
        bare.append(await interpreter_start())
    value = pct(daemon, 50)
    section.add(
        Figure("daemon: spawn → 200 /healthz", value, "s", pct(minimal, 50),
               "minimal aiohttp server", f"≤ {TARGET:g} s", value <= TARGET),
        Figure("daemon: fastest run", min(daemon), "s", min(minimal), "minimal, fastest"),
        Figure("interpreter alone (python -c pass)", pct(bare, 50), "s"))
    return section
