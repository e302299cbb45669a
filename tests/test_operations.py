"""What the operator relies on: /metrics, /readyz, request ids on log lines, the retry
budget, and errors that survive the journal."""

from __future__ import annotations

import logging
import re
import time

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from arting_daemon import errors




def samples(daemon) -> dict[tuple, float]:
    """The metrics as {(name, (label=value, ...)): value}, parsed as Prometheus would."""
    text = httpx.get(daemon.url + "/metrics").text
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(metrics: dict, name: str, **labels) -> float:
    return metrics.get((name, tuple(sorted(labels.items()))), 0.0)


# --- /metrics ------------------------------------------------------------------------------

def test_metrics_count_jobs_stages_and_upstream_errors(make_daemon):
    daemon = make_daemon(sandbox_options={"generation_time": 0.2})
    daemon.run_job()
    daemon.do(daemon.sandbox.add_fault, "reject", route="create", count=1)
    daemon.run_job()
    daemon.do(daemon.sandbox.add_fault, "http_error", route="get", status=502, count=1)
    daemon.run_job()
    m = samples(daemon)
    assert value(m, "arting_jobs_finished_total", outcome="succeeded", code="") == 2
    assert value(m, "arting_jobs_finished_total", outcome="failed",
                 code="upstream_rejected") == 1
    for stage in ("queued", "submitting", "running", "downloading"):
        assert value(m, "arting_stage_seconds_count", stage=stage) >= 2, stage
    assert value(m, "arting_stage_seconds_sum", stage="running") >= 0.3   # 2 × 0.2 s generation
    assert value(m, "arting_job_seconds_count", outcome="succeeded") == 2
    assert value(m, "arting_upstream_errors_total", route="create",
                 error="UpstreamRejected") == 1
    assert value(m, "arting_upstream_errors_total", route="get",
                 error="UpstreamServerError") == 1


def test_metrics_show_jobs_by_state_and_the_queue(make_daemon):
    daemon = make_daemon(max_active_jobs=1, sandbox_options={"generation_time": 1.5})
    for prompt in ("a", "b", "c"):
        httpx.post(daemon.url + "/arting/v1/jobs", json={"prompt": prompt})
    deadline = time.monotonic() + 5
    while value(m := samples(daemon), "arting_jobs", state="running") != 1:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert value(m, "arting_jobs", state="queued") == 2
    assert value(m, "arting_queue_depth") == 2
    assert value(m, "arting_queue_limit") == daemon.settings.max_queued_jobs


# --- /readyz -------------------------------------------------------------------------------

def test_readyz_never_calls_arting(make_daemon):
    # nothing listens there: a readiness check that called Arting could not say "ready"
    daemon = make_daemon(base_url="http://127.0.0.1:9")
    resp = httpx.get(daemon.url + "/readyz")
    assert resp.status_code == 200 and resp.json() == {"status": "ready"}
    ours = make_daemon()
    for _ in range(5):
        assert httpx.get(ours.url + "/readyz").status_code == 200
    assert ours.sandbox.requests == []


def test_readyz_says_why_it_is_not_ready(make_daemon):
    daemon = make_daemon(auth_tokens=["not-a-uuid"], token_probe_backoff=60,
                         sandbox_options={"auth_mode": "uuid"})
    assert daemon.run_job()["error"]["type"] == "UpstreamAuthError"
    resp = httpx.get(daemon.url + "/readyz")
    assert resp.status_code == 503
    assert resp.json()["reasons"] == ["Arting refused every token; see /arting/v1/admin/tokens"]

    full = make_daemon(max_active_jobs=1, max_queued_jobs=0,
                       sandbox_options={"generation_time": 2.0})
    httpx.post(full.url + "/arting/v1/jobs", json={"prompt": "p"})
    resp = httpx.get(full.url + "/readyz")
    assert resp.status_code == 503 and "max_queued_jobs" in resp.json()["reasons"][0]


# --- request ids ---------------------------------------------------------------------------

