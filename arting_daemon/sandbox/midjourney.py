"""A midjourney-proxy emulator: a real HTTP server speaking the ``/mj`` API.

It follows the open API of novicezk's midjourney-proxy and, with ``plus`` (the default),
what trueai-org's re-implementation of the plus API adds (``/submit/action`` and
``/submit/modal``, the grid's buttons, ``botType``, cancel); see the project's
``provider_protocols.md`` §1:

* submits answer ``{code, description, result, properties}`` with HTTP 200: code 1 with
  the task id; 22 when every slot (``concurrency``) is busy, with the place in the queue;
  23 (novicezk) or 9 (trueai) when the queue (``queue_size``) is full too; 24 for a
  banned word; 4 for an invalid request; 3 for a missing task; 21 and a task in
  ``MODAL`` for an action in remix mode;
* a task goes ``NOT_START`` (queued) → ``SUBMITTED`` → ``IN_PROGRESS`` (``progress``
  "25%", "50%" ... with a preview) → ``SUCCESS`` ("100%", a 2×2 grid PNG, its
  ``messageHash`` and buttons ``U1``-``U4``, 🔄, ``V1``-``V4``) or ``FAILURE`` (a
  ``failReason``, progress "");
* ``notifyHook`` gets the task POSTed at each step;
* an unknown task fetches as an empty 200 (novicezk) or 204 (trueai: ``unknown_task``);
* ``GET /mj/task/queue`` (novicezk's; trueai has none: ``task_queue``) lists the
  unfinished tasks, running ones too, in submit order;
* with ``api_secret`` set, ``mj-api-secret`` (or trueai's raw ``Authorization``) must
  carry it, else 401 with an empty body.

Faults (``add_fault``): ``http_error`` (that status, new-api's error body), ``code``
(a submit answers that return code), ``unauthorized``, ``reset``, ``slow``, ``fail``
(the task ends in ``FAILURE`` with the fault's message), ``forget`` (the task is
unknown to a fetch).
"""

from __future__ import annotations

import asyncio
import io
import math
import random
import re
import uuid
from dataclasses import dataclass, field
from typing import Any, Literal

import aiohttp
from aiohttp import web
from PIL import Image, ImageFilter
from pydantic import BaseModel, ConfigDict, Field

from ..clock import SYSTEM, Clock
from .emulator import FAULT, Emulator, Handler
from .models import FaultSpec
from .render import Picture, PngCache

BOTS = {"MID_JOURNEY": "midjourney", "mj": "midjourney", "NIJI_JOURNEY": "niji",
        "niji": "niji"}
GRID_ACTIONS = ("IMAGINE", "VARIATION", "REROLL", "BLEND")


