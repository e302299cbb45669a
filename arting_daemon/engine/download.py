"""The download stage: a job's images, fetched once each into the content-addressed store.

A fault the provider calls retryable is retried (``retry.py``) until the stage's deadline
(the runner's, around this); one that is not ends the job. A mask is applied here, since
upstreams take none: the generated image replaces the init image only where the mask
says (``imaging.py``).
"""

from __future__ import annotations

import asyncio

from ..clock import Clock
from ..errors import ArtingError
from ..imaging import apply_mask
from ..providers.base import Provider
from ..retry import retrying
from ..store import ImageStore
from .jobs import Job, JobImage


async def download(job: Job, provider: Provider, store: ImageStore, clock: Clock) -> None:
    """Fetch every image of ``job.outputs`` into the store, as ``job.images`` (with the
    seed each was made with: the provider's, when it names them, else the generation's)."""
    gen = job.generation
    seeds = provider.seeds(job, job.outputs) or gen.seeds()
    masking = None
    if gen.mask and gen.init_image:
        masking = (await store.read(gen.init_image), await store.read(gen.mask))

    async def one(index: int, output: str) -> JobImage:
        data = await retrying(lambda: provider.fetch(job, output), _retryable, clock=clock)
        if masking:
            data = await asyncio.to_thread(apply_mask, data, *masking)
        stored = await store.put(data)
        job._held.add(stored.hash)
        seed = seeds[index] if index < len(seeds) else seeds[-1] + index
        return JobImage(stored.hash, seed, stored.width, stored.height)

    if len(job.outputs) == 1:     # most jobs: no task of its own for the one image
        job.images = [await one(0, job.outputs[0])]
        return
    results = await asyncio.gather(*(one(i, o) for i, o in enumerate(job.outputs)),
                                   return_exceptions=True)
    job.images = [r for r in results if isinstance(r, JobImage)]
    for r in results:
        if isinstance(r, BaseException):
            raise r


def _retryable(exc: Exception) -> bool:
    return isinstance(exc, ArtingError) and exc.retryable
