"""``python -m bench.child MODULE ARGS…``: run a module exactly as ``python -m MODULE ARGS…``
would, as a child of the bench.

Two things are added, neither of which changes what the module does:

* On Linux the child is killed when the bench process goes away (``PR_SET_PDEATHSIG``),
  so even a bench killed with ``kill -9`` leaves no daemon or emulator behind.
* With ``BENCH_LAG_FILE`` set, a probe task runs on the module's own event loop: it
  sleeps ``BENCH_LAG_INTERVAL`` seconds (default 0.01) again and again and records how
  late each wake-up is. That lateness is the event-loop lag every request in the
  process sees. The samples are written to the file as JSON when the module exits.

With ``BENCH_PROFILE`` set, the module runs under cProfile and the statistics are
written to that file (``python -m pstats FILE``) when it exits. The profiler's clock is
the main thread's CPU time: what the event loop spends, not the time it sleeps in
``epoll`` (worker threads, such as the store's and the journal's, are not in it).
"""

from __future__ import annotations

import asyncio
import cProfile
import ctypes
import json
import os
import runpy
import signal
import sys
import time

PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    parent = int(os.environ.get("BENCH_PARENT_PID", "0"))
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        except (OSError, AttributeError):
            pass
    if parent and os.getppid() != parent:  # the bench died before prctl took effect
        sys.exit(1)


class LagProbe:
    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.samples: list[tuple[float, float]] = []   # (wall time, lag seconds)

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            before = loop.time()
            await asyncio.sleep(self.interval)
            self.samples.append((time.time(), loop.time() - before - self.interval))


def install_probe(probe: LagProbe) -> None:
    """Start the probe on the first event loop the module creates: asyncio's own (made
    by the policy, as ``asyncio.run`` does) or uvloop's (the daemon's, where installed:
    ``arting_daemon/process.py`` calls ``uvloop.new_event_loop``)."""
    started = False

    def probed(loop: asyncio.AbstractEventLoop) -> asyncio.AbstractEventLoop:
        nonlocal started
        if not started:
            started = True
            loop.call_soon(lambda: loop.create_task(probe.run(), name="bench-lag-probe"))
        return loop

    class Policy(asyncio.DefaultEventLoopPolicy):  # type: ignore[valid-type, misc]
        def new_event_loop(self) -> asyncio.AbstractEventLoop:
            return probed(super().new_event_loop())

    asyncio.set_event_loop_policy(Policy())
    try:
        import uvloop
    except ImportError:
        return
    make = uvloop.new_event_loop
    uvloop.new_event_loop = lambda: probed(make())


def main() -> None:
    if len(sys.argv) < 2:
        raise SystemExit("usage: python -m bench.child MODULE [ARGS...]")
    die_with_parent()
    module, args = sys.argv[1], sys.argv[2:]
    out = os.environ.get("BENCH_LAG_FILE")
    probe = LagProbe(float(os.environ.get("BENCH_LAG_INTERVAL", "0.01"))) if out else None
    if probe is not None:
        install_probe(probe)
    sys.argv = [module, *args]
    profile_file = os.environ.get("BENCH_PROFILE")
    profiler = cProfile.Profile(time.thread_time) if profile_file else None
    try:
        if profiler is not None:
            profiler.enable()
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    finally:
        if profiler is not None and profile_file:
            profiler.disable()
            profiler.dump_stats(profile_file)
        if probe is not None and out:
            with open(out, "w") as fh:
                json.dump(probe.samples, fh)


if __name__ == "__main__":
    main()
