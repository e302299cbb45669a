"""An AUTOMATIC1111 stand-in: our own aiohttp server with A1111's API shape, for the tests
of the ``a1111`` provider.

It answers the routes the provider uses as A1111 1.10 does — ``txt2img``/``img2img``
(one job at a time, behind a lock, as A1111's queue lock), ``progress``, ``interrupt``,
``sd-models``, ``options`` — and draws small flat PNGs of the requested size. It runs
on its own loop thread (so tests drive it with synchronous clients) and records what
it was asked. Switches: ``auth`` (``--api-auth``), ``fail_with`` (the status the next
generation answers with), ``oversized`` (it answers a body that never ends), and
``hold_at`` (stop at that step until ``release``).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import json
import time
from typing import Any

from aiohttp import web
from PIL import Image
from threads import LoopThread

from arting_daemon.sandbox.emulator import oversized

MODELS = ("dreamshaper_8", "realisticVisionV51")


def title(model: str) -> str:
    return f"{model}.safetensors [{hashlib.sha256(model.encode()).hexdigest()[:10]}]"


class A1111StandIn:
    def __init__(self, *, models: tuple[str, ...] = MODELS, step_time: float = 0.01,
                 auth: str | None = None) -> None:
        self.models = models
        self.step_time = step_time
        self.auth = "Basic " + base64.b64encode(auth.encode()).decode() if auth else None
        self.requests: list[tuple[str, dict]] = []     # (route, JSON body) of generations
        self.progress_reads = 0
        self.interrupts = 0
        self.fail_with: tuple[int, dict] | None = None
        self.hold_at: int | None = None
        self.oversized = False
        self.loaded = models[0]
        self._loop: LoopThread | None = None
        self._runner: web.AppRunner | None = None
        self._busy: asyncio.Lock
        self._released: asyncio.Event
        self._state = {"step": 0, "steps": 0, "active": False, "interrupted": False}
        self.url = ""

    # --- life cycle --------------------------------------------------------------------

    def start(self) -> A1111StandIn:
        self._loop = LoopThread("A1111 stand-in")
        try:
            self.call(self._start())
        except BaseException:
            self.stop()
            raise
        return self

    async def _start(self) -> None:
        self._busy, self._released = asyncio.Lock(), asyncio.Event()
        app = web.Application(middlewares=[self._basic_auth])
        app.router.add_post("/sdapi/v1/txt2img", self._txt2img)
        app.router.add_post("/sdapi/v1/img2img", self._img2img)
        app.router.add_get("/sdapi/v1/progress", self._progress)
        app.router.add_post("/sdapi/v1/interrupt", self._interrupt)
        app.router.add_get("/sdapi/v1/sd-models", self._sd_models)
        app.router.add_get("/sdapi/v1/options", self._options)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"

    def stop(self) -> None:
        if self._loop is not None:
            self._loop.close(self._stop())

    async def _stop(self) -> None:
        if hasattr(self, "_released"):
            self._released.set()        # a generation held at ``hold_at`` ends
        if self._runner is not None:
            await self._runner.cleanup()

    def call(self, coro, timeout: float = 60.0) -> Any:
        assert self._loop is not None, "the stand-in was not started"
        return self._loop.call(coro, timeout)

    def release(self) -> None:
        """Let a generation held at ``hold_at`` go on."""
        assert self._loop is not None, "the stand-in was not started"
        self._loop.loop.call_soon_threadsafe(self._released.set)

    def wait_until(self, what, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while not what(self):
            assert time.monotonic() < deadline, "the stand-in never got there"
            time.sleep(0.01)

    @property
    def step(self) -> int:
        return self._state["step"]

    # --- routes ------------------------------------------------------------------------

    @web.middleware
    async def _basic_auth(self, request: web.Request, handler) -> web.StreamResponse:
        if self.auth and request.headers.get("Authorization") != self.auth:
            return web.json_response({"detail": "Incorrect username or password"}, status=401,
                                     headers={"WWW-Authenticate": "Basic"})
        return await handler(request)

    async def _txt2img(self, request: web.Request) -> web.Response:
        return await self._generate(request, "txt2img")

    async def _img2img(self, request: web.Request) -> web.Response:
        return await self._generate(request, "img2img")

    async def _generate(self, request: web.Request, route: str) -> web.Response:
        body = await request.json()
        self.requests.append((route, body))
        if self.oversized:
            return await oversized(request)
        if self.fail_with is not None:
            status, answer = self.fail_with
            return web.json_response(answer, status=status)
        async with self._busy:
            checkpoint = (body.get("override_settings") or {}).get("sd_model_checkpoint")
            match = [m for m in self.models if checkpoint in (m, title(m))]
            if match:
                self.loaded = match[0]
            steps, n = int(body.get("steps", 20)), int(body.get("batch_size", 1))
            self._state.update(step=0, steps=steps, active=True, interrupted=False)
            try:
                for step in range(1, steps + 1):
                    if self._state["interrupted"]:
                        break
                    if step == self.hold_at:
                        self._released.clear()
                        await self._released.wait()
                    await asyncio.sleep(self.step_time)
                    self._state["step"] = step
            finally:
                self._state["active"] = False
            seed = int(body.get("seed", -1))
            images = [self._png(body, seed + i) for i in range(n)]
            info = {"seed": seed, "all_seeds": [seed + i for i in range(n)],
                    "sd_model_name": self.loaded, "index_of_first_image": 0,
                    "interrupted": self._state["interrupted"]}
            return web.json_response({"images": images, "parameters": body,
                                      "info": json.dumps(info)})

    @staticmethod
    def _png(body: dict, seed: int) -> str:
        colour = (seed * 37 % 256, seed * 91 % 256, 200)
        buf = io.BytesIO()
        Image.new("RGB", (int(body.get("width", 512)), int(body.get("height", 512))),
                  colour).save(buf, "PNG")
        return base64.b64encode(buf.getvalue()).decode()

    async def _progress(self, request: web.Request) -> web.Response:
        self.progress_reads += 1
        s = self._state
        fraction = s["step"] / s["steps"] if s["active"] and s["steps"] else 0.0
        return web.json_response({
            "progress": fraction, "eta_relative": 0.0,
            "state": {"skipped": False, "interrupted": s["interrupted"],
                      "job_count": int(s["active"]), "sampling_step": s["step"],
                      "sampling_steps": s["steps"]},
            "current_image": None, "textinfo": None})

    async def _interrupt(self, request: web.Request) -> web.Response:
        self.interrupts += 1
        if self._state["active"]:
            self._state["interrupted"] = True
            self._released.set()
        return web.json_response({})

    async def _sd_models(self, request: web.Request) -> web.Response:
        return web.json_response([
            {"title": title(m), "model_name": m, "hash": title(m)[-11:-1],
             "sha256": hashlib.sha256(m.encode()).hexdigest(), "filename": f"/m/{m}.safetensors",
             "config": None} for m in self.models])

    async def _options(self, request: web.Request) -> web.Response:
        return web.json_response({"sd_model_checkpoint": title(self.loaded)})
