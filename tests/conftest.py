"""Shared fixtures: a live daemon + Arting emulator on real loopback sockets.

``LiveDaemon`` runs both in a background thread with its own event loop, so tests can
drive them with the real, synchronous client libraries (``openai``, ``webuiapi``,
``httpx``) exactly as users do. Every daemon gets its own data directory and ports,
and is stopped (sockets closed, tasks finished) when its test ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.server
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web
from threads import LoopThread

from arting_daemon.app import create_app
from arting_daemon.clock import SYSTEM, Clock
from arting_daemon.config import Settings
from arting_daemon.sandbox import Sandbox
from arting_daemon.state import ENGINE
from clock import ManualClock

#: After each test, nothing it started may be left running (see hygiene.py); pytester
#: runs small test sessions of its own (test_hygiene.py).
pytest_plugins = ["hygiene", "pytester"]

TERMINAL = ("succeeded", "failed", "cancelled")

#: Settings that make tests quick: the emulator answers at once (so the daemon expects
#: it to, and polls first after about 10 ms) and we poll briskly. With ``sandbox=True``
#: the daemon's own sandbox is Arting's alone unless a test asks for more.
FAST = dict(expected_duration=0.05, poll_min_interval=0.02, poll_max_interval=0.2,
            img2img=True, shutdown_grace=0.0, sandbox_providers=[])


class LiveDaemon:
    def __init__(self, data_dir: Path, sandbox_options: dict | None = None,
                 sandbox_class: type[Sandbox] = Sandbox, clock: Clock = SYSTEM,
                 **settings: Any) -> None:
        self._data_dir = data_dir
        #: The time the daemon and its emulator read (a ``ManualClock`` to move by hand).
        self.clock = clock
        self._sandbox_options = sandbox_options or {}
        self._sandbox_class = sandbox_class
        self._settings = settings
        self._loop: LoopThread | None = None
        self._runner: web.AppRunner | None = None
        self.sandbox: Sandbox
        self.settings: Settings
        self.app: web.Application
        self.url = ""

    # --- life cycle --------------------------------------------------------------------

    def start(self) -> LiveDaemon:
        self._loop = LoopThread("live daemon")
        self.call(self._start())
        return self

    async def _start(self) -> None:
        self.sandbox = self._sandbox_class(clock=self.clock, **self._sandbox_options)
        upstream = await self.sandbox.start()
        self.settings = Settings(**{"data_dir": self._data_dir, "base_url": upstream,
                                    "port": 0, **FAST, **self._settings})
        self.app = create_app(self.settings, clock=self.clock)
        self._runner = web.AppRunner(self.app, handler_cancellation=True, access_log=None,
                                     shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"

    def stop(self) -> None:
        """Everything this started, also when it failed to start."""
        if self._loop is not None:
            self._loop.close(self._stop())

    async def _stop(self) -> None:
        # a clock moved by hand runs while the daemon stops, so what waits on it (a create
        # in the air, a retry's pause) ends as it would, even when a test left it waiting
        pump = asyncio.ensure_future(self._run_clock()) if isinstance(self.clock, ManualClock) \
            else None
        try:
            if self._runner is not None:
                await self._runner.cleanup()
        finally:
            try:
                if hasattr(self, "sandbox"):
                    await self.sandbox.close()
            finally:
                if pump is not None:
                    pump.cancel()

    async def _run_clock(self) -> None:
        assert isinstance(self.clock, ManualClock)
        while True:
            await self.clock.advance(1.0)
            await asyncio.sleep(0.05)

    # --- helpers for tests ----------------------------------------------------------------

    def call(self, coro, timeout: float = 60.0) -> Any:
        """Run a coroutine on the daemon's loop and return its result."""
        assert self._loop is not None, "the daemon was not started"
        return self._loop.call(coro, timeout)

    def advance(self, seconds: float) -> None:
        """Move the daemon's ``ManualClock`` on (waking what was due, in order)."""
        assert isinstance(self.clock, ManualClock)
        self.call(self.clock.advance(seconds))

    def do(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run a plain function on the daemon's loop (e.g. to reconfigure the emulator)."""
        async def run() -> Any:
            return fn(*args, **kwargs)
        return self.call(run())

    def wait_job(self, job_id: str, states: tuple[str, ...] = TERMINAL, timeout: float = 15,
                 headers: dict | None = None) -> dict:
        """Follow a job through the job API until it reaches one of ``states``."""
        deadline = time.monotonic() + timeout
        while True:
            job = httpx.get(f"{self.url}/arting/v1/jobs/{job_id}", headers=headers).json()
            if job["state"] in states:
                return job
            assert time.monotonic() < deadline, f"job still {job['state']}: {job}"
            time.sleep(0.02)

    def run_job(self, headers: dict | None = None, **body: Any) -> dict:
        """Submit a job (prompt "p" unless given) and follow it until it ends."""
        job = httpx.post(f"{self.url}/arting/v1/jobs", json={"prompt": "p", **body},
                         headers=headers).json()
        return self.wait_job(job["id"], headers=headers)

    def uploads(self) -> list[bytes]:
        """The images the daemon uploaded, checked against the sandbox's request log: each
        one asked for a signed URL pair (with its identity) and PUT the PNG (without it),
        and every image-to-image create and upscale read the get URL of one of them."""
        signs = self.sandbox.requests_for("signed_urls")
        puts = self.sandbox.requests_for("oss_put")
        assert len(signs) == len(puts) and puts, (signs, puts)
        assert all(r.body == {"f_suffixs": ["png"]} and r.header("Authorization") for r in signs)
        assert all(r.header("Authorization") is None and r.header("Content-Type") == "image/png"
                   for r in puts)
        got = {f"{self.sandbox.url}/cdn/{r.path.partition('/oss/')[2].partition('?')[0]}"
               for r in puts}
        for create in (self.sandbox.requests_for("i2i_create")
                       + self.sandbox.requests_for("enhance_create")):
            assert create.body["image_url"] in got, create.body["image_url"]
        return [r.body for r in puts]

    @property
    def engine(self):
        return self.app[ENGINE]

    @property
    def v1(self) -> str:
        return self.url + "/v1"


@pytest.fixture
async def sandbox():
    """An emulator on the test's own event loop, for async tests of the upstream side."""
    sb = Sandbox()
    await sb.start()
    yield sb
    await sb.close()


@contextlib.contextmanager
def daemons(directory: Path) -> Iterator[Callable[..., LiveDaemon]]:
    """A factory of daemons, each with its own data directory; all stopped at the end."""
    started: list[LiveDaemon] = []

    def make(sandbox_options: dict | None = None, sandbox_class: type[Sandbox] = Sandbox,
             clock: Clock = SYSTEM, **settings: Any) -> LiveDaemon:
        data = settings.pop("data_dir", directory / f"data{len(started)}")
        daemon = LiveDaemon(data, sandbox_options, sandbox_class, clock, **settings)
        started.append(daemon)
        return daemon.start()

    try:
        yield make
    finally:
        with contextlib.ExitStack() as stack:      # each one stopped, whatever the others do
            for daemon in started:
                stack.callback(daemon.stop)


@pytest.fixture
def make_daemon(tmp_path: Path) -> Iterator[Callable[..., LiveDaemon]]:
    """Start daemons with custom settings: ``make_daemon(api_keys=["k"])``."""
    with daemons(tmp_path) as make:
        yield make


@pytest.fixture(scope="module")
def make_module_daemon(tmp_path_factory) -> Iterator[Callable[..., LiveDaemon]]:
    """The same, for a daemon a whole module shares (a long property-based test)."""
    with daemons(tmp_path_factory.mktemp("module")) as make:
        yield make


@pytest.fixture
def daemon(make_daemon) -> LiveDaemon:
    return make_daemon()


@pytest.fixture
def spy():
    """A web server that counts every request it gets (GET, POST, PUT): no one should
    call it."""
    hits: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            hits.append(self.path)
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.end_headers()
            self.wfile.write(b"\x89PNG\r\n\x1a\n" + b"\0" * 64)
        do_POST = do_PUT = do_GET

        def log_message(self, *args):
            pass
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    server.hits = hits
    server.url = f"http://127.0.0.1:{server.server_address[1]}"
    yield server
    server.shutdown()
    server.server_close()
    thread.join(5)
