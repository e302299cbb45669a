"""The job runner: takes each job from the queue to images in the store.

Each job is one asyncio task (no thread per job). It waits for a slot (``queue``),
then the provider works on it — ``submit``, ``follow`` to the end — and the runner
fetches its images once into the content-addressed store. Every stage has a deadline,
and the whole job has one too; every state change is journaled, so after a restart
unfinished jobs resume (``start``) and finished images are still served. If the
caller goes away, the job is cancelled.

The runner knows nothing of any upstream's protocol: that is the provider's
(``providers/base.py``). Job tasks log under the id of the request that made them
(or ``job-<id>``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import time
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Protocol

from prometheus_client.core import GaugeMetricFamily

from .. import logs
from ..config import Section
from ..errors import (ArtingError, Cancelled, QueueFull, StageTimeout, Unavailable,
                      UpstreamError)
from ..imaging import apply_mask
from ..metrics import Metrics
from ..providers.base import Provider
from ..retry import backoff
from ..store import ImageStore
from ..timing import DurationStats, running_progress
from ..upscaling import JobRequest
from .cache import ResultCache
from .jobs import Job, JobImage, JobState, raise_for_job
from .journal import Journal
from .queue import Place, SlotQueue

if sys.version_info >= (3, 11):
    from asyncio import timeout as _timeout
else:  # pragma: no cover
    from async_timeout import timeout as _timeout

log = logging.getLogger(__name__)

LANDING = 10.0              # seconds a stop waits for creates in the air
RECENT_JOBS = 2000          # finished jobs kept in memory (older ones come from the journal)
UNFINISHED = ("queued", "submitting", "running", "downloading")


@dataclass(frozen=True)
class Limits(Section):
    max_active_jobs: int
    max_queued_jobs: int
    job_timeout: float
    submit_timeout: float
    run_timeout: float
    download_timeout: float


class Admission(Protocol):
    """Who may submit what (per-owner limits). ``admit`` checks a new job against its
    owner's limits and reserves what it asks for, in one atomic step, or raises;
    ``restore`` keeps the reservation of a job resumed after a restart; ``finished``
    gives it back once the job ends, counting what it made."""

    async def admit(self, job: Job) -> None: ...

    async def restore(self, job: Job) -> None: ...

    def finished(self, job: Job) -> None: ...


STAGES = {  # state → (its deadline's setting, what the stage is, in words)
    JobState.SUBMITTING: ("submit_timeout", "Submitting the job to {upstream}"),
    JobState.RUNNING: ("run_timeout", "{upstream}'s generation"),
    JobState.DOWNLOADING: ("download_timeout", "Downloading the images"),
}


class Runner:
    def __init__(self, limits: Limits, provider: Provider, store: ImageStore,
                 journal: Journal[Job], stats: DurationStats,
                 metrics: Metrics | None = None, admission: Admission | None = None,
                 cache: ResultCache | None = None) -> None:
        self.limits = limits
        self.admission = admission
        self.provider = provider
        self.store = store
        self.journal = journal
        self.stats = stats
        self.metrics = metrics or Metrics()
        #: The result cache, or None when ``result_cache`` is off.
        self.cache = cache
        #: Called with every job as it ends, after its final record is queued (so what
        #: they queue is committed with it): webhook deliveries.
        self.on_finished: list[Callable[[Job], None]] = []
        self.queue = SlotQueue(limits.max_active_jobs, limits.max_queued_jobs)
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._by_key: dict[str, Job] = {}
        self._tasks: dict[str, asyncio.Task] = {}
        self._places: dict[str, Place] = {}
        self._dropped: set[str] = set()       # jobs another replica took over
        self._errands: set[asyncio.Task] = set()
        self._accepting = True
        self._stopping = False
        self._stopped = asyncio.Event()       # jobs in flight were stopped (shutdown)
        #: Jobs ended since start, by state; ``cached``: how many of the succeeded ones
        #: were answered from the result cache.
        self.counters: dict[str, int] = {"succeeded": 0, "failed": 0, "cancelled": 0,
                                         "cached": 0}

    # --- life cycle -----------------------------------------------------------------------

    async def start(self) -> None:
        """Resume the jobs a previous run left unfinished (with replicas: the jobs no
        replica holds), and from now on those another replica leaves behind."""
        self.journal.attach(adopt=self.adopt, cancel=self._cancel_by_id, drop=self.drop)
        resumed = 0
        for job in await self.journal.unfinished():
            resumed += await self.adopt(job)
        if resumed:
            log.info("resumed %d unfinished job(s) from the journal", resumed)
        if self.journal.quarantined:
            log.warning("skipped %d journal record(s) that no longer describe a job (%s); "
                        "they are kept in the journal's quarantine table",
                        len(self.journal.quarantined),
                        ", ".join(job_id for job_id, _ in self.journal.quarantined[:5]))

    async def adopt(self, job: Job) -> bool:
        """Take over an unfinished job (after a restart, or from a replica that left):
        followed where the upstream has it, queued again when sending it again costs
        nothing, else failed — the upstream may have it, and sending it twice could make
        two. Returns whether it runs here now."""
        if job.id in self._jobs and not self._jobs[job.id].state.terminal:
            return False
        if await self.journal.cancel_requested(job.id):
            self._finish(job, JobState.CANCELLED, Cancelled("The job was cancelled."))
            return False
        submitted = self.provider.submitted(job)
        if job.state is JobState.DOWNLOADING and job.outputs:
            pass                                    # fetch the images again
        elif submitted and job.state is not JobState.QUEUED:
            job.state = JobState.RUNNING            # follow it where it is
        elif job.state is JobState.QUEUED or self.provider.for_job(job).free_to_repeat:
            job.state, job.submitted_at = JobState.QUEUED, None
        else:
            self._finish(job, JobState.FAILED, UpstreamError(
                "The daemon restarted while submitting this job; submit it again."))
            return False
        if self.admission is not None:
            await self.admission.restore(job)
        self._dropped.discard(job.id)
        self._remember(job)
        self._start_task(job, resumed=True)
        return True

    def drop(self, job_id: str) -> None:
        """Stop working on a job another replica has taken over (its lease was lost):
        quietly, leaving its record to the one that runs it now."""
        task = self._tasks.get(job_id)
        if task is not None:
            self._dropped.add(job_id)
            task.cancel()
        self._jobs.pop(job_id, None)

    async def close(self, grace: float = 0.0) -> None:
        """Stop: take no new jobs and start no queued one; give the jobs in flight
        ``grace`` seconds, then stop the rest where they are: their journal records let
        the next start (or, with replicas, another replica at once) resume them. Callers
        still waiting for such a job are answered ``Unavailable``, to try again."""
        self._accepting = False
        self.queue.paused = True
        in_flight = [self._tasks[j.id] for j in self.active if j.id in self._tasks]
        if grace > 0 and in_flight:
            await asyncio.wait(in_flight, timeout=grace)
        await self._let_submits_land()
        self._stopping = True
        for task in self._tasks.values():
            task.cancel()
        await asyncio.gather(*self._tasks.values(), *self._errands, return_exceptions=True)
        await self.journal.handover()
        self._stopped.set()
        for job in self._jobs.values():     # their callers are answered Unavailable
            job._settled.set()

    async def _let_submits_land(self) -> None:
        """A create stopped in the air could not be resumed (the upstream may or may not
        have the job), so jobs being submitted get a little while (``LANDING``) for an
        answer first."""
        submitting = [j for j in self.active if j.state is JobState.SUBMITTING]
        deadline = time.monotonic() + min(LANDING, self.limits.submit_timeout)
        for job in submitting:
            async for current in self.changes(job, tick=0.1):
                if current.state is not JobState.SUBMITTING or time.monotonic() > deadline:
                    break

    # --- the API the facades use ----------------------------------------------------------

    async def submit(self, gen: JobRequest, *, source: str = "api", owner: str = "local",
                     idempotency_key: str | None = None, reuse: bool = False,
                     webhook_url: str | None = None, origin: str | None = None) -> Job:
        """Queue a generation (or an upscale) and return its job at once. An
        ``idempotency_key`` is the owner's own: the same key from another owner is another
        job.

        ``reuse``: the request named its seed and allows the result cache, so the
        images of an earlier identical generation of the owner's may answer it: the job
        is then returned finished (``cache == "hit"``), and nothing goes upstream.
        ``webhook_url``: where the job's end is POSTed, besides the configured webhooks;
        ``origin``: the base URL the client reached the daemon at (for the links in it)."""
        if not self._accepting:
            raise _shutting_down()
        if idempotency_key:
            existing = await self.get_by_key(idempotency_key, owner)
            if existing:
                return existing
        provider = self.provider.admit(gen)
        job = Job(id=uuid.uuid4().hex, generation=gen, source=source, owner=owner,
                  idempotency_key=_scoped(idempotency_key, owner), provider=provider,
                  webhook_url=webhook_url, origin=origin)
        cache = self.cache if reuse else None
        if cache is not None:
            earlier = await cache.lookup(provider, owner, gen, self.get)
            self.metrics.result_cache.labels("hit" if earlier else "miss").inc()
            if earlier is not None:
                return await self._hit(job, earlier)
            job.cache = "miss"
        else:
            self.metrics.result_cache.labels("bypass").inc()
        if self.full:
            raise QueueFull(f"The queue is full ({self.limits.max_queued_jobs} jobs wait "
                            "already; max_queued_jobs).", retry_after=self._retry_after())
        twin = await self._twin(job)
        if twin is not None:
            return twin
        if self.admission is not None:
            await self.admission.admit(job)
        self._remember(job)
        self._save(job)
        self._start_task(job)
        return job

    async def run(self, gen: JobRequest, *, source: str = "api", owner: str = "local",
                  reuse: bool = False, origin: str | None = None) -> Job:
        """Submit and wait for the result; if the caller goes away, the job is cancelled.

        Raises the job's error unless it succeeded."""
        job = await self.submit(gen, source=source, owner=owner, reuse=reuse, origin=origin)
        try:
            await self._until_done(job)
        except asyncio.CancelledError:
            self.cancel(job)
            raise
        return raise_for_job(job)

    async def get(self, job_id: str) -> Job | None:
        return self._jobs.get(job_id) or await self.journal.get(job_id)

    def cancel(self, job: Job) -> None:
        """Cancel a job, here or on the replica that runs it."""
        task = self._tasks.get(job.id)
        if task is not None:
            if not job.state.terminal:
                task.cancel()
        elif not job.state.terminal:
            errand = asyncio.ensure_future(self.journal.request_cancel(job.id))
            self._errands.add(errand)
            errand.add_done_callback(self._errands.discard)

    async def wait(self, job: Job, timeout: float | None = None) -> bool:
        """Wait until the job ends; False on timeout."""
        try:
            await asyncio.wait_for(self._until_done(job), timeout)
        except asyncio.TimeoutError:
            return False
        return True

    async def changes(self, job: Job, tick: float = 1.0) -> AsyncIterator[Job]:
        """Yield the job now, on every change, and every ``tick`` seconds, until it ends
        (a job another replica runs: as its record says). Raises ``Unavailable`` when
        this daemon stops before the job ends."""
        if job.id not in self._tasks and not job.state.terminal:
            async for current in self._remote_changes(job, tick):
                yield current
            return
        while True:
            event = job._changed
            yield job
            if job.state.terminal:
                return
            if self._stopped.is_set():
                raise _shutting_down()
            try:
                await asyncio.wait_for(event.wait(), tick)
            except asyncio.TimeoutError:
                pass

    async def recent(self, limit: int, before: float | None = None,
                     state: str | None = None, owner: str | None = None) -> list[Job]:
        """Newest first; only ``owner``'s when given."""
        return await self.journal.recent(limit, before, state, owner)

    async def last_upstream(self, state: JobState) -> Job | None:
        """The newest job that ended in ``state`` upstream (answers from the result cache
        say nothing about the upstream)."""
        return await self.journal.last_upstream(state.value)

    async def get_by_key(self, key: str, owner: str = "local") -> Job | None:
        scoped = _scoped(key, owner)
        job = self._by_key.get(scoped)
        if job is None:
            found = await self.journal.by_idempotency_key(scoped)
            # look again: a twin request may have registered the key while we read
            job = self._by_key.get(scoped) or found
        return job

    async def _until_done(self, job: Job) -> None:
        """Until the job ends; ``Unavailable`` if this daemon stops first."""
        if job.id not in self._tasks and not job.state.terminal:
            async for _ in self._remote_changes(job, 1.0):
                pass
            return
        await job._settled.wait()
        if not job.state.terminal:
            raise _shutting_down()

    async def _remote_changes(self, job: Job, tick: float) -> AsyncIterator[Job]:
        """A job this daemon does not run, as its record changes (each change announced
        by the replica that runs it, and read again every ``tick`` seconds anyway)."""
        async with self.journal.watch(job.id) as changed:
            while True:
                yield job
                if job.state.terminal:
                    return
                if self._stopped.is_set():
                    raise _shutting_down()
                try:
                    await asyncio.wait_for(changed.wait(), tick)
                except asyncio.TimeoutError:
                    pass
                changed.clear()
                job = await self.get(job.id) or job

    async def _twin(self, job: Job) -> Job | None:
        """The job that holds ``job``'s idempotency key already, if another does: a twin
        request submitted meanwhile (with replicas, maybe elsewhere). The first one wins."""
        if not job.idempotency_key:
            return None
        holder = await self.journal.claim_key(job.idempotency_key, job.id)
        twin = self._by_key.get(job.idempotency_key)
        if holder != job.id or twin is not None:
            return twin or await self._await_record(holder)
        return None

    async def _await_record(self, job_id: str) -> Job:
        """The job another replica just made, once its record arrives (a moment)."""
        for _ in range(40):
            found = await self.get(job_id)
            if found is not None:
                return found
            await asyncio.sleep(0.05)
        raise Unavailable("The job for this Idempotency-Key is being made by another "
                          "replica; ask again in a moment.", retry_after=1)

    # --- what the facades show --------------------------------------------------------------

    def queue_position(self, job: Job) -> int | None:
        """1-based place in the queue, or None when not waiting."""
        place = self._places.get(job.id)
        return self.queue.position(place) if place is not None else None

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
            waves = ahead // max(1, self.limits.max_active_jobs) + 1
            return 0.0, waves * expected + expected
        if job.state is JobState.SUBMITTING or job.submitted_at is None:
            return 0.02, expected
        if job.state is JobState.DOWNLOADING:
            return 0.95, 1.0
        elapsed = time.time() - job.submitted_at
        if job.reported_progress is not None:       # the provider knows: shown as it says
            frac = job.reported_progress
            left = elapsed / frac - elapsed if frac > 0.05 else expected - elapsed
            return 0.05 + 0.9 * frac, max(0.5, left)
        frac, left = running_progress(elapsed, expected), expected - elapsed
        # the clock's estimate: the expected duration grows when slower jobs finish
        # meanwhile, and a progress bar must not go back for that
        job._progress_shown = max(job._progress_shown, 0.05 + 0.9 * frac)
        return job._progress_shown, max(0.5, left)

    def pinned(self) -> set[str]:
        """What the store must keep now: the images, init images and masks of the jobs
        not finished yet."""
        held: set[str] = set()
        for job in self._jobs.values():
            if not job.state.terminal:
                held.update(image.hash for image in job.images)
                held.update(job._held)
                gen = job.generation
                held.update(h for h in (gen.init_image, gen.mask) if h)
                held.update(source.hash for source in getattr(gen, "images", ()))  # upscales
        return held

    @property
    def active(self) -> list[Job]:
        return [j for j in self._jobs.values()
                if not j.state.terminal and j.state is not JobState.QUEUED]

    @property
    def queued(self) -> int:
        return self.queue.waiting

    @property
    def full(self) -> bool:
        """Every slot busy and the queue at max_queued_jobs: a new job would be refused."""
        return self.queue.full

    @property
    def accepting(self) -> bool:
        """False once shutdown has begun."""
        return self._accepting

    def collect(self) -> Iterator[GaugeMetricFamily]:
        """Prometheus gauges of the unfinished jobs, read at scrape time."""
        states = {state: 0 for state in UNFINISHED}
        for job in self.active:
            states[job.state.value] += 1
        states["queued"] = self.queued
        jobs = GaugeMetricFamily("arting_jobs", "Unfinished jobs, by state.", labels=["state"])
        for state, count in states.items():
            jobs.add_metric([state], count)
        yield jobs
        yield GaugeMetricFamily("arting_queue_depth", "Jobs waiting for a free slot.",
                                value=self.queued)
        yield GaugeMetricFamily("arting_queue_limit", "Jobs that may wait (max_queued_jobs).",
                                value=self.limits.max_queued_jobs)

    # --- the job's task ---------------------------------------------------------------

    def _start_task(self, job: Job, resumed: bool = False) -> None:
        """Take the job's place now (a slot, or its turn in the queue), then run it."""
        self._places[job.id] = self.queue.reserve()
        task = asyncio.create_task(self._run(job, resumed), name=f"job-{job.id}")
        self._tasks[job.id] = task
        task.add_done_callback(lambda _t: self._task_done(job))

    def _task_done(self, job: Job) -> None:
        self._tasks.pop(job.id, None)
        place = self._places.pop(job.id, None)
        if place is not None:
            self.queue.release(place)
        if not job.state.terminal and not self._stopping and job.id not in self._dropped:
            # Cancelled before its first step, so ``_run`` never ran: end it here.
            self._finish(job, JobState.CANCELLED, Cancelled("The job was cancelled."))

    async def _run(self, job: Job, resumed: bool = False) -> None:
        if logs.request_id.get() == "-":   # no request made it (resumed after a restart)
            logs.request_id.set(f"job-{job.id[:12]}")
        if resumed:
            log.info("job %s resumed %s", job.id, job.state.value)
        # A resumed job gets a fresh deadline: the upstream kept working while we were down.
        deadline = (time.time() if resumed else job.created_at) + self.limits.job_timeout
        try:
            async with _timeout(max(0.0, deadline - time.time())):
                await self._take_slot(job)
                try:
                    if job.state is not JobState.DOWNLOADING:
                        job.outputs = await self._generate(job, deadline)
                    await self._download(job, deadline)
                finally:
                    self.queue.release(self._places.pop(job.id))
            self._finish(job, JobState.SUCCEEDED)
        except asyncio.CancelledError:
            if job.id in self._dropped:      # another replica runs it now
                raise
            if self._stopping:
                self._save(job)  # left as it is: the next start resumes it
                raise
            await self._cancel_upstream(job)
            self._finish(job, JobState.CANCELLED, Cancelled("The job was cancelled."))
        except asyncio.TimeoutError:
            self._finish(job, JobState.FAILED, StageTimeout(
                f"The job took longer than {self.limits.job_timeout:g} s (job_timeout) "
                f"and stopped while {job.state.value}.", stage=job.state.value))
        except ArtingError as exc:
            self._finish(job, JobState.FAILED, exc)
        except Exception as exc:  # a bug: keep the daemon alive and say so
            log.exception("job %s crashed", job.id)
            self._finish(job, JobState.FAILED, ArtingError(
                f"Internal error ({type(exc).__name__}); see the daemon's log."))

    async def _take_slot(self, job: Job) -> None:
        waiting_since = time.monotonic()
        await self.queue.wait(self._places[job.id])
        job.started_at = time.time()
        self.metrics.stage("queued", time.monotonic() - waiting_since)

    async def _generate(self, job: Job, deadline: float) -> list[str]:
        """The provider's part: submit (unless the upstream has the job already) and
        follow it until its images are ready."""
        async with self.provider.attempt(job, deadline) as attempt:
            if not self.provider.submitted(job):
                job.submitted_at = await self._stage(job, JobState.SUBMITTING, deadline,
                                                     attempt.submit())
            # entering the stage journals the job, upstream request id and all
            return await self._stage(job, JobState.RUNNING, deadline,
                                     attempt.follow(lambda f: self._reported(job, f)))

    async def _stage(self, job: Job, state: JobState, deadline: float, work: Awaitable):
        """Run one stage of the job under its own deadline (and the job's)."""
        self._set(job, state)
        name, what = STAGES[state]
        limit = getattr(self.limits, name)
        budget = min(limit, deadline - time.time())
        started = time.monotonic()
        try:
            async with _timeout(max(0.0, budget)):
                return await work
        except asyncio.TimeoutError:
            if budget < limit:
                raise  # the whole job's deadline: reported by _run
            what = what.format(upstream=self.provider.for_job(job).label)
            raise StageTimeout(f"{what} took longer than {limit:g} s ({name}).",
                               stage=state.value) from None
        finally:
            self.metrics.stage(state.value, time.monotonic() - started)

    async def _download(self, job: Job, deadline: float) -> None:
        """Fetch every image once into the store; retryable faults are retried until the
        stage's deadline. A mask is applied here: upstreams take none."""
        gen = job.generation
        seeds = gen.seeds()
        masking = None
        if gen.mask and gen.init_image:
            masking = (await self.store.read(gen.init_image), await self.store.read(gen.mask))

        async def one(index: int, output: str) -> JobImage:
            attempt = 0
            while True:
                try:
                    data = await self.provider.fetch(job, output)
                    break
                except ArtingError as exc:
                    if not exc.retryable:
                        raise
                    attempt += 1
                    await asyncio.sleep(backoff(attempt))
            if masking:
                data = await asyncio.to_thread(apply_mask, data, *masking)
            stored = await self.store.put(data)
            job._held.add(stored.hash)
            seed = seeds[index] if index < len(seeds) else seeds[-1] + index
            return JobImage(stored.hash, seed, stored.width, stored.height)

        async def all_images() -> None:
            if len(job.outputs) == 1:     # most jobs: no task of its own for the one image
                job.images = [await one(0, job.outputs[0])]
                return
            results = await asyncio.gather(*(one(i, o) for i, o in enumerate(job.outputs)),
                                           return_exceptions=True)
            job.images = [r for r in results if isinstance(r, JobImage)]
            for r in results:
                if isinstance(r, BaseException):
                    raise r

        await self._stage(job, JobState.DOWNLOADING, deadline, all_images())

    async def _cancel_upstream(self, job: Job) -> None:
        """Tell the upstream to stop a job it has (best effort, briefly)."""
        if job.state in (JobState.RUNNING, JobState.SUBMITTING) and \
                self.provider.submitted(job):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.provider.cancel(job), 5)

    def _retry_after(self) -> float:
        waves = self.queue.waiting / max(1, self.limits.max_active_jobs)
        return round(max(1.0, waves * self.stats.typical()), 1)

    # --- bookkeeping ----------------------------------------------------------------------

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

    def _cancel_by_id(self, job_id: str) -> None:
        """Another replica asks to cancel a job this one runs."""
        job = self._jobs.get(job_id)
        if job is not None and job.id in self._tasks:
            self.cancel(job)

    def _reported(self, job: Job, fraction: float) -> None:
        job.reported_progress = min(1.0, max(0.0, fraction))
        self._notify(job)

    def _set(self, job: Job, state: JobState) -> None:
        job.state = state
        self._save(job)
        self._notify(job)

    async def _hit(self, job: Job, earlier: Job) -> Job:
        """Answer ``job`` with the images of ``earlier``: it ends as it is made."""
        job.provider, job.images = earlier.provider, list(earlier.images)
        job.cache, job.cached_from = "hit", earlier.id
        job.started_at = job.created_at
        twin = await self._twin(job)
        if twin is not None:
            return twin
        if self.admission is not None:
            await self.admission.admit(job)
        for image in job.images:      # served now: the least likely to be trimmed
            self.store.touch(image.hash)
        self._remember(job)
        log.info("job %s answered from the result cache (the images of job %s)",
                 job.id, earlier.id)
        self._finish(job, JobState.SUCCEEDED)
        return job

    def _finish(self, job: Job, state: JobState, error: ArtingError | None = None) -> None:
        job.state, job.error, job.finished_at = state, error, time.time()
        if self.admission is not None:
            self.admission.finished(job)
        self.counters[state.value] += 1
        if job.cache == "hit":
            self.counters["cached"] += 1
        else:   # the job metrics are about work done upstream
            self.metrics.job_finished(state.value, error, job.finished_at - job.created_at,
                                      job.provider)
        if error is not None:
            log.info("job %s %s: %s", job.id, state.value, error.message)
        self._save(job)
        if state is JobState.SUCCEEDED and self.cache is not None and job.cache != "hit":
            self.cache.remember(job)   # with the record above: one transaction
        for listener in self.on_finished:
            try:
                listener(job)
            except Exception:  # a listener's bug must not leave the job unfinished
                log.exception("after job %s ended", job.id)
        self._notify(job)
        job._settled.set()

    def update(self, job: Job) -> None:
        """Journal a job again and tell its watchers: for what changes after it ended
        (its webhook deliveries)."""
        self._save(job)
        self._notify(job)

    def _save(self, job: Job) -> None:
        self.journal.save(job.record())

    @staticmethod
    def _notify(job: Job) -> None:
        event, job._changed = job._changed, asyncio.Event()
        event.set()


def _shutting_down() -> Unavailable:
    return Unavailable("This daemon is shutting down; send the request again (with "
                       "several replicas, another one takes it).", retry_after=2)


def _scoped(key: str | None, owner: str) -> str | None:
    """An idempotency key as the journal keeps it: within its owner's own keys."""
    return f"{owner}:{key}" if key else None
