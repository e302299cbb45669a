"""Job records, so jobs and their images survive a restart: what the runner asks of the
journal (``JobJournal``), and the journal of one daemon, in SQLite (``Journal``); the
replicas' is in Redis (``replicas/jobs.py``). The backend builds one or the other.

One thread owns the connection. Writes are queued and committed in batches by a
writer task (the last record of a job wins), so a state change costs the event loop
a queue put, not a disk sync; the writer waits ``LINGER`` after the first record of
a batch, so the changes that come within a few milliseconds share one transaction.
The services that live with the jobs (the result cache, the image store's index,
webhook deliveries) keep their rows in tables of their own through the same queue
(``put``, ``delete``), so a row queued together with a job's record is committed in
the same transaction: a finished job and what follows from it are on disk together.

The file carries a schema version (SQLite's ``user_version``); opening an older one
runs the migrations in ``MIGRATIONS`` in one transaction. Records are read back
through ``load`` (e.g. ``Job.from_record``): one that no longer describes a job is
moved to the ``quarantine`` table with the reason and skipped, never a failed start.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

from .. import datadir
from ..config import ConfigError

T = TypeVar("T")
R = TypeVar("R")
#: A finished job's outcome as counted: (owner, UTC day, model, state, jobs, images).
Outcome = tuple[str, str, str, str, int, int]
#: A write queued for the writer: (table, key, the row, or None to delete it).
Write = tuple[str, str, "dict[str, Any] | None"]

TABLES = (
    """CREATE TABLE IF NOT EXISTS jobs (
        id TEXT PRIMARY KEY,
        created_at REAL NOT NULL,
        state TEXT NOT NULL,
        idempotency_key TEXT,
        record TEXT NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS jobs_created ON jobs (created_at)",
    """CREATE UNIQUE INDEX IF NOT EXISTS jobs_idem ON jobs (idempotency_key)
        WHERE idempotency_key IS NOT NULL""",
    """CREATE TABLE IF NOT EXISTS quarantine (
        id TEXT NOT NULL,
        record TEXT NOT NULL,
        reason TEXT NOT NULL,
        quarantined_at REAL NOT NULL)""",
)

#: The tables written through ``put`` and ``delete``, with their key column.
ROW_TABLES = {"results": "key", "webhooks": "id"}

TERMINAL_STATES = ("succeeded", "failed", "cancelled")
#: Seconds the writer waits after a record arrives, so the handful of changes a job
#: goes through in a few milliseconds are committed together, not one by one.
LINGER = 0.005

log = logging.getLogger(__name__)
_IMAGE_HASH = re.compile(r"[0-9a-f]{64}")


def mentioned(record: str) -> set[str]:
    """The stored images a job record names (its results, init image, mask, pictures to
    upscale): every sha256 in its text, so no field that names one is missed."""
    return set(_IMAGE_HASH.findall(record))


# --- migrations ---------------------------------------------------------------------------

#: What a migration calls with a record it cannot read: (job id, record text, reason).
SetAside = Callable[[str, str, str], None]


def _provider_state(db: sqlite3.Connection, set_aside: SetAside) -> None:
    """1: records from before providers were Arting's, with its fields at the top level
    (``request_id``, ``token``, ``polls``, ``output_urls``); they move into the job's
    ``provider_state`` and ``outputs``."""
    rows = db.execute("SELECT id, record FROM jobs").fetchall()
    for job_id, text in rows:
        try:
            rec = json.loads(text)
            state = {key: rec.pop(key) for key in ("request_id", "token", "polls")
                     if rec.get(key) is not None}
            rec.setdefault("provider", "arting")
            rec.setdefault("provider_state", state)
            rec.setdefault("outputs", rec.pop("output_urls", None) or [])
        except (ValueError, AttributeError, TypeError) as exc:
            set_aside(job_id, text, f"unreadable before migration 1 ({exc})")
            continue
        db.execute("UPDATE jobs SET record = ? WHERE id = ?", (json.dumps(rec), job_id))


