"""A cancel is never lost (``tasks.py``): Python 3.11's ``asyncio.wait_for``, which redis-py
sends every command through, drops a cancel that comes just as what it waits for
completes, so a job's cancel (a DELETE, an interrupt, a client going away, a revoked key)
that came as a Redis write ended let the job run on. Here, against a real redis-server
(the fixture of ``test_replicas.py``), a task awaiting a Redis write is cancelled at every
turn of the event loop while the write goes on, many times in a row: each cancelled one
must end cancelled."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import redis.asyncio as redis

from arting_daemon.clock import SYSTEM
from arting_daemon.engine.jobs import JobState
from arting_daemon.generation import Catalog, Rules, build_generation
from arting_daemon.replicas.link import RedisLink
from arting_daemon.state import ARTING, ENGINE
from arting_daemon.tasks import wait_for
from test_replicas import pytestmark, redis_server  # noqa: F401 (fixtures)

ROUNDS = 40
#: Turns of the loop tried per round at most: a write is sent in the first few (what the
#: reply takes after it depends on the machine's load, and is not where a cancel was lost).
TURNS = 50


async def lost_cancels(client: Any, write: Callable[[], Awaitable[object]]
                       ) -> tuple[int, int]:
    """Start ``write`` and cancel it after 0, 1, 2, ... turns of the loop, until it has
    finished before its cancel (or ``TURNS``); ``ROUNDS`` times. (Cancels asked, how many
    of them the task did not end with.)"""
    asked = lost = 0
    for _ in range(ROUNDS):
        for turns in range(TURNS):
            await client.ping()             # connected (a cancelled read drops it)
            task = asyncio.ensure_future(write())
            for _ in range(turns):
                await asyncio.sleep(0)
            if not task.cancel():
                break                       # done before the cancel: every turn was tried
            asked += 1
            await asyncio.wait({task}, timeout=10)
            assert task.done()
            if not task.cancelled():
                task.result()               # no error either
                lost += 1
    return asked, lost


async def test_a_redis_call_cancelled_as_it_completes_ends_cancelled(redis_server):
    link = RedisLink(redis_server.url)
    await link.open()
    bare = redis.from_url(redis_server.url, socket_timeout=5)     # as the link's own
    try:
        async def through_the_link() -> None:
            async with link.call() as r:
                await r.set(link.key("race"), "x")

        asked, lost = await lost_cancels(link.redis, through_the_link)
        assert asked >= ROUNDS and lost == 0

        if sys.version_info < (3, 12):      # the reproduction: redis-py alone loses some
            async def unguarded() -> None:
                await bare.set(link.key("race"), "x")
            assert (await lost_cancels(bare, unguarded))[1] > 0
    finally:
        await bare.aclose()
        await link.close()


async def test_a_wait_cancelled_as_it_completes_ends_cancelled():
    """The waits of the daemon (``tasks.wait_for``, the clock's): a cancel in the very turn
    of the loop the awaited future completes in is raised, never dropped."""
    loop = asyncio.get_running_loop()
    for wait in (wait_for, SYSTEM.wait_for):
        done = loop.create_future()
        task = asyncio.ensure_future(wait(done, 5))
        await asyncio.sleep(0)              # the task waits for ``done``
        done.set_result("finished")
        assert task.cancel()
        await asyncio.wait({task}, timeout=10)
        assert task.cancelled()

    if sys.version_info < (3, 12):          # what asyncio.wait_for did with it
        done = loop.create_future()
        task = asyncio.ensure_future(asyncio.wait_for(done, 5))
        await asyncio.sleep(0)
        done.set_result("finished")
        task.cancel()
        await asyncio.wait({task}, timeout=10)
        assert task.result() == "finished"


def test_a_job_cancelled_as_its_redis_write_completes_ends_cancelled(make_daemon,
                                                                   redis_server):
    """With replicas (Redis), a job takes a place on its token on the board the replicas
    share in Redis as it starts, where its cancel was lost: cancelled after 0, 1, 2, ...
    turns of the loop from that write's start on, until it finished before the cancel, many
    times, every job ends cancelled (none runs on)."""
    daemon = make_daemon(redis_url=redis_server.url, sandbox_options={"generation_time": 60})
    runner = daemon.app[ENGINE]
    pool = daemon.app[ARTING].pool                      # type: ignore[union-attr]
    rules = Rules.of(daemon.settings)
    gen = build_generation(rules, Catalog(rules), prompt="a lighthouse", seed=7)
    writes: list[bool] = []                 # the job's write to Redis: done yet?
    take = pool.board.take

    async def observed(token):              # in the job's task, as before
        writes.append(False)
        try:
            return await take(token)
        finally:
            writes[-1] = True

    pool.board.take = observed

    async def sweep() -> int:
        asked = 0
        for _ in range(ROUNDS):
            for turns in range(TURNS):
                writes.clear()
                submit = asyncio.ensure_future(runner.submit(gen))
                while not writes:           # the job has started its write
                    assert not submit.done(), submit
                    await asyncio.sleep(0)
                [job] = runner.running()
                for _ in range(turns):
                    await asyncio.sleep(0)
                written = writes[0]
                runner.cancel(job)
                asked += 1
                await asyncio.wait({submit}, timeout=10)
                assert submit.result() is job       # answered: the job, cancelled
                assert await runner.wait(job, 10), f"job still {job.state.value}"
                assert job.state is JobState.CANCELLED, (job.state, job.error)
                if written:
                    break                   # every turn of the write was tried
        return asked

    assert daemon.call(sweep(), timeout=600) > ROUNDS
    assert not runner.running()