class MidjourneyConfig(BaseModel):
    """How the emulated proxy behaves."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    api_secret: str | None = None
    #: The plus API (trueai-org's): actions, modals, buttons, botType, cancel.
    plus: bool = True
    #: Seconds a grid (or an upscale) takes once a slot has it.
    generation_time: float = Field(3.0, ge=0)
    upscale_time: float = Field(1.0, ge=0)
    progress_steps: int = Field(4, ge=1, le=100)
    #: Tasks running at once (the account's ``core-size``), and waiting (``queue-size``).
    concurrency: int = Field(3, ge=1)
    queue_size: int = Field(10, ge=0)
    banned_words: list[str] = Field(default_factory=lambda: ["bannedword", "bloodbath"])
    #: A prompt with one of these ends in ``FAILURE`` with ``fail_reason``.
    fail_words: list[str] = Field(default_factory=lambda: ["failme"])
    fail_reason: str = "[Invalid parameter] Invalid value"
    #: Actions that change the prompt (variation, reroll) wait for ``/submit/modal``.
    remix: bool = False
    unknown_task: Literal["empty", "204"] = "empty"
    #: Serve novicezk's ``GET /mj/task/queue`` (trueai's proxy answers it 404).
    task_queue: bool = True
    #: Each grid picture's area, before the aspect ratio shapes it.
    quadrant_pixels: int = Field(512 * 512, ge=64 * 64)
    image_format: Literal["png", "webp"] = "png"


@dataclass
class MJTask:
    id: str
    action: str
    prompt: str
    bot: str
    seed: int
    width: int          # of one grid picture
    height: int
    submitted_at: float
    starts_at: float
    ends_at: float
    parent: str | None = None
    index: int | None = None
    fails: str | None = None
    hook: str | None = None
    state: str | None = None
    modal: bool = False
    cancelled_at: float | None = None
    forgotten: bool = False
    message_hash: str = field(default_factory=lambda: str(uuid.uuid4()))
    instance: str = "1118138338562560102"

    def status(self, now: float) -> tuple[str, str]:
        """``(status, progress)`` at ``now``."""
        if self.modal:
            return "MODAL", "0%"
        if self.cancelled_at is not None:
            return "CANCEL", ""
        if now < self.starts_at:
            return ("NOT_START" if self.starts_at > self.submitted_at else "SUBMITTED"), "0%"
        if now >= self.ends_at:
            return ("FAILURE", "") if self.fails else ("SUCCESS", "100%")
        run = max(1e-9, self.ends_at - self.starts_at)
        done = (now - self.starts_at) / run
        if done < 0.1:
            return "SUBMITTED", "0%"
        return "IN_PROGRESS", f"{min(99, int(done * 100))}%"


class MidjourneyEmulator(Emulator):
    NAME = "midjourney-proxy"
    ROUTES = ("imagine", "change", "simple_change", "action", "modal", "fetch", "list",
              "queue", "cancel", "image")
    FAULT_KINDS = ("http_error", "code", "unauthorized", "reset", "slow", "fail", "forget",
                   "oversized")

    def __init__(self, config: MidjourneyConfig | None = None, *, clock: Clock = SYSTEM,
                 **overrides: Any) -> None:
        self.config = MidjourneyConfig.model_validate(
            {**(config or MidjourneyConfig()).model_dump(), **overrides})
        self.tasks: dict[str, MJTask] = {}
        self.images = PngCache()
        self._rng = random.Random(7)
        self._slots: list[float] = []
        self._grids: dict[str, bytes] = {}
        self._session: aiohttp.ClientSession | None = None
        super().__init__(clock)

    def configure(self, **changes: Any) -> None:
        self.config = MidjourneyConfig.model_validate({**self.config.model_dump(), **changes})

    async def close(self) -> None:
        await super().close()
        if self._session is not None:
            await self._session.close()

    def routes(self, app: web.Application) -> None:
        for name, method, path, handler in [
                ("imagine", "POST", "/mj/submit/imagine", self._imagine),
                ("change", "POST", "/mj/submit/change", self._change),
                ("simple_change", "POST", "/mj/submit/simple-change", self._simple_change),
                ("action", "POST", "/mj/submit/action", self._action),
                ("modal", "POST", "/mj/submit/modal", self._modal),
                ("fetch", "GET", "/mj/task/{id}/fetch", self._fetch),
                ("list", "POST", "/mj/task/list-by-condition", self._list),
                ("queue", "GET", "/mj/task/queue", self._queue),
                ("cancel", "POST", "/mj/task/{id}/cancel", self._cancel),
                ("image", "GET", "/mj/image/{id}/{what}", self._image)]:
            self.route(app, name, method, path, self._guarded(name, handler))

    def _guarded(self, name: str, handler: Handler) -> Handler:
        async def handle(request: web.Request, body: Any) -> web.StreamResponse:
            if (name in ("action", "modal", "cancel") and not self.config.plus
                    or name == "queue" and not self.config.task_queue):
                return web.Response(status=404)
            secret = self.config.api_secret
            sent = request.headers.get("mj-api-secret") or request.headers.get("Authorization")
            if name != "image" and secret is not None and sent != secret:
                return web.Response(status=401)
            return await handler(request, body if isinstance(body, dict) else {})
        return handle

    def fault_answer(self, fault: FaultSpec, request: web.Request
                     ) -> web.StreamResponse | None:
        if fault.kind == "http_error":
            return web.json_response({"description": fault.message or "upstream error",
                                      "type": "upstream_error", "code": fault.code or 5},
                                     status=fault.status or 500)
        if fault.kind == "unauthorized":
            return web.Response(status=401)
        if fault.kind == "code" and fault.code not in (21, 22):
            return web.json_response(_vo(fault.code or 9, fault.message or "系统异常"))
        return None     # 21 and 22: the task is made, and answered with that code

    # --- submits ------------------------------------------------------------------------

    async def _imagine(self, request: web.Request, body: dict) -> web.Response:
        prompt = body.get("prompt")
        if not isinstance(prompt, str) or not prompt.strip():
            return web.json_response(_vo(4, "prompt不能为空"))
        prompt = prompt.strip()
        lowered = prompt.lower()
        banned = next((w for w in self.config.banned_words if w.lower() in lowered), None)
        if banned is not None:
            return web.json_response(_vo(24, "可能包含敏感词", {"promptEn": prompt,
                                                            "bannedWord": banned}))
        images = body.get("base64Array") or []
        if not isinstance(images, list) or not all(
                isinstance(i, str) and i.startswith("data:image/") for i in images):
            return web.json_response(_vo(4, "base64格式错误"))
        bot = BOTS.get(str(body.get("botType") or "MID_JOURNEY"), "midjourney") \
            if self.config.plus else "midjourney"
        if "--niji" in lowered:
            bot = "niji"
        width, height = self._shape(prompt)
        seed = _seed(prompt, self._rng)
        return self._submit(request, body, action="IMAGINE", prompt=prompt, bot=bot,
                            seed=seed, width=width, height=height,
                            duration=self.config.generation_time,
                            fails=self._fails(request, lowered))

    async def _change(self, request: web.Request, body: dict) -> web.Response:
        action, index = body.get("action"), body.get("index")
        if action not in ("UPSCALE", "VARIATION", "REROLL"):
            return web.json_response(_vo(4, "action参数错误"))
        return self._act(request, body, str(body.get("taskId") or ""), action, index)

    async def _simple_change(self, request: web.Request, body: dict) -> web.Response:
        found = re.fullmatch(r"\s*(\S+)\s+(U[1-4]|V[1-4]|R)\s*", str(body.get("content") or ""))
        if found is None:
            return web.json_response(_vo(4, "content参数错误"))
        which = found[2]
        action = {"U": "UPSCALE", "V": "VARIATION", "R": "REROLL"}[which[0]]
        return self._act(request, body, found[1], action, int(which[1:]) if len(which) > 1
                         else None)

    async def _action(self, request: web.Request, body: dict) -> web.Response:
        task_id, custom = str(body.get("taskId") or ""), str(body.get("customId") or "")
        parent = self._known(task_id)
        if parent is None:
            return web.json_response(_vo(3, "关联任务不存在或已失效"), status=404)
        found = re.fullmatch(r"MJ::JOB::(upsample|variation|reroll)::(\d)::([0-9a-f-]+)"
                             r"(::SOLO)?", custom)
        if found is None or found[3] != parent.message_hash:
            return web.json_response(_vo(4, "customId参数错误"))
        action = {"upsample": "UPSCALE", "variation": "VARIATION", "reroll": "REROLL"}[found[1]]
        return self._act(request, body, task_id, action, int(found[2]) or None)

    async def _modal(self, request: web.Request, body: dict) -> web.Response:
        task = self._known(str(body.get("taskId") or ""))
        if task is None:
            return web.json_response(_vo(3, "关联任务不存在或已失效"), status=404)
        if not task.modal:
            return web.json_response(_vo(4, "关联任务状态错误"))
        if isinstance(body.get("prompt"), str) and body["prompt"].strip():
            task.prompt = body["prompt"].strip()
        task.modal = False
        self._schedule(task, self.clock.time(), self.config.generation_time)
        return web.json_response(_vo(1, "成功", {"discordInstanceId": task.instance},
                                     result=task.id))

    def _act(self, request: web.Request, body: dict, task_id: str, action: str,
             index: Any) -> web.Response:
        parent = self._known(task_id)
        if parent is None:
            return web.json_response(_vo(3, "关联任务不存在或已失效"))
        now = self.clock.time()
        if parent.status(now)[0] != "SUCCESS" or parent.action not in GRID_ACTIONS:
            return web.json_response(_vo(4, "关联任务状态错误"))
        if action != "REROLL" and index not in (1, 2, 3, 4):
            return web.json_response(_vo(4, "index参数错误"))
        upscale = action == "UPSCALE"
        remix = self.config.plus and self.config.remix and not upscale
        return self._submit(
            request, body, action=action, prompt=parent.prompt, bot=parent.bot,
            seed=parent.seed if upscale else self._rng.randrange(2**32),
            width=parent.width, height=parent.height,
            duration=self.config.upscale_time if upscale else self.config.generation_time,
            parent=parent.id, index=index if action != "REROLL" else None, modal=remix,
            fails=self._fails(request, parent.prompt.lower()))

    def _submit(self, request: web.Request, body: dict, *, action: str, prompt: str,
                bot: str, seed: int, width: int, height: int, duration: float,
                fails: str | None, parent: str | None = None, index: int | None = None,
                modal: bool = False) -> web.Response:
        now = self.clock.time()
        waiting = sum(1 for t in self.tasks.values() if t.cancelled_at is None
                      and not t.modal and t.starts_at > now)
        busy = sum(1 for t in self.tasks.values() if t.cancelled_at is None
                   and not t.modal and t.starts_at <= now < t.ends_at)
        if not modal and busy >= self.config.concurrency and waiting >= self.config.queue_size:
            if self.config.plus:
                return web.json_response(_vo(9, "提交失败，队列已满，请稍后重试"))
            return web.json_response(_vo(23, "队列已满，请稍后尝试"))
        task = MJTask(id=f"{int(now * 1000)}{self._rng.randrange(1000):03d}", action=action,
                      prompt=prompt, bot=bot, seed=seed, width=width, height=height,
                      submitted_at=now, starts_at=now, ends_at=now, parent=parent,
                      index=index, fails=fails, modal=modal,
                      hook=body.get("notifyHook") if isinstance(body.get("notifyHook"), str)
                      else None,
                      state=body.get("state") if isinstance(body.get("state"), str) else None)
        self.tasks[task.id] = task
        props = {"discordInstanceId": task.instance}
        if modal:
            return web.json_response(_vo(21, "Waiting for window confirm",
                                         {**props, "finalPrompt": prompt, "remix": True},
                                         result=task.id))
        fault = request.get(FAULT)
        if fault is not None and fault.kind == "code":
            return self._took_otherwise(task, now, duration, fault)
        self._schedule(task, now, duration)
        if task.starts_at > now:
            return web.json_response(_vo(22, f"排队中，前面还有{waiting}个任务",
                                         {**props, "numberOfQueues": waiting}, result=task.id))
        return web.json_response(_vo(1, "提交成功", props, result=task.id))

    def _took_otherwise(self, task: MJTask, now: float, duration: float,
                        fault: FaultSpec) -> web.Response:
        """A ``code`` fault of 21 or 22: the task is made, and the answer says it exists
        already (21), waits for its modal (21, "confirm" in the message), or is queued."""
        words = fault.message or ("任务已存在" if fault.code == 21 else "排队中，前面还有0个任务")
        props: dict[str, Any] = {"discordInstanceId": task.instance}
        if fault.code == 21 and "confirm" in words.lower():
            task.modal = True
            props.update(finalPrompt=task.prompt, remix=True)
        else:
            self._schedule(task, now, duration)
            props.update({"numberOfQueues": 0} if fault.code == 22 else {"status": "SUBMITTED"})
        return web.json_response(_vo(fault.code or 21, words, props, result=task.id))

    def _schedule(self, task: MJTask, now: float, duration: float) -> None:
        """Give the task the slot that is free first, and its times; tell its hook."""
        while len(self._slots) < self.config.concurrency:
            self._slots.append(0.0)
        slot = min(range(len(self._slots)), key=lambda i: self._slots[i])
        task.submitted_at = now
        task.starts_at = max(now, self._slots[slot])
        task.ends_at = task.starts_at + duration
        self._slots[slot] = task.ends_at
        if task.hook:
            self.errand(self._notify(task))

    def _fails(self, request: web.Request, lowered: str) -> str | None:
        fault = request.get(FAULT)
        if fault is not None and fault.kind == "fail":
            return fault.message or self.config.fail_reason
        if any(w.lower() in lowered for w in self.config.fail_words):
            return self.config.fail_reason
        return None

    def _shape(self, prompt: str) -> tuple[int, int]:
        """One grid picture's size from ``--ar`` (default 1:1), at ``quadrant_pixels``."""
        found = re.search(r"--(?:ar|aspect)\s+(\d+):(\d+)", prompt)
        w, h = (int(found[1]), int(found[2])) if found else (1, 1)
        ratio = w / h if w and h else 1.0
        area = self.config.quadrant_pixels
        return (max(8, round(math.sqrt(area * ratio) / 8) * 8),
                max(8, round(math.sqrt(area / ratio) / 8) * 8))

    # --- tasks --------------------------------------------------------------------------

    def _known(self, task_id: str) -> MJTask | None:
        task = self.tasks.get(task_id)
        return None if task is None or task.forgotten else task

    async def _fetch(self, request: web.Request, body: dict) -> web.Response:
        task = self._known(request.match_info["id"])
        fault = request.get(FAULT)
        if task is None or (fault is not None and fault.kind == "forget"):
            return web.Response(status=204) if self.config.unknown_task == "204" \
                else web.Response(status=200, content_type="application/json")
        return web.json_response(self.view(task, _base(request)))

    async def _list(self, request: web.Request, body: dict) -> web.Response:
        ids = body.get("ids")
        tasks = [self._known(str(i)) for i in ids] if isinstance(ids, list) else []
        return web.json_response([self.view(t, _base(request)) for t in tasks if t])

    async def _queue(self, request: web.Request, body: dict) -> web.Response:
        now = self.clock.time()
        tasks = sorted((t for t in self.tasks.values() if not t.forgotten and not t.modal
                        and t.cancelled_at is None and now < t.ends_at),
                       key=lambda t: t.submitted_at)
        return web.json_response([self.view(t, _base(request), now) for t in tasks])

    async def _cancel(self, request: web.Request, body: dict) -> web.Response:
        task = self._known(request.match_info["id"])
        if task is None:
            return web.json_response(_vo(3, "任务不存在"), status=404)
        if task.status(self.clock.time())[0] in ("SUCCESS", "FAILURE", "CANCEL"):
            return web.json_response(_vo(4, "任务状态错误"))
        task.cancelled_at = self.clock.time()
        return web.json_response(_vo(1, "成功", result=task.id))

    def view(self, task: MJTask, base: str, now: float | None = None) -> dict:
        """The task as the proxy answers it."""
        now = self.clock.time() if now is None else now
        status, progress = task.status(now)
        image = None
        if status == "IN_PROGRESS":
            image = f"{base}/mj/image/{task.id}/preview.png"
        elif status == "SUCCESS":
            name = "grid_0" if task.action != "UPSCALE" else "upscale"
            image = f"{base}/mj/image/{task.id}/{name}.{self.config.image_format}"
        out: dict[str, Any] = {
            "id": task.id, "action": task.action, "prompt": task.prompt, "promptEn": task.prompt,
            "description": (f"/imagine {task.prompt}" if task.action == "IMAGINE" else
                            f"/up {task.parent} {task.action[0]}{task.index or ''}"),
            "state": task.state, "submitTime": int(task.submitted_at * 1000),
            "startTime": int(task.starts_at * 1000) if now >= task.starts_at else None,
            "finishTime": int(task.ends_at * 1000) if status in ("SUCCESS", "FAILURE")
            else None,
            "imageUrl": image, "status": status, "progress": progress,
            "failReason": task.fails if status == "FAILURE" else None,
            "properties": {"notifyHook": task.hook, "finalPrompt": task.prompt,
                           "messageId": task.id[-10:], "messageHash": task.message_hash
                           if status == "SUCCESS" else None,
                           "progressMessageId": task.id[-9:], "flags": 0,
                           "nonce": task.id, "discordInstanceId": task.instance},
        }
        if self.config.plus:
            out["botType"] = "NIJI_JOURNEY" if task.bot == "niji" else "MID_JOURNEY"
            out["buttons"] = _buttons(task.message_hash) \
                if status == "SUCCESS" and task.action in GRID_ACTIONS else []
        return out

    async def _notify(self, task: MJTask) -> None:
        """POST the task to its hook at each step, in order, until it ends."""
        assert task.hook is not None
        if self._session is None:
            self._session = aiohttp.ClientSession()
        steps = [task.submitted_at, task.starts_at] + [
            task.starts_at + (task.ends_at - task.starts_at) * k / self.config.progress_steps
            for k in range(1, self.config.progress_steps + 1)]
        for moment in sorted(set(steps)):
            await self.clock.sleep(max(0.0, moment - self.clock.time()))
            body = self.view(task, self.url or "", now=moment)
            try:
                async with self._session.post(task.hook, json=body,
                                              timeout=aiohttp.ClientTimeout(total=5)):
                    pass
            except (aiohttp.ClientError, asyncio.TimeoutError):
                pass        # the proxies only log a failed push
            if task.cancelled_at is not None:
                return

    # --- pictures -----------------------------------------------------------------------

    async def _image(self, request: web.Request, body: dict) -> web.Response:
        task = self.tasks.get(request.match_info["id"])
        what = request.match_info["what"].rpartition(".")[0]
        if task is None or what not in ("grid_0", "preview", "upscale"):
            return web.Response(status=404, text="Not Found")
        if what == "upscale" and task.action == "UPSCALE":
            parent = self.tasks[task.parent or ""]
            data = await self._upscaled(parent, task.index or 1)
        else:
            data = await self._grid(task)
            if what == "preview":
                data = await asyncio.to_thread(_preview, data)
        kind = "image/png" if data.startswith(b"\x89PNG") else "image/webp"
        return web.Response(body=data, content_type=kind)

    async def _quadrants(self, task: MJTask) -> list[bytes]:
        clean = re.sub(r"\s--\S.*$", "", task.prompt)
        return list(await asyncio.gather(*(self.images.png(Picture(
            prompt=clean, seed=task.seed, model=f"{task.bot} image {i}", width=task.width,
            height=task.height)) for i in range(1, 5))))

    async def _grid(self, task: MJTask) -> bytes:
        if task.id not in self._grids:
            parts = await self._quadrants(task)
            self._grids[task.id] = await asyncio.to_thread(
                _compose, parts, self.config.image_format)
        return self._grids[task.id]

    async def _upscaled(self, parent: MJTask, index: int) -> bytes:
        part = (await self._quadrants(parent))[index - 1]
        return await asyncio.to_thread(_twice, part)


