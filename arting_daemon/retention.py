"""A bounded image store: past ``store_max_gb`` or ``store_max_images``, the least
recently served images are removed.

The store's index is the journal's ``images`` table: each image's size and when it was
last served (being stored counts). Serving only notes the time in memory
(``ImageStore.touch``); the notes go to the index in one batch every ``FLUSH_EVERY``
seconds and before each trim, never as a disk write per request.

An image that takes the store past a cap starts a trim, which brings it down to
``LOW_WATER`` of the cap (so the next image does not start another): least recently
served first, never an image of an unfinished job (its results, init image and mask:
the runner's ``pinned``), nor one stored within the last ``FRESH`` seconds (an answer
may be being written with it). What may not go yet is passed over; a later trim takes
it when it may.

When the daemon starts, the index is reconciled with the folder (files it lacks are
added as served when written, rows without a file dropped), so a store that was not
bounded can become so, and a crash between two flushes loses nothing that matters.
A job whose images were removed says so in its view (``images_expired``), and the
result cache forgets it when it next meets it (``engine/cache.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from .config import Section
from .engine.jobs import Job
from .engine.journal import Journal
from .store import ImageStore, StoredImage
from .tasks import stop, wait_for

log = logging.getLogger(__name__)

#: A trim goes down to this fraction of each cap.
LOW_WATER = 0.9
#: Seconds an image stored (or stored again) is kept whatever the caps say.
FRESH = 60.0
#: Seconds between two writes of the served times (and two looks at the caps).
FLUSH_EVERY = 30.0
#: Index rows a trim reads at a time, least recently served first.
PAGE = 256
GB = 1_000_000_000


@dataclass(frozen=True)
class StoreLimits(Section):
    store_max_gb: float | None
    store_max_images: int | None

    @property
    def bounded(self) -> bool:
        return self.store_max_gb is not None or self.store_max_images is not None


class Retention:
    def __init__(self, limits: StoreLimits, store: ImageStore, journal: Journal[Job],
                 pinned: Callable[[], set[str]]) -> None:
        self.limits = limits
        self.store = store
        self.journal = journal
        self.pinned = pinned
        #: What the index holds, as of the last flush.
        self._indexed = (0, 0)
        #: Images stored since the last flush: hash → (size, when).
        self._added: dict[str, tuple[int, float]] = {}
        self._added_bytes = 0
        self.removed = 0
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._trimming = asyncio.Lock()

    # --- life cycle -------------------------------------------------------------------

    def start(self) -> None:
        self.store.on_put = self._stored
        self._task = asyncio.create_task(self._loop(), name="store-retention")

    async def close(self) -> None:
        self.store.on_put = None
        await stop(self._task)
        await self._flush()

    # --- what is in the store ---------------------------------------------------------

    @property
    def images(self) -> int:
        return self._indexed[0] + len(self._added)

    @property
    def size(self) -> int:
        return self._indexed[1] + self._added_bytes

    def excess(self, fraction: float = 1.0) -> tuple[int, int]:
        """(images, bytes) above ``fraction`` of each cap (0 where there is no cap)."""
        images = self.images - math.floor(self.limits.store_max_images * fraction) \
            if self.limits.store_max_images is not None else 0
        size = self.size - math.floor(self.limits.store_max_gb * GB * fraction) \
            if self.limits.store_max_gb is not None else 0
        return max(0, images), max(0, size)

    def over(self) -> bool:
        return any(self.excess())

    def _stored(self, image: StoredImage) -> None:
        if not image.new:
            self.store.touch(image.hash)
        elif image.hash not in self._added:
            self._added[image.hash] = (image.size, time.time())
            self._added_bytes += image.size
        if self.over():
            self._wake.set()

    # --- the work -----------------------------------------------------------------------

    async def _loop(self) -> None:
        try:
            await self._reconcile()
        except Exception:   # the index is a cache of the folder: keep serving
            log.exception("store: could not read the image folder into the index")
        while True:
            with contextlib.suppress(asyncio.TimeoutError):
                await wait_for(self._wake.wait(), FLUSH_EVERY)
            self._wake.clear()
            try:
                if self.over():
                    await self.trim()
                else:
                    await self._flush()
            except Exception:
                log.exception("store: trimming failed; trying again in %g s", FLUSH_EVERY)

    async def trim(self) -> list[str]:
        """Remove least recently served images until the store is at ``LOW_WATER`` of
        its caps, or nothing more may go; returns the hashes removed."""
        async with self._trimming:
            return await self._trim()

    async def _trim(self) -> list[str]:
        began = time.time()
        await self._flush()
        if not self.over():
            return []
        keep = self.pinned()
        removed: list[str] = []
        after: tuple[float, str] = (-math.inf, "")
        while any(self.excess(LOW_WATER)):
            rows = await self.journal.rows(
                "SELECT hash, size, served_at FROM images WHERE (served_at, hash) > (?, ?) "
                "ORDER BY served_at, hash LIMIT ?", (*after, PAGE))
            if not rows:
                break
            after = rows[-1][2], rows[-1][0]
            count, size = self.excess(LOW_WATER)
            chosen = []
            for digest, nbytes, _ in rows:
                if count <= 0 and size <= 0:
                    break
                if digest in keep or self.store.served_since(digest, began):
                    continue
                chosen.append(digest)
                count, size = count - 1, size - nbytes
            gone = await asyncio.to_thread(self._remove, chosen)
            await self.journal.call(partial(self._drop, gone=gone))
            removed += gone
        if removed:
            self.removed += len(removed)
            log.info("store: removed %d least recently served image(s); %d images, %.3f GB "
                     "left%s", len(removed), self.images, self.size / GB,
                     " (still over a cap: the rest is in use or new)" if self.over() else "")
        return removed

    async def forget(self, hashes: list[str]) -> None:
        """Drop from the index images removed by others (``expiry.py``)."""
        await self.journal.call(partial(self._drop, gone=hashes))

    def _remove(self, hashes: list[str]) -> list[str]:
        return [digest for digest in hashes if self.store.remove(digest, FRESH)]

    def _drop(self, db: sqlite3.Connection, gone: list[str]) -> None:
        db.executemany("DELETE FROM images WHERE hash = ?", [(h,) for h in gone])
        self._indexed = self._totals(db)

    async def _flush(self) -> None:
        """Write the images stored and the served times noted since the last flush."""
        added, self._added, self._added_bytes = self._added, {}, 0
        served = self.store.take_served()

        def write(db: sqlite3.Connection) -> None:
            db.executemany("INSERT OR IGNORE INTO images (hash, size, served_at) "
                           "VALUES (?, ?, ?)", [(h, n, t) for h, (n, t) in added.items()])
            db.executemany("UPDATE images SET served_at = ? WHERE hash = ? AND served_at < ?",
                           [(t, h, t) for h, t in served.items()])
            self._indexed = self._totals(db)
        await self.journal.call(write)

    async def _reconcile(self) -> None:
        files = await asyncio.to_thread(self.store.scan)

        def sync(db: sqlite3.Connection) -> tuple[int, int]:
            indexed = {h for (h,) in db.execute("SELECT hash FROM images")}
            missing = [(h, n, t) for h, (n, t) in files.items() if h not in indexed]
            gone = [(h,) for h in indexed if h not in files]
            db.executemany("INSERT OR IGNORE INTO images (hash, size, served_at) "
                           "VALUES (?, ?, ?)", missing)
            db.executemany("DELETE FROM images WHERE hash = ?", gone)
            self._indexed = self._totals(db)
            return len(missing), len(gone)
        missing, gone = await self.journal.call(sync)
        if missing or gone:
            log.info("store: index reconciled with the folder (%d image(s) added, %d gone)",
                     missing, gone)
        if self.over():
            self._wake.set()

    @staticmethod
    def _totals(db: sqlite3.Connection) -> tuple[int, int]:
        count, size = db.execute("SELECT count(*), coalesce(sum(size), 0) FROM images"
                                 ).fetchone()
        return int(count), int(size)

    # --- what the operator sees -----------------------------------------------------------

    def view(self) -> dict:
        return {"images": self.images, "bytes": self.size,
                "max_images": self.limits.store_max_images,
                "max_gb": self.limits.store_max_gb, "removed": self.removed}

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        yield GaugeMetricFamily("arting_store_images", "Images in the (bounded) store.",
                                value=self.images)
        yield GaugeMetricFamily("arting_store_bytes", "Bytes in the (bounded) store.",
                                value=self.size)
        yield CounterMetricFamily("arting_store_removed",
                                  "Images removed to keep the store under its caps.",
                                  value=self.removed)
