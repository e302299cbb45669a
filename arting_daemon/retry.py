"""Trying again, one way everywhere: how long to wait (``backoff``: exponential, with
jitter), what a server asked for (``retry_after``: seconds or an HTTP-date), and two
loops: ``retrying`` a call until it goes through, and ``poll``\\ing something until it is
done.

Who uses what: Arting's creates, uploads and polls (``providers/arting/provider.py``), the
polls and submits of the providers that follow a task upstream (Midjourney, Stability AI's
creative upscale; their schedule is ``remote.Polling``) and the runner's downloads back
off with full jitter from half a second (``BASE``, ``CAP``);
webhook deliveries (``webhooks.py``) from a second up to ten minutes, spread ±20 % and
kept in their store between attempts; the token pool's probes (``tokens.py``) from
``token_probe_backoff`` up to ``token_probe_max_backoff``, without jitter (each token's
own schedule). The loops wait on the caller's clock (``clock.py``).

(Libraries such as tenacity or stamina run a retry loop in one call; most of ours are
not one: a webhook's schedule outlives the process, a token's is its health, a create's
retries switch tokens and stop at a budget. What is generic is here.)
"""

from __future__ import annotations

import random
import time
from collections.abc import Awaitable, Callable
from email.utils import parsedate_to_datetime
from typing import Literal, TypeVar

from .clock import SYSTEM, Clock

T = TypeVar("T")

BASE, CAP = 0.5, 8.0
#: Our own generator: jitter must not disturb (or depend on) the global ``random``.
_jitter = random.Random()


def backoff(attempt: int, *, first: float = BASE, cap: float = CAP,
            jitter: Literal["full", "spread", "none"] = "full") -> float:
    """Seconds to wait before retry number ``attempt`` (1, 2, ...): ``first`` doubling up to
    ``cap``; with ``full`` jitter anywhere from 0 to that (and 50 ms), with ``spread`` within
    ±20 % of it, with ``none`` just that."""
    step = min(cap, first * 2 ** max(0, attempt - 1))
    if jitter == "full":
        return _jitter.uniform(0, step) + 0.05
    if jitter == "spread":
        return step * _jitter.uniform(0.8, 1.2)
    return step


def retry_after(value: str | None, now: float | None = None) -> float | None:
    """The seconds a ``Retry-After`` header asks for: a number of seconds, or an HTTP-date
    (the seconds from ``now``, the wall-clock time, until then). None when there is none,
    or it cannot be read."""
    if value is None:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:       # an HTTP-date is GMT
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


async def retrying(call: Callable[[], Awaitable[T]], retry_if: Callable[[Exception], bool], *,
                   clock: Clock = SYSTEM, first: float = BASE, cap: float = CAP,
                   tries: int | None = None) -> T:
    """``call()`` until it returns; an error ``retry_if`` accepts is tried again after a
    backoff with full jitter, any other is raised. It stops only by succeeding, failing
    that way, being cancelled (a deadline around it), or after ``tries`` calls (None: no
    bound), raising the last error."""
    attempt = 0
    while True:
        try:
            return await call()
        except Exception as exc:
            attempt += 1
            if not retry_if(exc) or attempt == tries:
                raise
            await clock.sleep(backoff(attempt, first=first, cap=cap))


async def poll(look: Callable[[], Awaitable[T | None]], delay: Callable[[], float],
               failed: Callable[[Exception, int], Awaitable[float]], *,
               clock: Clock = SYSTEM) -> T:
    """Call ``look()`` after ``delay()`` seconds, again and again, until it returns something
    (not None). When it raises, ``failed(exc, failures in a row)`` either raises (give up)
    or returns the seconds to wait before looking again."""
    failures = 0
    wait = delay()
    while True:
        await clock.sleep(wait)
        try:
            found = await look()
        except Exception as exc:
            failures += 1
            wait = await failed(exc, failures)
            continue
        failures = 0
        if found is not None:
            return found
        wait = delay()
