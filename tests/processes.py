"""Real daemon processes, and an Arting emulator that outlives them (on its own loop
thread in the test process, so a test can look into it)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from arting_daemon.sandbox import Sandbox

#: The Arting token the daemon processes are started with.
TOKEN = "3c1d2e4f-5a6b-4c7d-8e9f-a0b1c2d3e4f5"


class Emulator:
    """The Arting emulator on its own loop thread."""

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self.sandbox = Sandbox()
        self.url = self.call(self.sandbox.start())

    def call(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(10)

    def configure(self, **changes) -> None:
        async def run():
            self.sandbox.configure(**changes)
        self.call(run())

    def close(self) -> None:
        self.call(self.sandbox.close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()


class DaemonProcess:
    """``python -m arting_daemon --port 0`` on a data directory, with its log in a file."""

    def __init__(self, data_dir: Path, upstream: str, **env: str) -> None:
        clean = {k: v for k, v in os.environ.items() if not k.startswith(("ARTING_", "API_"))}
        clean.update(ARTING_BASE_URL=upstream, ARTING_AUTH_TOKEN=TOKEN,
                     ARTING_EXPECTED_DURATION="0.05", ARTING_POLL_MIN_INTERVAL="0.05",
                     ARTING_POLL_MAX_INTERVAL="0.2", ARTING_LOG_LEVEL="info", **env)
        self.log = data_dir.parent / f"daemon-{time.monotonic_ns()}.log"
        self._log_file = self.log.open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "arting_daemon", "--port", "0", "--data-dir", str(data_dir)],
            stdout=subprocess.PIPE, stderr=self._log_file, text=True, env=clean,
            cwd=data_dir.parent)
        line = self.proc.stdout.readline()      # "arting-daemon X listening on http://..."
        assert "listening on" in line, (line, self.log.read_text())
        self.url = line.split("listening on ", 1)[1].split()[0]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        self.proc.stdout.close()
        self._log_file.close()
