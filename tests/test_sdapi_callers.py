"""Callers that share one daemon: A1111's ``interrupt``, ``skip`` and ``progress`` act on
the request A1111 would be running for that caller (the one whose client just hung up,
else the oldest), and a caller that goes away takes its job along unless someone else
follows it. Real sockets against the daemon + emulator; the clients that hang up do it
as SillyTavern's server does: close the connection, then post the interrupt."""

from __future__ import annotations

import json
import socket

import httpx
import pytest
from test_keys import ADMIN, bearer, make_key
from test_replicas import ADMIN as REPLICA_ADMIN
from test_replicas import cluster, emulator, redis_server  # noqa: F401 (fixtures)
from test_sdapi import host_port, sd, wait_for
from threads import Background

from arting_daemon.state import A1111, FOLLOWERS

SLOW = {"sandbox_options": {"generation_time": 30.0}}


class HangingUp:
    """A request sent over a raw socket, whose client closes the connection unanswered."""

    def __init__(self, daemon, path: str, body: dict, headers: dict | None = None) -> None:
        payload = json.dumps(body).encode()
        head = [f"POST {path} HTTP/1.1", f"Host: {daemon.url.removeprefix('http://')}",
                "Content-Type: application/json", f"Content-Length: {len(payload)}",
                *(f"{k}: {v}" for k, v in (headers or {}).items())]
        self.sock = socket.create_connection(host_port(daemon), timeout=10)
        self.sock.sendall("\r\n".join(head).encode() + b"\r\n\r\n" + payload)

    def hang_up(self) -> None:
        self.sock.close()


def jobs_by_prompt(daemon) -> dict[str, object]:
    return {job.generation.prompt: job for job in list(daemon.engine._jobs.values())}


def running(daemon, prompt: str):
    return wait_for(lambda: (job := jobs_by_prompt(daemon).get(prompt)) is not None
                    and job.state.value == "running" and job)


def polls_of(daemon, job) -> int:
    request_id = job.provider_state["request_id"]
    return sum(1 for r in daemon.sandbox.requests_for("get")
               if r.body.get("request_id") == request_id)


def test_the_interrupt_after_a_hang_up_stops_the_one_that_hung_up(make_daemon):
    """Two SillyTavern tabs without keys: B asked first (so B is the oldest), A's user
    presses Stop. B still gets its image; A's job ends cancelled, upstream too (no more
    polls for it)."""
    daemon = make_daemon(sandbox_options={"generation_time": 3.0})
    thread = Background(httpx.post, sd(daemon, "txt2img"), json={"prompt": "b"},
                        timeout=30)
    running(daemon, "b")
    a = HangingUp(daemon, "/sdapi/v1/txt2img", {"prompt": "a"})
    job_a = running(daemon, "a")
    a.hang_up()
    assert httpx.post(sd(daemon, "interrupt")).json() == {}
    wait_for(lambda: job_a.state.value == "cancelled")
    polls = polls_of(daemon, job_a)
    resp = thread.result(30)
    assert resp.status_code == 200 and len(resp.json()["images"]) == 1
    assert json.loads(resp.json()["info"])["interrupted"] is False
    assert jobs_by_prompt(daemon)["b"].state.value == "succeeded"
    assert polls_of(daemon, job_a) == polls     # nothing asked of A's job after it ended


def test_without_a_hang_up_interrupt_and_progress_mean_the_oldest_request(make_daemon):
    daemon = make_daemon(**SLOW)
    first = Background(httpx.post, sd(daemon, "txt2img"),
                       json={"prompt": "first", "n_iter": 2}, timeout=30)
    running(daemon, "first")
    second = Background(httpx.post, sd(daemon, "txt2img"),
                        json={"prompt": "second"}, timeout=30)
    running(daemon, "second")
    # progress reports the first request only: its two jobs, not three
    assert httpx.get(sd(daemon, "progress")).json()["state"]["job_count"] == 2
    httpx.post(sd(daemon, "interrupt"))
    assert first.result(10).json()["images"] == []
    assert jobs_by_prompt(daemon)["second"].state.value == "running"
    progress = httpx.get(sd(daemon, "progress")).json()     # now the second one's turn
    assert progress["state"]["job_count"] == 1 and progress["state"]["interrupted"] is False
    httpx.post(sd(daemon, "interrupt"))
    assert second.result(10).json()["images"] == []
    assert httpx.get(sd(daemon, "progress")).json()["state"]["job_count"] == 0