def test_job_log_lines_carry_the_request_id(daemon, caplog):
    caplog.set_level(logging.INFO, logger="arting_daemon")
    daemon.do(daemon.sandbox.add_fault, "http_error", route="get", status=503, count=1)
    daemon.do(daemon.sandbox.add_fault, "reject", route="create", after=1)
    daemon.run_job(headers={"X-Request-Id": "trace-0a1b2c"})
    job = daemon.run_job(headers={"X-Request-Id": "trace-3d4e5f"})
    lines = {(r.request_id, r.getMessage()) for r in caplog.records
             if r.name in ("arting_daemon.engine.runner",
                           "arting_daemon.providers.arting.provider")}
    assert any(rid == "trace-0a1b2c" and "poll of job" in msg for rid, msg in lines), lines
    assert ("trace-3d4e5f", f"job {job['id']} failed: {job['error']['message']}") in lines
    resp = httpx.get(daemon.url + "/healthz", headers={"X-Request-Id": "trace-777"})
    assert resp.headers["X-Request-Id"] == "trace-777"
    made_up = httpx.get(daemon.url + "/healthz", headers={"X-Request-Id": "bad id\t!"})
    assert re.fullmatch(r"[0-9a-f]{12}", made_up.headers["X-Request-Id"])


# --- retry budget ---------------------------------------------------------------------------

def test_create_retries_stay_inside_the_retry_budget(make_daemon):
    """Without the budget, the creates would go on to the sixth attempt, about 8 s of
    backoff on average (and up to the 60 s of submit_timeout)."""
    daemon = make_daemon(retry_budget=1.0)
    daemon.do(daemon.sandbox.add_fault, "http_error", route="create", status=503)
    started = time.monotonic()
    job = daemon.run_job()
    elapsed = time.monotonic() - started
    assert job["error"]["type"] == "UpstreamServerError"
    assert elapsed < 1.0 + 2.0
    assert 2 <= len(daemon.sandbox.requests_for("create")) <= 6


def test_no_budget_means_no_retry(make_daemon):
    daemon = make_daemon(retry_budget=0)
    daemon.do(daemon.sandbox.add_fault, "http_error", route="create", status=503, count=1)
    assert daemon.run_job()["error"]["type"] == "UpstreamServerError"
    assert len(daemon.sandbox.requests_for("create")) == 1


def test_a_rate_limit_longer_than_the_budget_is_answered_at_once(make_daemon):
    """Waiting for the token would take the budget (10 s), or the Retry-After (30 s)."""
    daemon = make_daemon(retry_budget=10)
    daemon.do(daemon.sandbox.add_fault, "rate_limit", route="create", retry_after=30, count=1)
    started = time.monotonic()
    resp = httpx.post(daemon.v1 + "/images/generations", json={"prompt": "p"}, timeout=60)
    assert time.monotonic() - started < 5
    assert resp.status_code == 429 and int(resp.headers["Retry-After"]) >= 29
    assert len(daemon.sandbox.requests_for("create")) == 1


# --- errors through the journal ---------------------------------------------------------------

def all_error_classes():
    seen, todo = [], [errors.ArtingError]
    while todo:
        cls = todo.pop()
        seen.append(cls)
        todo.extend(cls.__subclasses__())
    return seen


@pytest.mark.parametrize("cls", all_error_classes(), ids=lambda c: c.__name__)
def test_every_error_survives_the_journal(cls):
    err = cls.__new__(cls)
    errors.ArtingError.__init__(err, "message", param="p", retry_after=3.0)
    for name in cls.extra_fields:
        setattr(err, name, f"{name}-value")
    again = errors.error_from_dict(err.to_dict())
    assert type(again) is cls
    assert again.to_dict() == err.to_dict()
    assert (again.status, again.code, again.retry_after) == (err.status, err.code, 3.0)


async def test_the_same_image_stored_twice_at_once(tmp_path, monkeypatch):
    """Two jobs with the same prompt and seed finish together: both stores must succeed
    (the fuzzer caught the second one failing on a temporary file they shared). The
    barrier makes both writers reach the rename only after both have written."""
    import asyncio
    import io
    import threading

    from PIL import Image

    from arting_daemon import datadir, store as store_module
    both_written = threading.Barrier(2, timeout=5)
    rename = datadir.os.replace

    def replace_after_both(src, dst):
        both_written.wait()
        rename(src, dst)
    monkeypatch.setattr(datadir.os, "replace", replace_after_both)
    buf = io.BytesIO()
    Image.new("RGB", (64, 64), "teal").save(buf, "PNG")
    store = store_module.ImageStore(tmp_path)
    first, second = await asyncio.gather(store.put(buf.getvalue()), store.put(buf.getvalue()))
    assert first.hash == second.hash and store.exists(first.hash)
    assert [p.name for p in (tmp_path / "images").rglob("*") if p.is_file()] == [
        f"{first.hash}.png"]
