"""``GET /arting/v1/ws``: job events over one WebSocket, driven by aiohttp's client."""

from __future__ import annotations

import aiohttp
import httpx
import pytest

from arting_daemon.facades import ws as ws_module


TERMINAL = ("succeeded", "failed", "cancelled")


def submit(daemon, **body) -> str:
    resp = httpx.post(f"{daemon.url}/arting/v1/jobs", json={"prompt": "p", **body})
    assert resp.status_code == 202, resp.text
    return resp.json()["id"]


async def next_not_job(ws: aiohttp.ClientWebSocketResponse) -> dict:
    """The next message that is not a job event."""
    while (message := await ws.receive_json())["event"] == "job":
        pass
    return message


async def until_done(ws: aiohttp.ClientWebSocketResponse, ids: set[str],
                     timeout: float = 20) -> dict[str, list[dict]]:
    """Every job event until each of ``ids`` has ended: job id → its views in order."""
    seen: dict[str, list[dict]] = {i: [] for i in ids}
    while any(not views or views[-1]["state"] not in TERMINAL for views in seen.values()):
        message = await ws.receive_json(timeout=timeout)
        if message["event"] == "job":
            seen.setdefault(message["job"]["id"], []).append(message["job"])
    return seen


async def test_one_connection_follows_two_jobs_to_their_end(make_daemon):
    daemon = make_daemon(sandbox_options={"generation_time": 3.0})
    first, second = submit(daemon, n=2), submit(daemon, prompt="another")
    async with aiohttp.ClientSession() as session, \
            session.ws_connect(f"{daemon.url}/arting/v1/ws") as ws:
        assert await ws.receive_json() == {"event": "ready"}
        await ws.send_json({"subscribe": [first, second]})
        seen = await until_done(ws, {first, second})
    for job_id in (first, second):
        views = seen[job_id]
        states = [v["state"] for v in views]
        assert states[-1] == "succeeded" and "running" in states, states
        running = [v["progress"] for v in views if v["state"] == "running"]
        assert len(running) >= 2 and running == sorted(running)       # progress, live
        final = httpx.get(f"{daemon.url}/arting/v1/jobs/{job_id}").json()
        assert views[-1] == final                    # the same view as the job API's
    assert len(seen[first][-1]["images"]) == 2


async def test_a_job_submitted_on_the_socket_is_followed_at_once(daemon):
    async with aiohttp.ClientSession() as session, \
            session.ws_connect(f"{daemon.url}/arting/v1/ws") as ws:
        await ws.receive_json()
        await ws.send_json({"submit": {"prompt": "a lighthouse", "seed": 3}, "ref": "mine",
                            "idempotency_key": "k-1"})
        submitted = await ws.receive_json()
        assert submitted["event"] == "submitted" and submitted["ref"] == "mine"
        job_id = submitted["job"]["id"]
        seen = await until_done(ws, {job_id})
        assert seen[job_id][-1]["state"] == "succeeded"
        # The key makes a repeated submit the same job, as on POST /jobs.
        await ws.send_json({"submit": {"prompt": "a lighthouse", "seed": 3}, "ref": "again",
                            "idempotency_key": "k-1"})
        again = await ws.receive_json()
        assert (again["event"], again["job"]["id"]) == ("submitted", job_id)
        # A bad job request is an error about that ref; the connection stays open.
        await ws.send_json({"submit": {"prompt": ""}, "ref": "bad"})
        error = await next_not_job(ws)
        assert (error["event"], error["ref"]) == ("error", "bad")
        assert error["error"]["type"] == "invalid_request_error"
        await ws.send_json({"subscribe": [job_id]})
        assert (await ws.receive_json())["job"]["state"] == "succeeded"
    assert len(daemon.sandbox.requests_for("create")) == 1


