"""A ComfyUI server as a provider (``kind = "comfyui"``).

* ``POST /prompt``: the workflow (``workflow.py``) with the request's prompt, negative
  prompt, seed, size, steps, CFG, ``n`` (the batch size) and model (a checkpoint) filled
  in, under this provider's ``client_id``; the answer's ``prompt_id`` is kept in
  ``provider_state`` at once, so a restart follows the prompt instead of queueing it again.
* ``/ws?clientId=``: ComfyUI's WebSocket, for the prompt's ``progress`` (the fraction of
  its sampler's steps, never going back) and an early word that it ended; ``GET
  /history/{prompt_id}`` says how it ended (and is all a resumed job has: the WebSocket
  speaks to the client that queued it).
* ``GET /view?filename=&subfolder=&type=output``: each picture of its ``SaveImage``.
* ``POST /interrupt`` and ``POST /queue`` ``{"delete": [id]}`` when the job is cancelled.
* ``GET /object_info/CheckpointLoaderSimple``: the catalogue: the checkpoints, each offered
  by its name without ``.safetensors`` (as the daemon reads model names), sent as its file.

``api_key``, if set, goes as ``Authorization: Bearer`` (for a proxy in front of ComfyUI).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

import aiohttp

from arting_daemon import logs
from arting_daemon.errors import (ArtingError, BadUpstreamResponse, FeatureDisabled,
                                  ModelNotFound, UpstreamRejected)
from arting_daemon.generation import Generation
from arting_daemon.provider_config import ProviderConfig
from arting_daemon.providers.base import Attempt, OnProgress, Work
from arting_daemon.providers.remote import (Endpoint, Polling, RemoteAPI, RemoteAttempt,
                                            RemoteProvider, funnel, image_bytes)
from arting_daemon.store import ImageStore
from arting_daemon.tasks import stop, wait_for

from . import workflow
from .settings import ComfyUISettings

if TYPE_CHECKING:
    from arting_daemon.providers.build import Services

log = logging.getLogger(__name__)

#: Failed looks at a prompt's history in a row before the job is given up.
MAX_FAILURES = 5
CHECKPOINT_FILES = (".safetensors", ".ckpt", ".pt", ".pth", ".gguf")


@asynccontextmanager
async def make(s: Services, cfg: ProviderConfig) -> AsyncIterator[ComfyUIProvider]:
    options: ComfyUISettings = cfg.options
    headers = {"Accept": "application/json"}
    if options.api_key is not None:
        key = options.api_key.get_secret_value()
        headers["Authorization"] = f"Bearer {key}"
        logs.add_secrets(key)
    where = Endpoint(cfg.name, cfg.title, cfg.kind, cfg.url, headers,
                     s.settings.request_timeout, cfg.timeout)
    yield ComfyUIProvider(cfg, options, funnel(where, s.sessions, cfg.proxy), s.store,
                          Polling.of(s.settings))


class ComfyUIProvider(RemoteProvider):
    def __init__(self, cfg: ProviderConfig, options: ComfyUISettings, api: RemoteAPI,
                 store: ImageStore, polling: Polling) -> None:
        super().__init__(cfg, api, store)
        self.options = options
        self.polling = polling
        self.template = workflow.load(options.workflow)
        self.client_id = uuid.uuid4().hex
        self.files: dict[str, str] = {}     # a checkpoint's id (lower case) → its file

    def require(self, feature: str) -> None:
        raise FeatureDisabled(f"{self.label} (ComfyUI) does no {feature} with this "
                              "provider's workflow.",
                              param="image" if feature == "img2img" else None)

    def submitted(self, work: Work) -> bool:
        return "prompt_id" in work.provider_state

    def attempt(self, work: Work, deadline: float) -> Attempt:
        return PromptAttempt(self, work)

    async def catalogue(self) -> dict[str, str]:
        answer = await self.api.call("GET", "/object_info/CheckpointLoaderSimple")
        try:
            names = answer["CheckpointLoaderSimple"]["input"]["required"]["ckpt_name"][0]
        except (KeyError, IndexError, TypeError):
            raise BadUpstreamResponse(f"{self.label}'s object_info lists no checkpoints; is "
                                      f"`base_url` of provider `{self.name}` a ComfyUI "
                                      "server?") from None
        files = [n for n in names if isinstance(n, str)]
        self.files = {_model_id(f).lower(): f for f in files}
        return {_model_id(f): f for f in files}

    async def checkpoint(self, model: str) -> str:
        """The file of the checkpoint to load: the model asked for (a file name as it is,
        an id by the catalogue, read again once if it lacks it), else the provider's
        ``default_model``, else the server's first."""
        chosen = model or self.default_model or ""
        if chosen.endswith(CHECKPOINT_FILES):
            return chosen
        if chosen.lower() not in self.files:
            await self.catalogue()
        if not chosen and self.files:
            return next(iter(self.files.values()))
        if chosen.lower() in self.files:
            return self.files[chosen.lower()]
        raise ModelNotFound(f"{self.label} has no checkpoint `{chosen}`; it has: "
                            f"{', '.join(sorted(self.files)) or 'none'}.", param="model")

    async def fetch(self, work: Work, output: str) -> bytes:
        filename, subfolder, kind = output.split("|", 2)
        path = "/view?" + urlencode({"filename": filename, "subfolder": subfolder,
                                     "type": kind})
        reply = await self.api.exchange("GET", path)
        if reply.status != 200:
            self.api.read(path, reply)          # raises what the status means
            raise BadUpstreamResponse(f"{self.label} answered {filename} with HTTP "
                                      f"{reply.status}.")
        return image_bytes(reply.body, self.label)

    async def cancel(self, work: Work) -> None:
        prompt_id = work.provider_state.get("prompt_id")
        for path, body in (("/interrupt", {"prompt_id": prompt_id}),
                           ("/queue", {"delete": [prompt_id]})):
            try:
                await self.api.call("POST", path, body=body)
            except ArtingError as exc:
                log.info("%s could not cancel prompt %s (%s)", self.name, prompt_id,
                         exc.message)

    async def probe(self) -> dict[str, Any]:
        return {"models": len(await self.catalogue())}


