"""What the engine learns from durations: the polling schedule, estimates and progress."""

from __future__ import annotations

import math
import random
from statistics import NormalDist

import pytest

from arting_daemon import timing
from arting_daemon.config import Settings
from arting_daemon.timing import (DurationStats, PollSchedule, Timing, quantile,
                                  running_progress)

#: 64 durations shaped like Arting's: lognormal, median 8 s, sigma 0.6.
LOGNORMAL = [8 * math.exp(0.6 * NormalDist().inv_cdf((i + 0.5) / 64)) for i in range(64)]
SETTINGS = Timing.of(Settings(poll_min_interval=0.4, poll_max_interval=5.0, poll_rate=0.5))


def polls_for(schedule: PollSchedule, duration: float) -> tuple[int, float]:
    """(polls made, seconds from finishing to being noticed) for one job."""
    elapsed, polls = 0.0, 0
    while True:
        elapsed += schedule.next_delay(elapsed, polls)
        polls += 1
        if elapsed >= duration:
            return polls, elapsed - duration


def gaps(schedule: PollSchedule, until: float) -> list[tuple[float, float]]:
    """(time of a poll, pause after it) up to ``until``."""
    out, t = [], schedule.next_delay(0)
    while t < until:
        pause = schedule.next_delay(t)
        out.append((t, pause))
        t += pause
    return out


def burst_cost(schedule: PollSchedule, durations: list[float]) -> float:
    """Polls per job-second of jobs that all start with this schedule."""
    return sum(polls_for(schedule, d)[0] for d in durations) / sum(durations)


def warmed(settings: Timing, durations: list[float]) -> DurationStats:
    """A daemon's history after these jobs ran one after another."""
    stats = DurationStats(settings)
    for d in durations:
        schedule = stats.schedule("m", 512, 512)
        elapsed, pending, polls = 0.0, None, 0
        while True:
            elapsed += schedule.next_delay(elapsed, polls)
            polls += 1
            if elapsed >= d:
                break
            pending = elapsed
        stats.record("m", 512, 512, schedule.finished_at(elapsed, pending))
    return stats


@pytest.mark.parametrize("expected", [3.0, 15.0, 60.0])
def test_a_cold_schedule_spends_poll_rate_on_jobs_like_its_prior(expected):
    for rate in (0.3, 0.5, 1.0, 1.5):
        s = PollSchedule([], Timing.of(Settings(poll_rate=rate, expected_duration=expected)))
        jobs = timing.prior(expected)
        polls = sum(polls_for(s, d)[0] for d in jobs)
        budget = max(timing.MIN_POLLS * len(jobs), rate * sum(jobs))
        assert polls == pytest.approx(budget, rel=0.1)


@pytest.mark.parametrize("expected", [3.0, 15.0, 60.0])
def test_a_cold_schedule_keeps_the_budget_whatever_jobs_take(expected):
    """``expected_duration`` is a guess: jobs from a tenth to ten times as long cost at
    most a fifth more than the budget (with the defaults), or a fifth and one poll."""
    for rate in (0.3, 0.5, 1.0, 1.5):
        settings = Timing.of(Settings(poll_rate=rate, expected_duration=expected))
        s = PollSchedule([], settings)
        for k in range(-100, 101):
            d = expected * 10 ** (k / 100)
            budget = max(timing.MIN_POLLS, rate * d)
            slack = 0 if rate == 0.5 and expected == 15 else 1   # the defaults: none
            assert polls_for(s, d)[0] <= 1.2 * budget + slack, (rate, d)


def test_a_cold_burst_keeps_the_budget_like_a_warm_daemon(monkeypatch):
    """1,000 jobs at once into a daemon with no history, against the same jobs once it
    has learned from 200 of them. Before, a cold daemon cost 7.8 polls per 5-second
    job (1.56 per job-second). Now it spends the budget, as a warm one does on jobs
    spread like Arting's; on jobs that all take exactly 5 s it makes two polls each,
    where a warm daemon makes one or two (one if its first poll comes just after 5 s)."""
    monkeypatch.setattr(timing, "_spread", random.Random(7))
    rng = random.Random(3)
    spread = lambda: min(60.0, rng.lognormvariate(math.log(8), 0.6))  # noqa: E731
    jobs, history = [spread() for _ in range(1000)], [spread() for _ in range(200)]
    cold = burst_cost(PollSchedule([], SETTINGS), jobs)
    warm = burst_cost(warmed(SETTINGS, history).schedule("m", 512, 512), jobs)
    assert cold == pytest.approx(SETTINGS.poll_rate, rel=0.1), cold
    assert warm == pytest.approx(SETTINGS.poll_rate, rel=0.1), warm
    assert polls_for(PollSchedule([], SETTINGS), 5.0)[0] == 2


