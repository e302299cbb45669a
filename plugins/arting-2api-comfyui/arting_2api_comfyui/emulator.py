"""An emulator of ComfyUI's server API, for the plugin's tests and the conformance kit.

It answers as ComfyUI does (``POST /prompt``, ``GET /history/{id}``, ``GET /view``,
``GET /object_info/CheckpointLoaderSimple``, ``POST /interrupt``, ``POST /queue``, the
``/ws`` WebSocket with ``progress``, ``executing`` and ``execution_success`` messages),
runs a submitted workflow by reading its ``KSampler``, ``EmptyLatentImage``,
``CLIPTextEncode`` and ``CheckpointLoaderSimple`` nodes, and answers PNGs of the asked
size. With ``token`` set it wants ``Authorization: Bearer <token>`` (as a reverse proxy
in front of ComfyUI would). ``fault`` makes it misbehave as the kit asks
(``arting_daemon.testing``).
"""

from __future__ import annotations

import asyncio
import io
import json
import uuid
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web
from PIL import Image

CHECKPOINTS = ("sd_xl_base_1.0.safetensors", "studio_photo_v2.safetensors")


@dataclass
class Prompt:
    id: str
    client: str
    graph: dict[str, Any]
    done: asyncio.Event = field(default_factory=asyncio.Event)
    history: dict[str, Any] | None = None


