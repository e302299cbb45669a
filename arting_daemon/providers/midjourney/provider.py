"""Midjourney as a provider: imagine, follow the task, cut the grid, upscale with U.

A generation is one ``imagine`` task (``protocol.py`` says what is sent). Midjourney
answers one 2×2 grid; a job asking for ``n`` images (at most 4) gets its first ``n``
quadrants, cut here, each a picture of its own carrying its origin and a note of its
seed (``provenance.py``): the four come from one seed, which each image's seed says.
An upscale job runs ``U1``-``U4`` on the grid a picture came from (``/mj/submit/change``,
or ``/mj/submit/action`` with the button's ``customId``) and makes the result as many
times larger as asked. With ``img2img`` on, an init image goes along as an image
prompt (``base64Array``) with ``--iw`` from the strength.

What a restart needs is the task id (``provider_state["task"]``, or ``["tasks"]`` for
an upscale), kept before the job is followed: a resumed job follows its task and is
never submitted again. A submit is sent again only when the connection failed before
anything was sent. While the proxy holds the task in its queue (code 22, then
``NOT_START``) the job shows its place there (``UPSTREAM_QUEUE``), refreshed at each
poll from the proxy's queue list where it has one (``queue_list``). Cancel asks
``POST /mj/task/{id}/cancel``, which trueai-org's proxy has; novicezk's has no way to
stop a task, and it finishes unseen.
"""

from __future__ import annotations

import asyncio
import base64
import io
import logging
import time
from collections import OrderedDict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from PIL import Image

from ... import imaging, logs, provenance
from ...errors import (ArtingError, BadUpstreamResponse, FeatureDisabled, InvalidRequest,
                       UpstreamAuthError, UpstreamRejected, UpstreamUnreachable)
from ...generation import Generation
from ...provider_config import ProviderConfig
from ...retry import poll, retrying
from ...store import ImageStore
from ...upscaling import JobRequest, Origin, Upscale
from ..base import UPSTREAM_QUEUE, Attempt, OnProgress, Work
from ..remote import (Endpoint, Polling, RemoteAPI, RemoteAttempt, RemoteProvider,
                      funnel)
from . import protocol as mj
from .settings import MidjourneySettings

if TYPE_CHECKING:
    from ..build import Services

log = logging.getLogger(__name__)

#: Where Discord (so Midjourney) keeps the pictures: trusted besides ``image_hosts``.
DISCORD_HOSTS = ("cdn.discordapp.com", "media.discordapp.net")
#: Fetches in a row that find no such task before the job is given up (the proxy may
#: have been restarted, and its tasks lost).
MAX_MISSES = 3
MAX_REFUSALS = 3
MAX_SENDS = 3
#: The pictures in a grid.
QUADRANTS = 4
#: Grids kept downloaded for the quadrants still to be cut.
KEPT_GRIDS = 8


@asynccontextmanager
async def make(s: Services, cfg: ProviderConfig) -> AsyncIterator[MidjourneyProvider]:
    options: MidjourneySettings = cfg.options
    headers = {"Accept": "application/json"}
    if options.api_key is not None:
        headers["mj-api-secret"] = options.api_key.get_secret_value()
        logs.add_secrets(headers["mj-api-secret"])
    where = Endpoint(cfg.name, cfg.title, cfg.kind, cfg.url.removesuffix("/mj"), headers,
                     s.settings.request_timeout, cfg.timeout,
                     tuple(h.lower() for h in (*cfg.image_hosts, *DISCORD_HOSTS)))
    yield MidjourneyProvider(cfg, options, funnel(where, s.sessions, cfg.proxy), s.store,
                             Polling.of(s.settings))


