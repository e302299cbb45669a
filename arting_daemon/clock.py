"""Time as the daemon's parts read it and wait for it: one ``Clock`` they are given.

The runner, the key limits, the token pool, webhooks and the emulator take their "now"
and their pauses from the clock the application was made with, never from ``time`` or
``asyncio.sleep`` directly, so a test of something that happens with time (a backoff, an
expiry, a window) moves a clock of its own forward instead of sleeping
(``tests/clock.py``). This one is the real time: ``time.time``, ``time.monotonic`` and
asyncio's own waits, at no cost beyond the call.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from contextlib import AbstractAsyncContextManager
from typing import TypeVar

from . import tasks

T = TypeVar("T")


class Clock:
    def time(self) -> float:
        """Wall-clock seconds (since the epoch): what is stamped and shown."""
        return time.time()

    def monotonic(self) -> float:
        """Seconds that only go forward: what intervals are measured with."""
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    async def wait_for(self, awaitable: Awaitable[T], timeout: float | None) -> T:
        """``awaitable``'s result, or ``asyncio.TimeoutError`` after ``timeout`` seconds
        (None: no limit), as ``asyncio.wait_for`` (but never losing a cancel: ``tasks.py``)."""
        return await tasks.wait_for(awaitable, timeout)

    def timeout(self, seconds: float | None) -> AbstractAsyncContextManager[object]:
        """A block that is cancelled after ``seconds`` and raises
        ``asyncio.TimeoutError``, as ``asyncio.timeout``."""
        return tasks.timeout(seconds)


#: The real time, for whoever is given no clock.
SYSTEM = Clock()
