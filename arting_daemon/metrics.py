"""Prometheus metrics (``GET /metrics``): jobs, stage latencies, upstream errors, pool.

Each daemon has its own registry, so several daemons in one process (the tests) never
mix their numbers. Counters and histograms are fed as things happen; gauges are read
at scrape time from whoever holds the state (the job runner, the token pool, the
providers), which ``watch`` registers. Label values are stage names, error class
names, provider names, token *labels* (``token-1``) and user key *names*, never a
token, key or cookie.
"""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram
from prometheus_client import generate_latest
from prometheus_client.registry import Collector

from .errors import ArtingError

CONTENT_TYPE = CONTENT_TYPE_LATEST
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
        self.provider_jobs = Counter(
            "arting_provider_jobs", "Jobs that ended, by the provider that had them last "
            "and outcome.", ["provider", "outcome"], registry=r)
        self.provider_failures = Counter(
            "arting_provider_failures", "Tries at a job that a provider failed, by provider "
            "and error class (with providers configured).", ["provider", "error"], registry=r)
        self.fallbacks = Counter(
            "arting_provider_fallbacks", "Jobs moved from one provider to the next after a "
            "failure.", ["from_provider", "to_provider"], registry=r)
        self.result_cache = Counter(
            "arting_result_cache", "Jobs submitted, by what the result cache did: `hit` "
            "(answered from the store), `miss` (looked up, not found), `bypass` (not "
            "looked up: a random seed, the client opted out, or the cache is off).",
            ["result"], registry=r)
        self.webhook_deliveries = Counter(
            "arting_webhook_deliveries", "Webhook delivery attempts, by outcome: "
            "`delivered`, `retry` (failed, tried again later), `failed` (given up).",
            ["result"], registry=r)
        self.operator_events = Counter(
            "arting_operator_events", "Operator events, by kind: token_refused, low_balance, "
            "pool_exhausted.", ["event"], registry=r)
        self.cloudflare_solves = Counter(
            "arting_cloudflare_solves", "Attempts to pass a Cloudflare challenge with "
            "cloudscraper, by result.", ["result"], registry=r)
        self.key_requests = Counter(
            "arting_key_requests", "Generation requests, by user key name.", ["key"],
            registry=r)
        self.key_images = Counter(
            "arting_key_images", "Images made, by user key name.", ["key"], registry=r)
        self.key_refusals = Counter(
            "arting_key_refusals", "Requests refused by a user key's limits, by key name "
            "and limit.", ["key", "limit"], registry=r)
        self._children: dict[tuple[Histogram, str], Histogram] = {}

    def watch(self, collector: Collector) -> None:
        """Expose a component's current state (its ``collect()``) at every scrape."""
        self.registry.register(collector)

    def render(self) -> bytes:
        return generate_latest(self.registry)

    # --- events ---------------------------------------------------------------------------

    def job_finished(self, outcome: str, error: ArtingError | None, seconds: float,
                     provider: str = "") -> None:
        code = error.code if error is not None and outcome == "failed" else ""
        self.jobs_finished.labels(outcome, code).inc()
        self.provider_jobs.labels(provider, outcome).inc()
        self._child(self.job_seconds, outcome).observe(max(0.0, seconds))

    def stage(self, name: str, seconds: float) -> None:
        self._child(self.stage_seconds, name).observe(max(0.0, seconds))

    def _child(self, histogram: Histogram, label: str) -> Histogram:
        """``histogram.labels(label)``, looked up once: a few of these come with every
        job, and prometheus_client's lookup costs three times the observation."""
        key = (histogram, label)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = histogram.labels(label)
        return child

    def upstream_error(self, route: str, error: ArtingError) -> None:
        self.upstream_errors.labels(route, type(error).__name__).inc()