def test_the_first_finished_jobs_move_the_schedule():
    """Without history the plan is made for a prior around ``expected_duration``; the
    first finished job recentres it, and from ``MIN_SAMPLES`` on the jobs' own
    durations shape it."""
    settings = Timing.of(Settings(expected_duration=15.0))
    stats = DurationStats(settings)
    cold = stats.schedule("m", 512, 512)
    assert cold.plan == PollSchedule(timing.prior(15.0), settings).plan
    stats.record("m", 512, 512, 4.0)
    first = stats.schedule("m", 512, 512)
    assert first.plan == PollSchedule(timing.prior(4.0), settings).plan
    assert first.next_delay(0) < cold.next_delay(0) / 1.5
    for d in (4.2, 3.8, 4.1, 3.9):
        stats.record("m", 512, 512, d)
    learned = stats.schedule("m", 512, 512)
    assert learned.plan == PollSchedule([4.0, 4.2, 3.8, 4.1, 3.9], settings).plan
    jobs = [3.8, 3.9, 4.0, 4.1, 4.2]
    polls, delay = zip(*[map(sum, zip(*(polls_for(s, d) for d in jobs)))
                         for s in (cold, first, learned)])
    assert delay[0] > delay[1] > delay[2] and polls[2] <= min(polls), (polls, delay)


def test_schedule_is_quiet_while_few_jobs_can_be_done():
    s = PollSchedule(LOGNORMAL, SETTINGS)
    first = s.next_delay(0, polls=0)
    done_by_then = sum(d <= first for d in LOGNORMAL) / len(LOGNORMAL)
    assert 0.05 <= done_by_then <= 0.3
    assert s.next_delay(1.0, polls=0) == pytest.approx(first - 1.0)
    # with more polls to spend, the first one is worth making earlier
    eager = PollSchedule(LOGNORMAL, Timing.of(Settings(poll_rate=1.5)))
    assert eager.next_delay(0, polls=0) < first


def test_schedule_spends_poll_rate_polls_per_second_of_generation():
    for rate in (0.3, 0.5, 1.0, 1.5):
        s = PollSchedule(LOGNORMAL, Timing.of(Settings(poll_rate=rate)))
        polls = sum(polls_for(s, d)[0] for d in LOGNORMAL)
        assert polls / sum(LOGNORMAL) == pytest.approx(rate, rel=0.1)


def test_more_polls_notice_sooner():
    def median_delay(rate: float) -> float:
        s = PollSchedule(LOGNORMAL, Timing.of(Settings(poll_rate=rate)))
        return quantile(sorted(polls_for(s, d)[1] for d in LOGNORMAL), 0.5)
    delays = [median_delay(rate) for rate in (0.3, 0.5, 1.0, 1.5)]
    assert delays == sorted(delays, reverse=True) and delays[-1] < delays[0] / 3


def test_pauses_are_shortest_where_running_jobs_most_often_finish():
    # For this lognormal the chance that a running job finishes next grows until
    # about 12 s and falls slowly after: pauses shrink towards 12 s, then grow again.
    pauses = gaps(PollSchedule(LOGNORMAL, SETTINGS), until=40)
    near = lambda t0: min(pauses, key=lambda tp: abs(tp[0] - t0))[1]  # noqa: E731
    assert near(4) > near(8) > near(12)
    assert near(30) > near(12)
    assert all(0.4 <= pause <= 5.0 for _, pause in pauses)


def test_beats_a_fixed_interval_with_the_same_number_of_polls():
    s = PollSchedule(LOGNORMAL, SETTINGS)
    ours = [polls_for(s, d) for d in LOGNORMAL]
    budget = sum(p for p, _ in ours) / len(ours)            # polls per job
    every = sum(LOGNORMAL) / len(LOGNORMAL) / (budget - 0.5)  # fixed interval, same cost
    fixed = [(math.ceil(d / every), math.ceil(d / every) * every - d) for d in LOGNORMAL]
    assert sum(p for p, _ in fixed) == pytest.approx(sum(p for p, _ in ours), rel=0.1)
    mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
    assert mean([d for _, d in ours]) < 0.85 * mean([d for _, d in fixed])