class MidjourneyProvider(RemoteProvider):
    def __init__(self, cfg: ProviderConfig, options: MidjourneySettings, api: RemoteAPI,
                 store: ImageStore, polling: Polling) -> None:
        super().__init__(cfg, api, store)
        self.options = options
        self.polling = polling
        self.upstream = provenance.upstream_id(api.where.base_url)
        self._grids: OrderedDict[str, asyncio.Future[bytes]] = OrderedDict()
        #: Whether to ask the proxy's queue list (off once it showed it has none).
        self._queue_list = options.queue_list

    # --- what it does -------------------------------------------------------------------

    def require(self, feature: str) -> None:
        if feature == "upscale" and self.options.upscale:
            return
        if feature == "img2img" and self.img2img:
            return
        if feature == "img2img":
            raise FeatureDisabled(
                f"{self.label} takes an init image only as an image prompt; set "
                f"`img2img = true` for provider `{self.name}` in arting.toml to send it so.",
                param="image")
        raise FeatureDisabled(f"{self.label} does no {feature} here (`upscale = false`)."
                              if feature == "upscale" else f"{self.label} does no {feature}.")

    def admit(self, gen: JobRequest) -> str:
        if isinstance(gen, Generation) and gen.n > QUADRANTS:
            raise InvalidRequest(f"{self.label} makes {QUADRANTS} images per job (one grid); "
                                 f"ask for 1 to {QUADRANTS}, not {gen.n}.", param="n")
        return super().admit(gen)

    def upscales(self, upscale: Upscale) -> bool:
        """Only its own pictures: ``U`` acts on the grid task a picture came from."""
        return all(self._ref(s.origin) is not None for s in upscale.images)

    def _ref(self, origin: Origin | None) -> tuple[str, int] | None:
        if origin is None or origin.provider != self.name or origin.upstream != self.upstream:
            return None
        task, _, index = origin.ref.rpartition("/")
        return (task, int(index)) if task and index in ("1", "2", "3", "4") else None

    def submitted(self, work: Work) -> bool:
        return "task" in work.provider_state or "tasks" in work.provider_state

    def attempt(self, work: Work, deadline: float) -> Attempt:
        if isinstance(work.generation, Upscale):
            return UpscaleAttempt(self, work)
        return ImagineAttempt(self, work)

    def seeds(self, work: Work, outputs: list[str]) -> list[int] | None:
        """A grid's quadrants all come from its one seed."""
        seed = work.provider_state.get("seed")
        return [seed] * len(outputs) if isinstance(seed, int) else None

    async def cancel(self, work: Work) -> None:
        state = work.provider_state
        for task in [state["task"]] if "task" in state else state.get("tasks", []):
            try:
                await self.api.call("POST", f"/mj/task/{task}/cancel")
            except ArtingError as exc:     # novicezk's proxy has no cancel
                log.info("%s could not cancel task %s (%s)", self.name, task, exc.message)

    async def probe(self) -> dict[str, Any]:
        """An empty task list: every proxy checks the secret on it, and nothing is made."""
        answer = await self.api.call("POST", "/mj/task/list-by-condition", body={"ids": []})
        if not isinstance(answer, list):
            raise BadUpstreamResponse(f"{self.label} answered its task list with something "
                                      "that is not a list: is `base_url` a midjourney-proxy?")
        return {}

    # --- the exchanges ------------------------------------------------------------------

    async def send(self, path: str, body: dict[str, Any]) -> mj.Submitted:
        """Submit something; sent again only when the connection failed before it went."""
        answer = await retrying(lambda: self.api.call("POST", f"/mj/submit/{path}", body=body),
                                lambda exc: isinstance(exc, UpstreamUnreachable),
                                tries=MAX_SENDS)
        return mj.submitted(self.label, answer)

    async def task(self, task: str) -> Any:
        """The task as the proxy has it; None when it does not know it (an empty answer,
        or trueai's 204)."""
        reply = await self.api.exchange("GET", f"/mj/task/{task}/fetch")
        if reply.status == 204 or (reply.status == 200 and not reply.body.strip()):
            return None
        return self.api.read(f"/mj/task/{task}/fetch", reply)

    async def wait(self, work: Work, task: str, progress: OnProgress) -> mj.TaskView:
        """Fetch the task until it ends; transient faults and a few refusals are ridden
        out until the stage's deadline, a proxy that forgot the task is not. Its progress
        is the proxy's own ("45%"), from nothing at first: not the clock's guess."""
        progress(0.0)
        misses = refusals = polls = 0
        fetched = False         # the answer came: what it says is final, not a fault

        async def look() -> mj.TaskView | None:
            nonlocal misses, refusals, polls, fetched
            polls, fetched = polls + 1, False
            answer = await self.task(task)
            fetched, refusals = True, 0
            if answer is None:
                misses += 1
                if misses >= MAX_MISSES:
                    raise UpstreamRejected(f"{self.label} no longer knows task {task} (was it "
                                           "restarted?); submit the job again.")
                return None
            misses = 0
            view = mj.task_view(self.label, task, answer)
            if view.queued:
                await self.place(work, task)
            else:
                work.provider_state.pop(UPSTREAM_QUEUE, None)
            if view.done:
                return view
            if view.progress is not None:
                progress(view.progress)
            return None

        async def failed(exc: Exception, failures: int) -> float:
            nonlocal refusals
            if fetched or not isinstance(exc, ArtingError):
                raise exc
            if isinstance(exc, UpstreamAuthError):
                refusals += 1
                if refusals >= MAX_REFUSALS:
                    raise exc
            elif not exc.retryable:
                raise exc
            log.info("fetch of task %s failed (%s); retrying", task, type(exc).__name__)
            return self.polling.delay(polls, failures)

        return await poll(look, lambda: self.polling.delay(polls), failed)

    async def place(self, work: Work, task: str) -> None:
        """The task's place in the proxy's queue now, where the proxy lists its queue
        (else the submit's stays). A proxy without the list (404, or something else than
        a list, or refuses it: trueai's, new-api's) is not asked again; a passing fault is
        let be."""
        if not self._queue_list:
            return
        try:
            place = mj.queue_place(self.label, task,
                                   await self.api.call("GET", "/mj/task/queue"))
        except (UpstreamRejected, UpstreamAuthError, BadUpstreamResponse) as exc:
            log.info("%s lists no task queue (%s); a queued job keeps the place its "
                     "submit gave", self.name, exc.message)
            self._queue_list = False
            return
        except ArtingError:
            return
        if place is None:
            work.provider_state.pop(UPSTREAM_QUEUE, None)
        else:
            work.provider_state[UPSTREAM_QUEUE] = place

    async def fetch(self, work: Work, output: str) -> bytes:
        """``q<n>:<grid url>``: quadrant ``n`` of the grid, cut and marked;
        ``u<i>:<url>``: the upscale of source ``i``, as large as asked."""
        which, _, url = output.partition(":")
        data = await self._download(url)
        state = work.provider_state
        if which.startswith("q"):
            index = int(which[1:])
            origin = Origin(provider=self.name, upstream=self.upstream,
                            ref=f"{state['task']}/{index}")
            note = (f"{self.label}: image {index} of the grid of task {state['task']}, "
                    f"--seed {state.get('seed')}")
            return await asyncio.to_thread(quadrant, data, index, origin, note)
        upscale = work.generation
        assert isinstance(upscale, Upscale)
        source = upscale.images[int(which[1:])]
        return await asyncio.to_thread(imaging.resize, data, source.width * upscale.scale,
                                       source.height * upscale.scale)

    async def _download(self, url: str) -> bytes:
        """One download per grid, whichever of its quadrants asks first."""
        if url.startswith("/"):                 # a path on the proxy itself
            url = self.api.where.base_url + url
        future = self._grids.get(url)
        if future is None or (future.done() and future.exception() is not None):
            future = asyncio.ensure_future(self.api.download(url))
            self._grids[url] = future
            while len(self._grids) > KEPT_GRIDS:
                self._grids.popitem(last=False)
        return await asyncio.shield(future)