def _owners(db: sqlite3.Connection, set_aside: SetAside) -> None:
    """2: jobs have owners (who may see them, whose quota they count against): the owner
    and the finish time become columns (computed from the record) with indexes, and
    idempotency keys are kept within their owner's (``owner:key``); older jobs are the
    local user's."""
    db.execute("ALTER TABLE jobs ADD COLUMN owner TEXT GENERATED ALWAYS AS "
               "(coalesce(json_extract(record, '$.owner'), 'local')) VIRTUAL")
    db.execute("ALTER TABLE jobs ADD COLUMN finished_at REAL GENERATED ALWAYS AS "
               "(json_extract(record, '$.finished_at')) VIRTUAL")
    db.execute("CREATE INDEX jobs_owner ON jobs (owner, created_at)")
    db.execute("CREATE INDEX jobs_finished ON jobs (finished_at)")
    db.execute("UPDATE jobs SET idempotency_key = 'local:' || idempotency_key, "
               "record = json_set(record, '$.idempotency_key', 'local:' || idempotency_key) "
               "WHERE idempotency_key IS NOT NULL")


def _results_store_webhooks(db: sqlite3.Connection, set_aside: SetAside) -> None:
    """3: the result cache (``engine/cache.py``: a generation's key → the job that made
    its images), the image store's index (``retention.py``: size and when last served,
    kept while the store is bounded) and webhook deliveries (``webhooks.py``)."""
    db.execute("CREATE TABLE results (key TEXT PRIMARY KEY, job_id TEXT NOT NULL, "
               "stored_at REAL NOT NULL)")
    db.execute("CREATE TABLE images (hash TEXT PRIMARY KEY, size INTEGER NOT NULL, "
               "served_at REAL NOT NULL)")
    db.execute("CREATE INDEX images_served ON images (served_at, hash)")
    db.execute("CREATE TABLE webhooks (id TEXT PRIMARY KEY, job_id TEXT NOT NULL, "
               "url TEXT NOT NULL, body TEXT NOT NULL, created_at REAL NOT NULL, "
               "next_at REAL NOT NULL, attempts INTEGER NOT NULL, state TEXT NOT NULL, "
               "last_status INTEGER, last_error TEXT, done_at REAL)")
    db.execute("CREATE INDEX webhooks_state ON webhooks (state)")


#: ``MIGRATIONS[v]`` takes a journal from schema version ``v`` to ``v + 1``. Version 0 is
#: the schema from before versioning.
MIGRATIONS: list[Callable[[sqlite3.Connection, SetAside], None]] = [
    _provider_state,
    _owners,
    _results_store_webhooks,
]
VERSION = len(MIGRATIONS)


class JobJournal(Protocol[T]):
    """Where job records are kept: written behind (``save`` returns at once), read back
    through the loader the journal was made with (``Job.from_record``); and what replicas
    share of jobs (leases, cancel requests, idempotency keys, hand-over), which one daemon
    answers for itself."""

    #: Records that no longer describe a job, skipped: (job id, why).
    quarantined: list[tuple[str, str]]

    def save(self, record: dict[str, Any]) -> None: ...

    async def flush(self) -> None:
        """Until what was saved is written."""

    async def written(self) -> None:
        """Until the records saved so far are where every reader finds them: what a
        submit waits for before it is answered (with replicas, the next request may
        reach another one)."""

    async def get(self, job_id: str) -> T | None: ...

    async def by_idempotency_key(self, key: str) -> T | None: ...

    async def unfinished(self) -> list[T]:
        """The unfinished jobs to resume (with replicas: those no replica holds)."""

    async def recent(self, limit: int, before: float | None = None,
                     state: str | None = None, owner: str | None = None) -> list[T]: ...

    async def last_upstream(self, state: str) -> T | None: ...

    async def outcomes(self, since: float, owner: str | None = None) -> list[Outcome]:
        """Finished jobs since ``since``: (owner, UTC day, model, state, jobs, images)."""

    async def expire(self, before: float) -> list[T]:
        """Remove the records of the jobs that finished before ``before``; returns them."""

    async def references(self) -> set[str]:
        """Every stored image a job record names (``mentioned``)."""

    def attach(self, *, adopt: Callable[[T], Awaitable[bool]], cancel: Callable[[str], None],
               drop: Callable[[str], None]) -> None:
        """The runner's callbacks for jobs other replicas leave, cancel or take."""

    async def claim_key(self, key: str, job_id: str) -> str:
        """The job holding an idempotency key (``job_id`` if none did)."""

    async def cancel_requested(self, job_id: str) -> bool: ...

    async def request_cancel(self, job_id: str) -> None: ...

    async def handover(self) -> None:
        """Leave the unfinished jobs to the other replicas (or the next start)."""

    def watch(self, job_id: str) -> AbstractAsyncContextManager[asyncio.Event]:
        """An event set when another replica changes the job."""


