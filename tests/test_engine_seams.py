"""The engine's seams: the runner with a provider that is not Arting, the slot queue, the
journal's migrations and quarantine, and what a failed start leaves behind."""

from __future__ import annotations

import ast
import asyncio
import io
import json
import logging
import sqlite3
import time
from pathlib import Path

import httpx
import pytest
from PIL import Image

from arting_daemon.__main__ import serve
from arting_daemon.config import Settings
from arting_daemon.engine import journal as journal_module
from arting_daemon.engine.jobs import Job, JobState
from arting_daemon.engine.journal import Journal
from arting_daemon.engine.queue import SlotQueue
from arting_daemon.engine.runner import Runner, RunnerSettings
from arting_daemon.errors import FeatureDisabled, Unavailable
from arting_daemon.generation import Catalog, Rules, build_generation
from arting_daemon.metrics import Metrics
from arting_daemon.providers.base import Attempt, OnProgress, Provider, Work
from arting_daemon.store import ImageStore, png_size
from arting_daemon.timing import DurationStats, Timing

PACKAGE = Path(__file__).resolve().parent.parent / "arting_daemon"


# --- the runner knows no Arting ---------------------------------------------------------

def imports_of(path: Path) -> set[str]:
    """The arting_daemon modules a file imports (relative imports resolved)."""
    module = "arting_daemon." + ".".join(path.relative_to(PACKAGE).with_suffix("").parts)
    package = module.rsplit(".", 1)[0] if path.name != "__init__.py" else module
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {m for m in found if m.startswith("arting_daemon")}


