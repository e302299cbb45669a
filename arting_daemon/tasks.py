"""Stopping the background tasks services keep (watchers, refreshers, writers) one way."""

from __future__ import annotations

import asyncio


async def stop(*tasks: asyncio.Task | None) -> None:
    """Cancel the tasks and wait until they have ended. What a task ended with is not
    raised here: a service that closes goes on closing the rest."""
    live = [task for task in tasks if task is not None]
    for task in live:
        task.cancel()
    await asyncio.gather(*live, return_exceptions=True)
