"""Callers that go away, and who else still waits for their jobs.

An A1111, OpenAI or chat request holds its connection open until its images are ready.
When the client closes it first (a timeout, a Stop button, a closed tab), aiohttp
cancels the handler, and the job it was waiting for has lost its caller. It is
cancelled then — upstream too — unless someone else still follows it on this daemon:
the job API's event stream or WebSocket (the web page among them, or a plugin whose
idempotent retry found the job). A job nobody waits for is credits spent for nothing;
a job somebody watches is theirs as much as the caller's.

Followers are counted per daemon: with replicas, one following on another replica does
not keep the job alive.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Iterator
from typing import Any

from aiohttp import web

from ..engine.jobs import Job, raise_for_job
from ..errors import InvalidRequest
from ..state import ENGINE, FOLLOWERS


class Followers:
    """How many job API followers (event streams, WebSocket subscriptions) each job has."""

    def __init__(self) -> None:
        self._count: Counter[str] = Counter()

    @contextlib.contextmanager
    def following(self, job: Job) -> Iterator[None]:
        self._count[job.id] += 1
        try:
            yield
        finally:
            self._count[job.id] -= 1
            if self._count[job.id] <= 0:
                del self._count[job.id]

    def __contains__(self, job: Job) -> bool:
        return self._count[job.id] > 0


def gone(request: web.Request) -> bool:
    """Whether the client of ``request`` has closed its connection."""
    transport = request.transport
    return transport is None or transport.is_closing()


def abandon(request: web.Request, job: Job) -> None:
    """The caller no longer waits for ``job``: cancel it unless someone follows it (a
    no-op for a job that has ended)."""
    if job not in request.config_dict[FOLLOWERS]:
        request.config_dict[ENGINE].cancel(job)


async def run(request: web.Request, gen: Any, **submit: Any) -> Job:
    """Submit a job and wait for its end, as the request's caller; raises its error unless
    it succeeded. If the caller goes away first, the job is abandoned. With an
    ``Idempotency-Key``, a request sent again (its replica went away) waits for the job
    the first one made, wherever it runs now."""
    engine = request.config_dict[ENGINE]
    key = request.headers.get("Idempotency-Key") or None
    if key is not None and len(key) > 255:
        raise InvalidRequest("Idempotency-Key is longer than 255 characters.")
    job = await engine.submit(gen, idempotency_key=key, **submit)
    try:
        await engine.wait(job)
    except asyncio.CancelledError:
        abandon(request, job)
        raise
    return raise_for_job(await engine.get(job.id) or job)   # another replica's: as it ended
