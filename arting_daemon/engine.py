"""Jobs: the one place a generation lives, from the queue to images in the store.

``queued → submitting → running → downloading → succeeded | failed | cancelled``

Each job is one asyncio task (no thread per job). A bounded number run at once; the
rest wait in a bounded queue, and past it ``submit`` raises ``QueueFull``. Every stage
has a deadline, and the whole job has one too. A job holds an Arting token while
Arting works on it, polls on a schedule learned from recent durations, and downloads
its images once into the content-addressed store. Every state change is journaled,
so after a restart unfinished jobs resume and finished images are still served.

A create is sent again only when that cannot make a second job (the connection was
refused, Arting answered 5xx or 429, or refused the token), on another token where
the pool has one, with exponential backoff and full jitter inside ``retry_budget``.
Job tasks log under the id of the request that made them (or ``job-<id>``).
"""

from __future__ import annotations

import asyncio
import base64
import logging
import random
import sys
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from enum import Enum

from . import logs
from .config import Settings
from .errors import (ArtingError, BadUpstreamResponse, Cancelled, CloudflareBlocked,
                     FeatureDisabled, QueueFull, StageTimeout, UpstreamAuthError,
                     UpstreamError, UpstreamRateLimited, UpstreamTimeout,
                     UpstreamUnavailable, error_from_dict)
from .generation import Generation
from .imaging import apply_mask
from .journal import Journal
from .metrics import Metrics
from .store import ImageStore
from .timing import DurationStats, running_progress
from .upstream.arting import ArtingClient
from .upstream.tokens import Token, TokenPool

if sys.version_info >= (3, 11):
    from asyncio import timeout as _timeout
else:  # pragma: no cover
    from async_timeout import timeout as _timeout

log = logging.getLogger(__name__)

RECENT_JOBS = 2000          # finished jobs kept in memory (older ones come from the journal)
RETRY_BASE, RETRY_CAP = 0.5, 8.0
#: Our own generator: jitter must not disturb (or depend on) the global ``random``.
_jitter = random.Random()
MAX_CREATE_ATTEMPTS = 6
MAX_POLL_REFUSALS = 3       # refused polls in a row before a (paid) job is given up


class JobState(str, Enum):
    QUEUED = "queued"
    SUBMITTING = "submitting"
    RUNNING = "running"
    DOWNLOADING = "downloading"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED)


@dataclass(frozen=True)
class JobImage:
    hash: str
    seed: int
    width: int
    height: int


@dataclass(eq=False)
class Job:
    id: str
    generation: Generation
    source: str = "api"
    idempotency_key: str | None = None
    state: JobState = JobState.QUEUED
    created_at: float = field(default_factory=time.time)
    started_at: float | None = None
    submitted_at: float | None = None
    finished_at: float | None = None
    request_id: str | None = None
    token: str | None = None
    output_urls: list[str] = field(default_factory=list)
    images: list[JobImage] = field(default_factory=list)
    error: ArtingError | None = None
    polls: int = 0
    _changed: asyncio.Event = field(default_factory=asyncio.Event, repr=False)
    _done: asyncio.Event = field(default_factory=asyncio.Event, repr=False)

    def record(self) -> dict:
        """The journal's JSON form."""
        return {
            "id": self.id, "generation": self.generation.model_dump(mode="json"),
            "source": self.source, "idempotency_key": self.idempotency_key,
            "state": self.state.value, "created_at": self.created_at,
            "started_at": self.started_at, "submitted_at": self.submitted_at,
            "finished_at": self.finished_at, "request_id": self.request_id,
            "token": self.token, "output_urls": self.output_urls,
            "images": [vars(i) for i in self.images],
            "error": self.error.to_dict() if self.error else None, "polls": self.polls,
        }

    @classmethod
    def from_record(cls, rec: dict) -> Job:
        job = cls(id=rec["id"], generation=Generation.model_validate(rec["generation"]),
                  source=rec.get("source", "api"), idempotency_key=rec.get("idempotency_key"),
                  state=JobState(rec["state"]), created_at=rec["created_at"],
                  started_at=rec.get("started_at"), submitted_at=rec.get("submitted_at"),
                  finished_at=rec.get("finished_at"), request_id=rec.get("request_id"),
                  token=rec.get("token"), output_urls=list(rec.get("output_urls") or []),
                  images=[JobImage(**i) for i in rec.get("images") or []],
                  error=error_from_dict(rec["error"]) if rec.get("error") else None,
                  polls=rec.get("polls", 0))
        if job.state.terminal:
            job._done.set()
        return job


