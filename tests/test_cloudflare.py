"""Cloudflare in front of Arting: what cloudscraper can pass is passed in a worker thread
and its clearance reused; what it cannot fails fast, saying what to configure. These run
with ``impersonate = "off"`` (cloudscraper alone, as before the browser-like client);
``test_impersonation.py`` has the browser-like client before it."""

from __future__ import annotations

import asyncio
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from arting_daemon.config import DEFAULT_USER_AGENT
from arting_daemon.sandbox import Sandbox
from arting_daemon.providers.arting.client import PROBE_REQUEST_ID

CLEARANCE = "edge-issued-clearance-7f3a9c1e5b"


class EdgeSandbox(Sandbox):
    """The emulator behind a Cloudflare edge that hands every client a clearance cookie
    (the real edge cannot exist here; this is all of it the daemon can see)."""

    def _build_app(self):
        app = super()._build_app()

        async def set_cookie(request, response):
            response.headers.add("Set-Cookie", f"cf_clearance={CLEARANCE}; Path=/; HttpOnly")
        app.on_response_prepare.append(set_cookie)
        return app




def solver_requests(daemon):
    return [r for r in daemon.sandbox.requests_for("get")
            if r.body == {"request_id": PROBE_REQUEST_ID}]


def test_a_passed_challenge_leaves_a_clearance_every_later_call_carries(make_daemon):
    daemon = make_daemon(sandbox_class=EdgeSandbox, impersonate="off")
    daemon.do(daemon.sandbox.add_fault, "cf_challenge", route="create", count=1)
    assert daemon.run_job()["state"] == "succeeded"
    assert daemon.run_job()["state"] == "succeeded"

    creates = daemon.sandbox.requests_for("create")
    assert len(creates) == 3                       # challenged, sent again, the next job
    (solver,) = solver_requests(daemon)
    agent = solver.header("User-Agent")
    assert agent != DEFAULT_USER_AGENT and "python-requests" not in agent
    assert creates[0].header("User-Agent") == DEFAULT_USER_AGENT
    assert creates[0].header("Cookie") is None     # aiohttp keeps no cookies of its own
    for later in [*creates[1:], *daemon.sandbox.requests_for("get")[1:]]:
        assert later.header("User-Agent") == agent
        assert later.header("Cookie") == f"cf_clearance={CLEARANCE}"

    metrics = httpx.get(daemon.url + "/metrics").text
    assert 'arting_cloudflare_solves_total{result="solved"} 1.0' in metrics
    admin = httpx.get(daemon.url + "/arting/v1/admin/tokens").json()["cloudflare"]
    assert admin["cookies"] == ["cf_clearance"] and admin["user_agent"] == agent
    assert CLEARANCE not in metrics + str(admin)


def test_solving_runs_off_the_event_loop(make_daemon):
    """The emulator shares the daemon's loop. A solver blocking that loop could not get
    its answer from the emulator: it would wait out its timeout (5 s), its error would
    be a timeout instead of the challenge it met, and the heartbeat would miss its beats
    for those seconds."""
    daemon = make_daemon(request_timeout=5.0, impersonate="off")
    daemon.do(daemon.sandbox.add_fault, "cf_challenge_v2", route="*", delay=0.5)

    async def heartbeat(seconds: float) -> float:
        loop = asyncio.get_running_loop()
        worst, last, end = 0.0, loop.time(), loop.time() + seconds
        while loop.time() < end:
            await asyncio.sleep(0.01)
            worst, last = max(worst, loop.time() - last), loop.time()
        return worst

    with ThreadPoolExecutor(1) as pool:
        job = pool.submit(daemon.run_job)
        worst_gap = daemon.call(heartbeat(1.6))
        job = job.result()
    assert len(solver_requests(daemon)) == 1       # cloudscraper did try, meanwhile
    assert job["error"]["type"] == "CloudflareBlocked"
    assert "cf_clearance" in job["error"]["message"]
    # the emulator answered the solver with the challenge page while the solver waited
    assert "CloudflareChallengeError" in job["error"]["message"]
    assert worst_gap < 2.5                         # half the stall a blocking solver makes
    # cloudscraper zeroes sys.tracebacklimit for the whole process when it gives up
    assert getattr(sys, "tracebacklimit", None) != 0


@pytest.mark.parametrize("kind", ["cf_challenge", "cf_challenge_v2", "cf_html_200"])
def test_after_a_failed_attempt_challenges_fail_at_once(make_daemon, kind):
    """The second job meets the challenge with the other token and is told at once, with
    no second try of cloudscraper; the third finds both tokens blocked and is not even
    sent. Neither waits for a token: that would take the retry budget (20 s) at least."""
    daemon = make_daemon(auth_tokens=["token-a-0001", "token-b-0002"], impersonate="off")
    daemon.do(daemon.sandbox.add_fault, kind, route="*")
    first = daemon.run_job()
    started = time.monotonic()
    second, third = daemon.run_job(), daemon.run_job()
    assert time.monotonic() - started < daemon.settings.retry_budget / 2
    assert len(solver_requests(daemon)) == 1       # cloudscraper started once, not thrice
    assert len(daemon.sandbox.requests_for("create")) == 2
    for job in (first, second, third):
        assert job["error"]["type"] == "CloudflareBlocked"
        assert job["error"]["kind"] == "challenge"
        assert "ARTING_CF_CLEARANCE" in job["error"]["message"]
    metrics = httpx.get(daemon.url + "/metrics").text
    assert 'arting_cloudflare_solves_total{result="failed"} 1.0' in metrics


def test_a_firewall_block_is_not_a_puzzle(make_daemon):
    daemon = make_daemon()
    daemon.do(daemon.sandbox.add_fault, "cf_1020", route="*")
    job = daemon.run_job()
    assert job["error"]["kind"] == "firewall" and "1020" in job["error"]["message"]
    assert "another network" in job["error"]["message"]
    assert daemon.sandbox.requests_for("get") == []          # no solver, no probe yet


def test_a_configured_clearance_is_sent_and_its_expiry_explained(make_daemon):
    daemon = make_daemon(cf_clearance="configured-clearance-0042",
                         user_agent="Mozilla/5.0 TestBrowser/1.0", impersonate="off")
    assert daemon.run_job()["state"] == "succeeded"
    create = daemon.sandbox.requests_for("create")[0]
    assert create.header("Cookie") == "cf_clearance=configured-clearance-0042"
    assert create.header("User-Agent") == "Mozilla/5.0 TestBrowser/1.0"
    daemon.do(daemon.sandbox.add_fault, "cf_challenge_v2", route="*")
    job = daemon.run_job()
    assert "configured `cf_clearance` is no longer accepted" in job["error"]["message"]


def test_the_solver_can_be_switched_off(make_daemon):
    daemon = make_daemon(cf_solver=False, impersonate="off")
    daemon.do(daemon.sandbox.add_fault, "cf_challenge", route="create", count=1)
    job = daemon.run_job()
    assert job["error"]["type"] == "CloudflareBlocked" and "cf_solver" in job["error"]["message"]
    assert solver_requests(daemon) == [] and len(daemon.sandbox.requests_for("create")) == 1