def test_skip_drops_the_current_job_of_the_oldest_request_only(make_daemon):
    daemon = make_daemon(**SLOW)
    first = Background(httpx.post, sd(daemon, "txt2img"), json={"prompt": "first"},
                       timeout=30)
    job = running(daemon, "first")
    second = Background(httpx.post, sd(daemon, "txt2img"), json={"prompt": "second"},
                        timeout=30)
    other = running(daemon, "second")
    assert httpx.post(sd(daemon, "skip")).json() is None
    wait_for(lambda: job.state.value == "cancelled")
    assert other.state.value == "running"
    httpx.post(sd(daemon, "interrupt"))
    httpx.post(sd(daemon, "interrupt"))
    first.result(10), second.result(10)


def test_interrupt_never_stops_another_callers_request_or_another_apis_job(make_daemon):
    daemon = make_daemon(api_keys=[ADMIN], **SLOW)
    a, b = (bearer(make_key(daemon, name=name)["key"]) for name in ("alice", "bob"))
    thread = Background(httpx.post, sd(daemon, "txt2img"), json={"prompt": "b's"},
                        headers=b, timeout=30)
    theirs = running(daemon, "b's")
    native = httpx.post(daemon.url + "/arting/v1/jobs", json={"prompt": "a's own"},
                        headers=a).json()
    openai = Background(httpx.post, daemon.v1 + "/images/generations",
                        json={"prompt": "a's openai"}, headers=a, timeout=30)
    mine = running(daemon, "a's openai")
    assert httpx.post(sd(daemon, "interrupt"), headers=a).json() == {}
    assert httpx.post(sd(daemon, "skip"), headers=a).json() is None
    assert httpx.get(sd(daemon, "progress"), headers=a).json()["state"]["job_count"] == 0
    assert theirs.state.value == mine.state.value == "running"
    assert daemon.engine._jobs[native["id"]].state.value in ("queued", "running")
    assert httpx.get(sd(daemon, "progress"), headers=b).json()["state"]["job_count"] == 1
    httpx.post(sd(daemon, "interrupt"), headers=b)
    assert thread.result(10).json()["images"] == []
    for job in list(daemon.engine._jobs.values()):
        httpx.delete(f"{daemon.url}/arting/v1/jobs/{job.id}", headers=a)
    openai.result(10)


def test_a_hung_up_request_is_interrupted_once_then_the_oldest_again(make_daemon):
    daemon = make_daemon(**SLOW)
    thread = Background(httpx.post, sd(daemon, "txt2img"), json={"prompt": "stays"},
                        timeout=30)
    stays = running(daemon, "stays")
    gone = HangingUp(daemon, "/sdapi/v1/txt2img", {"prompt": "leaves"})
    leaves = running(daemon, "leaves")
    gone.hang_up()
    wait_for(lambda: leaves.state.value == "cancelled")
    httpx.post(sd(daemon, "interrupt"))              # meant for the one that left
    assert stays.state.value == "running"
    httpx.post(sd(daemon, "interrupt"))              # a second one: the oldest again
    assert thread.result(10).json()["images"] == [] and stays.state.value == "cancelled"


# --- callers that go away -----------------------------------------------------------------

