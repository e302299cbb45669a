"""Revocation reaches what a key holds open, at once and on every replica.

A key is checked at the door of each request; a WebSocket or an event stream opened
before the key was revoked (or before it expired) would go on without this: pings keep
a socket alive, a stream follows its job for minutes. ``Revocation`` watches the keys —
every change the ring sees (made through this daemon, or read again after the command
line or another replica changed one: replicas hear of it on Redis as it is made) and
each key's ``expires_at`` on the daemon's clock — and when a user key stops working it
ends, on this daemon:

* every connection held under the key (``hold``): its wait for the next message or job
  event is cut short with ``Unauthorized`` saying why. The WebSocket answers with an
  error event and closes with code 4401; an event stream sends its error event and ends.
* every unfinished job of the key that this daemon runs, queued ones too — also one it
  resumes or takes over from a replica that left, later: cancelled (upstream too), its
  error saying why. Nobody can collect what they would make — the
  key can no longer read its jobs nor follow them — so finishing them would spend
  credits for no one, and a leaked key's queue is what a revocation is meant to stop.
  Finished jobs stay the key's, and the operator still sees them.

The operator's keys and the keyless local user hold nothing here: they are settings,
not revoked while the daemon runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterable, AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

from ..clock import Clock
from ..errors import KeyCancelled, Unauthorized
from ..tasks import stop
from .ring import KeyStore

if TYPE_CHECKING:
    from ..auth import Principal
    from ..engine.jobs import Job
    from ..engine.runner import Runner

T = TypeVar("T")
log = logging.getLogger(__name__)

UNKNOWN = "This API key is no longer known to this daemon; ask the operator for a new one."


class Hold:
    """One connection under a key: ended, with the error that says why, once the key
    stops working (never for an operator or the local user: ``key_id`` None)."""

    def __init__(self, key_id: str | None) -> None:
        self.key_id = key_id
        #: What a WebSocket's close frame says (``key revoked``, ``key expired``).
        self.reason = ""
        self._ended: asyncio.Future[Unauthorized] = asyncio.get_running_loop().create_future()

    def end(self, error: Unauthorized, reason: str) -> None:
        if not self._ended.done():
            self.reason = reason
            self._ended.set_result(error)

    async def until(self, source: AsyncIterable[T]) -> AsyncIterator[T]:
        """``source``'s items until the key stops working: then ``Unauthorized``, at
        once, also while waiting for the next item (that wait is cancelled)."""
        if self.key_id is None:
            async for item in source:
                yield item
            return
        items = aiter(source)
        try:
            while not self._ended.done():
                step: asyncio.Future[T] = asyncio.ensure_future(anext(items))
                watched: set[asyncio.Future[Any]] = {step, self._ended}
                try:
                    await asyncio.wait(watched, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    if not step.done():           # ended, or cancelled from outside
                        step.cancel()
                        await asyncio.wait({step})
                if self._ended.done():
                    break
                try:
                    item = step.result()
                except StopAsyncIteration:
                    return
                yield item
            raise self._ended.result()
        finally:
            close = getattr(items, "aclose", None)
            if close is not None:
                await close()


class Revocation:
    """Ends what user keys that stopped working hold on this daemon (see above)."""

    def __init__(self, ring: KeyStore, engine: Runner, clock: Clock) -> None:
        self.ring = ring
        self.engine = engine
        self.clock = clock
        self._holds: dict[str, set[Hold]] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        ring.on_change(self._wake.set)
        engine.on_started.append(self._started)

    async def start(self) -> None:
        """Watch from now on; what the keys revoked while the daemon was down left (jobs
        resumed from the journal) is ended at once."""
        self._task = asyncio.create_task(self._watch(), name="key-revocation")

    async def close(self) -> None:
        await stop(self._task)
        self._task = None

    @contextlib.contextmanager
    def hold(self, who: Principal) -> Iterator[Hold]:
        """A connection of ``who``'s, for as long as the block runs."""
        hold = Hold(who.key.id if who.key is not None else None)
        if hold.key_id is None:
            yield hold
            return
        holds = self._holds.setdefault(hold.key_id, set())
        holds.add(hold)
        if (ended := self._refusal(hold.key_id)) is not None:
            hold.end(*ended)                # revoked between the door and here
        try:
            yield hold
        finally:
            holds.discard(hold)
            if not holds and self._holds.get(hold.key_id) is holds:
                del self._holds[hold.key_id]

    def check(self, hold: Hold) -> None:
        """Raise ``Unauthorized`` (ending the hold) if its key no longer works: what a
        WebSocket does at every message, whatever the watch has seen yet."""
        if hold.key_id is None:
            return
        ended = self._refusal(hold.key_id)
        if ended is not None:
            hold.end(*ended)
            raise ended[0]

    # --- the watch ------------------------------------------------------------------------

    def _started(self, job: Job) -> None:
        """A job of a key that no longer works starts here (taken over from a replica
        that left, or resumed): the watch ends it."""
        if self._refusal(job.owner) is not None:
            self._wake.set()

    def sweep(self) -> float | None:
        """End what each key that stopped working holds here; the seconds until the next
        look (a key expires), None: none is due."""
        now = self.clock.time()
        for key_id in set(self._holds) | self.engine.owners():
            ended = self._refusal(key_id)
            if ended is None:
                continue
            error, reason = ended
            for hold in list(self._holds.get(key_id, ())):
                hold.end(error, reason)
            jobs = self.engine.cancel_owned(key_id, KeyCancelled(f"Cancelled: {error.message}"))
            if jobs:
                log.info("%s (%s): %d unfinished job(s) cancelled", reason, key_id, len(jobs))
        due = [k.expires_at - now for k in self.ring.all()
               if k.revoked_at is None and k.expires_at is not None and k.expires_at > now]
        return min(due, default=None)

    def _refusal(self, key_id: str) -> tuple[Unauthorized, str] | None:
        """Why the user key ``key_id`` no longer works, and the short reason; None while it
        does (or when ``key_id`` is no user key: the operator, the local user)."""
        key = self.ring.get(key_id)
        if key is None:
            return (Unauthorized(UNKNOWN), "key unknown") if key_id in self._holds else None
        why = key.refusal(self.clock.time())
        if why is None:
            return None
        return Unauthorized(why), "key revoked" if key.revoked_at is not None else "key expired"

    async def _watch(self) -> None:
        while True:
            self._wake.clear()
            try:
                delay = self.sweep()
            except Exception:               # a bug: say so, and look again soon
                log.exception("could not end what revoked keys hold")
                delay = 1.0
            with contextlib.suppress(asyncio.TimeoutError):
                await self.clock.wait_for(self._wake.wait(), delay)