async def test_an_unknown_job_or_message_is_an_error_event_not_a_hang_up(daemon):
    done = daemon.run_job()
    async with aiohttp.ClientSession() as session, \
            session.ws_connect(f"{daemon.url}/arting/v1/ws") as ws:
        await ws.receive_json()
        await ws.send_json({"subscribe": ["nope", done["id"]]})
        error = await ws.receive_json()
        assert error["event"] == "error" and error["id"] == "nope"
        assert error["error"]["code"] == "not_found"
        assert (await ws.receive_json())["job"]["id"] == done["id"]
        for bad in ("not json", "[1]", '{"dance": true}', '{"subscribe": "x"}'):
            await ws.send_str(bad)
            assert (await ws.receive_json())["event"] == "error"


async def test_the_key_comes_in_a_header_or_the_first_message(make_daemon, monkeypatch):
    monkeypatch.setattr(ws_module, "AUTH_WAIT", 1.0)
    daemon = make_daemon(api_keys=["sesame"])
    url = f"{daemon.url}/arting/v1/ws"
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(url, headers={"Authorization": "Bearer sesame"}) as ws:
            assert await ws.receive_json() == {"event": "ready"}
        async with session.ws_connect(url) as ws:
            await ws.send_json({"auth": "sesame"})
            assert await ws.receive_json() == {"event": "ready"}

        for attempt in ({"headers": {"Authorization": "Bearer wrong"}},
                        {"first": {"auth": "wrong"}}, {"first": {"subscribe": ["x"]}},
                        {}, {"query": "?key=sesame"}):
            async with session.ws_connect(url + attempt.get("query", ""),
                                          headers=attempt.get("headers")) as ws:
                if "first" in attempt:
                    await ws.send_json(attempt["first"])
                refused = await ws.receive_json()
                assert refused["error"]["code"] == "invalid_api_key", attempt
                assert "sesame" not in str(refused)
                closing = await ws.receive()
                assert closing.type is aiohttp.WSMsgType.CLOSE
                assert ws.close_code == ws_module.UNAUTHORIZED, attempt


async def test_the_server_pings(daemon, monkeypatch):
    monkeypatch.setattr(ws_module, "PING_EVERY", 0.3)
    async with aiohttp.ClientSession() as session, \
            session.ws_connect(f"{daemon.url}/arting/v1/ws", autoping=False) as ws:
        assert await ws.receive_json() == {"event": "ready"}
        ping = await ws.receive(timeout=5)
        assert ping.type is aiohttp.WSMsgType.PING
        await ws.pong(ping.data)


async def test_a_page_of_another_origin_may_not_connect(daemon):
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.WSServerHandshakeError) as err:
            await session.ws_connect(f"{daemon.url}/arting/v1/ws",
                                     headers={"Origin": "https://evil.example"})
        assert err.value.status == 403
        own = daemon.url.replace("http://", "")
        async with session.ws_connect(f"{daemon.url}/arting/v1/ws",
                                      headers={"Origin": f"http://{own}"}) as ws:
            assert await ws.receive_json() == {"event": "ready"}


def test_a_plain_get_is_told_to_use_a_websocket(daemon):
    resp = httpx.get(f"{daemon.url}/arting/v1/ws")
    assert resp.status_code == 400
    assert "WebSocket" in resp.json()["error"]["message"]


async def test_a_user_follows_only_their_own_jobs(make_daemon):
    admin = "admin-key-0123456789"
    daemon = make_daemon(api_keys=[admin])
    keys = []
    for name in ("alice", "bob"):
        made = httpx.post(f"{daemon.url}/arting/v1/admin/keys", json={"name": name},
                          headers={"Authorization": f"Bearer {admin}"})
        keys.append(made.json()["key"])
    alice, bob = keys
    job = httpx.post(f"{daemon.url}/arting/v1/jobs", json={"prompt": "p"},
                     headers={"Authorization": f"Bearer {alice}"}).json()
    async with aiohttp.ClientSession() as session:
        for key, expected in ((bob, "error"), (alice, "job")):
            async with session.ws_connect(f"{daemon.url}/arting/v1/ws") as ws:
                await ws.send_json({"auth": key})               # a user key, not in a header
                assert await ws.receive_json() == {"event": "ready"}
                await ws.send_json({"subscribe": [job["id"]]})
                answer = await ws.receive_json()
                assert answer["event"] == expected, answer
                if expected == "error":
                    assert answer["error"]["code"] == "not_found"   # as GET /jobs/{id} says