class ComfyUIEmulator:
    def __init__(self, token: str | None = None, step_time: float = 0.01) -> None:
        self.token = token
        self.step_time = step_time
        self.prompts: dict[str, Prompt] = {}
        self.files: dict[str, bytes] = {}
        self.sockets: dict[str, list[web.WebSocketResponse]] = {}
        self.interrupted: list[str] = []
        self._fault: str | None = None
        self._released = asyncio.Event()
        self._runs: set[asyncio.Task[None]] = set()
        self._runner: web.AppRunner | None = None
        self.url = ""

    # --- what tests and the kit ask -------------------------------------------------------

    def submissions(self) -> int:
        return len(self.prompts)

    def fault(self, kind: str | None) -> None:
        self._fault = kind
        if kind != "hold":
            self._released.set()
        else:
            self._released.clear()

    async def start(self) -> str:
        """Listen on a free loopback port; its base URL."""
        app = web.Application(middlewares=[self._gate])
        app.router.add_post("/prompt", self.prompt)
        app.router.add_get("/history/{id}", self.history)
        app.router.add_get("/view", self.view)
        app.router.add_get("/object_info/CheckpointLoaderSimple", self.object_info)
        app.router.add_post("/interrupt", self.interrupt)
        app.router.add_post("/queue", self.queue)
        app.router.add_get("/ws", self.ws)
        self._runner = web.AppRunner(app, handler_cancellation=True)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"
        self._released.set()
        return self.url

    async def close(self) -> None:
        for task in list(self._runs):
            task.cancel()
        await asyncio.gather(*self._runs, return_exceptions=True)
        for sockets in self.sockets.values():
            for ws in sockets:
                await ws.close()
        if self._runner is not None:
            await self._runner.cleanup()

    # --- the server ---------------------------------------------------------------------

    @web.middleware
    async def _gate(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if self.token and request.headers.get("Authorization") != f"Bearer {self.token}":
            return web.json_response({"error": "unauthorized"}, status=401)
        if self._fault == "unauthorized":
            return web.json_response({"error": "unauthorized"}, status=401)
        if self._fault == "server_error":
            return web.json_response({"error": {"type": "server_error",
                                                "message": "out of memory"}}, status=500)
        if self._fault == "oversized":
            return await self._endless(request)
        return await handler(request)

    async def _endless(self, request: web.Request) -> web.StreamResponse:
        """An answer that never ends (at most 200 MiB), as a broken server's might."""
        resp = web.StreamResponse(headers={"Content-Type": "application/json"})
        await resp.prepare(request)
        chunk = b" " * (1024 * 1024)
        await resp.write(b'{"prompt_id": "')
        for _ in range(200):
            await resp.write(chunk)
        return resp

    async def prompt(self, request: web.Request) -> web.Response:
        body = await request.json()
        graph = body.get("prompt") if isinstance(body, dict) else None
        if not isinstance(graph, dict) or not graph:
            return _invalid("prompt_no_outputs", "Prompt has no outputs", {})
        for node_id, node in graph.items():
            if node.get("class_type") == "CheckpointLoaderSimple" and \
                    node["inputs"].get("ckpt_name") not in CHECKPOINTS:
                return _invalid("prompt_outputs_failed_validation",
                                "Prompt outputs failed validation",
                                {node_id: {"errors": [{"type": "value_not_in_list",
                                                       "message": "Value not in list"}],
                                           "class_type": "CheckpointLoaderSimple"}})
        prompt_id = str(body.get("prompt_id") or uuid.uuid4())
        job = Prompt(prompt_id, str(body.get("client_id", "")), graph)
        self.prompts[prompt_id] = job
        task = asyncio.create_task(self._run(job))
        self._runs.add(task)
        task.add_done_callback(self._runs.discard)
        return web.json_response({"prompt_id": prompt_id, "number": len(self.prompts),
                                  "node_errors": {}})

    async def _run(self, job: Prompt) -> None:
        nodes = {n["class_type"]: n["inputs"] for n in job.graph.values()}
        sampler, latent = nodes.get("KSampler", {}), nodes.get("EmptyLatentImage", {})
        steps = int(sampler.get("steps", 20))
        await self._send(job, "execution_start", {"prompt_id": job.id})
        for step in range(1, steps + 1):
            await self._released.wait()
            if job.id in self.interrupted:
                job.history = _history(job, {}, "error", [["execution_interrupted",
                                                           {"prompt_id": job.id}]])
                await self._send(job, "execution_interrupted", {"prompt_id": job.id})
                job.done.set()
                return
            await self._send(job, "progress", {"value": step, "max": steps,
                                               "prompt_id": job.id, "node": "3"})
            await asyncio.sleep(self.step_time)
        width, height = int(latent.get("width", 512)), int(latent.get("height", 512))
        images = []
        for i in range(int(latent.get("batch_size", 1))):
            name = f"ComfyUI_{len(self.files) + 1:05d}_.png"
            self.files[name] = _png(width, height, int(sampler.get("seed", 0)) + i)
            images.append({"filename": name, "subfolder": "", "type": "output"})
        save = next((k for k, n in job.graph.items() if n["class_type"] == "SaveImage"), "9")
        job.history = _history(job, {save: {"images": images}}, "success",
                               [["execution_success", {"prompt_id": job.id}]])
        await self._send(job, "executing", {"node": None, "prompt_id": job.id})
        await self._send(job, "execution_success", {"prompt_id": job.id})
        job.done.set()

    async def _send(self, job: Prompt, kind: str, data: dict[str, Any]) -> None:
        for ws in list(self.sockets.get(job.client, ())):
            if not ws.closed:
                await ws.send_str(json.dumps({"type": kind, "data": data}))

    async def history(self, request: web.Request) -> web.Response:
        job = self.prompts.get(request.match_info["id"])
        if job is None or job.history is None:
            return web.json_response({})
        return web.json_response({job.id: job.history})

    async def view(self, request: web.Request) -> web.Response:
        data = self.files.get(request.query.get("filename", ""))
        if data is None or request.query.get("type") != "output":
            return web.Response(status=404)
        return web.Response(body=data, content_type="image/png")

    async def object_info(self, request: web.Request) -> web.Response:
        return web.json_response({"CheckpointLoaderSimple": {"input": {"required": {
            "ckpt_name": [list(CHECKPOINTS), {}]}}}})

    async def interrupt(self, request: web.Request) -> web.Response:
        body = await request.json() if request.can_read_body else {}
        prompt_id = body.get("prompt_id") if isinstance(body, dict) else None
        running = [p.id for p in self.prompts.values() if p.history is None]
        self.interrupted.extend([prompt_id] if prompt_id else running)
        return web.Response()

    async def queue(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.interrupted.extend(body.get("delete", []))
        return web.Response()

    async def ws(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(heartbeat=None)
        await ws.prepare(request)
        client = request.query.get("clientId", "")
        self.sockets.setdefault(client, []).append(ws)
        await ws.send_str(json.dumps({"type": "status", "data": {
            "status": {"exec_info": {"queue_remaining": 0}}, "sid": client}}))
        try:
            async for msg in ws:
                if msg.type == WSMsgType.ERROR:
                    break
        finally:
            self.sockets[client].remove(ws)
        return ws


def _invalid(kind: str, message: str, node_errors: dict[str, Any]) -> web.Response:
    return web.json_response({"error": {"type": kind, "message": message, "details": "",
                                        "extra_info": {}}, "node_errors": node_errors},
                             status=400)


def _history(job: Prompt, outputs: dict[str, Any], status: str,
             messages: list[list[Any]]) -> dict[str, Any]:
    return {"prompt": [1, job.id, job.graph, {"client_id": job.client}, list(outputs)],
            "outputs": outputs,
            "status": {"status_str": status, "completed": status == "success",
                       "messages": messages}}


def _png(width: int, height: int, seed: int) -> bytes:
    colour = (seed * 37 % 256, seed * 91 % 256, seed * 53 % 256)
    out = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(out, "PNG")
    return out.getvalue()
