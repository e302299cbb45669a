"""What we learn from how long Arting takes: ETAs, progress, and when to poll.

Recent generation times are kept per model and size class. They give each job an
expected duration (for progress bars and ETAs) and a polling schedule: stay quiet
while a job almost surely is not done yet, poll briskly where jobs usually finish,
and back off for the long tail. That costs fewer polls than a fixed interval and
notices a finished job sooner.
"""

from __future__ import annotations

from collections import deque

from .config import Settings

HISTORY = 64        # durations remembered per key
MIN_SAMPLES = 5     # before this many, the schedule uses the global history or defaults


def size_class(width: int, height: int) -> str:
    pixels = width * height
    return "s" if pixels <= 512 * 512 else "m" if pixels <= 768 * 768 else "l"


class DurationStats:
    """Recent durations of the generation stage, per (model, size class) and overall."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._by_key: dict[tuple[str, str], deque[float]] = {}
        self._all: deque[float] = deque(maxlen=HISTORY)

    def record(self, model: str, width: int, height: int, seconds: float) -> None:
        key = (model, size_class(width, height))
        self._by_key.setdefault(key, deque(maxlen=HISTORY)).append(seconds)
        self._all.append(seconds)

    def samples(self, model: str, width: int, height: int) -> list[float]:
        """Sorted durations for this kind of job (falling back to all jobs)."""
        own = self._by_key.get((model, size_class(width, height)), ())
        return sorted(own if len(own) >= MIN_SAMPLES else self._all)

    def expected(self, model: str, width: int, height: int) -> float:
        data = self.samples(model, width, height)
        return quantile(data, 0.5) if data else self.settings.expected_duration

    def typical(self) -> float:
        """Median duration of any job, or the configured guess."""
        data = sorted(self._all)
        return quantile(data, 0.5) if data else self.settings.expected_duration

    def schedule(self, model: str, width: int, height: int) -> PollSchedule:
        return PollSchedule(self.samples(model, width, height), self.settings)


def quantile(sorted_data: list[float], q: float) -> float:
    if not sorted_data:
        raise ValueError("no data")
    pos = q * (len(sorted_data) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(sorted_data) - 1)
    return sorted_data[lo] + (sorted_data[hi] - sorted_data[lo]) * (pos - lo)


class PollSchedule:
    """When to poll next, given how long the job has run.

    With history: the first poll comes when the fastest tenth of jobs are done, polls
    then follow each other at ``poll_min_interval`` until the slowest tenth would be
    done, and after that the pause grows with the overrun, up to ``poll_max_interval``.
    Without history: a first poll after ``poll_first_delay``, then pauses of a fifth of
    the elapsed time, within the configured bounds.
    """

    def __init__(self, history: list[float], settings: Settings) -> None:
        self.lo_interval = settings.poll_min_interval
        self.hi_interval = settings.poll_max_interval
        self.first = settings.poll_first_delay
        self.start = self.end = None
        if len(history) >= MIN_SAMPLES:
            self.start = quantile(history, 0.1)
            self.end = quantile(history, 0.9)

    def next_delay(self, elapsed: float) -> float:
        if self.start is None:
            if elapsed < self.first:
                return self.first - elapsed
            return min(self.hi_interval, max(self.lo_interval, elapsed / 5))
        if elapsed < self.start:
            return self.start - elapsed
        if elapsed < self.end:
            return self.lo_interval
        return min(self.hi_interval, max(self.lo_interval, (elapsed - self.end) / 4))


def running_progress(elapsed: float, expected: float) -> float:
    """Fraction done of a running job: linear to 90 % of the expected time, then
    creeping towards (never reaching) the end, so an overrun still moves."""
    if expected <= 0:
        return 0.9
    f = elapsed / expected
    if f < 0.9:
        return f
    return 0.9 + 0.09 * (1 - 1 / (1 + (f - 0.9)))