def _vo(code: int, description: str, properties: dict | None = None,
        result: str | None = None) -> dict:
    """A ``SubmitResultVO``."""
    return {"code": code, "description": description, "result": result,
            "properties": properties or {}}


def _seed(prompt: str, rng: random.Random) -> int:
    found = re.search(r"--seed\s+(\d+)", prompt)
    return int(found[1]) if found else rng.randrange(2**32)


def _base(request: web.Request) -> str:
    return str(request.url.origin())


def _buttons(message_hash: str) -> list[dict]:
    """What Discord shows under a finished grid: U1-U4, 🔄, V1-V4."""
    def button(custom: str, label: str = "", emoji: str = "") -> dict:
        return {"customId": custom, "emoji": emoji, "label": label, "style": 2, "type": 2}
    return ([button(f"MJ::JOB::upsample::{i}::{message_hash}", f"U{i}") for i in range(1, 5)]
            + [button(f"MJ::JOB::reroll::0::{message_hash}::SOLO", emoji="🔄")]
            + [button(f"MJ::JOB::variation::{i}::{message_hash}", f"V{i}")
               for i in range(1, 5)])


def _compose(parts: list[bytes], fmt: str) -> bytes:
    """Four pictures as a 2×2 grid. Blocking."""
    images = [Image.open(io.BytesIO(p)).convert("RGB") for p in parts]
    width, height = images[0].size
    grid = Image.new("RGB", (width * 2, height * 2))
    for i, image in enumerate(images):
        grid.paste(image, ((i % 2) * width, (i // 2) * height))
    out = io.BytesIO()
    grid.save(out, "PNG" if fmt == "png" else "WEBP", **({} if fmt == "png" else
                                                        {"lossless": True}))
    return out.getvalue()


def _preview(grid: bytes) -> bytes:
    """The grid as it is shown while it is made: small and blurred."""
    image = Image.open(io.BytesIO(grid)).convert("RGB")
    image = image.resize((max(1, image.width // 4), max(1, image.height // 4)))
    out = io.BytesIO()
    image.filter(ImageFilter.GaussianBlur(3)).save(out, "PNG")
    return out.getvalue()


def _twice(picture: bytes) -> bytes:
    """An upscale: the picture at twice its size. Blocking."""
    image = Image.open(io.BytesIO(picture)).convert("RGB")
    out = io.BytesIO()
    image.resize((image.width * 2, image.height * 2), Image.Resampling.LANCZOS).save(out, "PNG")
    return out.getvalue()
