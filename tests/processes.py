"""Real daemon processes, and an Arting emulator that outlives them (on its own loop
thread in the test process, so a test can look into it)."""

from __future__ import annotations

import contextlib
import os
import select
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from threads import LoopThread

from arting_daemon.sandbox import Sandbox

#: The Arting token the daemon processes are started with.
TOKEN = "3c1d2e4f-5a6b-4c7d-8e9f-a0b1c2d3e4f5"


#: Seconds a daemon process may take to say it listens: generous, a loaded machine can
#: take tens of seconds (this bounds a hang, it measures nothing).
START_TIMEOUT = 120.0


class Emulator:
    """An emulator (Arting's unless ``make`` says another) on its own loop thread."""

    def __init__(self, make=Sandbox, **options) -> None:
        self._loop = LoopThread("emulator")
        self.sandbox = make(**options)
        try:
            self.url = self.call(self.sandbox.start())
        except BaseException:
            self.close()
            raise

    def call(self, coro):
        return self._loop.call(coro)

    def configure(self, **changes) -> None:
        self.do(self.sandbox.configure, **changes)

    def do(self, fn, *args, **kwargs):
        """Run a plain function on the emulator's loop (to add a fault, say)."""
        async def run():
            return fn(*args, **kwargs)
        return self.call(run())

    def close(self) -> None:
        self._loop.close(self.sandbox.close())


@contextlib.contextmanager
def emulators(make, **defaults) -> Iterator:
    """A factory of emulators made by ``make`` (with ``defaults`` unless told otherwise),
    each on its own loop thread; all closed at the end."""
    started: list[Emulator] = []

    def start(**options) -> Emulator:
        started.append(Emulator(make, **{**defaults, **options}))
        return started[-1]

    try:
        yield start
    finally:
        for emulator in started:
            emulator.close()


class DaemonProcess:
    """``python -m arting_daemon --port 0`` on a data directory, with its log in a file;
    killed again if it does not say it listens within ``START_TIMEOUT``."""

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
        try:
            line = first_line(self.proc, START_TIMEOUT)  # "arting-daemon X listening on ..."
            assert "listening on" in line, (line, self.log.read_text())
        except BaseException:
            self.stop()
            raise
        self.url = line.split("listening on ", 1)[1].split()[0]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(30)
        self.proc.stdout.close()
        self._log_file.close()


def resumed(data_dir: Path, job_id: str, timeout: float = 20, **env: str) -> dict:
    """Start a daemon process again on ``data_dir`` (no Arting: its upstreams are in
    ``env``) and follow the job ``job_id`` to its end there."""
    import httpx
    daemon = DaemonProcess(data_dir, "http://127.0.0.1:9", **env)
    try:
        deadline = time.monotonic() + timeout
        while (job := httpx.get(f"{daemon.url}/arting/v1/jobs/{job_id}").json())["state"] \
                not in ("succeeded", "failed", "cancelled"):
            assert time.monotonic() < deadline, f"job {job_id} still {job['state']}"
            time.sleep(0.05)
        return job
    finally:
        daemon.stop()


def first_line(proc: subprocess.Popen, timeout: float) -> str:
    """The first line ``proc`` prints, or an assertion error once ``timeout`` has passed
    without one (a plain ``readline`` would wait for ever on a daemon that hangs)."""
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    assert ready, f"no line from {proc.args} within {timeout:.0f} s"
    return proc.stdout.readline()