@dataclass
class _Lease:
    """The token a job holds; a rate-limited or refused create may swap it for another
    (None while it has none)."""

    token: Token | None


class Engine:
    def __init__(self, settings: Settings, upstream: ArtingClient, pool: TokenPool,
                 store: ImageStore, journal: Journal, metrics: Metrics | None = None) -> None:
        self.settings = settings
        self.upstream = upstream
        self.pool = pool
        self.store = store
        self.journal = journal
        self.metrics = metrics or Metrics()
        self.stats = DurationStats(settings)
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._by_key: dict[str, Job] = {}
        self._tasks: dict[str, asyncio.Task] = {}
        self._queue: deque[tuple[Job, asyncio.Future]] = deque()
        self._free = settings.max_active_jobs
        self._accepting = True
        self._stopping = False
        self.started = time.monotonic()
        self.counters: dict[str, int] = {"succeeded": 0, "failed": 0, "cancelled": 0}

    # --- life cycle -----------------------------------------------------------------------

    async def start(self) -> None:
        """Resume the jobs a previous run left unfinished."""
        for rec in await self.journal.unfinished():
            job = Job.from_record(rec)
            if job.state is JobState.SUBMITTING:
                # The create may or may not have reached Arting: resubmitting could
                # make a second job, so this one ends here.
                self._finish(job, JobState.FAILED, UpstreamError(
                    "The daemon restarted while submitting this job; submit it again."))
                continue
            job.state = JobState.QUEUED if job.request_id is None else job.state
            self._remember(job)
            self._start_task(job, self._reserve(job), resumed=True)
        if self._tasks:
            log.info("resumed %d unfinished job(s) from the journal", len(self._tasks))

    async def close(self, grace: float = 0.0) -> None:
        """Stop: take no new jobs and start no queued one; give the jobs in flight
        ``grace`` seconds, then stop the rest where they are (their journal records let
        the next start resume them)."""
        self._accepting = False
        in_flight = [self._tasks[j.id] for j in self.active if j.id in self._tasks]
        if grace > 0 and in_flight:
            await asyncio.wait(in_flight, timeout=grace)
        self._stopping = True
        for task in self._tasks.values():
            task.cancel()
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)

    # --- the API the facades use ----------------------------------------------------------

    async def submit(self, gen: Generation, *, source: str = "api",
                     idempotency_key: str | None = None) -> Job:
        """Queue a generation and return its job at once."""
        if not self._accepting:
            raise QueueFull("The daemon is shutting down.", retry_after=5)
        if idempotency_key:
            existing = await self.get_by_key(idempotency_key)
            if existing:
                return existing
        if gen.is_img2img:
            check_img2img(self.settings)
        if self.full:
            raise QueueFull(f"The queue is full ({self.settings.max_queued_jobs} jobs wait "
                            "already; max_queued_jobs).", retry_after=self._retry_after())
        job = Job(id=uuid.uuid4().hex, generation=gen, source=source,
                  idempotency_key=idempotency_key)
        self._remember(job)
        self._save(job)
        self._start_task(job, self._reserve(job))
        return job

    async def run(self, gen: Generation, *, source: str = "api") -> Job:
        """Submit and wait for the result; if the caller goes away, the job is cancelled.

        Raises the job's error unless it succeeded."""
        job = await self.submit(gen, source=source)
        try:
            await job._done.wait()
        except asyncio.CancelledError:
            self.cancel(job)
            raise
        return raise_for_job(job)

    async def get(self, job_id: str) -> Job | None:
        job = self._jobs.get(job_id)
        if job is None:
            rec = await self.journal.get(job_id)
            job = Job.from_record(rec) if rec else None
        return job

    def cancel(self, job: Job) -> None:
        task = self._tasks.get(job.id)
        if task is not None and not job.state.terminal:
            task.cancel()

    async def wait(self, job: Job, timeout: float | None = None) -> bool:
        """Wait until the job ends; False on timeout."""
        try:
            await asyncio.wait_for(job._done.wait(), timeout)
        except asyncio.TimeoutError:
            return False
        return True

    async def changes(self, job: Job, tick: float = 1.0) -> AsyncIterator[Job]:
        """Yield the job now, on every change, and every ``tick`` seconds, until it ends."""
        while True:
            event = job._changed
            yield job
            if job.state.terminal:
                return
            try:
                await asyncio.wait_for(event.wait(), tick)
            except asyncio.TimeoutError:
                pass

    async def recent(self, limit: int, before: float | None = None,
                     state: str | None = None) -> list[Job]:
        return [Job.from_record(r) for r in await self.journal.recent(limit, before, state)]

    # --- what the facades show --------------------------------------------------------------

    def queue_position(self, job: Job) -> int | None:
        """1-based place in the queue, or None when not waiting."""
        for i, (queued, _) in enumerate(self._queue):
            if queued is job:
                return i + 1
        return None

    def expected(self, job: Job) -> float:
        g = job.generation
        return self.stats.expected(g.model, g.width, g.height)

    def progress(self, job: Job) -> tuple[float, float | None]:
        """(fraction done 0..1, seconds left or None)."""
        expected = self.expected(job)
        if job.state is JobState.SUCCEEDED:
            return 1.0, 0.0
        if job.state.terminal:
            return 0.0, None
        if job.state is JobState.QUEUED:
            ahead = (self.queue_position(job) or 1) - 1
            waves = ahead // max(1, self.settings.max_active_jobs) + 1
            return 0.0, waves * expected + expected
        if job.state is JobState.SUBMITTING or job.submitted_at is None:
            return 0.02, expected
        if job.state is JobState.DOWNLOADING:
            return 0.95, 1.0
        elapsed = time.time() - job.submitted_at
        frac = running_progress(elapsed, expected)
        return 0.05 + 0.9 * frac, max(0.5, expected - elapsed)

    @property
    def active(self) -> list[Job]:
        return [j for j in self._jobs.values()
                if not j.state.terminal and j.state is not JobState.QUEUED]

    @property
    def queued(self) -> int:
        return len(self._queue)

    @property
    def full(self) -> bool:
        """Every slot busy and the queue at max_queued_jobs: a new job would be refused."""
        return self._free <= 0 and len(self._queue) >= self.settings.max_queued_jobs

    @property
    def accepting(self) -> bool:
        """False once shutdown has begun."""
        return self._accepting

    # --- the job's task ---------------------------------------------------------------

    def _start_task(self, job: Job, turn: asyncio.Future | None, resumed: bool = False) -> None:
        task = asyncio.create_task(self._run(job, turn, resumed), name=f"job-{job.id}")
        self._tasks[job.id] = task
        task.add_done_callback(lambda _t: self._task_done(job, turn))

    def _task_done(self, job: Job, turn: asyncio.Future | None) -> None:
        self._tasks.pop(job.id, None)
        if not job.state.terminal and not self._stopping:
            # Cancelled before its first step, so ``_run`` never ran: tidy up for it.
            self._abandon(job, turn)
            self._finish(job, JobState.CANCELLED, Cancelled("The job was cancelled."))

    async def _run(self, job: Job, turn: asyncio.Future | None, resumed: bool = False) -> None:
        if logs.request_id.get() == "-":   # no request made it (resumed after a restart)
            logs.request_id.set(f"job-{job.id[:12]}")
        if resumed:
            log.info("job %s resumed %s", job.id, job.state.value)
        # A resumed job gets a fresh deadline: Arting kept working while we were down.
        deadline = (time.time() if resumed else job.created_at) + self.settings.job_timeout
        try:
            async with _timeout(max(0.0, deadline - time.time())):
                await self._take_slot(job, turn)
                try:
                    if job.state is not JobState.DOWNLOADING:
                        urls = await self._submit_and_wait(job, deadline)
                    else:
                        urls = job.output_urls
                    await self._download(job, urls, deadline)
                finally:
                    self._give_slot()
            self._finish(job, JobState.SUCCEEDED)
        except asyncio.CancelledError:
            if self._stopping:
                self._save(job)  # left as it is: the next start resumes it
                raise
            self._finish(job, JobState.CANCELLED, Cancelled("The job was cancelled."))
        except asyncio.TimeoutError:
            self._finish(job, JobState.FAILED, StageTimeout(
                f"The job took longer than {self.settings.job_timeout:g} s (job_timeout) "
                f"and stopped while {job.state.value}.", stage=job.state.value))
        except ArtingError as exc:
            self._finish(job, JobState.FAILED, exc)
        except Exception as exc:  # a bug: keep the daemon alive and say so
            log.exception("job %s crashed", job.id)
            self._finish(job, JobState.FAILED, ArtingError(
                f"Internal error ({type(exc).__name__}); see the daemon's log."))

    async def _submit_and_wait(self, job: Job, deadline: float) -> list[str]:
        """Submit (unless already submitted) and poll until Arting has the images."""
        lease = _Lease(await self._acquire_token(job, deadline))
        try:
            if job.request_id is None:
                await self._stage(job, JobState.SUBMITTING, "submit_timeout",
                                  self.settings.submit_timeout, deadline,
                                  self._submit(job, lease, deadline))
            assert lease.token is not None
            return await self._stage(job, JobState.RUNNING, "run_timeout",
                                     self.settings.run_timeout, deadline,
                                     self._poll(job, lease.token))
        finally:
            if lease.token is not None:
                await self.pool.release(lease.token)

    async def _stage(self, job: Job, state: JobState, name: str, limit: float,
                     deadline: float, work):
        self._set(job, state)
        budget = min(limit, deadline - time.time())
        started = time.monotonic()
        try:
            async with _timeout(max(0.0, budget)):
                return await work
        except asyncio.TimeoutError:
            if budget < limit:
                raise  # the whole job's deadline: reported by _run
            what = {"submit_timeout": "Submitting the job to Arting",
                    "run_timeout": "Arting's generation",
                    "download_timeout": "Downloading the images"}[name]
            raise StageTimeout(f"{what} took longer than {limit:g} s ({name}).",
                               stage=state.value) from None
        finally:
            self.metrics.stage(state.value, time.monotonic() - started)

    async def _acquire_token(self, job: Job, deadline: float) -> Token:
        """A token for this job; a resumed job gets the one it was created with if it can.
        Busy tokens are waited for until ``deadline``; rate-limited or blocked ones only
        within the retry budget."""
        token = await self.pool.acquire(max(0.0, deadline - time.time()), prefer=job.token,
                                        patience=self.settings.retry_budget)
        job.token = token.label
        return token

    async def _submit(self, job: Job, lease: _Lease, deadline: float) -> None:
        """Create the job upstream. Sent again only when no job can have been made, and
        only while the retry budget (waits included) and the stage's deadline allow."""
        assert lease.token is not None
        gen = job.generation
        image_url = await self._init_image_url(gen, lease.token) if gen.is_img2img else None
        retry_until = min(deadline, time.time() + self.settings.submit_timeout,
                          time.time() + self.settings.retry_budget)
        attempt = 0
        while True:
            try:
                # Arting starts the job between sending and answering; under load the
                # answer can be late, so the job's clock starts at the sending.
                sent = time.time()
                job.request_id = await self.upstream.create(gen, lease.token.secret, image_url)
                break
            except ArtingError as exc:
                self.pool.explain(lease.token, exc)
                await self.pool.report(lease.token, exc)
                attempt += 1
                if not exc.safe_to_resubmit or attempt >= MAX_CREATE_ATTEMPTS:
                    raise
                if isinstance(exc, (UpstreamRateLimited, UpstreamAuthError)):
                    await self._switch_token(job, lease, exc, retry_until)
                else:
                    wait = _backoff(attempt, None)
                    if time.time() + wait >= retry_until:
                        raise
                    await asyncio.sleep(wait)
                self.metrics.create_retries.labels(type(exc).__name__).inc()
                log.info("create attempt %d of job %s failed (%s); sending it again with %s",
                         attempt, job.id, type(exc).__name__, lease.token.label)
        await self.pool.report(lease.token, None)
        job.submitted_at = sent
        self._save(job)

    async def _switch_token(self, job: Job, lease: _Lease, exc: ArtingError,
                            retry_until: float) -> None:
        """After a 429 or a refused token (the pool has marked it): take the next
        eligible token, or wait for one within the budget. If none comes in time, the
        create's own error is raised, with the pool's Retry-After."""
        assert lease.token is not None
        await self.pool.release(lease.token)
        lease.token = None
        try:
            lease.token = await self._acquire_token(job, retry_until)
        except UpstreamRateLimited as none_free:
            if isinstance(exc, UpstreamRateLimited):
                exc.retry_after = max(exc.retry_after or 0.0, none_free.retry_after or 0.0)
                raise exc from None
            raise

    async def _init_image_url(self, gen: Generation, token: Token) -> str:
        assert gen.init_image is not None
        data = await self.store.read(gen.init_image)
        if self.settings.img2img_transport == "signed_url":
            return await self.upstream.upload(data, token.secret)
        return "data:image/png;base64," + base64.b64encode(data).decode()

    async def _poll(self, job: Job, token: Token) -> list[str]:
        """Poll on the learned schedule; transient faults are retried until the deadline."""
        gen = job.generation
        schedule = self.stats.schedule(gen.model, gen.width, gen.height)
        submitted = job.submitted_at or time.time()
        failures = refusals = 0
        pending = None      # when the last poll that found the job running was sent
        while True:
            elapsed = time.time() - submitted
            delay = (schedule.next_delay(elapsed, job.polls) if failures == 0 else
                     min(self.settings.poll_max_interval, _backoff(failures, None)))
            await asyncio.sleep(delay)
            sent = time.time() - submitted
            try:
                result = await self.upstream.poll(job.request_id or "", token.secret,
                                                  gen.is_img2img)
            except CloudflareBlocked as exc:
                await self.pool.report(token, exc)
                raise
            except UpstreamAuthError as exc:
                # Arting has the job already, and polls seem not to be bound to the token
                # (arting_protocol.md §2.1): ride out a refusal or two, not a third.
                await self.pool.report(token, exc)
                refusals += 1
                if refusals >= MAX_POLL_REFUSALS:
                    raise
                failures += 1
                log.info("poll of job %s refused the token; retrying", job.id)
                continue
            except (UpstreamUnavailable, UpstreamTimeout, BadUpstreamResponse,
                    UpstreamRateLimited) as exc:
                failures += 1
                if isinstance(exc, UpstreamRateLimited) and exc.retry_after:
                    await asyncio.sleep(exc.retry_after)
                log.info("poll of job %s failed (%s); retrying", job.id, type(exc).__name__)
                continue
            failures = refusals = 0
            job.polls += 1
            if result.balance is not None:
                self.pool.note_balance(token, result.balance)
            if result.done:
                self.stats.record(gen.model, gen.width, gen.height,
                                  schedule.finished_at(sent, pending))
                return result.urls
            pending = sent

    async def _download(self, job: Job, urls: list[str], deadline: float) -> None:
        job.output_urls = urls
        gen = job.generation
        seeds = gen.seeds()
        masking = None
        if gen.mask and gen.init_image:
            masking = (await self.store.read(gen.init_image), await self.store.read(gen.mask))

        async def one(index: int, url: str) -> JobImage:
            attempt = 0
            while True:
                try:
                    data = await self.upstream.download(url)
                    if masking:
                        data = await asyncio.to_thread(apply_mask, data, *masking)
                    stored = await self.store.put(data)
                    break
                except (UpstreamUnavailable, UpstreamTimeout):
                    attempt += 1
                    await asyncio.sleep(_backoff(attempt, None))
            seed = seeds[index] if index < len(seeds) else seeds[-1] + index
            return JobImage(stored.hash, seed, stored.width, stored.height)

        async def all_images() -> None:
            results = await asyncio.gather(*(one(i, u) for i, u in enumerate(urls)),
                                           return_exceptions=True)
            job.images = [r for r in results if isinstance(r, JobImage)]
            for r in results:
                if isinstance(r, BaseException):
                    raise r

        await self._stage(job, JobState.DOWNLOADING, "download_timeout",
                          self.settings.download_timeout, deadline, all_images())

    # --- the queue ----------------------------------------------------------------------

    def _reserve(self, job: Job) -> asyncio.Future | None:
        """Take a free slot now (None), or a place in the queue (a future that resolves
        when a slot is handed over) — at submit time, so the answer shows the place."""
        if self._free > 0 and not self._queue:
            self._free -= 1
            return None
        turn = asyncio.get_running_loop().create_future()
        self._queue.append((job, turn))
        self._touch_queue()
        return turn

    async def _take_slot(self, job: Job, turn: asyncio.Future | None) -> None:
        waiting_since = time.monotonic()
        if turn is not None:
            try:
                await turn
            except asyncio.CancelledError:
                self._abandon(job, turn)
                raise
        job.started_at = time.time()
        self.metrics.stage("queued", time.monotonic() - waiting_since)

    def _abandon(self, job: Job, turn: asyncio.Future | None) -> None:
        """Give back the slot a job held, or its place in the queue."""
        if turn is None or (turn.done() and not turn.cancelled()):
            self._give_slot()
        else:
            turn.cancel()
            self._queue = deque(e for e in self._queue if e[0] is not job)
            self._touch_queue()

    def _give_slot(self) -> None:
        while self._queue and self._accepting:   # shutting down: queued jobs stay queued
            _, turn = self._queue.popleft()
            if not turn.done():
                turn.set_result(None)
                self._touch_queue()
                return
        self._free += 1

    def _touch_queue(self) -> None:
        """Queue positions changed: wake everyone watching a queued job."""
        for queued, _ in self._queue:
            self._notify(queued)

    def _retry_after(self) -> float:
        waves = len(self._queue) / max(1, self.settings.max_active_jobs)
        return round(max(1.0, waves * self.stats.typical()), 1)

    # --- bookkeeping ----------------------------------------------------------------------

    async def get_by_key(self, key: str) -> Job | None:
        job = self._by_key.get(key)
        if job is None:
            rec = await self.journal.by_idempotency_key(key)
            # look again: a twin request may have registered the key while we read
            job = self._by_key.get(key) or (Job.from_record(rec) if rec else None)
        return job

    def _remember(self, job: Job) -> None:
        self._jobs[job.id] = job
        if job.idempotency_key:
            self._by_key[job.idempotency_key] = job
        while len(self._jobs) > RECENT_JOBS:
            oldest_id = next(iter(self._jobs))
            oldest = self._jobs[oldest_id]
            if not oldest.state.terminal:
                self._jobs.move_to_end(oldest_id)
                break
            del self._jobs[oldest_id]
            if oldest.idempotency_key:
                self._by_key.pop(oldest.idempotency_key, None)

    def _set(self, job: Job, state: JobState) -> None:
        job.state = state
        self._save(job)
        self._notify(job)

    def _finish(self, job: Job, state: JobState, error: ArtingError | None = None) -> None:
        job.state, job.error, job.finished_at = state, error, time.time()
        self.counters[state.value] += 1
        self.metrics.job_finished(job)
        if error is not None:
            log.info("job %s %s: %s", job.id, state.value, error.message)
        self._save(job)
        self._notify(job)
        job._done.set()

    def _save(self, job: Job) -> None:
        self.journal.save(job.record())

    @staticmethod
    def _notify(job: Job) -> None:
        event, job._changed = job._changed, asyncio.Event()
        event.set()


def check_img2img(settings: Settings) -> None:
    """Image-to-image needs Arting's unconfirmed endpoint, which is off by default."""
    if not settings.img2img:
        raise FeatureDisabled(
            "Image-to-image is switched off on this daemon, because Arting's image-to-image "
            "endpoint is unconfirmed. Set `img2img = true` in arting.toml (ARTING_IMG2IMG=1) "
            "to try it, or run the daemon with --sandbox.", param="image")


def raise_for_job(job: Job) -> Job:
    """The job if it succeeded, else its error."""
    if job.state is JobState.SUCCEEDED:
        return job
    if job.error is not None:
        raise job.error
    raise Cancelled("The job was cancelled.")


def _backoff(attempt: int, retry_after: float | None) -> float:
    """Exponential backoff with full jitter; a server's Retry-After wins."""
    if retry_after is not None:
        return retry_after
    return _jitter.uniform(0, min(RETRY_CAP, RETRY_BASE * 2 ** (attempt - 1))) + 0.05
