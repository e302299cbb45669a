"""Several daemons, one service: three real daemon processes sharing a real Redis and one
data directory, in front of one Arting emulator."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import random
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import aiohttp
import httpx
import openai
import pytest
import redis

from processes import TOKEN, DaemonProcess, Emulator
from streams import EventStream, until_closed
from threads import Background

pytestmark = [
    pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals"),
    pytest.mark.skipif(shutil.which("redis-server") is None,
                       reason="needs redis-server (Debian's redis-server; .ci/run installs it)"),
]

ADMIN = "replicas-admin-key-0123"


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RedisServer:
    """A redis-server of the test's own on a free loopback port, keeping its data (append
    only file) across a restart, as a production one would."""

    def __init__(self, directory: Path) -> None:
        self.dir, self.port = directory, free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen | None = None

    def start(self) -> RedisServer:
        self.dir.mkdir(exist_ok=True)
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "yes", "--appendfsync", "always", "--dir", str(self.dir)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60      # generous: it bounds a hang on a busy machine
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as c:
                    c.sendall(b"PING\r\n")
                    if c.recv(16).startswith(b"+PONG"):
                        return self
            except OSError:
                pass
            if time.monotonic() > deadline or self.proc.poll() is not None:
                self.stop()
                raise AssertionError("redis-server did not start")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(30)
        self.proc = None


@pytest.fixture
def redis_server(tmp_path):
    server = RedisServer(tmp_path / "redis").start()
    yield server
    server.stop()


@pytest.fixture
def emulator():
    emu = Emulator()
    yield emu
    emu.close()


class Cluster:
    """Replicas on one data directory and one Redis; each is stopped at the end."""

    def __init__(self, tmp_path: Path, redis: RedisServer, emulator: Emulator) -> None:
        self.data = tmp_path / "data"
        self.redis, self.emulator = redis, emulator
        self.env = {"ARTING_REDIS_URL": redis.url, "API_MASTER_KEY": ADMIN,
                    "ARTING_REPLICA_LEASE": "2", "ARTING_SHUTDOWN_GRACE": "1"}
        self.started: list[DaemonProcess] = []

    def start(self, **env: str) -> DaemonProcess:
        daemon = DaemonProcess(self.data, self.emulator.url, **{**self.env, **env})
        self.started.append(daemon)
        return daemon

    def stop(self) -> None:
        with contextlib.ExitStack() as stack:      # each one stopped, whatever the others do
            for daemon in self.started:
                stack.callback(daemon.stop)


@pytest.fixture
def cluster(tmp_path, redis_server, emulator):
    c = Cluster(tmp_path, redis_server, emulator)
    yield c
    c.stop()


def make_key(daemon: DaemonProcess, **limits) -> dict:
    resp = httpx.post(f"{daemon.url}/arting/v1/admin/keys", headers=bearer(ADMIN),
                      json={"name": "team", **limits})
    assert resp.status_code == 201, resp.text
    return resp.json()


def submit(daemon: DaemonProcess, key: str = ADMIN, **body) -> httpx.Response:
    return httpx.post(f"{daemon.url}/arting/v1/jobs", headers=bearer(key),
                      json={"prompt": "p", **body}, timeout=30)


def until(predicate, timeout: float = 15, every: float = 0.05):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, "never happened"
        time.sleep(every)


def job_of(daemon: DaemonProcess, job_id: str, key: str = ADMIN) -> dict:
    return httpx.get(f"{daemon.url}/arting/v1/jobs/{job_id}", headers=bearer(key)).json()


def finished(daemon: DaemonProcess, job_id: str, key: str = ADMIN, timeout: float = 20) -> dict:
    return until(lambda: (j := job_of(daemon, job_id, key))["state"] in
                 ("succeeded", "failed", "cancelled") and j, timeout)


# --- shared keys and limits --------------------------------------------------------------

def test_a_rate_limit_holds_across_replicas(cluster):
    a, b, c = cluster.start(), cluster.start(), cluster.start()
    key = make_key(a, requests_per_minute=30)["key"]
    cluster.emulator.configure(generation_time=0)
    replicas = [a, b, c] * 30
    with ThreadPoolExecutor(15) as pool:
        answers = list(pool.map(lambda d: submit(d, key).status_code, replicas))
    assert answers.count(202) == 30 and answers.count(429) == 60


def test_a_key_revoked_on_one_replica_is_refused_by_another_once_announced(cluster):
    """Within a second, by what happens rather than by the clock (a busy machine can be
    slower than any bound): the revocation is announced on Redis as it is made, every
    replica reloads its keys on the announcement (and compares versions every half
    second, should one be missed), and the other replica then refuses the key."""
    a, c = cluster.start(), cluster.start()
    made = make_key(a)
    assert submit(c, made["key"]).status_code == 202
    announcements = redis.Redis.from_url(cluster.redis.url).pubsub(
        ignore_subscribe_messages=True)
    try:
        announcements.subscribe("arting:keys")
        revoked = httpx.delete(f"{a.url}/arting/v1/admin/keys/{made['id']}",
                               headers=bearer(ADMIN))
        assert revoked.status_code == 200
        announced = until(lambda: announcements.get_message(timeout=1))
        assert announced["data"] == made["id"].encode()
    finally:
        announcements.close()
    answer = until(lambda: (r := submit(c, made["key"])).status_code == 401 and r, every=0.02)
    assert "revoked" in answer.json()["error"]["message"]


async def test_a_key_revoked_on_one_replica_ends_its_socket_stream_and_job_on_another(cluster):
    """What a key holds open on replica B — an idle WebSocket, a job's event stream, the
    job B runs — ends when replica A revokes it (announced on Redis: B does not wait for
    the socket's next message, nor the stream's next event)."""
    a, b = cluster.start(), cluster.start()
    cluster.emulator.configure(generation_time=60)
    made = make_key(a)
    job = submit(b, made["key"]).json()
    until(lambda: job_of(b, job["id"], made["key"])["state"] == "running")
    async with aiohttp.ClientSession() as session:
        ws = await session.ws_connect(f"{b.url}/arting/v1/ws", headers=bearer(made["key"]))
        assert await ws.receive_json(timeout=10) == {"event": "ready"}
        events = EventStream(await session.get(f"{b.url}/arting/v1/jobs/{job['id']}/events",
                                               headers=bearer(made["key"])))
        assert (await events.next())[1]["state"] == "running"
        revoked = httpx.delete(f"{a.url}/arting/v1/admin/keys/{made['id']}",
                               headers=bearer(ADMIN))
        assert revoked.status_code == 200
        said, reason = await until_closed(ws)
        assert "revoked" in said[-1]["error"]["message"]
        assert (ws.close_code, reason) == (4401, "key revoked")
        name, data = (await events.rest())[-1]
        assert name == "error" and "revoked" in data["message"]
    ended = finished(a, job["id"])
    assert ended["state"] == "cancelled" and "revoked" in ended["error"]["message"]


def test_a_revoked_keys_job_taken_over_from_a_killed_replica_is_cancelled(cluster):
    """The job's replica dies before the key is revoked; the one that takes the job over
    later cancels it rather than finishing it for a key that no longer works."""
    a, b = cluster.start(), cluster.start()
    cluster.emulator.configure(generation_time=60)
    made = make_key(a)
    job = submit(a, made["key"]).json()
    until(lambda: job_of(b, job["id"])["state"] == "running")
    a.proc.send_signal(signal.SIGKILL)
    a.proc.wait(5)
    assert httpx.delete(f"{b.url}/arting/v1/admin/keys/{made['id']}",
                        headers=bearer(ADMIN)).status_code == 200
    ended = finished(b, job["id"], timeout=30)
    assert ended["state"] == "cancelled" and "revoked" in ended["error"]["message"]
    assert "took over job" in b.log.read_text()


def test_keys_made_on_the_command_line_reach_every_replica(cluster):
    a = cluster.start()
    made = subprocess.run([str(Path(sys.executable).with_name("arting-daemon")), "keys",
                           "create", "--name", "cli", "--data-dir", str(cluster.data)],
                          capture_output=True, text=True, timeout=30,
                          env={"PATH": "/usr/bin:/bin", "ARTING_REDIS_URL": cluster.redis.url})
    assert made.returncode == 0, made.stderr
    assert until(lambda: submit(a, made.stdout.strip()).status_code == 202, timeout=5)


# --- shared jobs -----------------------------------------------------------------------

def test_a_job_submitted_on_one_replica_is_read_streamed_and_cancelled_through_another(cluster):
    a, b = cluster.start(), cluster.start()
    cluster.emulator.configure(generation_time=30)
    job = submit(a).json()
    assert until(lambda: job_of(b, job["id"])["state"] == "running")
    events = []

    def stream():
        with httpx.stream("GET", f"{b.url}/arting/v1/jobs/{job['id']}/events",
                          headers=bearer(ADMIN), timeout=30) as resp:
            for line in resp.iter_lines():
                if line.startswith("data: "):
                    events.append(json.loads(line[6:])["state"])
    reader = Background(stream)
    until(lambda: events)
    cancelled = httpx.delete(f"{b.url}/arting/v1/jobs/{job['id']}", headers=bearer(ADMIN))
    assert cancelled.status_code == 200
    reader.result()
    assert events[0] == "running" and events[-1] == "cancelled"
    assert job_of(a, job["id"])["state"] == "cancelled"
    listed = httpx.get(f"{b.url}/arting/v1/jobs", headers=bearer(ADMIN)).json()["data"]
    assert [j["id"] for j in listed] == [job["id"]]


def test_an_idempotent_retry_on_another_replica_gets_the_same_job(cluster):
    a, c = cluster.start(), cluster.start()
    first = httpx.post(f"{a.url}/arting/v1/jobs", json={"prompt": "p"},
                       headers={**bearer(ADMIN), "Idempotency-Key": "retry-me"})
    again = httpx.post(f"{c.url}/arting/v1/jobs", json={"prompt": "p"},
                       headers={**bearer(ADMIN), "Idempotency-Key": "retry-me"})
    assert (first.status_code, again.status_code) == (202, 200)
    assert first.json()["id"] == again.json()["id"]
    finished(c, first.json()["id"])
    assert len(cluster.emulator.sandbox.requests_for("create")) == 1


def test_a_killed_replicas_job_is_finished_by_another_without_a_second_create(cluster):
    a, b, c = cluster.start(), cluster.start(), cluster.start()
    cluster.emulator.configure(generation_time=3)
    job = submit(a, n=2).json()
    until(lambda: job_of(b, job["id"])["state"] == "running")
    a.proc.send_signal(signal.SIGKILL)
    a.proc.wait(5)
    done = finished(b, job["id"], timeout=30)
    assert done["state"] == "succeeded", done
    for daemon in (b, c):
        for image in done["images"]:
            resp = httpx.get(f"{daemon.url}/arting/v1/images/{image['hash']}.png")
            assert resp.status_code == 200 and resp.content.startswith(b"\x89PNG")
    assert len(cluster.emulator.sandbox.requests_for("create")) == 1
    assert "took over job" in (b.log.read_text() + c.log.read_text())


def test_a_rolling_restart_under_load_loses_no_request_and_no_job(cluster):
    replicas = [cluster.start(), cluster.start(), cluster.start()]
    cluster.emulator.configure(generation_time=1.5)
    outcomes: list[tuple[int, str]] = []
    stop = threading.Event()

    def load() -> None:
        while not stop.is_set():
            daemon = random.choice(replicas)
            with openai.OpenAI(base_url=daemon.url + "/v1", api_key=ADMIN, max_retries=0,
                               timeout=60) as client:
                try:
                    result = client.images.generate(prompt="steady", response_format="url")
                    outcomes.append((200, result.data[0].url))
                except openai.APIStatusError as err:
                    outcomes.append((err.status_code,
                                     err.response.headers.get("Retry-After", "")))
                except openai.APIConnectionError as err:    # never reached a replica
                    outcomes.append((0, type(err.__cause__).__name__))

    workers = [Background(load) for _ in range(4)]
    try:
        time.sleep(2)
        for i in range(3):
            old = replicas[i]
            replicas[i] = cluster.start()         # the new one first, as an orchestrator does
            old.proc.send_signal(signal.SIGTERM)
            assert old.proc.wait(60) == 0
            time.sleep(1.5)
    finally:        # the load ends with the test, also when it failed half-way
        stop.set()
        for w in workers:
            w.wait(90)
    for w in workers:
        w.result()

    # Every request gets its images or a retryable 503; one sent to a replica that had
    # just closed its port (a load balancer would not pick it) is refused at once.
    assert outcomes and all(code in (200, 503) or (code, what) == (0, "ConnectError")
                            for code, what in outcomes), outcomes
    assert all(what for code, what in outcomes if code == 503)     # Retry-After given
    assert sum(code == 200 for code, _ in outcomes) >= 6
    # no job lost: every job the emulator was asked for ends, each with its images
    def ended() -> list[str] | None:
        listed = httpx.get(f"{replicas[0].url}/arting/v1/jobs?limit=100", headers=bearer(ADMIN))
        states = [j["state"] for j in listed.json()["data"]]
        return states if all(s in ("succeeded", "failed", "cancelled") for s in states) \
            else None
    ended = until(ended, timeout=30)
    assert ended and all(s == "succeeded" for s in ended), ended
    assert len(cluster.emulator.sandbox.requests_for("create")) == len(ended)


# --- Redis trouble -------------------------------------------------------------------

def test_redis_down_at_start_is_a_clear_error(tmp_path, emulator):
    port = free_port()
    done = subprocess.run([sys.executable, "-m", "arting_daemon", "--port", "0", "--data-dir",
                           str(tmp_path / "d")], capture_output=True, text=True, timeout=30,
                          env={"PATH": "/usr/bin:/bin", "ARTING_BASE_URL": emulator.url,
                               "ARTING_REDIS_URL": f"redis://:s3cret@127.0.0.1:{port}/0"})
    assert done.returncode == 2
    assert "redis_url" in done.stderr and f"127.0.0.1:{port}" in done.stderr
    assert "s3cret" not in done.stderr


def test_redis_lost_while_running_gives_retryable_503_and_the_replica_recovers(cluster):
    a = cluster.start()
    cluster.emulator.configure(generation_time=2)
    job = submit(a).json()
    until(lambda: job_of(a, job["id"])["state"] == "running")
    cluster.redis.stop()
    refused = until(lambda: (r := submit(a)).status_code == 503 and r, timeout=20)
    assert int(refused.headers["Retry-After"]) >= 1 and "Redis" in refused.json()["error"][
        "message"]
    ready = until(lambda: (r := httpx.get(a.url + "/readyz")).status_code == 503 and r)
    assert any("Redis" in reason for reason in ready.json()["reasons"])
    cluster.redis.start()
    until(lambda: httpx.get(a.url + "/readyz").status_code == 200, timeout=20)
    assert finished(a, job["id"], timeout=30)["state"] == "succeeded"   # nothing lost
    assert submit(a).status_code == 202


# --- the token pool and A1111's state ---------------------------------------------------

def test_a_rate_limit_met_by_one_replica_cools_the_token_for_all(cluster):
    a, b = cluster.start(), cluster.start()
    cluster.emulator.sandbox.add_fault("rate_limit", route="create", retry_after=120, count=1)
    refused = submit(a)
    assert finished(a, refused.json()["id"])["error"]["type"] == "UpstreamRateLimited"
    tokens = until(lambda: (t := httpx.get(f"{b.url}/arting/v1/status", headers=bearer(ADMIN))
                            .json()["tokens"])[0]["state"] == "cooling" and t, timeout=5)
    assert tokens[0]["retry_in"] > 60
    client = openai.OpenAI(base_url=b.url + "/v1", api_key=ADMIN, max_retries=0)
    with pytest.raises(openai.RateLimitError):
        client.images.generate(prompt="not now")
    assert len(cluster.emulator.sandbox.requests_for("create")) == 1   # B sent nothing


def test_replicas_together_keep_a_tokens_bound_on_jobs_in_flight(cluster):
    replicas = [cluster.start(ARTING_TOKEN_MAX_JOBS="1") for _ in range(3)]
    cluster.emulator.configure(generation_time=1.0)
    with ThreadPoolExecutor(3) as pool:
        ids = list(pool.map(lambda d: submit(d).json()["id"], replicas))
    for job_id in ids:
        assert finished(replicas[0], job_id, timeout=30)["state"] == "succeeded"
    jobs = sorted(cluster.emulator.sandbox.jobs.values(), key=lambda j: j.created_at)
    assert len(jobs) == 3
    for before, after in zip(jobs, jobs[1:]):       # one at a time on the one token
        assert after.created_at >= before.done_at


def test_a1111_options_are_shared_and_outlive_every_replica(cluster):
    a, b = cluster.start(), cluster.start()
    httpx.post(f"{a.url}/sdapi/v1/options", headers=bearer(ADMIN),
               json={"sd_model_checkpoint": "asyncsMIX_v7", "CLIP_stop_at_last_layers": 3})
    seen = httpx.get(f"{b.url}/sdapi/v1/options", headers=bearer(ADMIN)).json()
    assert seen["sd_model_checkpoint"].startswith("asyncsMIX_v7")
    assert seen["CLIP_stop_at_last_layers"] == 3
    cluster.stop()
    c = cluster.start()
    again = httpx.get(f"{c.url}/sdapi/v1/options", headers=bearer(ADMIN)).json()
    assert again["sd_model_checkpoint"].startswith("asyncsMIX_v7")


def test_a1111_options_of_a_user_key_are_its_own_on_every_replica(cluster):
    a, b = cluster.start(), cluster.start()
    alice = make_key(a)["key"]
    httpx.post(f"{a.url}/sdapi/v1/options", headers=bearer(alice),
               json={"sd_model_checkpoint": "dreamshaper_8", "made_up": "mine"})
    seen = httpx.get(f"{b.url}/sdapi/v1/options", headers=bearer(alice)).json()
    assert seen["sd_model_checkpoint"].startswith("dreamshaper_8") and seen["made_up"] == "mine"
    defaults = httpx.get(f"{b.url}/sdapi/v1/options", headers=bearer(ADMIN)).json()
    assert not defaults["sd_model_checkpoint"].startswith("dreamshaper_8")
    assert "made_up" not in defaults


def test_replicas_name_a_token_by_one_keyed_fingerprint(cluster):
    """The key is made once, in Redis: each replica's job records name the token alike,
    and not by a bare SHA-256."""
    a, b = cluster.start(), cluster.start()
    named = set()
    for replica in (a, b):
        job_id = submit(replica).json()["id"]
        assert finished(replica, job_id)["state"] == "succeeded"
        with redis.Redis.from_url(cluster.redis.url) as r:
            named.add(json.loads(r.get(f"arting:job:{job_id}"))["provider_state"]["token"])
    with redis.Redis.from_url(cluster.redis.url) as r:
        key = bytes.fromhex(r.get("arting:fingerprint-key").decode())
    assert named == {hmac.new(key, TOKEN.encode(), hashlib.sha256).hexdigest()[:16]}


def test_a1111_progress_and_interrupt_reach_a_request_on_another_replica(cluster):
    a, b = cluster.start(), cluster.start()
    cluster.emulator.configure(generation_time=30)
    request = Background(httpx.post, f"{a.url}/sdapi/v1/txt2img", headers=bearer(ADMIN),
                         json={"prompt": "p", "n_iter": 2}, timeout=60)
    progress = until(lambda: (p := httpx.get(f"{b.url}/sdapi/v1/progress",
                                             headers=bearer(ADMIN)).json())["state"][
        "job_count"] == 2 and p)
    assert 0 < progress["progress"] < 1 and progress["textinfo"]
    httpx.post(f"{b.url}/sdapi/v1/interrupt", headers=bearer(ADMIN))
    answer = request.result()
    assert answer.status_code == 200
    assert json.loads(answer.json()["info"])["interrupted"] is True
    assert until(lambda: httpx.get(f"{b.url}/sdapi/v1/progress", headers=bearer(ADMIN))
                 .json()["state"]["job_count"] == 0)


# --- read-your-writes and takeovers ------------------------------------------------------

def test_a_job_is_found_on_another_replica_as_soon_as_its_submit_is_answered(cluster):
    """100 submits each followed at once by a read on the other replica (its record is in
    Redis before the 202); its events and a cancel from there too, and a key made on one
    replica is taken by the other at once."""
    a, b = cluster.start(), cluster.start()
    cluster.emulator.configure(generation_time=5)
    with httpx.Client(headers=bearer(ADMIN), timeout=30) as http:
        for i in range(100):
            here, there = (a, b) if i % 2 else (b, a)
            made = http.post(f"{here.url}/arting/v1/jobs", json={"prompt": f"p{i}"})
            assert made.status_code == 202, made.text
            job_id = made.json()["id"]
            found = http.get(f"{there.url}/arting/v1/jobs/{job_id}")
            assert found.status_code == 200, (i, found.text)
            if i % 25 == 0:
                with http.stream("GET", f"{there.url}/arting/v1/jobs/{job_id}/events") as events:
                    assert events.status_code == 200
                    first = next(line for line in events.iter_lines() if line.startswith("data: "))
                    assert json.loads(first[6:])["id"] == job_id
            cancelled = http.delete(f"{there.url}/arting/v1/jobs/{job_id}")
            assert cancelled.status_code == 200, (i, cancelled.text)
        key = http.post(f"{a.url}/arting/v1/admin/keys", json={"name": "new"}).json()["key"]
    assert submit(b, key).status_code == 202


def test_a_job_taken_over_finishes_with_its_own_images(cluster):
    a, b = cluster.start(), cluster.start()
    cluster.emulator.configure(generation_time=3)
    jobs = [submit(a, prompt=f"own {i}", seed=100 + i, cache=False).json() for i in range(3)]
    until(lambda: all(job_of(b, j["id"])["state"] == "running" for j in jobs))
    a.proc.send_signal(signal.SIGKILL)
    a.proc.wait(5)
    cluster.emulator.configure(generation_time=0)
    for i, job in enumerate(jobs):
        done = finished(b, job["id"], timeout=40)
        assert done["state"] == "succeeded", done
        again = finished(b, submit(b, prompt=f"own {i}", seed=100 + i, cache=False).json()["id"])
        assert [im["hash"] for im in done["images"]] == [im["hash"] for im in again["images"]]
    assert len(cluster.emulator.sandbox.requests_for("create")) == 6


def test_a_job_taken_over_from_another_replicas_own_sandbox_fails_saying_why(cluster):
    """Each replica run with --sandbox has an emulator of its own: a job taken over cannot
    be followed there, and must not come back with another job's images."""
    sandboxed = {"ARTING_SANDBOX": "1", "ARTING_SANDBOX_GENERATION_TIME": "30"}
    a, b = cluster.start(**sandboxed), cluster.start(**sandboxed)
    taken = submit(b, prompt="b's own").json()      # b's emulator has a job too
    job = submit(a, prompt="a's own").json()
    until(lambda: job_of(b, job["id"])["state"] == "running")
    a.proc.send_signal(signal.SIGKILL)
    a.proc.wait(5)
    done = finished(b, job["id"], timeout=40)
    assert done["state"] == "failed" and not done["images"], done
    assert "share one upstream" in done["error"]["message"]
    assert job_of(b, taken["id"])["state"] == "running"


def test_a_synchronous_request_whose_replica_died_is_answered_by_its_retry_elsewhere(cluster):
    """An OpenAI generation cut off by its replica's death, sent again with the same
    Idempotency-Key to another replica: answered with the job the first one made (taken
    over), not a second one."""
    a, b = cluster.start(), cluster.start()
    cluster.emulator.configure(generation_time=3)
    body, headers = {"prompt": "once", "response_format": "url"}, \
        {**bearer(ADMIN), "Idempotency-Key": "cut-off"}
    first = Background(lambda: httpx.post(f"{a.url}/v1/images/generations", json=body,
                                          headers=headers, timeout=30))
    until(lambda: [j for j in httpx.get(f"{b.url}/arting/v1/jobs", headers=bearer(ADMIN))
                   .json()["data"] if j["state"] == "running"])     # Arting has it
    a.proc.send_signal(signal.SIGKILL)
    a.proc.wait(5)
    with pytest.raises(httpx.TransportError):
        first.result()
    again = httpx.post(f"{b.url}/v1/images/generations", json=body, headers=headers,
                       timeout=60)
    assert again.status_code == 200, again.text
    assert len(again.json()["data"]) == 1
    assert len(cluster.emulator.sandbox.requests_for("create")) == 1
