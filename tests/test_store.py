"""The content-addressed image store."""

from __future__ import annotations

import asyncio

from arting_daemon.sandbox.render import Picture, render_png
from arting_daemon.store import ImageStore


async def test_the_same_image_stored_at_once_from_many_jobs(tmp_path):
    # Several jobs can download identical images (same prompt and seed) at the same time.
    png = render_png(Picture(prompt="twins", seed=1, model="m", width=768, height=768))
    for attempt in range(5):
        store = ImageStore(tmp_path / str(attempt))
        results = await asyncio.gather(*(store.put(png) for _ in range(32)),
                                       return_exceptions=True)
        assert all(not isinstance(r, BaseException) for r in results), results
        assert len({r.hash for r in results}) == 1
        files = [p.name for p in store.root.rglob("*") if p.is_file()]
        assert files == [f"{results[0].hash}.png"]
        assert await store.read(results[0].hash) == png
