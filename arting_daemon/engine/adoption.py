"""What the runner does for replicas (``redis_url``): each job runs on one replica, and
another one takes it over when that one leaves (``adopt``) or steps back when it lost it
(``drop``); a job another replica runs is followed by its record; an idempotency key held
by a job another replica made answers with that job. With one daemon the journal has no
other replica to tell of, and this part stays quiet: ``adopt`` resumes the jobs of the
previous run at start.

The runner holds one (``runner.replicas``) and lends it its state.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from ..errors import Cancelled, Unavailable, UpstreamError
from .jobs import Job, JobState, shutting_down

if TYPE_CHECKING:
    from .runner import Runner


class Adoption:
    """The replicas' side of a ``Runner``."""

    def __init__(self, runner: Runner) -> None:
        self.runner = runner

    async def adopt(self, job: Job) -> bool:
        """Take over an unfinished job (after a restart, or from a replica that left):
        followed where the upstream has it, queued again when sending it again costs
        nothing, else failed — the upstream may have it, and sending it twice could make
        two. Returns whether it runs here now."""
        if job.id in self.runner._jobs and not self.runner._jobs[job.id].state.terminal:
            return False
        if await self.runner.journal.cancel_requested(job.id):
            self.runner._finish(job, JobState.CANCELLED, Cancelled("The job was cancelled."))
            return False
        submitted = self.runner.provider.submitted(job)
        foreign = self.runner.provider.foreign(job) if submitted else None
        if foreign is not None:                     # its ids mean nothing here
            self.runner._finish(job, JobState.FAILED, UpstreamError(foreign))
            return False
        if job.state is JobState.DOWNLOADING and job.outputs:
            pass                                    # fetch the images again
        elif submitted and job.state is not JobState.QUEUED:
            job.state = JobState.RUNNING            # follow it where it is
        elif job.state is JobState.QUEUED or self.runner.provider.for_job(job).free_to_repeat:
            job.state, job.submitted_at = JobState.QUEUED, None
        else:
            self.runner._finish(job, JobState.FAILED, UpstreamError(
                "The daemon restarted while submitting this job; submit it again."))
            return False
        if self.runner.admission is not None:
            await self.runner.admission.restore(job)
        self.runner._dropped.discard(job.id)
        self.runner._remember(job)
        self.runner._start_task(job, resumed=True)
        return True

    def drop(self, job_id: str) -> None:
        """Stop working on a job another replica has taken over (its lease was lost):
        quietly, leaving its record to the one that runs it now."""
        task = self.runner._tasks.get(job_id)
        if task is not None:
            self.runner._dropped.add(job_id)
            task.cancel()
        self.runner._jobs.pop(job_id, None)

    async def remote_changes(self, job: Job, tick: float) -> AsyncIterator[Job]:
        """A job this daemon does not run, as its record changes (each change announced
        by the replica that runs it, and read again every ``tick`` seconds anyway)."""
        async with self.runner.journal.watch(job.id) as changed:
            while True:
                yield job
                if job.state.terminal:
                    return
                if self.runner._stopped.is_set():
                    raise shutting_down()
                try:
                    await self.runner.clock.wait_for(changed.wait(), tick)
                except asyncio.TimeoutError:
                    pass
                changed.clear()
                job = await self.runner.get(job.id) or job

    async def twin(self, job: Job) -> Job | None:
        """The job that holds ``job``'s idempotency key already, if another does: a twin
        request submitted meanwhile (with replicas, maybe elsewhere). The first one wins."""
        if not job.idempotency_key:
            return None
        holder = await self.runner.journal.claim_key(job.idempotency_key, job.id)
        twin = self.runner._by_key.get(job.idempotency_key)
        if holder != job.id or twin is not None:
            return twin or await self._await_record(holder)
        return None

    async def _await_record(self, job_id: str) -> Job:
        """The job another replica just made, once its record arrives (a moment)."""
        for _ in range(40):
            found = await self.runner.get(job_id)
            if found is not None:
                return found
            await asyncio.sleep(0.05)
        raise Unavailable("The job for this Idempotency-Key is being made by another "
                          "replica; ask again in a moment.", retry_after=1)

    def cancel_by_id(self, job_id: str) -> None:
        """Another replica asks to cancel a job this one runs."""
        job = self.runner._jobs.get(job_id)
        if job is not None and job.id in self.runner._tasks:
            self.runner.cancel(job)
