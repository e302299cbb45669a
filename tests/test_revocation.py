"""A revoked or expired key ends what it holds open — its WebSocket (idle or not), its
event streams (a job's, a streamed chat answer, a streamed image answer) — and its
unfinished jobs, at once (keys/revocation.py); another key's go on. (Across replicas:
test_replicas.py.)"""

from __future__ import annotations

import aiohttp
import httpx

from arting_daemon.facades.ws import UNAUTHORIZED
from clock import ManualClock
from streams import EventStream, until_closed
from test_keys import ADMIN, bearer, make_key


def running_job(daemon, key: str) -> str:
    job = httpx.post(f"{daemon.url}/arting/v1/jobs", headers=bearer(key),
                     json={"prompt": "p"}).json()
    daemon.wait_job(job["id"], ("running",), headers=bearer(key))
    return job["id"]


async def ready_socket(session: aiohttp.ClientSession, daemon, key: str):
    """A WebSocket of ``key``'s, its key sent as browsers send it (the first message)."""
    ws = await session.ws_connect(f"{daemon.url}/arting/v1/ws")
    await ws.send_json({"auth": key})
    assert await ws.receive_json(timeout=10) == {"event": "ready"}
    return ws


async def test_revoking_a_key_ends_its_socket_streams_and_jobs_and_no_one_elses(make_daemon):
    daemon = make_daemon(api_keys=[ADMIN], sandbox_options={"generation_time": 60})
    alice, bob = make_key(daemon, name="alice"), make_key(daemon, name="bob")
    job, bobs_job = running_job(daemon, alice["key"]), running_job(daemon, bob["key"])
    async with aiohttp.ClientSession() as session:
        idle = await ready_socket(session, daemon, alice["key"])      # pings answered
        following = await ready_socket(session, daemon, alice["key"])
        await following.send_json({"subscribe": [job]})
        assert (await following.receive_json(timeout=10))["job"]["state"] == "running"
        bobs = await ready_socket(session, daemon, bob["key"])
        events = EventStream(await session.get(f"{daemon.url}/arting/v1/jobs/{job}/events",
                                               headers=bearer(alice["key"])))
        assert (await events.next())[1]["state"] == "running"
        chat = EventStream(await session.post(
            daemon.v1 + "/chat/completions", headers=bearer(alice["key"]),
            json={"model": "x", "stream": True,
                  "messages": [{"role": "user", "content": "a fox"}]}))
        assert (await chat.next())[1]["object"] == "chat.completion.chunk"
        images = EventStream(await session.post(
            daemon.v1 + "/images/generations", headers=bearer(alice["key"]),
            json={"prompt": "a fox", "stream": True}))

        revoked = httpx.delete(f"{daemon.url}/arting/v1/admin/keys/{alice['id']}",
                               headers=bearer(ADMIN))
        assert revoked.status_code == 200

        for ws in (idle, following):
            said, reason = await until_closed(ws)
            [error] = [m for m in said if m["event"] == "error"]
            assert error["error"]["code"] == "invalid_api_key"
            assert "revoked" in error["error"]["message"]
            assert (ws.close_code, reason) == (UNAUTHORIZED, "key revoked")
        [(name, data)] = [e for e in await events.rest() if e[0] != "job"]
        assert name == "error" and data["code"] == "invalid_api_key"
        assert "revoked" in data["message"]
        said = await chat.rest()
        assert said[-1][1]["error"]["code"] == "invalid_api_key", said
        assert "revoked" in "".join(str(e[1]) for e in said)
        [(name, data)] = await images.rest()
        assert name == "error" and data["error"]["code"] == "invalid_api_key"

        # Her job is cancelled, saying why; Bob's socket and job go on.
        ended = daemon.wait_job(job, ("cancelled",), headers=bearer(ADMIN))
        assert "revoked" in ended["error"]["message"]
        await bobs.send_json({"subscribe": [bobs_job]})
        assert (await bobs.receive_json(timeout=10))["job"]["state"] == "running"
        assert not bobs.closed
        await bobs.close()


async def test_an_expiring_key_closes_its_idle_socket_when_it_expires(make_daemon):
    clock = ManualClock()
    daemon = make_daemon(api_keys=[ADMIN], clock=clock,
                         sandbox_options={"generation_time": 600})
    brief = make_key(daemon, name="brief", expires_at=clock.time() + 60)
    job = httpx.post(f"{daemon.url}/arting/v1/jobs", headers=bearer(brief["key"]),
                     json={"prompt": "p"}).json()["id"]
    async with aiohttp.ClientSession() as session:
        ws = await ready_socket(session, daemon, brief["key"])
        daemon.advance(30)
        await ws.send_json({"subscribe": [job]})              # still its key's
        assert (await ws.receive_json(timeout=10))["event"] == "job"
        daemon.advance(31)
        said, reason = await until_closed(ws)
        [error] = [m for m in said if m["event"] == "error"]
        assert "expired" in error["error"]["message"]
        assert (ws.close_code, reason) == (UNAUTHORIZED, "key expired")
    ended = daemon.wait_job(job, ("cancelled",), headers=bearer(ADMIN))
    assert "expired" in ended["error"]["message"]
