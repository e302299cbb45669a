"""Stopping the background tasks services keep (watchers, refreshers, writers) one way, and
waiting for things so that a cancel is never lost.

Python 3.11's ``asyncio.wait_for`` runs what it waits for in a task of its own; a cancel
that reaches it just as that task finishes is dropped (it returns the result instead:
CPython's bpo-42130, fixed in 3.12 by building it on ``asyncio.timeout``). redis-py
sends every command through it, so a job's cancel, a client going away or a service's
stop that came just as a Redis write ended was silently lost, and the work ran on.
``wait_for`` here waits without a task of its own; ``kept_cancel`` raises, at the end of
a block, a cancel the code it ran (redis-py) swallowed.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Awaitable, Iterator
from typing import TypeVar

if sys.version_info >= (3, 11):
    from asyncio import timeout
else:  # pragma: no cover
    from async_timeout import timeout

T = TypeVar("T")


async def stop(*tasks: asyncio.Task | None) -> None:
    """Cancel the tasks and wait until they have ended. What a task ended with is not
    raised here: a service that closes goes on closing the rest."""
    live = [task for task in tasks if task is not None]
    for task in live:
        task.cancel()
    await asyncio.gather(*live, return_exceptions=True)


async def wait_for(awaitable: Awaitable[T], seconds: float | None) -> T:
    """``awaitable``'s result, or ``asyncio.TimeoutError`` after ``seconds`` (None: no
    limit), as ``asyncio.wait_for`` — but a cancel that comes as it finishes is raised,
    never dropped."""
    async with timeout(seconds):
        return await awaitable


def _cancels() -> int:
    """The cancels the current task was asked and has not withdrawn (0 before 3.11,
    which does not count them)."""
    task = asyncio.current_task()
    return getattr(task, "cancelling", lambda: 0)() if task is not None else 0


@contextlib.contextmanager
def kept_cancel() -> Iterator[None]:
    """Around code that may swallow a cancel (redis-py's calls): if the task was
    cancelled while the block ran and the block still ended — normally, or with another
    error (a reply's) — raise ``CancelledError`` at its end, as the cancel should have
    been (a later block would not see it: it counts from the cancels asked before it)."""
    before = _cancels()
    try:
        yield
    except Exception as exc:
        if _cancels() > before:
            raise asyncio.CancelledError() from exc
        raise
    if _cancels() > before:
        raise asyncio.CancelledError()
