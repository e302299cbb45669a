"""A webhook receiver for the tests: a real aiohttp server on loopback, on its own loop
thread (so it serves daemons in this process and daemon processes alike), recording
every request and answering with the statuses it is told to, in order."""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass

from aiohttp import web


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float


class Receiver:
    def __init__(self, *answers: int | tuple[int, dict[str, str]] | str) -> None:
        """``answers``: the status (and headers) of each request in turn, or ``"hang"``
        (no answer until the caller gives up); then 204."""
        self.answers = list(answers)
        self.received: list[Received] = []
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self.url = asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)

    async def _start(self) -> str:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        return f"http://127.0.0.1:{self._runner.addresses[0][1]}"

    async def _handle(self, request: web.Request) -> web.Response:
        self.received.append(Received(request.path, dict(request.headers),
                                      await request.read(), time.time()))
        answer = self.answers.pop(0) if self.answers else 204
        if answer == "hang":
            await asyncio.sleep(3600)      # cancelled when the caller hangs up
        status, headers = answer if isinstance(answer, tuple) else (answer, {})
        if 300 <= status < 400:
            headers = {"Location": f"{self.url}/elsewhere", **headers}
        return web.Response(status=status, headers=headers, text="receiver says hi")

    def wait(self, count: int, timeout: float = 15) -> list[Received]:
        deadline = time.monotonic() + timeout
        while len(self.received) < count:
            assert time.monotonic() < deadline, f"got {len(self.received)} of {count}"
            time.sleep(0.02)
        return self.received

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()