@pytest.mark.parametrize("path,body", [
    ("/sdapi/v1/txt2img", {"prompt": "gone"}),
    ("/v1/images/generations", {"prompt": "gone"}),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "gone"}]}),
    ("/v1/chat/completions", {"stream": True,
                              "messages": [{"role": "user", "content": "gone"}]}),
], ids=["a1111", "openai", "chat", "chat-stream"])
def test_a_caller_that_goes_away_takes_its_job_along(make_daemon, path, body):
    daemon = make_daemon(**SLOW)
    caller = HangingUp(daemon, path, body)
    job = running(daemon, "gone")
    caller.hang_up()
    wait_for(lambda: job.state.value == "cancelled")


@pytest.mark.parametrize("path,body", [
    ("/sdapi/v1/txt2img", {"prompt": "followed"}),
    ("/v1/images/generations", {"prompt": "followed"}),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "followed"}]}),
], ids=["a1111", "openai", "chat"])
def test_a_job_someone_follows_outlives_its_caller(make_daemon, path, body):
    """The web page (or a plugin) follows the job over the job API: the caller's hang-up
    leaves it running, and the follower sees it to its end."""
    daemon = make_daemon(sandbox_options={"generation_time": 2.0})
    caller = HangingUp(daemon, path, body)
    job = running(daemon, "followed")
    events: list[dict] = []

    def follow() -> None:
        with httpx.stream("GET", f"{daemon.url}/arting/v1/jobs/{job.id}/events",
                          timeout=30) as stream:
            for line in stream.iter_lines():
                if line.startswith("data:"):
                    events.append(json.loads(line[5:]))
    follower = Background(follow)
    wait_for(lambda: events)
    caller.hang_up()
    follower.result(30)
    assert events[-1]["state"] == "succeeded" and job.state.value == "succeeded"


def test_the_interrupt_after_a_hang_up_stops_a_followed_job_too(make_daemon):
    """The hang-up alone leaves a followed job running; the interrupt that follows it is
    the caller's word, and stops it."""
    daemon = make_daemon(**SLOW)
    caller = HangingUp(daemon, "/sdapi/v1/txt2img", {"prompt": "followed"})
    job = running(daemon, "followed")
    follower = Background(httpx.get, f"{daemon.url}/arting/v1/jobs/{job.id}/events",
                          timeout=30)
    wait_for(lambda: job in daemon.app[FOLLOWERS])
    caller.hang_up()
    wait_for(lambda: [b.gone for b in daemon.app[A1111]._batches] == [True])
    assert job.state.value == "running"
    httpx.post(sd(daemon, "interrupt"))
    wait_for(lambda: job.state.value == "cancelled")
    follower.result(10)


# --- with replicas --------------------------------------------------------------------------

def test_with_replicas_the_interrupt_after_a_hang_up_elsewhere_spares_the_other(cluster):
    """The hang-up on one replica, the interrupt on another: that one reads the request
    gone from Redis, and stops nothing else; the next interrupt stops the oldest."""
    a, b = cluster.start(), cluster.start()
    cluster.emulator.configure(generation_time=30)
    admin = {"Authorization": f"Bearer {REPLICA_ADMIN}"}

    def job_of(prompt: str) -> dict | None:
        listed = httpx.get(f"{a.url}/arting/v1/jobs", headers=admin).json()["data"]
        return next((j for j in listed if j["request"]["prompt"] == prompt), None)

    def state_of(prompt: str) -> str | None:
        job = job_of(prompt)
        return job and job["state"]

    thread = Background(httpx.post, f"{a.url}/sdapi/v1/txt2img", headers=admin,
                        json={"prompt": "stays"}, timeout=60)
    wait_for(lambda: state_of("stays") == "running", timeout=30)
    caller = HangingUp(a, "/sdapi/v1/txt2img", {"prompt": "leaves"}, headers=admin)
    wait_for(lambda: state_of("leaves") == "running", timeout=30)
    caller.hang_up()
    wait_for(lambda: state_of("leaves") == "cancelled", timeout=30)
    httpx.post(f"{b.url}/sdapi/v1/interrupt", headers=admin)
    assert state_of("stays") == "running"
    httpx.post(f"{b.url}/sdapi/v1/interrupt", headers=admin)
    assert thread.result(30).json()["images"] == [] and state_of("stays") == "cancelled"
