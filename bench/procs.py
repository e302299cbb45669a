"""The processes a benchmark runs: the daemon and the emulator, each its own process.

Every child is started through ``bench.child`` (it dies with the bench) in a scratch
directory (so no ``arting.toml`` of the user's is read), with ``ARTING_*`` variables
from the caller's environment removed: a run depends on nothing but its arguments.
``Child`` is an async context manager; leaving it stops the process (SIGTERM, then
SIGKILL), and an ``atexit`` hook kills whatever is still running.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import json
import os
import re
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp

from arting_daemon.config import env_names

ROOT = Path(__file__).resolve().parent.parent
READY = re.compile(r"listening on (http://\S+)")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100

SCRATCH_PREFIX = "arting-bench-"

_live: set[int] = set()


@atexit.register
def _kill_leftovers() -> None:
    for pid in list(_live):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARTING_")}
    env.pop("API_MASTER_KEY", None)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env["BENCH_PARENT_PID"] = str(os.getpid())
    env.update(extra)
    return env


class Child:
    """One daemon or emulator process; ``url`` is where it listens once started."""

    def __init__(self, name: str, module: str, args: list[str], env: dict[str, str],
                 workdir: Path, lag_probe: bool = False, wrap: bool = True) -> None:
        self.name = name
        self.workdir = workdir
        self.lag_file = workdir / f"{name}.lag.json" if lag_probe else None
        if self.lag_file:
            env = {**env, "BENCH_LAG_FILE": str(self.lag_file)}
        self.argv = ([sys.executable, "-m", "bench.child", module, *args] if wrap
                     else [sys.executable, "-m", module, *args])
        self.env = env
        self.proc: asyncio.subprocess.Process | None = None
        self.url = ""
        self.started_at = 0.0       # perf_counter just before the process was spawned
        self.ready_at = 0.0         # perf_counter when it said it listens
        self._log = workdir / f"{name}.log"
        self._drain: asyncio.Task | None = None

    async def __aenter__(self) -> Child:
        await self.start()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.stop()

    async def start(self, timeout: float = 30.0) -> None:
        self.started_at = time.perf_counter()
        with open(self._log, "wb") as log:
            self.proc = await asyncio.create_subprocess_exec(
                *self.argv, stdout=asyncio.subprocess.PIPE, stderr=log, env=self.env,
                cwd=self.workdir)
        _live.add(self.proc.pid)
        try:
            await asyncio.wait_for(self._wait_ready(), timeout)
        except BaseException:
            await self.stop()
            raise
        self._drain = asyncio.create_task(self._drain_stdout())

    async def _wait_ready(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        while True:
            line = await self.proc.stdout.readline()
            if not line:
                raise RuntimeError(f"{self.name} exited before it listened:\n"
                                   f"{self.log_tail()}")
            match = READY.search(line.decode(errors="replace"))
            if match:
                self.url, self.ready_at = match.group(1), time.perf_counter()
                return

    async def _drain_stdout(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        while await self.proc.stdout.read(65536):
            pass

    async def stop(self, timeout: float = 15.0) -> None:
        proc = self.proc
        if proc is None:
            return
        if proc.returncode is None:
            try:
                proc.send_signal(signal.SIGTERM)
                await asyncio.wait_for(proc.wait(), timeout)
            except asyncio.TimeoutError:
                proc.kill()
                await proc.wait()
            except ProcessLookupError:
                pass
        _live.discard(proc.pid)
        if self._drain is not None:
            self._drain.cancel()
            await asyncio.gather(self._drain, return_exceptions=True)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self._log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    # --- what /proc says about it --------------------------------------------------------

    def _status(self, field: str) -> int:
        """A ``kB`` field of /proc/PID/status, in bytes (0 where /proc is missing)."""
        try:
            for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
        except OSError:
            pass
        return 0

    def rss(self) -> int:
        return self._status("VmRSS")

    def peak_rss(self) -> int:
        """The process's high-water mark of resident memory since it started."""
        return self._status("VmHWM")

    def cpu_seconds(self) -> float:
        """User + system CPU time the process has used so far."""
        try:
            fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
        except (OSError, IndexError, ValueError):
            return 0.0

    def lag_samples(self) -> list[tuple[float, float]]:
        """The lag probe's (wall time, lag) samples; available after ``stop``."""
        if self.lag_file is None or not self.lag_file.exists():
            return []
        return [tuple(s) for s in json.loads(self.lag_file.read_text())]


class Emulator(Child):
    """The emulator with balances off: a bench spends more than an identity's credit
    (a warm daemon's burst alone is more than 1,000 images)."""

    async def start(self, timeout: float = 30.0) -> None:
        await super().start(timeout)
        try:
            async with aiohttp.ClientSession() as http, http.post(
                    self.url + "/__sandbox__/config", json={"balance_start": None}) as resp:
                resp.raise_for_status()
        except BaseException:
            await self.stop()
            raise


def emulator(workdir: Path, generation_time: float = 0.0, name: str = "emulator") -> Child:
    return Emulator(name, "arting_daemon.sandbox",
                    ["--port", "0", "--generation-time", str(generation_time)],
                    clean_env(), workdir)


def seedstyle(workdir: Path, upstream: str, poll_interval: float = 2.0,
              name: str = "seedstyle") -> Child:
    """The stand-in of the seed project (``bench.seedstyle``) in front of ``upstream``."""
    return Child(name, "bench.seedstyle", ["--port", "0", "--upstream", upstream,
                                           "--poll-interval", str(poll_interval)],
                 clean_env(), workdir)


def mode_settings(mode: str) -> dict[str, Any]:
    """Daemon settings a benchmark mode implies: a smoke run has no time to let the
    daemon learn its poll schedule, so it expects jobs to be done almost at once."""
    return {"expected_duration": 0.05} if mode == "smoke" else {}


def daemon(workdir: Path, upstream: str, name: str = "daemon", lag_probe: bool = False,
           **settings: Any) -> Child:
    """The daemon with its upstream at ``upstream``; ``settings`` become ARTING_* vars.
    With ``BENCH_PROFILE_DIR`` set (``--profile``), it runs under cProfile. The result
    cache is off: the benchmarks repeat one seeded request, and measure the job's path,
    not the cache's."""
    data = settings.pop("data_dir", workdir / f"{name}-data")
    env = clean_env(ARTING_BASE_URL=upstream, ARTING_SHUTDOWN_GRACE="0",
                    ARTING_RESULT_CACHE="false",
                    **{env_names(k)[0]: str(v) for k, v in settings.items()})
    if os.environ.get("BENCH_PROFILE_DIR"):
        env["BENCH_PROFILE"] = str(Path(os.environ["BENCH_PROFILE_DIR"]).resolve()
                                   / f"{workdir.name}-{name}.pstats")
    return Child(name, "arting_daemon", ["--port", "0", "--data-dir", str(data)], env,
                 workdir, lag_probe=lag_probe)


@contextlib.contextmanager
def scratch() -> Iterator[Path]:
    """A scratch directory for one bench run (data directories, logs), removed after
    it; the directories of earlier runs that were killed are removed first."""
    for old in Path(tempfile.gettempdir()).glob(f"{SCRATCH_PREFIX}*"):
        pid = old.name.removeprefix(SCRATCH_PREFIX)
        if pid.isdigit() and not _running(int(pid)):
            shutil.rmtree(old, ignore_errors=True)
    path = Path(tempfile.gettempdir()) / f"{SCRATCH_PREFIX}{os.getpid()}"
    path.mkdir()
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
