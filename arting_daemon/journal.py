"""Job records journaled in SQLite, so jobs and their images survive a restart.

One thread owns the connection. Writes are queued and committed in batches by a
writer task (the last record of a job wins), so a state change costs the event loop
a queue put, not a disk sync; the writer waits ``LINGER`` after the first record of
a batch, so the changes that come within a few milliseconds share one transaction.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    created_at REAL NOT NULL,
    state TEXT NOT NULL,
    idempotency_key TEXT,
    record TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS jobs_created ON jobs (created_at);
CREATE UNIQUE INDEX IF NOT EXISTS jobs_idem ON jobs (idempotency_key)
    WHERE idempotency_key IS NOT NULL;
"""

TERMINAL_STATES = ("succeeded", "failed", "cancelled")
#: Seconds the writer waits after a record arrives, so the handful of changes a job
#: goes through in a few milliseconds are committed together, not one by one.
LINGER = 0.005

log = logging.getLogger(__name__)


class Journal:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="journal")
        self._db: sqlite3.Connection | None = None
        self._queue: asyncio.Queue[dict | None] = asyncio.Queue()
        self._writer: asyncio.Task | None = None

    async def open(self) -> None:
        await self._run(self._connect)
        self._writer = asyncio.create_task(self._write_loop(), name="journal-writer")

    def _connect(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(SCHEMA)

    async def close(self) -> None:
        if self._writer:
            await self._queue.put(None)
            await self._writer
            self._writer = None
        if self._db is not None:
            await self._run(self._db.close)
            self._db = None
        self._pool.shutdown(wait=True)

    def save(self, record: dict[str, Any]) -> None:
        """Queue a job record for writing; returns at once."""
        self._queue.put_nowait(record)

    async def flush(self) -> None:
        """Wait until every queued record is on disk."""
        await self._queue.join()

    async def get(self, job_id: str) -> dict | None:
        await self.flush()
        rows = await self._query("SELECT record FROM jobs WHERE id = ?", (job_id,))
        return rows[0] if rows else None

    async def by_idempotency_key(self, key: str) -> dict | None:
        await self.flush()
        rows = await self._query("SELECT record FROM jobs WHERE idempotency_key = ?", (key,))
        return rows[0] if rows else None

    async def unfinished(self) -> list[dict]:
        marks = ",".join("?" * len(TERMINAL_STATES))
        return await self._query(f"SELECT record FROM jobs WHERE state NOT IN ({marks}) "
                                 "ORDER BY created_at", TERMINAL_STATES)

    async def recent(self, limit: int, before: float | None = None,
                     state: str | None = None) -> list[dict]:
        """Newest first; ``before`` is the created_at of the last record of the previous page."""
        await self.flush()
        sql, args = "SELECT record FROM jobs WHERE 1=1", []
        if before is not None:
            sql += " AND created_at < ?"
            args.append(before)
        if state is not None:
            sql += " AND state = ?"
            args.append(state)
        sql += " ORDER BY created_at DESC LIMIT ?"
        args.append(limit)
        return await self._query(sql, tuple(args))

    # --- internals ----------------------------------------------------------------------

    async def _run(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    async def _query(self, sql: str, args: tuple) -> list[dict]:
        def run() -> list[dict]:
            assert self._db is not None
            return [json.loads(row[0]) for row in self._db.execute(sql, args)]
        return await self._run(run)

    async def _write_loop(self) -> None:
        while True:
            first = await self._queue.get()
            if first is not None:
                await asyncio.sleep(LINGER)     # one transaction for what comes with it
            batch = [first]
            while not self._queue.empty():
                batch.append(self._queue.get_nowait())
            stop = None in batch
            latest = {r["id"]: r for r in batch if r is not None}
            try:
                if latest:
                    await self._run(self._write, list(latest.values()))
            except Exception:  # a full disk must not stop the daemon; say it loudly
                log.exception("could not journal %d job record(s)", len(latest))
            finally:
                for _ in batch:
                    self._queue.task_done()
            if stop:
                return

    def _write(self, records: list[dict]) -> None:
        assert self._db is not None
        rows = [(r["id"], r["created_at"], r["state"], r.get("idempotency_key"),
                 json.dumps(r)) for r in records]
        with self._db:
            self._db.execute("BEGIN")
            self._db.executemany(
                "INSERT INTO jobs (id, created_at, state, idempotency_key, record) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET "
                "state = excluded.state, record = excluded.record", rows)
