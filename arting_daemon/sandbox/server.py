"""The Arting emulator: a real HTTP server speaking Arting's private image API.

It follows ``docs/protocol/arting.md`` §9 and §11: text-to-image, image-to-image, the
signed-URL upload into its own object storage (``storage``), image-enhance (``enhance``)
and each identity's balance (``balance``). Where the real API's behaviour is unknown,
``SandboxConfig`` has a switch, and the invented error codes are listed in
``envelope``. Every answer carries ``Server: cloudflare`` and a ``cf-ray``, as answers
from behind Cloudflare do.

Each request to the API passes, in order: method check, feature switch, Cloudflare's
clearance (``cf_clearance``) and fingerprint (``cf_browser_check``), faults, rate limit,
identity and token check, the route itself. Admin requests (``/__sandbox__/...``) skip
all of that and are not recorded. Answers can take the shape of a check's record
(``answers``, see ``replay.py``).
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import math
import random
import secrets
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Any, cast

from aiohttp import web
from pydantic import ValidationError

from ..clock import SYSTEM, Clock
from . import cloudflare, enhance, storage
from . import envelope as E
from .auth import token_problem
from .balance import Balances
from .emulator import RateLimiter, headers_of, oversized, read_body, serve
from .enhance import EnhanceTask
from .envelope import ApiError, AuthError, NotFoundError, RateLimited
from .faults import EFFECT_KINDS, FaultBoard, respond
from .models import (FAULT_ROUTES, AnswerKind, Fault, Recorded, SandboxConfig,
                     SandboxJob)
from .render import Picture, PngCache, load_data_url, probe_image
from .storage import ObjectStorage, StorageRefusal
from .validation import parse_create, parse_get

#: Routes that need a token and count against the rate limit.
API_ROUTES = ("create", "get", "i2i_create", "i2i_get", "signed_urls", "enhance_create",
              "enhance_get")
#: Routes that fail with "Authorization failed" when no identity is sent (§11).
IDENTITY_ROUTES = ("create", "i2i_create", "signed_urls", "enhance_create")

_IMAGE_PATH = r"/files/{request_id}/{index:\d+}.png"


class _Call:
    """One API request on its way through the route handler."""

    def __init__(self, request: web.Request, route: str, body: Any, fault: Fault | None):
        self.request = request
        self.route = route
        self.body = body
        self.token = request.headers.get("Authorization")
        self.effect = fault.kind if fault is not None else None


#: What answers one emulated route.
Handler = Callable[[_Call], Awaitable[web.StreamResponse]]


class Sandbox:
    """An in-process Arting emulator; ``await start()`` it on any running loop."""

    def __init__(self, config: SandboxConfig | None = None, *, clock: Clock = SYSTEM,
                 **overrides: Any) -> None:
        base = (config or SandboxConfig()).model_dump()
        self._initial = SandboxConfig.model_validate({**base, **overrides})
        self.config = self._initial.model_copy(deep=True)
        self.url: str | None = None
        self.requests: list[Recorded] = []
        self.jobs: dict[str, SandboxJob] = {}
        self.tasks: dict[str, EnhanceTask] = {}
        #: Its "now": a job's progress, result URLs' and signed URLs' expiry, rate windows.
        self.clock = clock
        self.storage = ObjectStorage(clock)
        self.balances = Balances()
        self.images = PngCache()
        self._faults = FaultBoard()
        self._limiter = RateLimiter()
        self._streams: dict[str, random.Random] = {}
        self._streams_seed: int | None = None
        self._instance = secrets.token_hex(4)
        self._runner: web.AppRunner | None = None
        self.app = self._build_app()

    # --- lifecycle and control ---------------------------------------------------------

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Listen on ``host:port`` (0 = any free port); returns the base URL."""
        if self._runner is not None:
            raise RuntimeError("the sandbox is already running")
        self._runner, self.url = await serve(self.app, host, port)
        return self.url

    async def close(self) -> None:
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    def configure(self, **changes: Any) -> None:
        """Change settings; all are validated together, so nothing changes on an error."""
        self.config = SandboxConfig.model_validate({**self.config.model_dump(), **changes})

    def add_fault(self, kind: str, route: str = "*", **kw: Any) -> Fault:
        fault = Fault(kind=kind, route=route, **kw)
        self._faults.add(fault)
        return fault

    def clear_faults(self) -> None:
        self._faults.clear()

    def reset(self) -> None:
        """Forget faults, requests, jobs, tasks, stored objects and spent balances; go back
        to the construction config."""
        self._faults.clear()
        self.requests.clear()
        self.jobs.clear()
        self.tasks.clear()
        self.storage.clear()
        self.balances.clear()
        self._limiter.clear()
        self._streams_seed = None
        self.config = self._initial.model_copy(deep=True)

    def requests_for(self, route: str) -> list[Recorded]:
        return [r for r in self.requests if r.route == route]

    # --- wiring ------------------------------------------------------------------------

    def _build_app(self) -> web.Application:
        app = web.Application(client_max_size=64 << 20)
        app.on_response_prepare.append(self._behind_cloudflare)
        admin = [
            ("GET", "/__sandbox__/requests", self._admin_requests),
            ("GET", "/__sandbox__/jobs", self._admin_jobs),
            ("GET", "/__sandbox__/tasks", self._admin_tasks),
            ("GET", "/__sandbox__/config", self._admin_config),
            ("POST", "/__sandbox__/config", self._admin_configure),
            ("GET", "/__sandbox__/faults", self._admin_faults),
            ("POST", "/__sandbox__/faults", self._admin_add_faults),
            ("DELETE", "/__sandbox__/faults", self._admin_clear_faults),
            ("POST", "/__sandbox__/reset", self._admin_reset),
        ]
        for method, path, handler in admin:
            app.router.add_route(method, path, handler)
        routes: list[tuple[str, str | None, str, Handler]] = [
            ("create", "POST", "/api/cg/text-to-image/create", partial(self._create, "txt2img")),
            ("get", "POST", "/api/cg/text-to-image/get", partial(self._get, "txt2img")),
            ("i2i_create", "POST", "/api/cg/image-to-image/create",
             partial(self._create, "img2img")),
            ("i2i_get", "POST", "/api/cg/image-to-image/get", partial(self._get, "img2img")),
            ("signed_urls", "POST", "/api/cg/get_oss_signed_urls", self._signed_urls),
            ("enhance_create", "POST", "/api/image/image-enhance/create-task",
             self._enhance_create),
            ("enhance_get", "GET", "/api/image/image-enhance/get-task-result", self._enhance_get),
            ("image", "GET", _IMAGE_PATH, self._image),
            ("oss_put", "PUT", storage.PUT_PREFIX + "{key:.+}", self._oss_put),
            ("cdn", "GET", storage.GET_PREFIX + "{key:.+}", self._cdn),
            ("cdn-cgi", None, "/cdn-cgi/{tail:.*}", self._cdn_cgi),
            ("unknown", None, "/{tail:.*}", self._unknown),
        ]
        for route, verb, path, answer in routes:
            app.router.add_route("*", path, partial(self._handle, route, verb, answer))
        return app

    async def _handle(self, route: str, method: str | None,
                      handler: Callable[[_Call], Awaitable[web.StreamResponse]],
                      request: web.Request) -> web.StreamResponse:
        body = await read_body(request)
        self.requests.append(Recorded(route=route, method=request.method, path=request.path_qs,
                                      headers=headers_of(request), body=body,
                                      client_ip=request.remote, time=self.clock.time()))
        allowed = {method, "HEAD"} if method == "GET" else {method}
        if method is not None and request.method not in allowed:
            return web.json_response(E.failure(E.BAD_METHOD, "method not allowed"),
                                     status=405, headers={"Allow": method})
        if not self._enabled(route):
            return _not_found()
        if route in API_ROUTES and (not _cleared(request, self.config.cf_clearance) or (
                self.config.cf_browser_check and cloudflare.not_a_browser(request))):
            return respond(Fault(kind="cf_challenge"), request, self._random("rays"), False)
        fault = self._faults.pick(route) if route in FAULT_ROUTES else None
        if fault is not None and fault.delay:
            await asyncio.sleep(fault.delay)
        if fault is not None and fault.kind == "oversized":
            return await oversized(request)
        if fault is not None and fault.kind not in EFFECT_KINDS:
            return respond(fault, request, self._random("rays"), self.config.auth_error_http)
        call = _Call(request, route, body, fault)
        try:
            if route in API_ROUTES:
                self._admit(call)
            return await handler(call)
        except ApiError as err:
            return self._error(err)

    def _enabled(self, route: str) -> bool:
        if route in ("i2i_create", "i2i_get"):
            return self.config.img2img_enabled
        if route in ("enhance_create", "enhance_get"):
            return self.config.enhance_enabled
        return True

    def _admit(self, call: _Call) -> None:
        """Rate limit, then token check; raises the matching ``ApiError``."""
        config, now = self.config, self.clock.time()
        if config.rate_limit_requests is not None:
            key = call.token if config.rate_limit_per == "token" else call.request.remote
            wait = self._limiter.retry_after(key, config.rate_limit_requests,
                                             config.rate_limit_window, now)
            if wait is not None:
                raise RateLimited(wait)
        if config.require_identity and not call.token and call.route in IDENTITY_ROUTES:
            raise AuthError(E.NO_IDENTITY)
        problem = token_problem(config.auth_mode, call.token, now)
        if problem is not None:
            raise AuthError(problem)

    def _error(self, err: ApiError) -> web.Response:
        config = self.config
        headers = {}
        if isinstance(err, RateLimited):
            status = err.http_status
            headers["Retry-After"] = str(max(1, math.ceil(err.retry_after)))
        elif isinstance(err, AuthError):
            status = err.http_status if config.auth_error_http else 200
        else:
            status = err.http_status if config.errors_as_http else 200
        kind = "token_refused" if isinstance(err, AuthError) else \
            "not_found" if isinstance(err, NotFoundError) else None
        return self._answer(kind, E.failure(err.code, err.message), status, headers=headers)

    def _answer(self, kind: str | None, body: dict, status: int = 200, *,
                request_id: str | None = None, output: list[str] | None = None,
                headers: dict[str, str] | None = None) -> web.Response:
        """``body``, or the recorded answer of this kind (``config.answers``) with only the
        request id and the output filled in."""
        recorded = self.config.answers.get(cast(AnswerKind, kind)) if kind else None
        if recorded is not None:
            body, status = copy.deepcopy(recorded.body), recorded.status
            data = body.get("data") if isinstance(body, dict) else None
            if isinstance(data, dict):
                if "request_id" in data and request_id is not None:
                    data["request_id"] = request_id
                if "output" in data and output is not None:
                    data["output"] = output
        return web.json_response(body, status=status, headers=headers)

    async def _behind_cloudflare(self, request: web.Request, response: web.StreamResponse) -> None:
        response.headers["Server"] = "cloudflare"  # aiohttp has set its own by now
        response.headers.setdefault("cf-ray", cloudflare.ray_id(self._random("rays")))

    # --- generation --------------------------------------------------------------------

    async def _create(self, kind: str, call: _Call) -> web.Response:
        spec = parse_create(call.body, self.config, img2img=kind == "img2img")
        init = None
        if spec.image_url is not None:
            init = await self._source_image(spec.image_url, call.request)
        blocked = self._blocked(spec.prompt, spec.is_nsfw)
        self.balances.charge(call.token, spec.samples * self.config.balance_per_image,
                             self.config.balance_start)
        now = self.clock.time()
        request_id = self._new_id()
        seed = spec.seed if spec.seed != -1 else self._random("seeds").randrange(2**32)
        by_polls = self.config.complete_after_polls is not None
        job = SandboxJob(
            request_id=request_id, route=cast(Any, kind), body=call.body, token=call.token,
            created_at=now, done_at=None if by_polls else now + self._duration(),
            seed=seed, model=spec.model, width=spec.width, height=spec.height,
            samples=spec.samples, blocked=blocked, init_image=init, strength=spec.strength,
            fail_on_poll=call.effect == "fail")
        if call.effect == "never_finish":
            job.state, job.done_at = "never", None
        self.jobs[request_id] = job
        return self._answer("create", E.success({"request_id": request_id}),
                            request_id=request_id)

    async def _get(self, kind: str, call: _Call) -> web.Response:
        request_id = parse_get(call.body)
        job = self.jobs.get(request_id)
        if job is None or job.route != kind or (
                self.config.same_token_poll and job.token != call.token):
            raise NotFoundError()
        job.polls += 1
        if call.effect == "fail":
            job.state, job.outputs = "failed", []
        self._advance(job, self._base(call.request))
        status = {"pending": self.config.pending_status, "never": self.config.pending_status,
                  "done": self.config.done_status, "failed": self.config.failed_status}[job.state]
        output = list(job.outputs)
        kind = "pending" if job.state == "never" else job.state
        if call.effect == "empty_output_done":
            status, output, kind = self.config.done_status, [], "done"
        return self._answer(kind, E.success(self._with_balance(
            {"request_id": request_id, "status": status, "output": output},
            call.token or job.token)), request_id=request_id, output=output)

    def _advance(self, job: SandboxJob, base: str) -> None:
        """Move a pending job on at a poll: fail it, or finish it once it is due."""
        if self._settle(job):
            job.outputs = [f"{base}/files/{job.request_id}/{i}.png" for i in range(job.samples)]

    def _settle(self, item: SandboxJob | EnhanceTask) -> bool:
        """At a poll of a pending job or task: fail it, or mark it done once it is due.
        True when it has just become done."""
        if item.state != "pending":
            return False
        if item.fail_on_poll:
            item.state = "failed"
            return False
        now = self.clock.time()
        k = self.config.complete_after_polls
        due = item.polls >= k if k is not None else item.done_at is None or now >= item.done_at
        if not due:
            return False
        if k is not None or item.done_at is None:
            item.done_at = now
        item.state = "done"
        return True

    def _with_balance(self, data: dict, identity: str | None) -> dict:
        """A poll answer with the identity's ``remain_balance`` (when balances are on)."""
        left = self.balances.left(identity, self.config.balance_start)
        return data if left is None else {**data, "remain_balance": left}

    def _duration(self) -> float:
        """Seconds from create to done, drawn as ``generation_dist`` says."""
        config, rng = self.config, self._random("durations")
        if config.generation_dist == "lognormal":
            drawn = rng.lognormvariate(math.log(config.generation_median), config.generation_sigma)
            return min(drawn, config.generation_max)
        if config.generation_dist == "uniform":
            return rng.uniform(config.generation_low, config.generation_high)
        return config.generation_time

    def _blocked(self, prompt: str, is_nsfw: bool) -> bool:
        """Whether the NSFW rules turn this job's images grey (or refuse it outright)."""
        config = self.config
        lowered = prompt.lower()
        if config.nsfw_mode == "allow" or is_nsfw or not any(
                word and word.lower() in lowered for word in config.nsfw_words):
            return False
        if config.nsfw_mode == "refuse":
            raise ApiError(E.CONTENT_REFUSED, "content not allowed")
        return True

    async def _source_image(self, url: str, request: web.Request) -> bytes:
        """An img2img or enhance source: a data: URL, or the ``get`` URL of an object put
        into our storage. Nothing is fetched from anywhere else."""
        loop = asyncio.get_running_loop()
        if url.startswith("data:"):
            data = await loop.run_in_executor(None, load_data_url, url)
            if data is None:
                raise ApiError(E.BAD_IMAGE_URL, "image_url is not a base64 data:image/... URL "
                                                "holding a readable image")
            return data
        bases = {self.config.storage_url, self.config.public_url, self.url,
                 self._base(request)} - {None}
        key = self.storage.key_of(url, bases)  # type: ignore[arg-type]
        if key is None:
            raise ApiError(E.BAD_IMAGE_URL, "image_url must be a data:image/...;base64 URL or "
                                            "the get URL of an upload (get_oss_signed_urls); "
                                            "the sandbox fetches nothing")
        stored = self.storage.objects.get(key)
        if stored is None:
            raise ApiError(E.BAD_IMAGE_URL, "image_url names nothing uploaded: PUT the image "
                                            "to the signed put URL first")
        if await loop.run_in_executor(None, probe_image, stored.data) is None:
            raise ApiError(E.BAD_IMAGE_URL, "image_url holds no readable image")
        return stored.data

    # --- storage and image-enhance ---------------------------------------------------------

    async def _signed_urls(self, call: _Call) -> web.Response:
        body = call.body if isinstance(call.body, dict) else None
        suffixes = body.get("f_suffixs") if body is not None else None
        if not isinstance(suffixes, list) or not suffixes or len(suffixes) > 10:
            raise ApiError(E.BAD_SUFFIX, "f_suffixs must be a list of 1 to 10 file suffixes")
        unknown = [s for s in suffixes if not isinstance(s, str)
                   or s.lower() not in storage.SUFFIX_TYPES]
        if unknown:
            raise ApiError(E.BAD_SUFFIX, f"f_suffixs: unsupported suffix {unknown[0]!r}")
        base = self.config.storage_url or self._base(call.request)
        rng = self._random("storage")
        urls = [self.storage.sign(base, s.lower(), rng, self.config.seed,
                                  self.config.storage_url_ttl) for s in suffixes]
        return web.json_response(E.success({"oss_signed_urls": urls}))

    async def _oss_put(self, call: _Call) -> web.Response:
        request = call.request
        data = call.body if isinstance(call.body, bytes) else await request.read()
        try:
            stored = self.storage.put(request.match_info["key"], request.query,
                                      request.headers.get("Content-Type", ""), data,
                                      self.config.seed)
        except StorageRefusal as refusal:
            return storage.xml_error(refusal.status, refusal.code, refusal.message,
                                     cloudflare.ray_id(self._random("rays")))
        return web.Response(headers={"ETag": f'"{hashlib.md5(stored.data).hexdigest()}"'})

    async def _cdn(self, call: _Call) -> web.Response:
        key = call.request.match_info["key"]
        if key.startswith(enhance.RESULT_PREFIX):
            task = self.tasks.get(key[len(enhance.RESULT_PREFIX):].removesuffix(".png"))
            if task is not None and task.state == "done":
                if task.result is None:
                    task.result = await asyncio.get_running_loop().run_in_executor(
                        None, enhance.render, task)
                return web.Response(body=task.result, content_type="image/png")
        stored = self.storage.objects.get(key)
        if stored is None:
            return _not_found("file not found")
        return web.Response(body=stored.data, content_type=stored.content_type)

    async def _enhance_create(self, call: _Call) -> web.Response:
        spec = enhance.parse_create(call.body, self.config)
        source = await self._source_image(spec.image_url, call.request)
        width, height = await asyncio.get_running_loop().run_in_executor(
            None, enhance.source_size, source, self.config)
        self.balances.charge(call.token, self.config.balance_per_upscale,
                             self.config.balance_start)
        now = self.clock.time()
        by_polls = self.config.complete_after_polls is not None
        task = EnhanceTask(
            task_id=self._new_id(), token=call.token,
            source=source, width=width, height=height, scale=spec.scale, version=spec.version,
            created_at=now, done_at=None if by_polls else now + self._duration(),
            fail_on_poll=call.effect == "fail")
        if call.effect == "never_finish":
            task.state, task.done_at = "never", None
        self.tasks[task.task_id] = task
        return web.json_response(E.success({"task_id": task.task_id}))

    async def _enhance_get(self, call: _Call) -> web.Response:
        task_id = call.request.query.get("task_id", "")
        if not task_id:
            raise ApiError(E.BAD_TYPE, "task_id is required")
        task = self.tasks.get(task_id)
        if task is None or (self.config.same_token_poll and task.token != call.token):
            raise NotFoundError()
        task.polls += 1
        if call.effect == "fail":
            task.state = "failed"
        self._settle(task)
        result = None
        if task.state == "done" and call.effect != "empty_output_done":
            base = self.config.storage_url or self._base(call.request)
            result = {"file_oss_path": f"{base}{storage.GET_PREFIX}{enhance.RESULT_PREFIX}"
                                       f"{task.task_id}.png"}
        status = enhance.status_of(task, self.config)
        if call.effect == "empty_output_done":
            status = self.config.enhance_done_status
        return web.json_response(E.success(self._with_balance(
            {"task_id": task_id, "status": status, "task_result": result},
            call.token or task.token)))

    # --- files -------------------------------------------------------------------------

    async def _image(self, call: _Call) -> web.Response:
        info = call.request.match_info
        job = self.jobs.get(info["request_id"])
        index = int(info["index"])
        if job is None or job.state != "done" or index >= job.samples:
            return _not_found("file not found")
        expiry = self.config.image_expiry
        if expiry is not None and job.done_at is not None and \
                self.clock.time() > job.done_at + expiry:
            return _not_found("file expired")
        if self.config.image_files:
            return await _image_file(self.config.image_files[index % len(
                self.config.image_files)])
        picture = Picture(prompt=job.body["prompt"], seed=job.seed + index, model=job.model,
                          width=job.width, height=job.height, init_image=job.init_image,
                          strength=job.strength, blocked=job.blocked)
        return web.Response(body=await self.images.png(picture), content_type="image/png")

    async def _cdn_cgi(self, call: _Call) -> web.Response:
        """Cloudflare's own paths: a challenge answer posted here always fails (403)."""
        ray = cloudflare.ray_id(self._random("rays"))
        return web.Response(status=403, text=cloudflare.managed_challenge(call.request.host, ray),
                            headers=cloudflare.headers(ray, challenge=True))

    async def _unknown(self, call: _Call) -> web.Response:
        return _not_found()

    # --- admin -------------------------------------------------------------------------

    async def _admin_requests(self, request: web.Request) -> web.Response:
        route = request.query.get("route")
        records = self.requests_for(route) if route else self.requests
        return web.json_response([r.to_json() for r in records])

    async def _admin_jobs(self, request: web.Request) -> web.Response:
        return web.json_response({rid: job.to_json() for rid, job in self.jobs.items()})

    async def _admin_tasks(self, request: web.Request) -> web.Response:
        return web.json_response({tid: task.to_json() for tid, task in self.tasks.items()})

    async def _admin_config(self, request: web.Request) -> web.Response:
        return web.json_response(self.config.model_dump())

    async def _admin_configure(self, request: web.Request) -> web.Response:
        changes = await _admin_json(request)
        if not isinstance(changes, dict):
            return _admin_error("send a JSON object of settings to change")
        try:
            self.configure(**changes)
        except ValidationError as exc:
            return _admin_error(str(exc))
        return web.json_response(self.config.model_dump())

    async def _admin_faults(self, request: web.Request) -> web.Response:
        return web.json_response(self._faults.snapshot())

    async def _admin_add_faults(self, request: web.Request) -> web.Response:
        data = await _admin_json(request)
        items = data if isinstance(data, list) else [data]
        try:
            faults = [Fault.model_validate(item) for item in items]
        except ValidationError as exc:
            return _admin_error(str(exc))
        for fault in faults:
            self._faults.add(fault)
        return web.json_response([f.model_dump() for f in faults])

    async def _admin_clear_faults(self, request: web.Request) -> web.Response:
        self.clear_faults()
        return web.json_response({"ok": True})

    async def _admin_reset(self, request: web.Request) -> web.Response:
        self.reset()
        return web.json_response({"ok": True})

    # --- helpers -----------------------------------------------------------------------

    def _base(self, request: web.Request) -> str:
        """Base of the URLs we hand out: ``public_url``, our address, or the request's."""
        return self.config.public_url or self.url or str(request.url.origin())

    def _new_id(self) -> str:
        """A request or task id: 32 hex digits, the first 8 this emulator's own. Each
        replica run with ``--sandbox`` has an emulator of its own with the same seed; a
        job taken over from another replica must not find another job under its id."""
        return self._instance + f"{self._random('ids').getrandbits(96):024x}"

    def _random(self, stream: str) -> random.Random:
        """A random stream derived from ``config.seed``, so runs repeat exactly."""
        if self._streams_seed != self.config.seed:
            self._streams, self._streams_seed = {}, self.config.seed
        if stream not in self._streams:
            self._streams[stream] = random.Random(f"{self.config.seed}:{stream}")
        return self._streams[stream]


def _cleared(request: web.Request, clearance: str | None) -> bool:
    """Whether Cloudflare lets the request through: no clearance is demanded, or it
    carries the one that is."""
    if clearance is None:
        return True
    return request.cookies.get("cf_clearance") == clearance


async def _image_file(path: str) -> web.Response:
    """One of ``config.image_files``, with its own image type."""
    try:
        data = await asyncio.to_thread(Path(path).read_bytes)
    except OSError:
        return _not_found("file not found")
    kind = await asyncio.to_thread(probe_image, data)
    return web.Response(body=data, content_type=f"image/{(kind or 'png').lower()}")


def _not_found(message: str = "not found") -> web.Response:
    return web.json_response(E.failure(E.NOT_FOUND, message), status=404)


async def _admin_json(request: web.Request) -> Any:
    try:
        return await request.json()
    except ValueError:
        return None


def _admin_error(message: str) -> web.Response:
    return web.json_response({"error": message}, status=400)
