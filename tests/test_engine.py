"""The job engine: retries that never duplicate a job, deadlines, tokens, polling."""

from __future__ import annotations

import time

import httpx




def creates(daemon) -> int:
    return len(daemon.sandbox.requests_for("create"))


def test_a_5xx_create_is_retried(daemon):
    daemon.do(daemon.sandbox.add_fault, "http_error", route="create", status=503, count=2)
    assert daemon.run_job()["state"] == "succeeded"
    assert creates(daemon) == 3


def test_a_broken_connection_on_create_is_not_retried(daemon):
    """The create may have reached Arting: a retry could make a second (paid) job."""
    daemon.do(daemon.sandbox.add_fault, "reset", route="create", count=1)
    job = daemon.run_job()
    assert job["state"] == "failed" and job["error"]["type"] == "UpstreamUnavailable"
    assert creates(daemon) == 1


def test_a_slow_create_is_not_retried(make_daemon):
    daemon = make_daemon(request_timeout=0.3)
    daemon.do(daemon.sandbox.add_fault, "slow", route="create", delay=2, count=1)
    assert daemon.run_job()["error"]["type"] == "UpstreamTimeout"
    assert creates(daemon) == 1


def test_rate_limit_honours_retry_after(daemon):
    daemon.do(daemon.sandbox.add_fault, "rate_limit", route="create", retry_after=0.3, count=1)
    started = time.monotonic()
    assert daemon.run_job()["state"] == "succeeded"
    assert time.monotonic() - started >= 0.3 and creates(daemon) == 2


def test_rate_limit_moves_to_the_next_token(make_daemon):
    daemon = make_daemon(auth_tokens=["tok-a-1234", "tok-b-5678"])
    daemon.do(daemon.sandbox.add_fault, "rate_limit", route="create", retry_after=60, count=1)
    started = time.monotonic()
    assert daemon.run_job()["state"] == "succeeded"
    assert time.monotonic() - started < 10          # the first token's wait would be 60 s
    sent = [r.headers["Authorization"] for r in daemon.sandbox.requests_for("create")]
    assert sent[0] != sent[1]
    status = httpx.get(daemon.url + "/arting/v1/status").json()
    assert sorted(t["state"] for t in status["tokens"]) == ["cooling", "ok"]


def test_every_token_rate_limited_fails_fast_with_retry_after(daemon):
    daemon.do(daemon.sandbox.add_fault, "rate_limit", route="create", retry_after=600)
    started = time.monotonic()
    resp = httpx.post(daemon.v1 + "/images/generations", json={"prompt": "p"}, timeout=10)
    assert time.monotonic() - started < 3
    assert resp.status_code == 429 and int(resp.headers["Retry-After"]) > 500


def test_a_refused_token_is_swapped_and_not_used_again(make_daemon):
    """A refused create made no job: it goes out again at once with the other token."""
    daemon = make_daemon(auth_tokens=["tok-a-1234", "tok-b-5678"])
    daemon.do(daemon.sandbox.add_fault, "token_expired", route="create", count=1)
    for _ in range(3):
        assert daemon.run_job()["state"] == "succeeded"
    used = [r.headers["Authorization"] for r in daemon.sandbox.requests_for("create")]
    assert len(used) == 4 and used[0] not in used[1:]
    status = httpx.get(daemon.url + "/arting/v1/status").json()
    assert sorted(t["state"] for t in status["tokens"]) == ["invalid", "ok"]


def test_transient_poll_faults_are_ridden_out(daemon):
    daemon.do(daemon.sandbox.configure, complete_after_polls=3)
    for kind in ("http_error", "truncated_json", "reset"):
        daemon.do(daemon.sandbox.add_fault, kind, route="get", count=1)
    assert daemon.run_job()["state"] == "succeeded"


def test_downloads_are_retried(daemon):
    daemon.do(daemon.sandbox.add_fault, "http_error", route="image", status=502, count=2)
    assert daemon.run_job()["state"] == "succeeded"


def test_an_expired_result_link_fails_the_job_clearly(daemon):
    daemon.do(daemon.sandbox.add_fault, "expired_image", route="image")
    job = daemon.run_job()
    assert job["state"] == "failed" and "expired" in job["error"]["message"]


def test_never_finishing_job_hits_its_stage_deadline(make_daemon):
    daemon = make_daemon(run_timeout=0.4)
    daemon.do(daemon.sandbox.add_fault, "never_finish", route="create")
    started = time.monotonic()
    job = daemon.run_job()
    assert time.monotonic() - started < 10          # job_timeout would end it after 300 s
    assert job["error"]["type"] == "StageTimeout" and "run_timeout" in job["error"]["message"]


def test_job_deadline_covers_the_queue(make_daemon):
    """The first job needs 2 s of its 3; the second waits 2 s for it, then needs 2 more."""
    daemon = make_daemon(max_active_jobs=1, job_timeout=3.0,
                         sandbox_options={"generation_time": 2.0})
    first = httpx.post(daemon.url + "/arting/v1/jobs", json={"prompt": "a"}).json()
    second = daemon.run_job()
    assert second["error"]["type"] == "StageTimeout" and "job_timeout" in \
        second["error"]["message"]
    assert httpx.get(first["links"]["self"]).json()["state"] == "succeeded"


def test_the_same_image_is_stored_once(daemon):
    a = daemon.run_job(seed=5)
    b = daemon.run_job(seed=5)
    assert a["images"][0]["hash"] == b["images"][0]["hash"]
    files = list((daemon.settings.data_dir / "images").rglob("*.png"))
    assert len(files) == 1


def test_anonymous_identity_is_created_once_and_kept(make_daemon, tmp_path):
    daemon = make_daemon()
    daemon.run_job()
    daemon.run_job()
    tokens = {r.headers["Authorization"] for r in daemon.sandbox.requests_for("create")}
    assert len(tokens) == 1
    saved = (daemon.settings.data_dir / "identity.json").read_text()
    assert tokens.pop() in saved



def test_the_submit_answer_already_shows_the_queue_place(make_daemon):
    daemon = make_daemon(max_active_jobs=1, sandbox_options={"generation_time": 30})
    first = httpx.post(daemon.url + "/arting/v1/jobs", json={"prompt": "a"}).json()
    second = httpx.post(daemon.url + "/arting/v1/jobs", json={"prompt": "b"}).json()
    assert (first["queue_position"], second["queue_position"]) == (None, 1)


def test_a_job_cancelled_before_it_ever_ran_ends_and_frees_its_slot(make_daemon):
    daemon = make_daemon(max_active_jobs=1)
    from arting_daemon.generation import Catalog, Rules, build_generation

    async def submit_and_cancel_at_once():
        engine = daemon.engine
        rules = Rules.of(daemon.settings)
        gen = build_generation(rules, Catalog(rules), prompt="p")
        job = await engine.submit(gen)
        engine.cancel(job)               # before the job's task took its first step
        await engine.wait(job, timeout=5)
        return job.state.value

    assert daemon.call(submit_and_cancel_at_once()) == "cancelled"
    assert daemon.run_job()["state"] == "succeeded"   # the slot came back
