"""Prometheus metrics (``GET /metrics``): jobs, stage latencies, upstream errors, pool.

Each daemon has its own registry, so several daemons in one process (the tests) never
mix their numbers. Counters and histograms are fed by the engine and the upstream
client as things happen; gauges (jobs by state, queue depth, token health) are read
from the engine and the pool at scrape time. Label values are stage names, error
class names and token *labels* (``token-1``), never a token or cookie.
"""

from __future__ import annotations

from collections import Counter as Tally
from typing import TYPE_CHECKING

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram
from prometheus_client import generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from .errors import ArtingError

if TYPE_CHECKING:
    from .engine import Engine, Job
    from .upstream.tokens import TokenPool

CONTENT_TYPE = CONTENT_TYPE_LATEST
UNFINISHED = ("queued", "submitting", "running", "downloading")
TOKEN_STATES = ("ok", "cooling", "blocked", "invalid")
STAGE_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30, 60, 120, 240, 480)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.jobs_finished = Counter(
            "arting_jobs_finished", "Jobs that ended, by outcome and error code.",
            ["outcome", "code"], registry=r)
        self.job_seconds = Histogram(
            "arting_job_seconds", "Whole-job time from submit to its end, by outcome.",
            ["outcome"], buckets=STAGE_BUCKETS, registry=r)
        self.stage_seconds = Histogram(
            "arting_stage_seconds",
            "Time spent in each stage of a job (queue, submit, run, download), whatever "
            "the stage's outcome.", ["stage"], buckets=STAGE_BUCKETS, registry=r)
        self.upstream_errors = Counter(
            "arting_upstream_errors", "Failed exchanges with Arting, by route and error class.",
            ["route", "error"], registry=r)
        self.create_retries = Counter(
            "arting_create_retries", "Creates sent again, by the error that made it safe.",
            ["error"], registry=r)
        self.cloudflare_solves = Counter(
            "arting_cloudflare_solves", "Attempts to pass a Cloudflare challenge with "
            "cloudscraper, by result.", ["result"], registry=r)

    def watch(self, engine: Engine, pool: TokenPool) -> None:
        """Expose the engine's and the pool's current state as gauges."""
        self.registry.register(_Live(engine, pool))

    def render(self) -> bytes:
        return generate_latest(self.registry)

    # --- events ---------------------------------------------------------------------------

    def job_finished(self, job: Job) -> None:
        outcome = job.state.value
        code = job.error.code if job.error is not None and outcome == "failed" else ""
        self.jobs_finished.labels(outcome, code).inc()
        if job.finished_at is not None:
            self.job_seconds.labels(outcome).observe(max(0.0, job.finished_at - job.created_at))

    def stage(self, name: str, seconds: float) -> None:
        self.stage_seconds.labels(name).observe(max(0.0, seconds))

    def upstream_error(self, route: str, error: ArtingError) -> None:
        self.upstream_errors.labels(route, type(error).__name__).inc()


class _Live:
    """A collector reading the live state at scrape time."""

    def __init__(self, engine: Engine, pool: TokenPool) -> None:
        self.engine, self.pool = engine, pool

    def collect(self):
        engine, pool = self.engine, self.pool
        states = Tally(job.state.value for job in engine.active)
        states["queued"] = engine.queued
        jobs = GaugeMetricFamily("arting_jobs", "Unfinished jobs, by state.", labels=["state"])
        for state in UNFINISHED:
            jobs.add_metric([state], states[state])
        yield jobs
        yield GaugeMetricFamily("arting_queue_depth", "Jobs waiting for a free slot.",
                                value=engine.queued)
        yield GaugeMetricFamily("arting_queue_limit", "Jobs that may wait (max_queued_jobs).",
                                value=engine.settings.max_queued_jobs)

        counts = Tally(t.state.value for t in pool.tokens)
        tokens = GaugeMetricFamily("arting_tokens", "Tokens, by health state.",
                                   labels=["state"])
        for state in TOKEN_STATES:
            tokens.add_metric([state], counts[state])
        yield tokens
        token_state = GaugeMetricFamily("arting_token_state",
                                        "1 for the state each token is in.",
                                        labels=["token", "state"])
        in_flight = GaugeMetricFamily("arting_token_in_flight",
                                      "Jobs each token has in flight upstream.",
                                      labels=["token"])
        balance = GaugeMetricFamily("arting_token_balance",
                                    "Each token's remain_balance at its last poll (tokens "
                                    "Arting has reported one for).", labels=["token"])
        probes = CounterMetricFamily("arting_token_probes",
                                     "Probes of unhealthy tokens, by result.",
                                     labels=["token", "result"])
        for t in pool.tokens:
            for state in TOKEN_STATES:
                token_state.add_metric([t.label, state], float(t.state.value == state))
            in_flight.add_metric([t.label], t.in_flight)
            if t.balance is not None:
                balance.add_metric([t.label], t.balance)
            for result in ("ok", "failed", "inconclusive"):
                probes.add_metric([t.label, result], t.probes[result])
        yield token_state
        yield in_flight
        yield balance
        yield probes
