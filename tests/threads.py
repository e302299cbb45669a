"""Threads the tests start, made so that a test that fails half-way leaves none running.

``LoopThread`` is an asyncio event loop on a thread of its own, for the servers the
tests run in their process (a daemon, the Arting emulator, stand-ins, a webhook
receiver) and drive with synchronous clients; ``close`` always ends the thread, also
when the server's own teardown fails or hangs (it is bounded).

``Background`` runs one blocking call (a client's request that waits on the daemon)
while the test goes on; ``result`` waits for it and hands over its value or error.

Both are daemon threads, so that not even a bug here can keep the interpreter from
exiting; the waits are generous (a loaded machine is slow: they bound a hang, they
measure nothing).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from typing import Any


class LoopThread:
    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self._thread.start()

    def call(self, coro: Coroutine, timeout: float = 60.0) -> Any:
        """Run a coroutine on the loop and return its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self, teardown: Coroutine | None = None, timeout: float = 60.0) -> None:
        """Run ``teardown`` on the loop, then stop the loop, its executor's threads and
        the thread itself, whatever ``teardown`` did."""
        try:
            if teardown is not None:
                if self._thread.is_alive():
                    self.call(teardown, timeout)
                else:
                    teardown.close()
        finally:
            if self._thread.is_alive():
                try:
                    self.call(self.loop.shutdown_default_executor(), timeout)
                finally:
                    self.loop.call_soon_threadsafe(self.loop.stop)
                    self._thread.join(timeout)
            if not self._thread.is_alive():
                self.loop.close()


class Background:
    """``fn(*args, **kwargs)`` on a thread of its own; ``result`` waits for it."""

    def __init__(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        self._value: Any = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(fn, args, kwargs),
                                        name=f"background {fn.__qualname__}", daemon=True)
        self._thread.start()

    def _run(self, fn: Callable[..., Any], args: tuple, kwargs: dict) -> None:
        try:
            self._value = fn(*args, **kwargs)
        except BaseException as exc:    # handed to the test by ``result``
            self._error = exc

    def running(self) -> bool:
        return self._thread.is_alive()

    def wait(self, timeout: float = 60.0) -> None:
        self._thread.join(timeout)

    def result(self, timeout: float = 60.0) -> Any:
        """The call's value, or its exception raised here."""
        self.wait(timeout)
        assert not self.running(), f"{self._thread.name} still running after {timeout} s"
        if self._error is not None:
            raise self._error
        return self._value
