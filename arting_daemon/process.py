"""How the daemon's process runs: the event loop under it and its garbage collector.

Both are about CPU. Most of what a job costs the daemon is the event loop's (the HTTP
exchanges with Arting and with the client, bench/RESULTS.md), and uvloop's loop does
that work in C. And the objects each exchange leaves behind made the collector run
every few hundred allocations over everything the daemon holds, finding almost no
garbage: about a fifth of a burst's CPU before it was tuned (round four).
"""

from __future__ import annotations

import asyncio
import gc
import sys
from collections.abc import Callable, Coroutine
from typing import Any

from .config import ConfigError

#: Allocations (less deallocations) between two young-generation collections; Python's
#: default is 700. The older generations keep their ratios.
GC_THRESHOLD = 50_000

LoopFactory = Callable[[], asyncio.AbstractEventLoop]


def loop_factory(choice: str) -> LoopFactory | None:
    """The event loop ``event_loop`` asks for; ``None`` is asyncio's own."""
    if choice == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        if choice == "uvloop":
            raise ConfigError("event_loop is `uvloop` but uvloop is not installed "
                              "(pip install uvloop; not available on Windows).") from None
        return None
    return lambda: uvloop.new_event_loop()   # looked up late: bench/child.py wraps it


def run(main: Coroutine[Any, Any, None], choice: str) -> None:
    """``asyncio.run(main)`` on the event loop ``choice`` (``event_loop``) names."""
    factory = loop_factory(choice)
    if factory is None:
        asyncio.run(main)
    elif sys.version_info >= (3, 11):
        with asyncio.Runner(loop_factory=factory) as runner:
            runner.run(main)
    else:  # pragma: no cover - Python 3.10 has no asyncio.Runner
        import uvloop
        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
        asyncio.run(main)


def settle_gc() -> None:
    """Once the daemon has started: what start-up made (modules, settings, the app)
    lives as long as the process, so the collector stops walking it (``gc.freeze``),
    and the young generation is collected after ``GC_THRESHOLD`` allocations, not 700.
    Garbage that only the collector frees (reference cycles) waits a little longer."""
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(GC_THRESHOLD, older, oldest)


def describe(loop: asyncio.AbstractEventLoop) -> str:
    """``uvloop`` or ``asyncio``, for the start-up log."""
    return "uvloop" if type(loop).__module__.startswith("uvloop") else "asyncio"