def quadrant(grid: bytes, index: int, origin: Origin, note: str) -> bytes:
    """Quadrant ``index`` (1-4: left to right, top to bottom) of a 2×2 grid, as a PNG
    marked with its origin. Blocking: run it in a thread."""
    with Image.open(io.BytesIO(grid)) as image:
        width, height = image.size
        col, row = (index - 1) % 2, (index - 1) // 2
        box = (col * width // 2, row * height // 2, (col + 1) * width // 2,
               (row + 1) * height // 2)
        part = image.convert("RGB").crop(box)
    out = io.BytesIO()
    part.save(out, "PNG", pnginfo=provenance.mark(origin, note))
    return out.getvalue()


class ImagineAttempt(RemoteAttempt):
    provider: MidjourneyProvider

    async def submit(self) -> float:
        p, gen = self.provider, self.work.generation
        assert isinstance(gen, Generation)
        image = None
        if gen.is_img2img:
            assert gen.init_image is not None
            data = await p.store.read(gen.init_image)
            image = "data:image/png;base64," + base64.b64encode(data).decode()
            gen = gen.model_copy(update={"prompt": image_weighted(gen)})
        body = mj.imagine_body(gen, p.options, image)
        sent = time.time()
        done = await p.send("imagine", body)
        if done.modal:      # a plus proxy in remix mode: confirm the prompt as it is
            done = await p.send("modal", {"taskId": done.task, "prompt": body["prompt"]})
        self.state["task"] = done.task
        self.state["seed"] = mj.seed_of(body["prompt"], gen.seed)
        if done.queued is not None:
            self.state[UPSTREAM_QUEUE] = done.queued
        log.info("job %s is task %s at %s", self.work.id, done.task, p.name)
        return sent

    async def follow(self, progress: OnProgress) -> list[str]:
        gen = self.work.generation
        view = await self.provider.wait(self.work, self.state["task"], progress)
        assert view.image_url is not None
        return [f"q{i}:{view.image_url}" for i in range(1, gen.n + 1)]


def image_weighted(gen: Generation) -> str:
    """The prompt with ``--iw`` for an init image: strength 0 keeps it most (2), 1 least
    (0), unless the prompt sets it."""
    if mj.carries(gen.prompt, "--iw") or gen.strength is None:
        return gen.prompt
    return f"{gen.prompt} --iw {round(2 * (1 - gen.strength), 2):g}"


class UpscaleAttempt(RemoteAttempt):
    """``U<n>`` on each picture's grid task. The tasks are kept only once all are made,
    so a restart in between (which cannot tell what the proxy has) fails the job
    instead of running them twice."""

    provider: MidjourneyProvider

    async def submit(self) -> float:
        p, upscale = self.provider, self.work.generation
        assert isinstance(upscale, Upscale)
        sent, tasks = time.time(), []
        for source in upscale.images:
            ref = p._ref(source.origin)
            if ref is None:
                raise FeatureDisabled(f"{p.label} upscales only the pictures it made.",
                                      param="images")
            task, index = ref
            if p.options.actions == "action":
                parent = await p.task(task)
                if parent is None:
                    raise UpstreamRejected(f"{p.label} no longer knows task {task}, so it "
                                           "cannot upscale its pictures.")
                view = mj.task_view(p.label, task, parent)
                done = await p.send("action", {"taskId": task,
                                               "customId": mj.upscale_button(view, index)})
            else:
                done = await p.send("change", {"taskId": task, "action": "UPSCALE",
                                               "index": index})
            tasks.append(done.task)
        self.state["tasks"] = tasks
        return sent

    async def follow(self, progress: OnProgress) -> list[str]:
        tasks: list[str] = self.state["tasks"]
        outputs = []
        for i, task in enumerate(tasks):
            def part(fraction: float, done: int = i) -> None:
                progress((done + fraction) / len(tasks))
            view = await self.provider.wait(self.work, task, part)
            if view.image_url is None:
                raise BadUpstreamResponse(f"{self.provider.label}'s upscale has no image.")
            outputs.append(f"u{i}:{view.image_url}")
        return outputs