def module_file(name: str) -> Path | None:
    parts = name.split(".")[1:]
    if not parts:
        return PACKAGE / "__init__.py"
    rel = Path(*parts)
    for candidate in (PACKAGE / rel.with_suffix(".py"), PACKAGE / rel / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def test_the_runner_imports_nothing_from_the_arting_provider():
    """Not directly, nor through anything it imports."""
    engine_files = sorted((PACKAGE / "engine").glob("*.py"))
    assert {f.name for f in engine_files} >= {"runner.py", "queue.py", "jobs.py", "journal.py"}
    seen: set[Path] = set()
    todo = list(engine_files)
    reached: set[str] = set()
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for name in imports_of(path):
            reached.add(name)
            target = module_file(name)
            if target is not None:
                todo.append(target)
    assert "arting_daemon.providers.base" in reached
    arting = sorted(n for n in reached if n.startswith(("arting_daemon.providers.arting",
                                                        "arting_daemon.sandbox")))
    assert arting == []


# --- a provider that is not Arting -------------------------------------------------------

class Painter(Provider):
    """Paints a plain PNG of the requested size: a provider written for this test."""

    name, label = "painter", "Painter"

    def __init__(self) -> None:
        self.submits: list[str] = []
        self.follows: list[str] = []
        self.cancelled: list[str] = []
        self.finish = asyncio.Event()

    def require(self, feature: str) -> None:
        raise FeatureDisabled(f"The painter does no {feature}.")

    def submitted(self, work: Work) -> bool:
        return "ticket" in work.provider_state

    def attempt(self, work: Work, deadline: float) -> Attempt:
        return PainterAttempt(self, work)

    async def fetch(self, work: Work, output: str) -> bytes:
        width, height = map(int, output.removeprefix("paint://").split("/")[0].split("x"))
        buf = io.BytesIO()
        Image.new("RGB", (width, height), "teal").save(buf, "PNG")
        return buf.getvalue()

    async def cancel(self, work: Work) -> None:
        self.cancelled.append(work.provider_state["ticket"])


class PainterAttempt(Attempt):
    def __init__(self, painter: Painter, work: Work) -> None:
        self.painter, self.work = painter, work

    async def submit(self) -> float:
        self.work.provider_state["ticket"] = f"t-{self.work.id[:8]}"
        self.painter.submits.append(self.work.id)
        return time.time()

    async def follow(self, progress: OnProgress) -> list[str]:
        self.painter.follows.append(self.work.id)
        progress(0.5)
        await self.painter.finish.wait()
        g = self.work.generation
        return [f"paint://{g.width}x{g.height}/{i}" for i in range(g.n)]


def make_runner(data: Path, provider: Provider) -> tuple[Runner, Journal]:
    settings = Settings(data_dir=data)
    journal = Journal(data / "jobs.sqlite3", Job.from_record)
    runner = Runner(RunnerSettings.of(settings), provider, ImageStore(data), journal,
                    DurationStats(Timing.of(settings)), Metrics())
    return runner, journal


def generation(**kw):
    rules = Rules.of(Settings())
    return build_generation(rules, Catalog(rules), **{"prompt": "a teal square", **kw})


async def until(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "never happened"
        await asyncio.sleep(0.01)


async def test_a_provider_that_is_not_arting_runs_jobs_through_the_runner(tmp_path):
    painter = Painter()
    runner, journal = make_runner(tmp_path, painter)
    await journal.open()
    await runner.start()
    try:
        job = await runner.submit(generation(size="512x768", n=2))
        await until(lambda: job.reported_progress == 0.5)
        assert job.state is JobState.RUNNING and runner.progress(job)[0] == pytest.approx(0.5)
        painter.finish.set()
        assert await runner.wait(job, timeout=10)
        assert job.state is JobState.SUCCEEDED, job.error
        assert [(i.width, i.height) for i in job.images] == [(512, 768)] * 2
        stored = ImageStore(tmp_path).path(job.images[0].hash).read_bytes()
        assert png_size(stored) == (512, 768)
        record = (await journal.get(job.id)).record()
        assert record["provider"] == "painter"
        assert record["provider_state"] == {"ticket": f"t-{job.id[:8]}"}

        painter.finish.clear()
        doomed = await runner.submit(generation())
        await until(lambda: doomed.state is JobState.RUNNING)
        runner.cancel(doomed)
        await runner.wait(doomed, timeout=5)
        assert doomed.state is JobState.CANCELLED
        assert painter.cancelled == [f"t-{doomed.id[:8]}"]     # the upstream was told

        with pytest.raises(FeatureDisabled):
            await runner.submit(generation(init_image="0" * 64))
    finally:
        await runner.close()
        await journal.close()


async def test_after_a_restart_the_provider_follows_its_job_from_its_state(tmp_path):
    first = Painter()
    runner, journal = make_runner(tmp_path, first)
    await journal.open()
    await runner.start()
    job = await runner.submit(generation())
    await until(lambda: job.state is JobState.RUNNING)
    await runner.close()                    # a shutdown: the job stays journaled, running
    await journal.close()

    second = Painter()
    second.finish.set()
    runner, journal = make_runner(tmp_path, second)
    await journal.open()
    await runner.start()
    try:
        resumed = await runner.get(job.id)
        assert await runner.wait(resumed, timeout=10)
        assert resumed.state is JobState.SUCCEEDED
        assert (first.submits, second.submits, second.follows) == ([job.id], [], [job.id])
    finally:
        await runner.close()
        await journal.close()


async def test_callers_waiting_when_the_daemon_stops_are_answered_unavailable(tmp_path):
    """A shutdown leaves a running job journaled (the next start resumes it); whoever
    waits for it — ``run``, ``wait`` — is answered at once: Unavailable, to try again,
    and never a hang or a job that looks finished."""
    runner, journal = make_runner(tmp_path, Painter())
    await journal.open()
    await runner.start()
    try:
        running = asyncio.ensure_future(runner.run(generation()))
        await until(lambda: any(j.state is JobState.RUNNING for j in runner.active))
        job = next(iter(runner.active))
        waiting = asyncio.ensure_future(runner.wait(job))
        await runner.close()
        for caller in (running, waiting):      # a hang fails here, after 10 s
            with pytest.raises(Unavailable, match="shutting down"):
                await asyncio.wait_for(caller, 10)
        assert job.state is JobState.RUNNING
    finally:
        await journal.close()


# --- the slot queue ----------------------------------------------------------------------

async def test_the_queue_hands_slots_over_in_order_and_keeps_positions():
    queue = SlotQueue(slots=1, max_waiting=3)
    running = queue.reserve()
    waiting = [queue.reserve() for _ in range(3)]
    assert running.holds_slot and queue.full
    assert [queue.position(p) for p in waiting] == [1, 2, 3]

    queue.release(waiting[1])                       # one leaves from the middle
    assert [queue.position(p) for p in (waiting[0], waiting[2])] == [1, 2]
    assert queue.waiting == 2 and not queue.full

    queue.release(running)                          # the first in line gets the slot ...
    await queue.wait(waiting[0])
    assert queue.position(waiting[0]) is None and queue.position(waiting[2]) == 1
    assert not waiting[2].turn.done()               # ... and nobody else is woken
    queue.release(running)                          # a second release is a no-op
    assert queue.waiting == 1 and not waiting[2].turn.done()

    queue.release(waiting[0])
    await queue.wait(waiting[2])
    queue.release(waiting[2])
    assert queue.reserve().holds_slot               # all free again


async def test_a_paused_queue_starts_no_waiting_job():
    queue = SlotQueue(slots=1, max_waiting=5)
    running, waiting = queue.reserve(), queue.reserve()
    queue.paused = True
    queue.release(running)
    assert not waiting.turn.done() and queue.position(waiting) == 1


# --- the journal -------------------------------------------------------------------------

OLD_SCHEMA = """
CREATE TABLE jobs (id TEXT PRIMARY KEY, created_at REAL NOT NULL, state TEXT NOT NULL,
                   idempotency_key TEXT, record TEXT NOT NULL);
CREATE INDEX jobs_created ON jobs (created_at);
"""


def old_record(job_id: str, state: str, **fields) -> dict:
    """A job record as the daemon wrote it before providers (schema 0)."""
    gen = generation(seed=3).model_dump(mode="json")
    return {"id": job_id, "generation": gen, "source": "api", "idempotency_key": None,
            "state": state, "created_at": time.time() - 60, "started_at": None,
            "submitted_at": time.time() - 50, "finished_at": None, "request_id": None,
            "token": "token-1", "output_urls": [], "images": [], "error": None, "polls": 2,
            **fields}


def write_journal(data: Path, rows: list[tuple[str, str, str]], schema: str = OLD_SCHEMA,
                  version: int = 0) -> None:
    """rows: (id, state, record text)."""
    data.mkdir(parents=True)
    db = sqlite3.connect(data / "jobs.sqlite3")
    db.executescript(schema)
    db.executemany("INSERT INTO jobs VALUES (?, ?, ?, NULL, ?)",
                   [(i, time.time(), state, text) for i, state, text in rows])
    db.execute(f"PRAGMA user_version = {version}")
    db.commit()
    db.close()


def quarantine(data: Path) -> list[tuple[str, str]]:
    db = sqlite3.connect(data / "jobs.sqlite3")
    try:
        return db.execute("SELECT id, reason FROM quarantine ORDER BY id").fetchall()
    finally:
        db.close()


def test_a_journal_from_before_versioning_is_migrated_and_its_jobs_resume(make_daemon,
                                                                          tmp_path):
    finished = old_record("a" * 32, "succeeded", request_id="r-done",
                          images=[{"hash": "b" * 64, "seed": 3, "width": 512, "height": 768}],
                          finished_at=time.time() - 40)
    running = old_record("c" * 32, "running", request_id="r-running")
    write_journal(tmp_path / "data0", [(r["id"], r["state"], json.dumps(r))
                                       for r in (finished, running)])

    daemon = make_daemon()
    job = httpx.get(f"{daemon.url}/arting/v1/jobs/{'a' * 32}").json()
    assert job["state"] == "succeeded" and job["images"][0]["hash"] == "b" * 64
    resumed = daemon.wait_job("c" * 32)
    # Resumed by polling its recorded request id (which this emulator does not know),
    # never by sending it again.
    assert [r.body for r in daemon.sandbox.requests_for("get")][:1] == [
        {"request_id": "r-running"}]
    assert daemon.sandbox.requests_for("create") == []
    assert resumed["state"] == "failed"

    db = sqlite3.connect(daemon.settings.data_dir / "jobs.sqlite3")
    version = db.execute("PRAGMA user_version").fetchone()[0]
    rec = json.loads(db.execute("SELECT record FROM jobs WHERE id = ?",
                                ("a" * 32,)).fetchone()[0])
    db.close()
    assert version == journal_module.VERSION
    assert rec["provider"] == "arting" and rec["provider_state"]["request_id"] == "r-done"
    assert "request_id" not in rec and "output_urls" not in rec


def test_records_that_no_longer_load_are_quarantined_not_fatal(make_daemon, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="arting_daemon")
    good = old_record("d" * 32, "queued")
    bad_generation = old_record("e" * 32, "queued", generation={"prompt": 5})
    rows = [(good["id"], "queued", json.dumps(good)),
            (bad_generation["id"], "queued", json.dumps(bad_generation)),
            ("f" * 32, "running", "{not json")]
    write_journal(tmp_path / "data0", rows)

    daemon = make_daemon()
    assert daemon.wait_job("d" * 32)["state"] == "succeeded"
    assert httpx.get(f"{daemon.url}/arting/v1/jobs/{'e' * 32}").status_code == 404
    skipped = [r.getMessage() for r in caplog.records if "skipped 2 journal" in r.getMessage()]
    assert skipped and "e" * 32 in skipped[0]
    held = quarantine(daemon.settings.data_dir)
    assert [job_id for job_id, _ in held] == ["e" * 32, "f" * 32]
    assert all(reason for _, reason in held)


async def test_a_journal_from_a_newer_daemon_is_refused_with_a_clear_message(tmp_path):
    write_journal(tmp_path / "data", [], version=journal_module.VERSION + 1)
    journal = Journal(tmp_path / "data" / "jobs.sqlite3", Job.from_record)
    with pytest.raises(Exception, match="newer arting-2api"):
        await journal.open()


# --- a failed start ----------------------------------------------------------------------

async def test_a_service_failing_at_start_up_closes_those_already_started(tmp_path,
                                                                          monkeypatch):
    seen = {}

    async def fail(self):
        seen["connections"], seen["journal"] = self.provider.client.director, self.journal
        seen["prober"] = self.provider.pool._watcher
        raise RuntimeError("the runner could not start")

    monkeypatch.setattr(Runner, "start", fail)
    settings = Settings(data_dir=tmp_path, port=0, sandbox=True, sandbox_generation_time=0,
                        sandbox_providers=[])
    with pytest.raises(RuntimeError, match="could not start"):
        await serve(settings)
    assert seen["connections"].closed
    assert seen["journal"]._writer is None and seen["journal"]._db is None
    assert seen["prober"].done()
    await asyncio.sleep(0)
    assert asyncio.all_tasks() == {asyncio.current_task()}


async def test_shown_progress_never_goes_back_when_the_expected_time_grows(tmp_path):
    """Slower jobs finishing meanwhile make the runner expect a longer job; a progress bar
    that followed the new estimate would jump back."""
    painter = Painter()
    runner, journal = make_runner(tmp_path, painter)
    await journal.open()
    await runner.start()
    try:
        job = await runner.submit(generation())
        await until(lambda: job.reported_progress == 0.5)
        job.reported_progress = None                     # the clock's estimate, not the provider's
        job.submitted_at = time.time() - 5
        before = runner.progress(job)[0]
        assert 0.3 < before < 0.5
        g = job.generation
        for _ in range(30):
            runner.stats.record(g.model, g.width, g.height, 600.0)
        assert runner.expected(job) > 100
        assert runner.progress(job)[0] >= before
        painter.finish.set()
        assert await runner.wait(job, timeout=10)
    finally:
        await runner.close()
        await journal.close()
