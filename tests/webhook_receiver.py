"""A webhook receiver for the tests: a real aiohttp server on loopback, on its own loop
thread (so it serves daemons in this process and daemon processes alike), recording
every request and answering with the statuses it is told to, in order."""

from __future__ import annotations

import asyncio
import socket
import time
from dataclasses import dataclass

from aiohttp import web
from threads import LoopThread


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float


def free_port() -> int:
    """A loopback port nobody listens on (yet): a receiver that is down."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Receiver:
    def __init__(self, *answers: int | tuple[int, dict[str, str]] | str, port: int = 0) -> None:
        """``answers``: the status (and headers) of each request in turn, or ``"hang"``
        (no answer until the caller gives up); then 204. ``port``: where a receiver
        that was down comes up (``free_port``)."""
        self.answers = list(answers)
        self.port = port
        self.received: list[Received] = []
        self._runner: web.AppRunner | None = None
        self._loop = LoopThread("webhook receiver")
        try:
            self.url = self._loop.call(self._start())
        except BaseException:
            self.close()
            raise

    async def _start(self) -> str:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port)
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
        self._loop.close(self._stop())

    async def _stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
