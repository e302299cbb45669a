"""5. Image path: returning a batch of four 1024×1024 images as b64 and as url.

Live: the emulator's result links are pointed (its ``public_url`` setting) at a small
file host in the bench process that serves photo-sized PNGs (about 1.6 MB each, like
real generations; the emulator's own drawings compress to a few KB). Timed end to
end: b64 = the one POST; url = the POST plus fetching the four links from the daemon.
Baseline, same run: a direct client of the emulator doing create → poll → download.

In process: the daemon's own answer-building code (``facades/openai_images``) run on
the four PNGs in an image store, with Python's allocation tracing on, to see how much
memory answering takes beyond the PNG bytes themselves, and with Pillow's decoder and
encoder counted: the store already holds PNGs, so neither may run.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import random
import time
import tracemalloc
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from aiohttp import web
from aiohttp.test_utils import make_mocked_request
from PIL import Image, ImageOps

from arting_daemon.config import Settings
from arting_daemon.engine.jobs import Job, JobImage, JobState
from arting_daemon.facades import openai_images
from arting_daemon.generation import Generation
from arting_daemon.state import SETTINGS, STORE
from arting_daemon.store import ImageStore, png_size

from . import procs
from .clients import DirectClient, create_body, daemon_images, session
from .report import Figure, Section, pct

SIDE, COUNT = 1024, 4
FIELDS = dict(prompt="a harbour at night", size=f"{SIDE}x{SIDE}", seed=21, n=COUNT)
REPEATS = {"full": 15, "quick": 5, "smoke": 1}
MB = 1024 * 1024


def photo_png(seed: int, side: int) -> bytes:
    """A PNG that compresses like a photo: a gradient with a little seeded noise."""
    rng = random.Random(seed)
    base = ImageOps.colorize(Image.linear_gradient("L").resize((side, side)),
                             (20 + seed * 40 % 200, 40, 90), (240, 200, 120))
    noise = Image.frombytes("RGB", (side, side), rng.randbytes(side * side * 3))
    out = io.BytesIO()
    Image.blend(base, noise, 0.04).save(out, "PNG")
    return out.getvalue()


async def file_host(pngs: list[bytes]) -> tuple[web.AppRunner, str]:
    async def serve(request: web.Request) -> web.Response:
        return web.Response(body=pngs[int(request.match_info["index"]) % len(pngs)],
                            content_type="image/png")

    app = web.Application()
    app.router.add_get(r"/files/{request_id}/{index:\d+}.png", serve)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}"


# --- in process: the answer-building code ----------------------------------------------------

@contextmanager
def pillow_calls() -> Iterator[dict[str, int]]:
    """Count PNG decodes (Image.open) and encodes (Image.save) while inside."""
    counts = {"open": 0, "save": 0}
    real_open, real_save = Image.open, Image.Image.save

    def counting_open(*a, **kw):
        counts["open"] += 1
        return real_open(*a, **kw)

    def counting_save(self, *a, **kw):
        counts["save"] += 1
        return real_save(self, *a, **kw)

    Image.open, Image.Image.save = counting_open, counting_save
    try:
        yield counts
    finally:
        Image.open, Image.Image.save = real_open, real_save


async def answer_cost(pngs: list[bytes], workdir: Path, b64: bool) -> dict[str, float]:
    """Peak extra memory (traced), time (untraced, best of 5) and Pillow calls of
    building the OpenAI answer for a finished job whose images are in the store."""
    store = ImageStore(workdir / "store")
    stored = [await store.put(png) for png in pngs]
    app = web.Application()
    app[STORE], app[SETTINGS] = store, Settings(data_dir=workdir / "store")
    request = make_mocked_request("POST", "/v1/images/generations", app=app,
                                  headers={"Host": "127.0.0.1:8090"})
    side = png_size(pngs[0])[0]
    gen = Generation(prompt=FIELDS["prompt"], model="oneFORALLAnime", width=side,
                     height=side, n=COUNT, seed=FIELDS["seed"])
    job = Job(id="bench", generation=gen, state=JobState.SUCCEEDED,
              images=[JobImage(s.hash, FIELDS["seed"] + i, side, side)
                      for i, s in enumerate(stored)])
    seconds = []
    for _ in range(5):
        started = time.perf_counter()
        response = await openai_images.answer(request, job, b64)
        seconds.append(time.perf_counter() - started)
    answer = json.loads(response.body)           # the answer must be right to count
    if b64:
        assert [base64.b64decode(d["b64_json"]) for d in answer["data"]] == pngs
    tracemalloc.start()
    try:
        with pillow_calls() as calls:
            await openai_images.answer(request, job, b64)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return {"peak": peak, "seconds": min(seconds), "decodes": calls["open"],
            "encodes": calls["save"]}


# --- the section ------------------------------------------------------------------------------

async def run(mode: str, workdir: Path) -> Section:
    repeats = REPEATS[mode]
    side = SIDE if mode != "smoke" else 256
    section = Section("5. Image path", (
        f"{COUNT} images of {side}x{side} per request (photo-like PNGs), {repeats} "
        "requests each way (median). Baseline: a direct client of the emulator doing "
        "create → poll → download."))
    pngs = await asyncio.to_thread(lambda: [photo_png(i, side) for i in range(COUNT)])
    png_bytes = sum(map(len, pngs))
    host, host_url = await file_host(pngs)
    fields = {**FIELDS, "size": f"{side}x{side}"}
    times: dict[str, list[float]] = {"direct": [], "b64": [], "url": []}
    received: dict[str, int] = {}
    try:
        async with procs.emulator(workdir) as emu, \
                procs.daemon(workdir, emu.url, **procs.mode_settings(mode)) as daemon, \
                session() as http:
            async with http.post(emu.url + "/__sandbox__/config",
                                 json={"public_url": host_url}) as resp:
                resp.raise_for_status()
            direct = DirectClient(http, emu.url, create_body(**fields))
            body = {**fields, "model": "oneFORALLAnime"}

            async def via_b64() -> int:
                async with http.post(daemon.url + "/v1/images/generations",
                                     json={**body, "response_format": "b64_json"}) as resp:
                    return len(await resp.read())

            async def via_url() -> int:
                async with http.post(daemon.url + "/v1/images/generations",
                                     json={**body, "response_format": "url"}) as resp:
                    answer = await resp.json()

                async def fetch(url: str) -> int:
                    async with http.get(url) as got:
                        return len(await got.read())
                sizes = await asyncio.gather(*(fetch(d["url"]) for d in answer["data"]))
                return sum(sizes)

            paths = {"direct": direct.generate, "b64": via_b64, "url": via_url}
            # warm up: connections, and the daemon's poll schedule (it learns that these
            # jobs are done at once; until then it waits for its first poll)
            for _ in range(40 if mode != "smoke" else 1):
                await daemon_images(http, daemon.url, {**body, "n": 1, "response_format": "url"})
            for fn in paths.values():
                await fn()
            for _ in range(repeats):
                for name, fn in paths.items():
                    started = time.perf_counter()
                    received[name] = await fn()
                    times[name].append(time.perf_counter() - started)
    finally:
        await host.cleanup()
    base = pct(times["direct"], 50)
    for name in ("b64", "url"):
        section.add(Figure(f"{name}: time to the whole batch", pct(times[name], 50) * 1000,
                           "ms", base * 1000, "direct client"),
                    Figure(f"{name}: bytes received", received[name] / MB, "MB",
                           received["direct"] / MB, "the PNGs"))
    for name, b64 in (("b64", True), ("url", False)):
        cost = await answer_cost(pngs, workdir / name, b64)
        section.add(
            Figure(f"{name}: memory to build the answer", cost["peak"] / MB, "MB",
                   png_bytes / MB if b64 else None, "the PNGs"),
            Figure(f"{name}: time to build the answer", cost["seconds"] * 1000, "ms"),
            Figure(f"{name}: PNG decodes + encodes while answering",
                   cost["decodes"] + cost["encodes"], "", target="0",
                   met=cost["decodes"] + cost["encodes"] == 0))
    section.notes.append("url links are served by aiohttp's FileResponse (sendfile: the "
                         "kernel copies the file to the socket, no copy in Python).")
    return section
