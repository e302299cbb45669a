"""What we learn from how long Arting takes: ETAs, progress, and when to poll.

Recent generation times are kept per model and size class. They give each job an
expected duration (for progress bars and ETAs) and a polling schedule that spends a
fixed budget of polls (``poll_rate`` per second of generation) where they notice a
finished job soonest: none while a job almost surely is not done yet, the most where
recent jobs most often finished, fewer and fewer in the long tail. Before there is
history, the same planning runs on a prior: durations spread widely around
``expected_duration`` (or around the first few jobs' durations, once there are some),
so a cold daemon keeps the budget too.
"""

from __future__ import annotations

import math
import random
from bisect import bisect_left, bisect_right
from collections import deque
from dataclasses import dataclass
from statistics import NormalDist

from .config import Section

_spread = random.Random()   # our own: the global ``random`` state is not ours

HISTORY = 64          # durations remembered per key
MIN_SAMPLES = 5       # before this many, the schedule uses the global history or the prior
PRIOR_SIGMA = 1.0     # the prior: lognormal, this σ (10-90 % of jobs within 0.28-3.6× its median)
PRIOR_POINTS = 64     # quantiles of the prior the plan is made from
SPREAD = 0.1          # half-width, in quantiles, of the window the density is read over
IMMEDIATE = 0.005     # a first poll due sooner than this (seconds) is sent at once
MIN_POLLS = 2         # polls any job may have, however short
FIRST_POLL_LATEST = 0.25  # the first poll comes when at most this share of jobs is done


@dataclass(frozen=True)
class Timing(Section):
    expected_duration: float
    poll_min_interval: float
    poll_max_interval: float
    poll_rate: float


def size_class(width: int, height: int) -> str:
    pixels = width * height
    return "s" if pixels <= 512 * 512 else "m" if pixels <= 768 * 768 else "l"


