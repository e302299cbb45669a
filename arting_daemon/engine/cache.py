"""The result cache: a request that names its seed and matches an earlier successful
generation exactly is answered with that generation's images, with no new upstream job.

"Exactly" is every field of the ``Generation`` (prompt, negative prompt, model, size,
steps, guidance, sampler, clip skip, LoRAs and weights, NSFW, seed, n, and the init
image, mask and strength by their hashes), the provider, and the upstream it talks to
(``realm``: the sandbox's images are never served for Arting's). Each owner (API key)
has a cache of its own: one user's results never answer another's request, so no one
learns from a hit what others asked for. Whether a request may be answered from here
is the caller's to say: one with a random seed never is (its ``Generation`` carries the
seed drawn for it, so only the facade knows), nor one that opted out.

The index (key → the job that made the images) lives in the journal's ``results`` table
(``JournalResults``), queued with that job's final record, so both are committed in one
transaction and survive restarts as the jobs do; with replicas, in Redis
(``replicas/results.py``), shared by all. An entry whose images left the store
(``store_max_*``) is forgotten when it is next looked up.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

from ..upscaling import JobRequest
from ..store import ImageStore
from .jobs import Job, JobState
from .journal import Journal


def result_key(realm: str, provider: str, owner: str, generation: JobRequest) -> str:
    """What identifies a generation's images: sha256 over canonical JSON."""
    text = json.dumps([realm, provider, owner, generation.model_dump(mode="json")],
                      sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


class ResultIndex(Protocol):
    """Where the cache keeps which job made a generation's images."""

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def find(self, key: str) -> str | None: ...

    def note(self, key: str, job_id: str) -> None:
        """Record (queued, with the job's final record where the storage allows)."""

    def forget(self, key: str) -> None: ...


class JournalResults:
    """The index in the SQLite journal's ``results`` table."""

    def __init__(self, journal: Journal[Job]) -> None:
        self.journal = journal

    async def open(self) -> None:
        """The journal's table: nothing of its own to open."""

    async def close(self) -> None:
        """Everything is queued in the journal."""

    async def find(self, key: str) -> str | None:
        rows = await self.journal.rows("SELECT job_id FROM results WHERE key = ?", (key,))
        return rows[0][0] if rows else None

    def note(self, key: str, job_id: str) -> None:
        self.journal.put("results", {"key": key, "job_id": job_id, "stored_at": time.time()})

    def forget(self, key: str) -> None:
        self.journal.delete("results", key)


class ResultCache:
    def __init__(self, index: ResultIndex, store: ImageStore, realm: str) -> None:
        self.index = index
        self.store = store
        self.realm = realm

    def key(self, provider: str, owner: str, generation: JobRequest) -> str:
        return result_key(self.realm, provider, owner, generation)

    async def lookup(self, provider: str, owner: str, generation: JobRequest,
                     get: Callable[[str], Awaitable[Job | None]]) -> Job | None:
        """The owner's earlier job that made these images, if it succeeded and every
        image of it is still in the store; ``get`` finds a job by id (the runner's)."""
        key = self.key(provider, owner, generation)
        job_id = await self.index.find(key)
        if job_id is None:
            return None
        job = await get(job_id)
        if job is not None and job.state is JobState.SUCCEEDED and job.images and \
                await asyncio.to_thread(self._all_stored, job):
            return job
        self.index.forget(key)
        return None

    def remember(self, job: Job) -> None:
        """Note a job that succeeded (queued with its final record, see the module)."""
        self.index.note(self.key(job.provider, job.owner, job.generation), job.id)

    async def expire(self, job: Job) -> None:
        """Forget the entry of a job whose record expired, unless a newer job holds it."""
        key = self.key(job.provider, job.owner, job.generation)
        if await self.index.find(key) == job.id:
            self.index.forget(key)

    def _all_stored(self, job: Job) -> bool:
        return all(self.store.exists(image.hash) for image in job.images)
