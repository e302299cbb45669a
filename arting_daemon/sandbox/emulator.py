"""What the sandbox's emulators share: a real HTTP server, the request log, faults.

Arting's emulator (``server.py``) has its own fault kinds and switches; the Midjourney
(``midjourney.py``) and Stability AI (``stability.py``) emulators are built on
``Emulator``: each request to one of its routes is logged (``requests``), then the
faults armed on that route may delay it, drop the connection, answer a body that never
ends (``oversized``: at most ``OVERSIZED_MIB``, for the bounds of whoever reads it), or
answer instead (``fault_answer``); otherwise its handler answers.

    mj = MidjourneyEmulator(generation_time=1.0)
    base_url = await mj.start()
    mj.add_fault("http_error", route="imagine", status=503, count=1)
    ...
    await mj.close()
"""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar

from aiohttp import BodyPartReader, web

from ..clock import SYSTEM, Clock
from .faults import FaultBoard, reset_connection
from .models import FaultSpec, Recorded

Handler = Callable[[web.Request, Any], Awaitable[web.StreamResponse]]
#: What an ``oversized`` answer sends at most before it ends, in MiB.
OVERSIZED_MIB = 200


#: The fault a request's handler is to act on (one that does not answer for it).
FAULT: web.RequestKey[FaultSpec | None] = web.RequestKey("fault")


async def serve(app: web.Application, host: str, port: int) -> tuple[web.AppRunner, str]:
    """Listen on ``host:port`` (0: any free port): the runner and the base URL."""
    runner = web.AppRunner(app, access_log=None, handler_cancellation=True,
                           shutdown_timeout=1.0)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except BaseException:
        await runner.cleanup()
        raise
    bound_port = runner.addresses[0][1]
    shown = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
    return runner, f"http://{f'[{shown}]' if ':' in shown else shown}:{bound_port}"


class Emulator:
    """An in-process emulator of one upstream; ``await start()`` it on any running loop."""

    #: The emulator's name in messages, its routes, and its fault kinds.
    NAME: ClassVar[str]
    ROUTES: ClassVar[tuple[str, ...]]
    FAULT_KINDS: ClassVar[tuple[str, ...]]

    def __init__(self, clock: Clock = SYSTEM) -> None:
        #: Its "now": tasks' progress, results' readiness, rate windows, the request log.
        self.clock = clock
        self.url: str | None = None
        self.requests: list[Recorded] = []
        #: Requests being answered now, and the most there were at once.
        self.in_flight = self.most_in_flight = 0
        self._faults = FaultBoard()
        self._runner: web.AppRunner | None = None
        self._errands: set[asyncio.Task] = set()
        self.app = web.Application(client_max_size=64 << 20)
        self.routes(self.app)

    def routes(self, app: web.Application) -> None:
        """Add the routes (with ``route``)."""
        raise NotImplementedError

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        if self._runner is not None:
            raise RuntimeError(f"the {self.NAME} emulator is already running")
        self._runner, self.url = await serve(self.app, host, port)
        return self.url

    async def close(self) -> None:
        for errand in list(self._errands):
            errand.cancel()
        await asyncio.gather(*self._errands, return_exceptions=True)
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    def add_fault(self, kind: str, route: str = "*", **kw: Any) -> FaultSpec:
        if kind not in self.FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; known: {', '.join(self.FAULT_KINDS)}")
        if route != "*" and route not in self.ROUTES:
            raise ValueError(f"unknown route {route!r}; known: {', '.join(self.ROUTES)}")
        fault = FaultSpec(kind=kind, route=route, **kw)
        self._faults.add(fault)     # type: ignore[arg-type]
        return fault

    def clear_faults(self) -> None:
        self._faults.clear()

    def requests_for(self, route: str) -> list[Recorded]:
        return [r for r in self.requests if r.route == route]

    def errand(self, coro: Awaitable[Any]) -> None:
        """Run ``coro`` in the background until it ends or the emulator closes."""
        task = asyncio.ensure_future(coro)
        self._errands.add(task)
        task.add_done_callback(self._errands.discard)

    def route(self, app: web.Application, name: str, method: str, path: str,
              handler: Handler) -> None:
        async def handle(request: web.Request) -> web.StreamResponse:
            body = await read_body(request)
            self.requests.append(Recorded(route=name, method=request.method,
                                          path=request.path_qs, headers=headers_of(request),
                                          body=body, client_ip=request.remote,
                                          time=self.clock.time()))
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
            try:
                return await self._dispatch(name, handler, request, body)
            finally:
                self.in_flight -= 1

        app.router.add_route(method, path, handle)

    async def _dispatch(self, name: str, handler: Handler, request: web.Request,
                      body: Any) -> web.StreamResponse:
        fault = self._faults.pick(name)
        if fault is not None:
            if fault.delay:
                await asyncio.sleep(fault.delay)
            if fault.kind == "reset":
                return reset_connection(request)
            if fault.kind == "oversized":
                return await oversized(request)
            answer = self.fault_answer(fault, request)
            if answer is not None:
                return answer
        request[FAULT] = fault
        return await handler(request, body)

    def fault_answer(self, fault: FaultSpec, request: web.Request
                     ) -> web.StreamResponse | None:
        """The answer a fault gives instead of the route's own; None: the route answers
        (a ``slow`` fault, or one the handler reads from ``request[FAULT]``)."""
        return None


async def oversized(request: web.Request) -> web.StreamResponse:
    """A JSON answer that goes on and on (a broken or hostile server's)."""
    resp = web.StreamResponse(headers={"Content-Type": "application/json"})
    await resp.prepare(request)
    await resp.write(b'{"padding": "')
    chunk = b" " * (1 << 20)
    for _ in range(OVERSIZED_MIB):
        await resp.write(chunk)
    return resp


class RateLimiter:
    """A sliding window of accepted requests per key (token or client IP)."""

    def __init__(self) -> None:
        self._hits: defaultdict[str | None, deque[float]] = defaultdict(deque)

    def retry_after(self, key: str | None, limit: int, window: float, now: float) -> float | None:
        """None if the request may pass (and counts it), else seconds until it may."""
        hits = self._hits[key]
        while hits and hits[0] <= now - window:
            hits.popleft()
        if len(hits) >= limit:
            return hits[0] + window - now
        hits.append(now)
        return None

    def clear(self) -> None:
        self._hits.clear()


async def read_body(request: web.Request) -> Any:
    """The body as parsed JSON, a dict of multipart fields (files as bytes), or raw bytes."""
    if request.content_type.startswith("multipart/"):
        fields: dict[str, Any] = {}
        try:
            async for part in await request.multipart():  # type: ignore[misc]
                if not isinstance(part, BodyPartReader):    # a nested multipart: not ours
                    continue
                data = bytes(await part.read())
                fields[part.name or ""] = data if part.filename is not None else data.decode(
                    "utf-8", "replace")
        except ValueError:
            pass  # malformed multipart: keep what was readable
        return fields
    raw = await request.read()
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def headers_of(request: web.Request) -> dict[str, str]:
    """Headers with the names as received; repeated headers are joined with ", "."""
    out: dict[str, str] = {}
    for name, value in request.headers.items():
        out[name] = f"{out[name]}, {value}" if name in out else value
    return out