def test_the_long_tail_backs_off_to_the_longest_pause():
    s = PollSchedule(LOGNORMAL, SETTINGS)
    last = s.plan[-1]
    assert last >= max(LOGNORMAL)
    assert s.next_delay(last + 2) == pytest.approx(0.5)      # (overrun) / 4
    assert s.next_delay(last + 100) == 5.0


def test_jobs_that_always_take_the_same_time_get_one_poll_then_brisk_ones():
    s = PollSchedule([10.0] * 20, SETTINGS)
    assert s.next_delay(0) == pytest.approx(10.0)
    assert s.next_delay(10.0) == pytest.approx(0.4)


def test_instant_jobs_are_polled_at_once():
    s = PollSchedule([0.001] * 20, SETTINGS)
    assert s.next_delay(0.0001, polls=0) == 0.0
    assert s.next_delay(0.002, polls=1) == pytest.approx(0.4 - 0.002)


def test_a_late_poll_is_not_followed_at_once_by_the_next_planned_one():
    s = PollSchedule(LOGNORMAL, SETTINGS)
    t, pause = gaps(s, until=12)[-1]
    assert s.next_delay(t + pause - 0.01) >= 0.2            # half the shortest pause


def test_finish_time_estimate_lies_between_the_polls():
    s = PollSchedule(LOGNORMAL, SETTINGS)
    assert s.finished_at(10.0, pending=9.0) == 9.5
    # done at the first poll: within the two pauses the schedule would have had before it
    first = s.next_delay(0, polls=0)
    guesses = [s.finished_at(first, None) for _ in range(200)]
    assert first - 2 * s.next_delay(first) <= min(guesses) < max(guesses) <= first


def test_learning_from_jobs_faster_than_the_first_poll(monkeypatch):
    """Recording when a job was *noticed* would teach the schedule that jobs take as long
    as it waited, and the first poll would never move earlier. Jobs here take 50 ms,
    the first poll without history comes after about 1 s. (Jobs done at their first poll are
    placed at random before it: the generator is seeded so the test is repeatable.)"""
    monkeypatch.setattr(timing, "_spread", random.Random(7))
    stats = DurationStats(Timing.of(Settings(expected_duration=2.0)))
    assert stats.schedule("m", 512, 512).next_delay(0) == pytest.approx(1.0, abs=0.1)
    for _ in range(60):
        schedule = stats.schedule("m", 512, 512)
        elapsed, pending, polls = 0.0, None, 0
        while True:
            elapsed += schedule.next_delay(elapsed, polls)
            polls += 1
            if elapsed >= 0.05:
                break
            pending = elapsed
        stats.record("m", 512, 512, schedule.finished_at(elapsed, pending))
    assert stats.schedule("m", 512, 512).next_delay(0) < 0.2   # from 1 s (any seed: < 0.18)


def test_schedule_is_planned_again_as_its_history_changes():
    stats = DurationStats(SETTINGS)
    for d in LOGNORMAL[:10]:
        stats.record("m", 512, 512, d)
    first = stats.schedule("m", 512, 512)
    assert stats.schedule("m", 512, 512) is first
    assert stats.schedule("m", 1024, 1024) is not first      # other size: all jobs' history
    stats.record("m", 512, 512, 9.0)
    second = stats.schedule("m", 512, 512)
    assert second is not first
    for d in LOGNORMAL[10:64]:
        stats.record("m", 512, 512, d)
    third = stats.schedule("m", 512, 512)
    stats.record("m", 512, 512, 9.0)                        # 1 of 64 new: keep the plan
    assert stats.schedule("m", 512, 512) is third
    for d in LOGNORMAL[:7]:                                  # 8 of 64 new: plan again
        stats.record("m", 512, 512, d)
    assert stats.schedule("m", 512, 512) is not third


def test_progress_moves_but_never_reaches_the_end_early():
    values = [running_progress(t, 10) for t in range(0, 60)]
    assert values == sorted(values) and values[-1] < 0.99 and values[5] == 0.5