class Journal(Generic[T]):
    def __init__(self, path: Path, load: Callable[[dict[str, Any]], T]) -> None:
        self.path = path
        self._load = load
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="journal")
        self._db: sqlite3.Connection | None = None
        #: (table, key, row or None to delete); None stops the writer.
        self._queue: asyncio.Queue[Write | None] = asyncio.Queue()
        self._writer: asyncio.Task[None] | None = None
        #: Records skipped because they no longer describe a job (moved to quarantine).
        self.quarantined: list[tuple[str, str]] = []

    async def open(self) -> None:
        try:
            await self._run(self._connect)
        except BaseException:
            await self.close()
            raise
        self._writer = asyncio.create_task(self._write_loop(), name="journal-writer")

    def _connect(self) -> None:
        datadir.touch(self.path)
        self._db = db = sqlite3.connect(self.path, check_same_thread=False,
                                        isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version > VERSION:
            raise ConfigError(f"{self.path} was written by a newer arting-2api (journal schema "
                              f"{version}, this one knows {VERSION}); upgrade, or give this "
                              "daemon another `data_dir`.")
        fresh = db.execute("SELECT count(*) FROM sqlite_master WHERE name = 'jobs'"
                           ).fetchone()[0] == 0
        with db:      # a new journal is made the way an old one is migrated
            db.execute("BEGIN IMMEDIATE")
            for statement in TABLES:
                db.execute(statement)
            for step in range(version, VERSION):
                MIGRATIONS[step](db, self._set_aside)
                if not fresh:
                    log.info("journal %s migrated to schema %d", self.path.name, step + 1)
            db.execute(f"PRAGMA user_version = {VERSION}")

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
        self._queue.put_nowait(("jobs", record["id"], record))

    def put(self, table: str, row: dict[str, Any]) -> None:
        """Queue a row of one of the ``ROW_TABLES`` for writing (it replaces the row with
        the same key); returns at once."""
        self._queue.put_nowait((table, str(row[ROW_TABLES[table]]), row))

    def delete(self, table: str, key: str) -> None:
        """Queue the removal of a row of one of the ``ROW_TABLES``; returns at once."""
        if table not in ROW_TABLES:
            raise KeyError(table)
        self._queue.put_nowait((table, key, None))

    async def rows(self, sql: str, args: tuple[object, ...] = ()) -> list[tuple[Any, ...]]:
        """The rows of a query, once everything queued before it is on disk."""
        return await self.call(lambda db: db.execute(sql, args).fetchall())

    async def call(self, work: Callable[[sqlite3.Connection], R]) -> R:
        """``work(connection)`` in the journal's thread, in one transaction, once
        everything queued before it is on disk."""
        await self.flush()

        def run() -> R:
            assert self._db is not None
            with self._db:
                self._db.execute("BEGIN")
                return work(self._db)
        return await self._run(run)

    async def flush(self) -> None:
        """Wait until every queued record is on disk."""
        await self._queue.join()

    async def written(self) -> None:
        """One daemon answers its own jobs from memory: nothing to wait for."""

    async def get(self, job_id: str) -> T | None:
        await self.flush()
        found = await self._query("SELECT id, record FROM jobs WHERE id = ?", (job_id,))
        return found[0] if found else None

    async def by_idempotency_key(self, key: str) -> T | None:
        await self.flush()
        found = await self._query("SELECT id, record FROM jobs WHERE idempotency_key = ?",
                                  (key,))
        return found[0] if found else None

    async def unfinished(self) -> list[T]:
        marks = ",".join("?" * len(TERMINAL_STATES))
        return await self._query(f"SELECT id, record FROM jobs WHERE state NOT IN ({marks}) "
                                 "ORDER BY created_at", TERMINAL_STATES)

    async def recent(self, limit: int, before: float | None = None,
                     state: str | None = None, owner: str | None = None) -> list[T]:
        """Newest first; ``before`` is the created_at of the last record of the previous page."""
        await self.flush()
        sql, args = "SELECT id, record FROM jobs WHERE 1=1", list[object]()
        if before is not None:
            sql += " AND created_at < ?"
            args.append(before)
        if state is not None:
            sql += " AND state = ?"
            args.append(state)
        if owner is not None:
            sql += " AND owner = ?"
            args.append(owner)
        sql += " ORDER BY created_at DESC LIMIT ?"
        args.append(limit)
        return await self._query(sql, tuple(args))

    async def last_upstream(self, state: str) -> T | None:
        """The newest job in ``state`` that was not answered from the result cache."""
        await self.flush()
        found = await self._query(
            "SELECT id, record FROM jobs WHERE state = ? AND "
            "json_extract(record, '$.cache') IS NOT 'hit' ORDER BY created_at DESC LIMIT 1",
            (state,))
        return found[0] if found else None

    async def outcomes(self, since: float, owner: str | None = None) -> list[Outcome]:
        """Finished jobs since ``since``: (owner, UTC day, model, state, jobs, images) rows.
        Each job's outcome is here once, so usage counted from it is counted once; a
        result cache hit made no image, so its images are not counted."""
        await self.flush()
        sql = ("SELECT owner, date(finished_at, 'unixepoch'), "
               "json_extract(record, '$.generation.model'), state, count(*), "
               "sum(CASE WHEN json_extract(record, '$.cache') = 'hit' THEN 0 "
               "ELSE json_array_length(record, '$.images') END) FROM jobs "
               "WHERE finished_at >= ? AND state IN ('succeeded', 'failed', 'cancelled')")
        args: list[object] = [since]
        if owner is not None:
            sql += " AND owner = ?"
            args.append(owner)
        sql += " GROUP BY 1, 2, 3, 4"

        def run() -> list[Outcome]:
            assert self._db is not None
            return self._db.execute(sql, args).fetchall()
        return await self._run(run)

    async def expire(self, before: float) -> list[T]:
        """Remove the records of the jobs that finished before ``before`` (``job_retention``);
        returns them."""
        await self.flush()
        marks = ",".join("?" * len(TERMINAL_STATES))

        def run() -> list[T]:
            assert self._db is not None
            rows = self._db.execute(f"SELECT id, record FROM jobs WHERE finished_at < ? AND "
                                    f"state IN ({marks})", (before, *TERMINAL_STATES)
                                    ).fetchall()
            jobs = self._loaded(rows)
            with self._db:
                self._db.execute("BEGIN")
                self._db.executemany("DELETE FROM jobs WHERE id = ?",
                                     [(job_id,) for job_id, _ in rows])
            return jobs
        return await self._run(run)

    async def references(self) -> set[str]:
        await self.flush()

        def run() -> set[str]:
            assert self._db is not None
            found: set[str] = set()
            for (text,) in self._db.execute("SELECT record FROM jobs"):
                found |= mentioned(text)
            return found
        return await self._run(run)

    # --- what replicas share (one daemon: nothing to share) ------------------------------

    def attach(self, *, adopt: Callable[[T], Awaitable[bool]], cancel: Callable[[str], None],
               drop: Callable[[str], None]) -> None:
        """The runner's callbacks for jobs other replicas leave, cancel or take: with one
        daemon there are none."""

    async def claim_key(self, key: str, job_id: str) -> str:
        """The job holding an idempotency key: this one (the runner has checked its own)."""
        return job_id

    async def cancel_requested(self, job_id: str) -> bool:
        return False

    async def request_cancel(self, job_id: str) -> None:
        """Ask the replica running a job to cancel it: every job runs here."""

    async def handover(self) -> None:
        """Leave unfinished jobs to the other replicas: they wait for the next start."""

    @asynccontextmanager
    async def watch(self, job_id: str) -> AsyncIterator[asyncio.Event]:
        """An event set when another replica changes the job: none does."""
        yield asyncio.Event()

    # --- internals ----------------------------------------------------------------------

    async def _run(self, fn: Callable[..., R], *args: object) -> R:
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    async def _query(self, sql: str, args: tuple[object, ...]) -> list[T]:
        def run() -> list[T]:
            assert self._db is not None
            return self._loaded(self._db.execute(sql, args).fetchall())
        return await self._run(run)

    def _loaded(self, rows: list[tuple[str, str]]) -> list[T]:
        """The rows through ``load``; one that fails is quarantined (in this thread)."""
        out = []
        for job_id, text in rows:
            try:
                out.append(self._load(json.loads(text)))
            except (ValueError, KeyError, TypeError, AttributeError) as exc:
                assert self._db is not None
                with self._db:
                    self._db.execute("BEGIN")
                    self._set_aside(job_id, text, f"{type(exc).__name__}: "
                                                  f"{str(exc).splitlines()[0][:200]}")
        return out

    def _set_aside(self, job_id: str, text: str, reason: str) -> None:
        """Move a record that no longer describes a job to the quarantine table (inside
        the caller's transaction), and say so."""
        assert self._db is not None
        self._db.execute("INSERT INTO quarantine (id, record, reason, quarantined_at) "
                         "VALUES (?, ?, ?, ?)", (job_id, text, reason, time.time()))
        self._db.execute("DELETE FROM jobs WHERE id = ?", (job_id,))
        self.quarantined.append((job_id, reason))
        log.warning("journal: the record of job %s does not describe a job (%s); moved to "
                    "the quarantine table and skipped", job_id, reason)

    async def _write_loop(self) -> None:
        while True:
            first = await self._queue.get()
            if first is not None:
                await asyncio.sleep(LINGER)     # one transaction for what comes with it
            batch = [first]
            while not self._queue.empty():
                batch.append(self._queue.get_nowait())
            stop = None in batch
            latest = {(w[0], w[1]): w for w in batch if w is not None}
            try:
                if latest:
                    await self._run(self._write, list(latest.values()))
            except Exception:  # a full disk must not stop the daemon; say it loudly
                log.exception("could not journal %d record(s)", len(latest))
            finally:
                for _ in batch:
                    self._queue.task_done()
            if stop:
                return

    def _write(self, writes: list[Write]) -> None:
        assert self._db is not None
        jobs = [(r["id"], r["created_at"], r["state"], r.get("idempotency_key"),
                 json.dumps(r)) for table, _, r in writes if table == "jobs" and r]
        with self._db:
            self._db.execute("BEGIN")
            self._db.executemany(
                "INSERT INTO jobs (id, created_at, state, idempotency_key, record) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET "
                "state = excluded.state, record = excluded.record", jobs)
            for table, key, row in writes:
                if table == "jobs":
                    continue
                if row is None:
                    self._db.execute(f"DELETE FROM {table} WHERE {ROW_TABLES[table]} = ?",
                                     (key,))
                else:
                    columns = ", ".join(row)
                    marks = ", ".join("?" * len(row))
                    self._db.execute(f"INSERT OR REPLACE INTO {table} ({columns}) "
                                     f"VALUES ({marks})", tuple(row.values()))
