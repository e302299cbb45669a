"""What clients are shown of a job's progress: a fraction done and the seconds left.

The provider's own word where it has one (A1111 reports its steps); else the clock's
estimate against the expected duration (``timing.py``), which never goes back (the
expected duration grows when slower jobs finish meanwhile, and a progress bar must not go
back for that). A queued job is shown the waves of jobs ahead of it.
"""

from __future__ import annotations

from ..timing import running_progress
from .jobs import Job, JobState


def progress(job: Job, expected: float, position: int | None, slots: int,
             now: float) -> tuple[float, float | None]:
    """(fraction done 0..1, seconds left or None) of ``job``, expected to take ``expected``
    seconds upstream, at ``position`` in the queue before ``slots`` slots, at ``now``."""
    if job.state is JobState.SUCCEEDED:
        return 1.0, 0.0
    if job.state.terminal:
        return 0.0, None
    if job.state is JobState.QUEUED:
        ahead = (position or 1) - 1
        waves = ahead // max(1, slots) + 1
        return 0.0, waves * expected + expected
    if job.state is JobState.SUBMITTING or job.submitted_at is None:
        return 0.02, expected
    if job.state is JobState.DOWNLOADING:
        return 0.95, 1.0
    elapsed = now - job.submitted_at
    if job.reported_progress is not None:       # the provider knows: shown as it says
        frac = job.reported_progress
        left = elapsed / frac - elapsed if frac > 0.05 else expected - elapsed
        return 0.05 + 0.9 * frac, max(0.5, left)
    frac, left = running_progress(elapsed, expected), expected - elapsed
    job._progress_shown = max(job._progress_shown, 0.05 + 0.9 * frac)
    return job._progress_shown, max(0.5, left)
