"""The retry module: backoff with jitter, Retry-After as servers send it, the two loops."""

from __future__ import annotations

import asyncio
from email.utils import formatdate

import pytest

from arting_daemon.errors import UpstreamUnavailable
from arting_daemon.retry import backoff, poll, retry_after, retrying
from clock import ManualClock


def test_retry_after_reads_seconds_and_http_dates():
    now = 1_800_000_000.0
    assert retry_after("7", now) == 7.0
    assert retry_after(" 2.5 ", now) == 2.5
    assert retry_after("-3", now) == 0.0
    assert retry_after(formatdate(now + 120, usegmt=True), now) == 120.0
    assert retry_after(formatdate(now - 60, usegmt=True), now) == 0.0       # already past
    assert retry_after(None, now) is None
    assert retry_after("soon", now) is None
    assert retry_after("Wed, 21 Oct 2015 07:28:00", now) is None            # no zone: unreadable


def test_backoff_doubles_up_to_its_cap_with_the_jitter_asked_for():
    assert [backoff(n, first=1, cap=8, jitter="none") for n in range(0, 6)] == \
        [1, 1, 2, 4, 8, 8]
    for n in range(1, 8):
        assert 0.05 <= backoff(n) <= min(8.0, 0.5 * 2 ** (n - 1)) + 0.05
        step = min(600.0, 2.0 ** (n - 1))
        assert 0.8 * step <= backoff(n, first=1, cap=600, jitter="spread") <= 1.2 * step


async def test_retrying_tries_again_what_may_pass_and_raises_what_may_not():
    clock, calls = ManualClock(), []

    async def flaky() -> str:
        calls.append(clock.monotonic())
        if len(calls) < 3:
            raise UpstreamUnavailable("not yet")
        return "done"

    task = asyncio.ensure_future(retrying(flaky, lambda e: isinstance(e, UpstreamUnavailable),
                                          clock=clock))
    await clock.advance(0)
    assert len(calls) == 1 and not task.done()
    await clock.advance(20)                    # two backoffs, whatever the jitter drew
    assert await task == "done" and len(calls) == 3
    with pytest.raises(ValueError):
        await retrying(lambda: _raise(ValueError("no")), lambda e: False, clock=clock)


async def test_retrying_gives_up_after_its_tries_raising_the_last_error():
    clock, calls = ManualClock(), []

    async def down() -> str:
        calls.append(clock.monotonic())
        raise UpstreamUnavailable(f"attempt {len(calls)}")

    task = asyncio.ensure_future(retrying(down, lambda e: isinstance(e, UpstreamUnavailable),
                                          clock=clock, tries=3))
    await clock.advance(60)
    with pytest.raises(UpstreamUnavailable, match="attempt 3"):
        await task
    assert len(calls) == 3


async def test_poll_looks_until_it_finds_and_asks_what_to_do_after_a_failure():
    clock, looks, failures = ManualClock(), [], []

    async def look() -> str | None:
        looks.append(clock.monotonic())
        if len(looks) == 2:
            raise UpstreamUnavailable("blip")
        return "found" if len(looks) == 4 else None

    async def failed(exc: Exception, n: int) -> float:
        failures.append(n)
        return 5.0

    task = asyncio.ensure_future(poll(look, lambda: 1.0, failed, clock=clock))
    await clock.advance(8)
    assert await task == "found"
    start = looks[0] - 1.0
    assert [t - start for t in looks] == [1.0, 2.0, 7.0, 8.0] and failures == [1]


async def _raise(exc: Exception) -> None:
    raise exc
