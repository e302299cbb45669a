"""A clock that moves only when a test says so, for the tests of what time does.

A daemon (or an emulator) made with a ``ManualClock`` reads its "now" from it and waits on
it; ``advance`` moves it forward, waking what was due in order, each one with the clock
at its own due time. It starts at the real time, so its stamps look like any other; a
test that names a moment for the daemon (a key's expiry) reads it from the clock
(``clock.time() + 1.5``).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from typing import TypeVar

from arting_daemon.clock import Clock

T = TypeVar("T")

#: Turns of the event loop given to what a wake-up set going (tasks woken, their
#: callbacks) before the clock moves on.
SETTLE = 20
#: A sleeper due within this much of where the clock stops is woken: a due time made as
#: ``until - now`` from large monotonic readings is off by a few ulps either way.
EPSILON = 1e-6


class ManualClock(Clock):
    def __init__(self) -> None:
        self._wall, self._mono = time.time(), time.monotonic()
        self._elapsed = 0.0
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    def time(self) -> float:
        return self._wall + self._elapsed

    def monotonic(self) -> float:
        return self._mono + self._elapsed

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        due = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self._elapsed + seconds, next(self._order), due))
        await due

    async def wait_for(self, awaitable: Awaitable[T], timeout: float | None) -> T:
        if timeout is None:
            return await awaitable
        work = asyncio.ensure_future(awaitable)
        pause = asyncio.ensure_future(self.sleep(timeout))
        try:
            await asyncio.wait({work, pause}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            pause.cancel()
            if not work.done():     # as asyncio.wait_for: it has ended when this returns
                work.cancel()
                await asyncio.wait({work})
        if not work.cancelled():
            return work.result()
        raise asyncio.TimeoutError

    @asynccontextmanager
    async def timeout(self, seconds: float | None) -> AsyncIterator[None]:
        if seconds is None:
            yield
            return
        task = asyncio.current_task()
        assert task is not None
        fired = False

        async def expire() -> None:
            nonlocal fired
            await self.sleep(seconds)
            fired = True
            task.cancel()

        watch = asyncio.ensure_future(expire())
        try:
            yield
        except asyncio.CancelledError:
            if fired:
                task.uncancel()
                raise asyncio.TimeoutError from None
            raise
        finally:
            watch.cancel()

    @property
    def waiting(self) -> int:
        """How many sleepers wait for the clock (those not cancelled)."""
        return sum(1 for _, _, due in self._sleepers if not due.done())

    async def advance(self, seconds: float) -> None:
        """Move the clock ``seconds`` forward, waking each sleeper due by then in order,
        with the clock at its due time, and letting what it sets going run."""
        await _settle()                 # what was just set going gets to wait first
        end = self._elapsed + seconds
        while self._sleepers and self._sleepers[0][0] <= end + EPSILON:
            due_at, _, due = heapq.heappop(self._sleepers)
            self._elapsed = max(self._elapsed, due_at)
            if not due.done():
                due.set_result(None)
                await _settle()
        self._elapsed = end
        await _settle()


async def _settle() -> None:
    for _ in range(SETTLE):
        await asyncio.sleep(0)
