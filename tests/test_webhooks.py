"""Webhooks: every finished job POSTed to real receivers on loopback, signed as Standard
Webhooks say (checked with the ``standardwebhooks`` reference library), retried with
the same id, refused for private addresses unless allow-listed."""

from __future__ import annotations

import base64
import ipaddress
import json
import time

import aiohttp
import httpx
import pytest
from standardwebhooks import Webhook

from arting_daemon.errors import DestinationRefused
from arting_daemon.outbound import OutboundPolicy, is_public
from arting_daemon.state import WEBHOOKS
from clock import ManualClock
from webhook_receiver import Receiver

SECRET = "whsec_" + base64.b64encode(b"thirty-two bytes of test secret!").decode()


@pytest.fixture
def receiver():
    made: list[Receiver] = []

    def make(*answers) -> Receiver:
        made.append(Receiver(*answers))
        return made[-1]
    yield make
    for r in made:
        r.close()


def hooked(make_daemon, *urls: str, **settings):
    return make_daemon(webhook_urls=list(urls), webhook_secret=SECRET,
                       webhook_allow_hosts=["127.0.0.1"], **settings)


def wait_until(check, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "never happened"
        time.sleep(0.02)


def verified(received) -> dict:
    """The message, once its signature checks out with the reference library."""
    return Webhook(SECRET).verify(received.body, received.headers)


def delivered(daemon, job_id: str, count: int = 1) -> list[dict]:
    """The job's deliveries, once ``count`` of them are no longer pending."""
    deadline = time.monotonic() + 15
    while True:
        hooks = httpx.get(f"{daemon.url}/arting/v1/jobs/{job_id}").json()["webhooks"]
        if sum(h["state"] != "pending" for h in hooks) >= count:
            return hooks
        assert time.monotonic() < deadline, hooks
        time.sleep(0.05)


def test_one_signed_post_per_finished_job(make_daemon, receiver):
    everyone, own = receiver(), receiver()
    daemon = hooked(make_daemon, everyone.url + "/all?token=s3cret", clock=ManualClock())
    ok = daemon.run_job(prompt="a lighthouse", seed=4,
                        webhook_url=own.url + "/mine")
    daemon.do(daemon.sandbox.add_fault, "fail", route="get", count=1)
    failed = daemon.run_job(prompt="unlucky")
    httpx.post(f"{daemon.url}/arting/v1/jobs", json={"prompt": "a lighthouse", "seed": 4})

    messages = [verified(r) for r in everyone.wait(3)]
    assert sorted(m["type"] for m in messages) == ["job.failed", "job.succeeded",
                                                   "job.succeeded"]
    first = next(m for m in messages if m["data"]["id"] == ok["id"])
    assert first["data"]["state"] == "succeeded" and first["data"]["images"]
    assert first["data"]["images"][0]["url"].startswith(daemon.url + "/arting/v1/images/")
    assert first["timestamp"].endswith("Z")
    assert next(m for m in messages if m["data"]["id"] == failed["id"])["data"]["error"]
    assert any(m["data"]["cache"] == "hit" for m in messages)     # a hit ends too
    assert [r.path for r in everyone.received] == ["/all"] * 3
    [mine] = own.wait(1)
    assert mine.path == "/mine" and verified(mine)["data"]["id"] == ok["id"]
    assert mine.headers["webhook-id"] != everyone.received[0].headers["webhook-id"]
    # an hour on, every retry there could be is due; none is, and none is being sent
    daemon.advance(3600)
    webhooks = daemon.app[WEBHOOKS]
    wait_until(lambda: not webhooks._busy and webhooks.store.pending() == 0)
    assert len(everyone.received) == 3 and len(own.received) == 1   # once each

    hooks = delivered(daemon, ok["id"], 2)
    assert {h["target"] for h in hooks} == {everyone.url, own.url}   # no path, no token
    assert all(h["state"] == "delivered" and h["attempts"] == 1 and h["last_status"] == 204
               for h in hooks)
    metrics = httpx.get(f"{daemon.url}/metrics").text
    assert 'arting_webhook_deliveries_total{result="delivered"} 4.0' in metrics
    assert "s3cret" not in metrics + json.dumps(hooks)


def test_a_receiver_failing_twice_gets_the_same_message_three_times(make_daemon, receiver):
    flaky = receiver(500, 502)
    daemon = hooked(make_daemon, flaky.url)
    job = daemon.run_job()
    attempts = flaky.wait(3)
    assert len({a.headers["webhook-id"] for a in attempts}) == 1
    assert len({a.body for a in attempts}) == 1
    for attempt in attempts:
        assert verified(attempt)["data"]["id"] == job["id"]    # each signed afresh
    assert attempts[1].at - attempts[0].at >= 0.5              # backed off
    [hook] = delivered(daemon, job["id"])
    assert (hook["state"], hook["attempts"], hook["last_status"]) == ("delivered", 3, 204)
    metrics = httpx.get(f"{daemon.url}/metrics").text
    assert 'arting_webhook_deliveries_total{result="retry"} 2.0' in metrics


def test_redirects_are_not_followed_and_a_delivery_is_given_up_in_time(make_daemon,
                                                                       receiver):
    moving = receiver(307)
    daemon = hooked(make_daemon, moving.url, webhook_retry_for=0)
    job = daemon.run_job()
    [hook] = delivered(daemon, job["id"])
    assert (hook["state"], hook["attempts"], hook["last_status"]) == ("failed", 1, 307)
    assert [r.path for r in moving.received] == ["/"]          # /elsewhere never asked


def test_a_receiver_that_does_not_answer_in_time_is_a_failed_attempt(make_daemon, receiver):
    silent = receiver("hang")
    daemon = hooked(make_daemon, silent.url, "http://127.0.0.1:9/nobody-listens",
                    webhook_retry_for=0, webhook_timeout=1)
    job = daemon.run_job()
    assert job["state"] == "succeeded"
    hooks = delivered(daemon, job["id"], 2)
    assert {h["last_error"] for h in hooks} >= {"no answer within 1 s"}
    assert all(h["state"] == "failed" and h["last_status"] is None for h in hooks)


@pytest.mark.parametrize("url", ["http://127.0.0.1:9/hook", "http://localhost/hook",
                                 "http://10.1.2.3/hook", "http://192.168.0.7:8080/x",
                                 "http://169.254.169.254/latest/meta-data",
                                 "http://[::1]/hook", "http://[::ffff:127.0.0.1]/hook",
                                 "http://100.64.0.1/hook", "ftp://example.com/x",
                                 "http://0.0.0.0/hook", "http://[64:ff9b::7f00:1]/hook",
                                 "http://[64:ff9b::a9fe:a9fe]/latest/meta-data",
                                 "http://[2002:a00:1::1]/hook", "http://[::ffff:0:a00:1]/"])
def test_a_webhook_url_on_a_private_address_is_a_400(make_daemon, url):
    daemon = make_daemon(webhook_secret=SECRET)
    resp = httpx.post(f"{daemon.url}/arting/v1/jobs", json={"prompt": "p", "webhook_url": url})
    assert resp.status_code == 400, resp.text
    error = resp.json()["error"]
    assert (error["code"], error["param"]) == ("destination_refused", "webhook_url")
    assert daemon.sandbox.requests_for("create") == []


def test_allow_listed_hosts_may_be_private_and_webhooks_need_a_secret(make_daemon, receiver):
    daemon = make_daemon(webhook_secret=SECRET, webhook_allow_hosts=["127.0.0.1"])
    ok = httpx.post(f"{daemon.url}/arting/v1/jobs",
                    json={"prompt": "p", "webhook_url": receiver().url + "/x"})
    assert ok.status_code == 202
    bare = make_daemon()
    refused = httpx.post(f"{bare.url}/arting/v1/jobs",
                         json={"prompt": "p", "webhook_url": "https://example.com/hook"})
    assert refused.status_code == 400
    assert refused.json()["error"]["code"] == "feature_disabled"
    assert "webhook_secret" in refused.json()["error"]["message"]


async def test_a_private_webhook_url_is_refused_on_the_websocket_too(make_daemon):
    daemon = make_daemon(webhook_secret=SECRET)
    async with aiohttp.ClientSession() as session, \
            session.ws_connect(f"{daemon.url}/arting/v1/ws") as ws:
        await ws.receive_json()
        await ws.send_json({"submit": {"prompt": "p", "webhook_url": "http://10.0.0.1/"},
                            "ref": "r"})
        error = await ws.receive_json()
        assert (error["event"], error["ref"]) == ("error", "r")
        assert error["error"]["code"] == "destination_refused"


async def test_the_connection_goes_only_to_addresses_that_passed():
    """A name that resolves to a private address by the time of the request (DNS
    rebinding) gets no connection: the client's resolver refuses it."""
    policy = OutboundPolicy(webhook_allow_hosts=["allowed.localhost"])
    with pytest.raises(OSError, match="no public address"):
        await policy.resolver().resolve("localhost", 80)
    with pytest.raises(DestinationRefused):
        await policy.check_webhook("http://localhost/x")
    await policy.check_webhook("http://allowed.localhost/x")    # listed: not even resolved


@pytest.mark.parametrize("address, public", [
    ("64:ff9b::127.0.0.1", False), ("64:ff9b::10.1.2.3", False), ("64:ff9b::8.8.8.8", True),
    ("64:ff9b:1::10.0.0.1", False), ("64:ff9b:1::8.8.8.8", False),    # a local NAT64's
    ("::ffff:192.168.0.1", False), ("::ffff:0:127.0.0.1", False), ("::127.0.0.1", False),
    ("::ffff:8.8.4.4", True), ("2002:c0a8:1::1", False), ("2002:808:808::1", True),
    ("2001:0:4136:e378:8000:63bf:f5ff:fffe", False),      # Teredo: client 10.0.0.1
    ("2001:0:4136:e378:8000:63bf:f7f7:f7f7", True),       # Teredo: client 8.8.8.8
    ("2001:0:a00:1:8000:63bf:f7f7:f7f7", False),          # Teredo: server 10.0.0.1
    ("2606:4700::1111", True), ("::1", False), ("::", False), ("fe80::1", False),
])
def test_an_address_carrying_ipv4_is_judged_by_the_ipv4_inside(address, public):
    """NAT64, 6to4, Teredo and the IPv4-mapped forms reach the IPv4 address inside."""
    assert is_public(ipaddress.ip_address(address)) is public


async def test_a_nat64_name_is_refused_when_it_resolves_to_a_private_ipv4_inside():
    """The check after resolving, and the webhook client's resolver, judge alike."""
    policy = OutboundPolicy()
    with pytest.raises(DestinationRefused, match="64:ff9b::a00:1"):
        await policy.check_webhook("http://[64:ff9b::a00:1]/hook")
    await policy.check_webhook("http://[64:ff9b::808:808]/hook")    # 8.8.8.8 inside