class DurationStats:
    """Recent durations of the generation stage, per (model, size class) and overall."""

    def __init__(self, timing: Timing) -> None:
        self.timing = timing
        self._by_key: dict[tuple[str, str], deque[float]] = {}
        self._all: deque[float] = deque(maxlen=HISTORY)
        self._recorded: dict[tuple[str, str] | None, int] = {}
        self._schedules: dict[tuple[str, str] | None, tuple[int, PollSchedule]] = {}

    def record(self, model: str, width: int, height: int, seconds: float) -> None:
        key = (model, size_class(width, height))
        self._by_key.setdefault(key, deque(maxlen=HISTORY)).append(seconds)
        self._all.append(seconds)
        for k in (key, None):
            self._recorded[k] = self._recorded.get(k, 0) + 1

    def _source(self, model: str, width: int, height: int) -> tuple[str, str] | None:
        """The history to use: this kind of job's own, else (None) all jobs'."""
        key = (model, size_class(width, height))
        return key if len(self._by_key.get(key, ())) >= MIN_SAMPLES else None

    def samples(self, model: str, width: int, height: int) -> list[float]:
        """Sorted durations for this kind of job (falling back to all jobs)."""
        source = self._source(model, width, height)
        return sorted(self._all if source is None else self._by_key[source])

    def expected(self, model: str, width: int, height: int) -> float:
        data = self.samples(model, width, height)
        return quantile(data, 0.5) if data else self.timing.expected_duration

    def typical(self) -> float:
        """Median duration of any job, or the configured guess."""
        data = sorted(self._all)
        return quantile(data, 0.5) if data else self.timing.expected_duration

    def schedule(self, model: str, width: int, height: int) -> PollSchedule:
        """The schedule for a new job. It is planned again once an eighth of its
        history is new: planning takes about a millisecond, and a busy daemon
        starts many jobs between two records."""
        source = self._source(model, width, height)
        version = self._recorded.get(source, 0)
        cached = self._schedules.get(source)
        if cached is not None:
            planned, schedule = cached
            history = self._all if source is None else self._by_key[source]
            if version - planned < max(1, len(history) // 8):
                return schedule
        schedule = PollSchedule(self.samples(model, width, height), self.timing)
        self._schedules[source] = (version, schedule)
        return schedule


def quantile(sorted_data: list[float], q: float) -> float:
    if not sorted_data:
        raise ValueError("no data")
    pos = q * (len(sorted_data) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(sorted_data) - 1)
    return sorted_data[lo] + (sorted_data[hi] - sorted_data[lo]) * (pos - lo)


class PollSchedule:
    """When to poll next, given how long the job has run.

    The poll times are planned up front. The pause at time t is ``c * sqrt(S(t) / f(t))``:
    one over the square root of the hazard rate (the chance that a job still running at
    t finishes in the next moment), read off the recent durations. Those pauses give the
    least mean delay between a job finishing and us noticing for a given number of
    polls; ``c`` is chosen so that the recent jobs would have cost ``poll_rate`` polls
    per second of generation. The first poll comes once it pays for itself
    (``_Shape.first_poll``): before it, a job is almost surely still running. Pauses stay
    within ``poll_min_interval``..``poll_max_interval``; past the slowest recent job they
    grow with the overrun.

    With fewer than ``MIN_SAMPLES`` durations, the plan is made for a wide prior instead
    (``prior``): centred on the median of those few (or on ``expected_duration`` when
    there are none), so it moves to where jobs really finish from the first one on, and
    it spends about ``poll_rate`` whatever they take: at most a fifth (and a poll) more
    for any duration from a tenth to ten times the centre (tests/test_timing.py).
    """

    def __init__(self, history: list[float], timing: Timing) -> None:
        self.lo_interval = timing.poll_min_interval
        self.hi_interval = timing.poll_max_interval
        data = sorted(history)
        if len(data) < MIN_SAMPLES:
            data = prior(quantile(data, 0.5) if data else timing.expected_duration)
        self.plan = _plan(data, timing.poll_rate, self.lo_interval, self.hi_interval)

    def next_delay(self, elapsed: float, polls: int = 1) -> float:
        """Seconds to wait before the next poll of a job that has run ``elapsed``
        seconds and been polled ``polls`` times."""
        plan = self.plan
        if elapsed < plan[0] or polls == 0:
            return max(0.0, plan[0] - elapsed)
        # a poll that ran late must not be followed at once by the next planned one
        i = bisect_right(plan, elapsed + self.lo_interval / 2)
        if i < len(plan):
            return plan[i] - elapsed
        return min(self.hi_interval, max(self.lo_interval, (elapsed - plan[-1]) / 4))

    def finished_at(self, done: float, pending: float | None) -> float:
        """When a job found done by the poll sent at ``done`` seconds most likely
        finished: midway since the last poll that found it running (``pending``).

        A job done at its very first poll may have finished any time before it: it is
        put at random within the two pauses the schedule would have had before that
        poll, which spreads such jobs out instead of piling them on one value that
        would look like a peak of the distribution. Recording ``done`` itself would
        teach the schedule that jobs take as long as it waited, and the first poll
        would never come earlier than it does now."""
        if pending is None:
            return _spread.uniform(max(0.0, done - 2 * self.next_delay(done)), done)
        return (pending + done) / 2


_PRIOR_Z = [NormalDist().inv_cdf((i + 0.5) / PRIOR_POINTS) for i in range(PRIOR_POINTS)]


def prior(median: float) -> list[float]:
    """Durations as the prior sees them: quantiles of a lognormal with this median and
    ``PRIOR_SIGMA``. Wide, because the median is a guess (``expected_duration``) or
    rests on a job or two."""
    return [median * math.exp(PRIOR_SIGMA * z) for z in _PRIOR_Z]


def _plan(data: list[float], rate: float, lo: float, hi: float) -> list[float]:
    """Poll times (seconds after submission) for jobs whose recent, sorted durations
    are ``data``, costing ``rate`` polls per second of generation on those jobs."""
    end = data[-1]
    shape = _Shape(data)
    # polls one average job may cost; any job may have two (short jobs cost little)
    budget = max(MIN_POLLS, rate * sum(data) / len(data))

    def build(c: float) -> list[float]:
        t = shape.first_poll(c, lo, hi)
        if t < IMMEDIATE:
            t = 0.0
        times = [t]
        while t < end:
            t += min(hi, max(lo, c * shape.gap(t)))
            times.append(t)
        return times

    def cost(times: list[float]) -> float:
        return sum(bisect_left(times, d) + 1 for d in data) / len(data)

    # cost falls as c grows: bisect log(c) for the smallest c within the budget
    low, high = math.log(1e-3), math.log(1e3)
    best = build(math.exp(high))
    for _ in range(16):
        mid = (low + high) / 2
        times = build(math.exp(mid))
        if cost(times) > budget:
            low = mid
        else:
            high, best = mid, times
    return best


class _Shape:
    """What the sorted durations ``data`` say about when a running job finishes.

    At each sample, with p its quantile: S = 1 - p (survival, kept off zero), and the
    density f as the slope of the quantiles over ``±SPREAD``. A schedule with pauses
    ``c * sqrt(S/f)`` minimises mean delay + ``c²/2`` × polls (``c²/2`` is the price
    of a poll, in seconds of delay). The slowest fifth of a few dozen samples says
    little about the hazard f/S out there, so from its start on the pauses grow like
    ``sqrt(t)``: a hazard falling like 1/t, as in long tails of generation times.
    """

    def __init__(self, data: list[float]) -> None:
        n = len(data)
        self.data = data
        self.tail = quantile(data, 1 - 2 * SPREAD)
        self.gaps: list[float] = []       # sqrt(S / f) at each sample
        self.done: list[float] = []       # F / f at each sample
        for i in range(n):
            p = i / (n - 1)
            below, above = max(0.0, p - SPREAD), min(1.0, p + SPREAD)
            slope = (quantile(data, above) - quantile(data, below)) / (above - below)
            self.gaps.append(math.sqrt((1 - p + 1 / (n + 1)) * slope))
            self.done.append(p * slope)
        self.tail_gap = self._between(self.tail)

    def gap(self, t: float) -> float:
        if t > self.tail > 0:
            return self.tail_gap * math.sqrt(t / self.tail)
        return self._between(t)

    def first_poll(self, c: float, lo: float, hi: float) -> float:
        """The first poll is worth its price once the jobs likely done by then would
        otherwise wait a whole pause more: F/f ≥ pause + c²/2. It comes no later than
        the fastest quarter of recent jobs, so the schedule keeps seeing how early
        jobs finish (a job done at the first poll only says "before")."""
        latest = quantile(self.data, FIRST_POLL_LATEST)
        for x, gap, done in zip(self.data, self.gaps, self.done):
            if x >= latest or done >= min(hi, max(lo, c * gap)) + c * c / 2:
                return min(x, latest)
        return latest

    def _between(self, t: float) -> float:
        data, gaps = self.data, self.gaps
        i = bisect_right(data, t)
        if i == 0:
            return gaps[0]
        if i == len(data):
            return gaps[-1]
        a, b = data[i - 1], data[i]
        frac = (t - a) / (b - a) if b > a else 1.0
        return gaps[i - 1] + (gaps[i] - gaps[i - 1]) * frac


def running_progress(elapsed: float, expected: float) -> float:
    """Fraction done of a running job: linear to 90 % of the expected time, then
    creeping towards (never reaching) the end, so an overrun still moves."""
    if expected <= 0:
        return 0.9
    f = elapsed / expected
    if f < 0.9:
        return f
    return 0.9 + 0.09 * (1 - 1 / (1 + (f - 0.9)))

