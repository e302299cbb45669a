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

Here is a job's life (queue → stages → end) and the API the facades use; beside it,
what replicas add (``adoption.py``: taking jobs over, following another replica's),
what a job is shown (``display.py``: progress and ETA) and the download stage
(``download.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Protocol, TypeVar

from prometheus_client.core import GaugeMetricFamily

from .. import logs
from ..clock import SYSTEM, Clock
from ..config import Section
from ..errors import ArtingError, Cancelled, QueueFull, StageTimeout
from ..metrics import Metrics
from ..providers.base import Provider
from ..store import ImageStore
from ..tasks import kept_cancel, wait_for
from ..timing import DurationStats
from ..upscaling import JobRequest
from .adoption import Adoption
from .cache import ResultCache
from .display import progress
from .download import download
from .jobs import Job, JobState, raise_for_job, shutting_down
from .journal import JobJournal
from .queue import Place, SlotQueue

log = logging.getLogger(__name__)
R = TypeVar("R")

LANDING = 10.0              # seconds a stop waits for creates in the air
RECENT_JOBS = 2000          # finished jobs kept in memory (older ones come from the journal)
UNFINISHED = ("queued", "submitting", "running", "downloading")


@dataclass(frozen=True)
class RunnerSettings(Section):
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
    def __init__(self, settings: RunnerSettings, provider: Provider, store: ImageStore,
                 journal: JobJournal[Job], stats: DurationStats,
                 metrics: Metrics | None = None, admission: Admission | None = None,
                 cache: ResultCache | None = None, clock: Clock = SYSTEM) -> None:
        self.settings = settings
        self.admission = admission
        self.provider = provider
        self.store = store
        self.journal = journal
        self.stats = stats
        self.metrics = metrics or Metrics()
        self.clock = clock
        #: The result cache, or None when ``result_cache`` is off.
        self.cache = cache
        #: Called with every job as it ends, after its final record is queued (so what
        #: they queue is committed with it): webhook deliveries.
        self.on_finished: list[Callable[[Job], None]] = []
        #: Called with every job this daemon starts to run: submitted here, resumed, or
        #: taken over from another replica (a revoked key's job among them).
        self.on_started: list[Callable[[Job], None]] = []
        self.queue = SlotQueue(settings.max_active_jobs, settings.max_queued_jobs)
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._by_key: dict[str, Job] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._places: dict[str, Place] = {}
        self._dropped: set[str] = set()       # jobs another replica took over
        self._why: dict[str, Cancelled] = {}  # why a job is being cancelled, if not asked
        self._errands: set[asyncio.Task[None]] = set()
        #: What replicas add: taking jobs over, following another's (``adoption.py``).
        self.replicas = Adoption(self)
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
        self.journal.attach(adopt=self.replicas.adopt, cancel=self.replicas.cancel_by_id,
                            drop=self.replicas.drop)
        resumed = 0
        for job in await self.journal.unfinished():
            resumed += await self.replicas.adopt(job)
        if resumed:
            log.info("resumed %d unfinished job(s) from the journal", resumed)
        if self.journal.quarantined:
            log.warning("skipped %d journal record(s) that no longer describe a job (%s); "
                        "they are kept in the journal's quarantine table",
                        len(self.journal.quarantined),
                        ", ".join(job_id for job_id, _ in self.journal.quarantined[:5]))

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
        deadline = self.clock.monotonic() + min(LANDING, self.settings.submit_timeout)
        for job in submitting:
            async for current in self.changes(job, tick=0.1):
                if current.state is not JobState.SUBMITTING or self.clock.monotonic() > deadline:
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
            raise shutting_down()
        if idempotency_key:
            existing = await self.get_by_key(idempotency_key, owner)
            if existing:
                return existing
        provider = self.provider.admit(gen)
        job = Job(id=uuid.uuid4().hex, generation=gen, created_at=self.clock.time(),
                  source=source, owner=owner,
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
            raise QueueFull(f"The queue is full ({self.settings.max_queued_jobs} jobs wait "
                            "already; max_queued_jobs).", retry_after=self._retry_after())
        twin = await self.replicas.twin(job)
        if twin is not None:
            return twin
        if self.admission is not None:
            await self.admission.admit(job)
        self._remember(job)
        self._save(job)
        self._start_task(job)
        await self.journal.written()      # any replica finds it once it is answered
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
        return raise_for_job(await self.get(job.id) or job)   # another replica's: as it ended

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

    def running(self, owner: str | None = None) -> list[Job]:
        """The unfinished jobs this daemon runs (queued ones too); ``owner``'s only when
        given."""
        return [job for job_id in self._tasks
                if (job := self._jobs.get(job_id)) is not None and not job.state.terminal
                and owner in (None, job.owner)]

    def owners(self) -> set[str]:
        """Whose unfinished jobs this daemon runs."""
        return {job.owner for job in self.running()}

    def cancel_owned(self, owner: str, why: Cancelled) -> list[Job]:
        """Cancel every unfinished job of ``owner`` this daemon runs (those waiting in its
        queue too), each ending ``cancelled`` with ``why`` as its error: what a key that
        stopped working leaves (``keys/revocation.py``)."""
        jobs = self.running(owner)
        for job in jobs:
            self._why[job.id] = why
            self._tasks[job.id].cancel()
        return jobs

    async def wait(self, job: Job, timeout: float | None = None) -> bool:
        """Wait until the job ends; False on timeout."""
        try:
            await wait_for(self._until_done(job), timeout)
        except asyncio.TimeoutError:
            return False
        return True

    async def changes(self, job: Job, tick: float = 1.0) -> AsyncIterator[Job]:
        """Yield the job now, on every change, and every ``tick`` seconds, until it ends
        (a job another replica runs: as its record says). Raises ``Unavailable`` when
        this daemon stops before the job ends."""
        if job.id not in self._tasks and not job.state.terminal:
            async for current in self.replicas.remote_changes(job, tick):
                yield current
            return
        while True:
            event = job._changed
            yield job
            if job.state.terminal:
                return
            if self._stopped.is_set():
                raise shutting_down()
            try:
                await self.clock.wait_for(event.wait(), tick)
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
        scoped = f"{owner}:{key}"
        job = self._by_key.get(scoped)
        if job is None:
            found = await self.journal.by_idempotency_key(scoped)
            # look again: a twin request may have registered the key while we read
            job = self._by_key.get(scoped) or found
        return job

    async def _until_done(self, job: Job) -> None:
        """Until the job ends; ``Unavailable`` if this daemon stops first."""
        if job.id not in self._tasks and not job.state.terminal:
            async for _ in self.replicas.remote_changes(job, 1.0):
                pass
            return
        await job._settled.wait()
        if not job.state.terminal:
            raise shutting_down()

    # --- what the facades show --------------------------------------------------------------

    def queue_position(self, job: Job) -> int | None:
        """1-based place in the queue, or None when not waiting."""
        place = self._places.get(job.id)
        return self.queue.position(place) if place is not None else None

    def expected(self, job: Job) -> float:
        g = job.generation
        return self.stats.expected(g.model, g.width, g.height)

    def progress(self, job: Job) -> tuple[float, float | None]:
        """(fraction done 0..1, seconds left or None), as shown (``display.py``)."""
        return progress(job, self.expected(job), self.queue_position(job),
                        self.settings.max_active_jobs, self.clock.time())

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
                                value=self.settings.max_queued_jobs)

    # --- the job's task ---------------------------------------------------------------

    def _start_task(self, job: Job, resumed: bool = False) -> None:
        """Take the job's place now (a slot, or its turn in the queue), then run it."""
        self._places[job.id] = self.queue.reserve()
        task = asyncio.create_task(self._run(job, resumed), name=f"job-{job.id}")
        self._tasks[job.id] = task
        task.add_done_callback(lambda _t: self._task_done(job))
        for listener in self.on_started:
            listener(job)

    def _task_done(self, job: Job) -> None:
        self._tasks.pop(job.id, None)
        place = self._places.pop(job.id, None)
        if place is not None:
            self.queue.release(place)
        why = self._why.pop(job.id, None) or Cancelled("The job was cancelled.")
        if not job.state.terminal and not self._stopping and job.id not in self._dropped:
            # Cancelled before its first step, so ``_run`` never ran: end it here.
            self._finish(job, JobState.CANCELLED, why)

    async def _run(self, job: Job, resumed: bool = False) -> None:
        if logs.request_id.get() == "-":   # no request made it (resumed after a restart)
            logs.request_id.set(f"job-{job.id[:12]}")
        if resumed:
            log.info("job %s resumed %s", job.id, job.state.value)
        # A resumed job gets a fresh deadline: the upstream kept working while we were down.
        deadline = (self.clock.time() if resumed else job.created_at) + self.settings.job_timeout
        try:
            async with self.clock.timeout(max(0.0, deadline - self.clock.time())):
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
            self._finish(job, JobState.CANCELLED,
                         self._why.get(job.id) or Cancelled("The job was cancelled."))
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

    async def _take_slot(self, job: Job) -> None:
        waiting_since = self.clock.monotonic()
        await self.queue.wait(self._places[job.id])
        job.started_at = self.clock.time()
        self.metrics.stage("queued", self.clock.monotonic() - waiting_since)

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

    async def _stage(self, job: Job, state: JobState, deadline: float,
                     work: Awaitable[R]) -> R:
        """Run one stage of the job under its own deadline (and the job's)."""
        self._set(job, state)
        name, what = STAGES[state]
        limit = getattr(self.settings, name)
        budget = min(limit, deadline - self.clock.time())
        started = self.clock.monotonic()
        try:
            async with self.clock.timeout(max(0.0, budget)):
                with kept_cancel():     # a cancel the work swallowed ends the job here
                    return await work
        except asyncio.TimeoutError:
            if budget < limit:
                raise  # the whole job's deadline: reported by _run
            what = what.format(upstream=self.provider.for_job(job).label)
            raise StageTimeout(f"{what} took longer than {limit:g} s ({name}).",
                               stage=state.value) from None
        finally:
            self.metrics.stage(state.value, self.clock.monotonic() - started)

    async def _download(self, job: Job, deadline: float) -> None:
        await self._stage(job, JobState.DOWNLOADING, deadline,
                          download(job, self.provider, self.store, self.clock))

    async def _cancel_upstream(self, job: Job) -> None:
        """Tell the upstream to stop a job it has (best effort, briefly)."""
        if job.state in (JobState.RUNNING, JobState.SUBMITTING) and \
                self.provider.submitted(job):
            with contextlib.suppress(Exception):
                await wait_for(self.provider.cancel(job), 5)

    def _retry_after(self) -> float:
        waves = self.queue.waiting / max(1, self.settings.max_active_jobs)
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

    def expire(self, before: float) -> None:
        """Forget the finished jobs that ended before ``before`` (``job_retention``: their
        records are being removed)."""
        for job in [j for j in self._jobs.values()
                    if j.state.terminal and (j.finished_at or 0) < before]:
            del self._jobs[job.id]
            if job.idempotency_key and self._by_key.get(job.idempotency_key) is job:
                del self._by_key[job.idempotency_key]

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
        twin = await self.replicas.twin(job)
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
        await self.journal.written()
        return job

    def _finish(self, job: Job, state: JobState, error: ArtingError | None = None) -> None:
        job.state, job.error, job.finished_at = state, error, self.clock.time()
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



def _scoped(key: str | None, owner: str) -> str | None:
    """An idempotency key as the journal keeps it: within its owner's own keys."""
    return f"{owner}:{key}" if key else None
