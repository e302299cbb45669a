"""The token pool: health from live traffic, cheap background probes, the per-token bound,
and the operator's view (admin API, metrics)."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from arting_daemon.providers.arting.client import PROBE_REQUEST_ID
from arting_daemon.state import ARTING
from clock import ManualClock

GOOD = "0f0e0d0c-1111-4222-8333-444455556666"
OTHER = "1a2b3c4d-5555-4666-8777-888899990000"




def tokens(daemon, **headers) -> dict[str, dict]:
    view = httpx.get(daemon.url + "/arting/v1/admin/tokens", headers=headers).json()
    return {t["label"]: t for t in view["tokens"]}


def wait_for(predicate, timeout: float = 5.0):
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)
    return value


def advance(daemon, seconds: float, step: float = 0.05) -> None:
    """Move the daemon's clock ``seconds`` on, a step at a time, each probe the step starts
    seen through before the clock moves again."""
    pool = daemon.app[ARTING].pool
    for _ in range(round(seconds / step)):
        daemon.advance(step)
        wait_for(lambda: not any(t.probing for t in pool.tokens))


def requests_with(daemon, route: str, token: str):
    return [r for r in daemon.sandbox.requests_for(route) if r.header("Authorization") == token]


def test_a_refused_token_is_reprobed_with_a_poll_and_comes_back(make_daemon):
    # the first probe comes 2 s after the refusal: the job is long done by then
    daemon = make_daemon(auth_tokens=[GOOD, OTHER], token_probe_backoff=2.0,
                         clock=ManualClock())
    daemon.do(daemon.sandbox.add_fault, "invalid_token", route="create", count=1)
    assert daemon.run_job()["state"] == "succeeded"          # swapped to the other token
    assert tokens(daemon)["token-1"]["state"] == "invalid"
    advance(daemon, 1.9)
    assert not requests_with(daemon, "get", GOOD)            # not probed before its time
    advance(daemon, 0.1)
    wait_for(lambda: tokens(daemon)["token-1"]["state"] == "ok")
    probes = requests_with(daemon, "get", GOOD)
    # The probe is one poll of the newest request id we know: no generation was paid for.
    assert [p.body for p in probes] == [{"request_id": next(iter(daemon.sandbox.jobs))}]
    assert len(requests_with(daemon, "create", GOOD)) == 1
    assert tokens(daemon)["token-1"]["probes"] == {"ok": 1}


def test_a_token_still_refused_stays_out_and_its_probes_back_off(make_daemon):
    daemon = make_daemon(auth_tokens=["not-a-uuid", GOOD], token_probe_backoff=0.1,
                         sandbox_options={"auth_mode": "uuid"}, clock=ManualClock())
    assert daemon.run_job()["state"] == "succeeded"
    advance(daemon, 1.6)
    probes = [r.time for r in requests_with(daemon, "get", "not-a-uuid")]
    gaps = [b - a for a, b in zip(probes, probes[1:])]
    assert 2 <= len(probes) <= 5, probes                    # 0.1, 0.2, 0.4, 0.8 ... not a storm
    assert all(b > a for a, b in zip(gaps, gaps[1:])), gaps
    assert all(r.body["request_id"] in daemon.sandbox.jobs
               for r in requests_with(daemon, "get", "not-a-uuid"))
    for _ in range(3):
        assert daemon.run_job()["state"] == "succeeded"
    assert len(requests_with(daemon, "create", "not-a-uuid")) == 1
    # every probe so far failed (more may have come while the jobs ran)
    wait_for(lambda: tokens(daemon)["token-1"]["probes"] ==
             {"failed": len(requests_with(daemon, "get", "not-a-uuid"))})
    view = tokens(daemon)["token-1"]
    assert view["state"] == "invalid" and "ARTING_AUTH_TOKEN" in view["last_error"]


def test_with_no_job_to_look_at_the_probe_polls_an_id_no_job_has(make_daemon):
    daemon = make_daemon(auth_tokens=[GOOD], token_probe_backoff=0.1, clock=ManualClock())
    daemon.do(daemon.sandbox.add_fault, "invalid_token", route="create", count=1)
    assert daemon.run_job()["error"]["type"] == "UpstreamAuthError"
    advance(daemon, 0.1)
    wait_for(lambda: tokens(daemon)["token-1"]["state"] == "ok")
    assert [r.body for r in daemon.sandbox.requests_for("get")] == [
        {"request_id": PROBE_REQUEST_ID}]                  # "task not found" proves the door
    assert daemon.run_job()["state"] == "succeeded"


def test_retry_after_is_respected_before_the_token_is_used_or_probed(make_daemon):
    daemon = make_daemon(auth_tokens=[GOOD], token_probe_backoff=0.1, clock=ManualClock())
    daemon.do(daemon.sandbox.add_fault, "rate_limit", route="create", retry_after=0.6, count=1)
    job = httpx.post(f"{daemon.url}/arting/v1/jobs", json={"prompt": "p"}).json()
    wait_for(lambda: tokens(daemon)["token-1"]["state"] == "cooling")   # the 429 is in
    advance(daemon, 0.55)
    assert len(daemon.sandbox.requests) == 1                # neither used nor probed yet
    advance(daemon, 0.05)
    assert daemon.wait_job(job["id"])["state"] == "succeeded"
    limited = daemon.sandbox.requests_for("create")[0].time
    later = [r.time for r in daemon.sandbox.requests if r.time > limited]
    assert later and min(later) - limited >= 0.55


def test_a_blocked_token_is_reprobed_and_unblocked(make_daemon):
    daemon = make_daemon(auth_tokens=[GOOD], token_probe_backoff=0.2, clock=ManualClock())
    daemon.do(daemon.sandbox.add_fault, "cf_1020", route="*", count=2)
    assert daemon.run_job()["error"]["type"] == "CloudflareBlocked"
    assert tokens(daemon)["token-1"]["state"] == "blocked"
    advance(daemon, 0.2 + 0.4)                              # a failed probe, then one through
    wait_for(lambda: tokens(daemon)["token-1"]["state"] == "ok")
    view = tokens(daemon)["token-1"]["probes"]
    assert view == {"failed": 1, "ok": 1}                  # 1020 again, then through
    assert len(daemon.sandbox.requests_for("create")) == 1


def test_each_token_has_a_bound_on_jobs_in_flight_and_no_job_fails_for_want_of_one(
        make_daemon):
    daemon = make_daemon(auth_tokens=[GOOD, OTHER], token_max_jobs=1,
                         sandbox_options={"generation_time": 0.3})
    with ThreadPoolExecutor(5) as pool:
        jobs = list(pool.map(lambda _: daemon.run_job(), range(5)))
    assert [j["state"] for j in jobs] == ["succeeded"] * 5
    for token in (GOOD, OTHER):
        mine = sorted((j for j in daemon.sandbox.jobs.values() if j.token == token),
                      key=lambda j: j.created_at)
        assert mine
        for earlier, later in zip(mine, mine[1:]):
            assert later.created_at >= earlier.done_at     # one job at a time per token


def test_admin_tokens_needs_the_key_and_shows_no_secret(make_daemon):
    daemon = make_daemon(auth_tokens=[GOOD, OTHER], api_keys=["admin-key"],
                         token_probe_backoff=60)
    key = {"Authorization": "Bearer admin-key"}
    daemon.do(daemon.sandbox.add_fault, "token_expired", route="create", count=1)
    httpx.post(daemon.v1 + "/images/generations", json={"prompt": "p"}, headers=key)

    refused = httpx.get(daemon.url + "/arting/v1/admin/tokens")
    assert refused.status_code == 401 and refused.json()["error"]["code"] == "invalid_api_key"
    resp = httpx.get(daemon.url + "/arting/v1/admin/tokens", headers=key)
    assert resp.status_code == 200
    assert GOOD not in resp.text and OTHER not in resp.text
    view = tokens(daemon, **key)
    assert view["token-1"]["state"] == "invalid" and view["token-1"]["retry_in"] > 50
    assert view["token-2"]["state"] == "ok" and view["token-2"]["jobs_ok"] == 1

    # The operator fixed things upstream: probe now instead of waiting a minute.
    probed = httpx.post(daemon.url + "/arting/v1/admin/tokens/probe", headers=key).json()
    assert probed["probed"] == {"token-1": "ok"}
    assert {t["label"]: t["state"] for t in probed["tokens"]} == {"token-1": "ok",
                                                                   "token-2": "ok"}


def test_pool_state_is_in_the_metrics(make_daemon):
    daemon = make_daemon(auth_tokens=[GOOD, OTHER], token_probe_backoff=60)
    daemon.do(daemon.sandbox.add_fault, "rate_limit", route="create", retry_after=60, count=1)
    assert daemon.run_job()["state"] == "succeeded"
    text = httpx.get(daemon.url + "/metrics").text
    assert 'arting_tokens{state="cooling"} 1.0' in text
    assert 'arting_tokens{state="ok"} 1.0' in text
    assert 'arting_token_state{state="cooling",token="token-1"} 1.0' in text
    assert 'arting_token_in_flight{token="token-2"} 0.0' in text
    assert 'arting_create_retries_total{error="UpstreamRateLimited"} 1.0' in text
    assert GOOD not in text and OTHER not in text


@pytest.mark.parametrize("kind", ["token_expired", "rate_limit"])
def test_every_token_out_fails_fast_with_advice(make_daemon, kind):
    daemon = make_daemon(auth_tokens=[GOOD, OTHER], token_probe_backoff=60)
    daemon.do(daemon.sandbox.add_fault, kind, route="create", retry_after=60)
    started = time.monotonic()
    job = daemon.run_job()
    # waiting for a token to come back would take the retry budget (20 s) at least
    assert time.monotonic() - started < daemon.settings.retry_budget / 2
    assert len(daemon.sandbox.requests_for("create")) == 2      # each token tried once
    if kind == "token_expired":
        assert "every configured token" in job["error"]["message"]
    else:
        assert job["error"]["retry_after"] >= 59


# --- the balance Arting reports ----------------------------------------------------------

def test_each_tokens_balance_is_shown_everywhere_the_pool_is(make_daemon):
    daemon = make_daemon(auth_tokens=[GOOD, OTHER], sandbox_options={"balance_start": 50})
    assert daemon.run_job(n=3)["state"] == "succeeded"
    view = tokens(daemon)
    assert view["token-1"]["balance"] == 47 and view["token-1"]["balance_at"] > 0
    assert view["token-2"]["balance"] is None                  # no poll has said yet
    status = httpx.get(daemon.url + "/arting/v1/status").json()
    assert [t["balance"] for t in status["tokens"]] == [47, None]
    text = httpx.get(daemon.url + "/metrics").text
    assert 'arting_token_balance{token="token-1"} 47.0' in text
    assert 'arting_token_balance{token="token-2"}' not in text


def test_a_token_at_zero_balance_is_passed_over(make_daemon):
    daemon = make_daemon(auth_tokens=[GOOD, OTHER], sandbox_options={"balance_start": 2})
    assert daemon.run_job(n=2)["state"] == "succeeded"         # token-1 spends it all
    assert tokens(daemon)["token-1"]["balance"] == 0
    for _ in range(2):
        assert daemon.run_job()["state"] == "succeeded"
    assert len(requests_with(daemon, "create", GOOD)) == 1
    assert len(requests_with(daemon, "create", OTHER)) == 2


def test_a_refusal_after_the_balance_ran_out_says_so(make_daemon):
    daemon = make_daemon(sandbox_options={"balance_start": 1}, retry_budget=0.5,
                         token_probe_backoff=60)
    assert daemon.run_job()["state"] == "succeeded"
    job = daemon.run_job()
    assert job["state"] == "failed" and job["error"]["code"] == "upstream_rate_limited"
    message = job["error"]["message"]
    assert "insufficient balance" in message
    assert "balance of anonymous was 0 at its last poll" in message
    assert len(daemon.sandbox.requests_for("create")) == 2      # refused once, not hammered