class PromptAttempt(RemoteAttempt):
    provider: ComfyUIProvider

    async def submit(self) -> float:
        p, gen = self.provider, self.work.generation
        assert isinstance(gen, Generation)      # it does no upscale
        graph = workflow.filled(p.template, {
            "prompt": gen.prompt, "negative_prompt": gen.negative_prompt, "seed": gen.seed,
            "width": gen.width, "height": gen.height, "steps": gen.steps,
            "cfg": gen.guidance, "batch_size": gen.n, "model": await p.checkpoint(gen.model),
            "sampler": p.options.sampler, "scheduler": p.options.scheduler})
        sent = time.time()
        answer = await p.api.call("POST", "/prompt",
                                  body={"prompt": graph, "client_id": p.client_id})
        prompt_id = answer.get("prompt_id") if isinstance(answer, dict) else None
        if not isinstance(prompt_id, str) or not prompt_id:
            raise BadUpstreamResponse(f"{p.label} queued the workflow without a prompt_id.")
        self.state["prompt_id"] = prompt_id
        log.info("job %s is prompt %s at %s", self.work.id, prompt_id, p.name)
        return sent

    async def follow(self, progress: OnProgress) -> list[str]:
        """Look at the prompt's history until it holds the prompt: on the polling schedule,
        and at once when the WebSocket says the prompt ended; a few failed looks in a row
        (of those worth another) are ridden out."""
        p, prompt_id = self.provider, self.state["prompt_id"]
        ended = asyncio.Event()
        watcher = asyncio.create_task(self._watch(prompt_id, progress, ended),
                                      name=f"comfyui-progress-{self.work.id}")
        polls = failures = 0
        try:
            while True:
                with contextlib.suppress(asyncio.TimeoutError):
                    await wait_for(ended.wait(), p.polling.delay(polls, failures))
                ended.clear()       # once: ComfyUI may write the history just after
                polls += 1
                try:
                    answer = await p.api.call("GET", f"/history/{prompt_id}")
                except ArtingError as exc:
                    failures += 1
                    if not exc.retryable or failures >= MAX_FAILURES:
                        raise
                    continue
                failures = 0
                entry = answer.get(prompt_id) if isinstance(answer, dict) else None
                if isinstance(entry, dict):
                    return self._outputs(entry)
        finally:
            await stop(watcher)

    def _outputs(self, entry: dict[str, Any]) -> list[str]:
        p, gen = self.provider, self.work.generation
        said = entry.get("status")
        status: dict[str, Any] = said if isinstance(said, dict) else {}
        if status.get("status_str") == "error":
            raise UpstreamRejected(f"{p.label} could not run the workflow: "
                                   f"{_failure(status)}")
        outputs = []
        for node in (entry.get("outputs") or {}).values():
            for image in node.get("images", []) if isinstance(node, dict) else []:
                if isinstance(image, dict) and image.get("type") == "output" and \
                        isinstance(image.get("filename"), str):
                    outputs.append(f"{image['filename']}|{image.get('subfolder') or ''}"
                                   "|output")
        if not outputs:
            raise BadUpstreamResponse(f"{p.label}'s workflow saved no images; it needs a "
                                      "SaveImage node.", retryable=False)
        return outputs[:gen.n]

    async def _watch(self, prompt_id: str, progress: OnProgress, ended: asyncio.Event
                     ) -> None:
        """Report the prompt's progress from the WebSocket, and set ``ended`` when it
        says the prompt ended; without the WebSocket the history is polled alone."""
        api = self.provider.api
        url = "ws" + api.where.base_url.removeprefix("http") + \
            f"/ws?clientId={self.provider.client_id}"
        session, extra, _ = api.sessions.route(api.where.base_url, api.plan)
        best = 0.0
        try:
            async with session.ws_connect(url, headers=api.where.headers, heartbeat=30.0,
                                          max_msg_size=1024 * 1024, **extra) as ws:
                async for msg in ws:
                    if msg.type != aiohttp.WSMsgType.TEXT:
                        continue            # previews, as binary frames
                    kind, data = _message(msg.data)
                    if data.get("prompt_id") != prompt_id:
                        continue
                    if kind == "progress" and isinstance(data.get("max"), int) and \
                            data["max"] > 0 and isinstance(data.get("value"), int):
                        fraction = min(1.0, data["value"] / data["max"])
                        if fraction > best:
                            best = fraction
                            progress(fraction)
                    elif kind in ("execution_success", "execution_error",
                                  "execution_interrupted") or \
                            (kind == "executing" and data.get("node") is None):
                        ended.set()
        except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as exc:
            log.debug("%s: no progress over the WebSocket (%s)", self.provider.name,
                      type(exc).__name__)


def _model_id(filename: str) -> str:
    """``sdxl/juggernaut.safetensors`` → ``sdxl/juggernaut``."""
    for suffix in CHECKPOINT_FILES:
        if filename.endswith(suffix):
            return filename[:-len(suffix)]
    return filename


def _message(text: str) -> tuple[str, dict[str, Any]]:
    with contextlib.suppress(ValueError):
        msg = json.loads(text)
        if isinstance(msg, dict) and isinstance(msg.get("data"), dict):
            return str(msg.get("type")), msg["data"]
    return "", {}


def _failure(status: dict[str, Any]) -> str:
    """What ComfyUI said of the failure (its ``execution_error``), short and redacted."""
    for event, data in status.get("messages") or []:
        if event == "execution_error" and isinstance(data, dict):
            said = f"{data.get('node_type', 'a node')}: {data.get('exception_message', '')}"
            return logs.redact(said.strip())[:300]
        if event == "execution_interrupted":
            return "it was interrupted."
    return "it failed."
