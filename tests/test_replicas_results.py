"""The result cache, webhooks and the WebSocket with replicas: real daemon processes
sharing a real Redis (the fixtures of ``test_replicas.py``)."""

from __future__ import annotations

import asyncio
import base64
import subprocess
import sys
import time

import aiohttp
import httpx
from standardwebhooks import Webhook

from test_replicas import (ADMIN, bearer, cluster, emulator, finished,  # noqa: F401 (fixtures)
                           pytestmark, redis_server, submit, until)
from webhook_receiver import Receiver

SECRET = "whsec_" + base64.b64encode(b"thirty-two bytes of test secret!").decode()


def test_a_generation_made_on_one_replica_answers_the_same_request_on_another(cluster):
    a, b = cluster.start(), cluster.start()
    made = finished(a, submit(a, seed=12).json()["id"])
    resp = submit(b, seed=12)
    hit = resp.json()
    assert resp.headers["X-Arting-Cache"] == "hit" and hit["cached_from"] == made["id"]
    assert [i["hash"] for i in hit["images"]] == [i["hash"] for i in made["images"]]
    assert len(cluster.emulator.sandbox.requests_for("create")) == 1
    assert submit(a, seed=12, cache=False).headers["X-Arting-Cache"] == "bypass"


def test_a_webhook_a_dead_replica_left_is_delivered_by_another_with_the_same_id(cluster):
    receiver = Receiver((503, {"Retry-After": "3"}))
    try:
        hooks = {"ARTING_WEBHOOK_URLS": receiver.url + "/hook", "ARTING_WEBHOOK_SECRET": SECRET,
                 "ARTING_WEBHOOK_ALLOW_HOSTS": "127.0.0.1"}
        a = cluster.start(**hooks)
        job = finished(a, submit(a).json()["id"])
        receiver.wait(1)
        time.sleep(0.5)                      # its outcome stored: pending, due in 3 s
        a.proc.kill()
        a.proc.wait(5)

        b = cluster.start(**hooks)
        attempts = receiver.wait(2)
        assert attempts[0].headers["webhook-id"] == attempts[1].headers["webhook-id"]
        assert attempts[1].at - attempts[0].at >= 2.5
        assert Webhook(SECRET).verify(attempts[1].body, attempts[1].headers)["data"]["id"] \
            == job["id"]
        shown = finished(b, job["id"])["webhooks"]
        deadline = time.monotonic() + 5
        while shown[0]["state"] != "delivered":
            assert time.monotonic() < deadline, shown
            time.sleep(0.05)
            shown = httpx.get(f"{b.url}/arting/v1/jobs/{job['id']}",
                              headers=bearer(ADMIN)).json()["webhooks"]
        assert (shown[0]["state"], shown[0]["attempts"]) == ("delivered", 2)
        time.sleep(1)
        assert len(receiver.received) == 2                       # once more, never twice
    finally:
        receiver.close()


def test_a_websocket_on_one_replica_follows_a_job_running_on_another(cluster):
    a, b = cluster.start(), cluster.start()
    cluster.emulator.configure(generation_time=1.5)
    job_id = submit(a).json()["id"]
    until(lambda: httpx.get(f"{b.url}/arting/v1/jobs/{job_id}",       # b knows of it
                            headers=bearer(ADMIN)).status_code == 200)

    async def follow() -> list[str]:
        states = []
        async with aiohttp.ClientSession() as session, session.ws_connect(
                f"{b.url}/arting/v1/ws", headers=bearer(ADMIN)) as ws:
            assert await ws.receive_json() == {"event": "ready"}
            await ws.send_json({"subscribe": [job_id]})
            while not states or states[-1] not in ("succeeded", "failed", "cancelled"):
                states.append((await ws.receive_json(timeout=20))["job"]["state"])
        return states

    states = asyncio.run(follow())
    assert states[-1] == "succeeded" and "running" in states


def test_a_bounded_store_with_replicas_is_refused_at_start(cluster):
    env = {"PATH": "/usr/bin:/bin", "ARTING_REDIS_URL": cluster.redis.url,
           "ARTING_STORE_MAX_IMAGES": "100", "ARTING_BASE_URL": cluster.emulator.url}
    started = subprocess.run([sys.executable, "-m", "arting_daemon", "--port", "0",
                              "--data-dir", str(cluster.data)], capture_output=True,
                             text=True, timeout=30, env=env)
    assert started.returncode == 2
    assert "store_max_gb and store_max_images do not work with redis_url" in started.stderr
