"""The plugins' stdlib client of the job API, against a live daemon + emulator (and, for
answers no arting-2api daemon gives, a small stand-in server), over loopback sockets."""

from __future__ import annotations

import ast
import http.client
import importlib.util
import json
import os
import socket
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[1]
CLIENT = ROOT / "comfyui_nodes" / "arting_comfy" / "daemon_client.py"

_spec = importlib.util.spec_from_file_location("arting_plugin_daemon_client", CLIENT)
dc = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(dc)

T2I = {"prompt": "a lighthouse", "width": 256, "height": 256}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_running(client, job_id: str) -> None:
    deadline = time.monotonic() + 10
    while client.job(job_id)["state"] != "running":
        assert time.monotonic() < deadline, "the job never ran"
        time.sleep(0.02)


@pytest.fixture
def serve() -> Iterator:
    """Start a stdlib HTTP server on a loopback port with a handler class; stopped after."""
    servers: list[ThreadingHTTPServer] = []

    def start(handler: type[BaseHTTPRequestHandler]) -> str:
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


# --- the happy path ---------------------------------------------------------------------------

def test_run_follows_a_job_to_its_images(daemon):
    client = dc.DaemonClient(daemon.url)
    assert client.health()["status"] == "ok"
    assert "oneFORALLAnime" in [m["id"] for m in client.catalog()["models"]]
    updates = []
    job = client.run({**T2I, "n": 2, "seed": 7}, on_progress=updates.append,
                     poll_interval=0.05, client_name="tests")
    assert job["state"] == "succeeded" and job["source"] == "tests"
    assert [i["seed"] for i in job["images"]] == [7, 8]
    assert updates[0]["state"] in ("queued", "submitting") and updates[-1] is job
    png = client.download(job["images"][0]["url"])
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    assert client.download(urlsplit(job["images"][0]["url"]).path) == png


def no_polling(client, monkeypatch) -> None:
    """Make polling a job fail the test: whatever the client learns comes otherwise."""
    def polled(job_id):
        raise AssertionError("the job was polled")
    monkeypatch.setattr(client, "job", polled)


def test_run_follows_the_job_over_the_websocket(make_daemon, monkeypatch):
    daemon = make_daemon(api_keys=["k"], sandbox_options={"generation_time": 1.5})
    client = dc.DaemonClient(daemon.url, api_key="k")
    no_polling(client, monkeypatch)
    updates = []
    job = client.run(T2I, on_progress=updates.append)
    assert job["state"] == "succeeded" and updates[-1] is job
    running = [u["progress"] for u in updates if u["state"] == "running"]
    assert len(running) >= 2 and running == sorted(running), updates


def test_without_a_websocket_it_polls(daemon, monkeypatch):
    """A daemon from before the WebSocket answers its path with 404."""
    monkeypatch.setattr(dc, "WS_PATH", "/arting/v1/no-such-route")
    client = dc.DaemonClient(daemon.url)
    polls = []
    real = client.job
    monkeypatch.setattr(client, "job", lambda job_id: polls.append(job_id) or real(job_id))
    job = client.run(T2I, poll_interval=0.05)
    assert job["state"] == "succeeded" and polls


def test_a_websocket_that_breaks_off_mid_job_gives_way_to_polling(make_daemon, monkeypatch):
    daemon = make_daemon(sandbox_options={"generation_time": 1.0})
    received = dc._WebSocket.receive

    def receive_then_break(self, wait):
        message = received(self, wait)
        if message and message.get("event") == "job":
            self.sock.close()                        # the connection drops
        return message

    monkeypatch.setattr(dc._WebSocket, "receive", receive_then_break)
    client = dc.DaemonClient(daemon.url)
    updates = []
    job = client.run(T2I, on_progress=updates.append, poll_interval=0.05)
    assert job["state"] == "succeeded" and len(updates) >= 3


def test_events_end_in_a_terminal_state(make_daemon):
    daemon = make_daemon(sandbox_options={"generation_time": 1.0})
    client = dc.DaemonClient(daemon.url)
    job = client.submit(T2I)
    states = [event["state"] for event in client.events(job["id"])]
    assert states[-1] == "succeeded" and "running" in states


# --- failures, one readable sentence each --------------------------------------------------------

def test_a_failed_job_raises_job_failed(daemon):
    daemon.do(daemon.sandbox.add_fault, "fail", route="get")
    with pytest.raises(dc.JobFailed) as err:
        dc.DaemonClient(daemon.url).run(T2I, poll_interval=0.05)
    assert str(err.value).startswith("Arting could not make the image: ")
    assert err.value.code == "generation_failed"


def test_4xx_answers_become_readable_messages(make_daemon):
    daemon = make_daemon(api_keys=["right"], max_active_jobs=1, max_queued_jobs=0,
                         sandbox_options={"generation_time": 30})
    client = dc.DaemonClient(daemon.url, api_key="right")
    with pytest.raises(dc.DaemonError) as err:
        client.submit({"prompt": " "})
    assert str(err.value) == ("The Arting daemon refused the request: prompt is required "
                              "and must be a non-empty string.")
    assert (err.value.status, err.value.code) == (400, "invalid_request")

    with pytest.raises(dc.DaemonError) as err:
        client.job("nope")
    assert str(err.value) == "The Arting daemon refused the request: No job 'nope'."

    with pytest.raises(dc.DaemonError) as err:
        dc.DaemonClient(daemon.url, api_key="wrong").job("nope")
    assert str(err.value) == (f"The Arting daemon at {daemon.url} refused the API key; set "
                              "ARTING_API_KEY to one of its keys.")

    wait_running(client, client.submit(T2I)["id"])
    with pytest.raises(dc.DaemonError) as err:
        client.submit(T2I)
    assert err.value.status == 429
    assert str(err.value).startswith("The Arting daemon is busy (try again in ")
    assert "max_queued_jobs" in str(err.value)


def test_a_url_that_is_not_the_daemon_says_so(daemon):
    client = dc.DaemonClient(daemon.url + "/v1")
    with pytest.raises(dc.DaemonError) as err:
        client.job("x")
    assert str(err.value) == (f"{daemon.url}/v1 answered HTTP 404 Not Found but is not an "
                              "arting-2api daemon; check the daemon URL.")


def test_5xx_and_foreign_answers_become_readable_messages(serve):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            if self.path.endswith("/stuck"):
                time.sleep(2)
                return
            if self.path.endswith("/envelope"):
                body, kind = json.dumps({"error": {
                    "message": "Arting refused the token; refresh ARTING_AUTH_TOKEN.",
                    "type": "api_error", "param": None, "code": "upstream_auth"}}), "json"
                status = 502
            elif self.path.endswith("/html"):
                body, kind, status = "<html>Bad Gateway</html>", "html", 502
            else:
                body, kind, status = "hello", "plain", 200
            self.send_response(status)
            self.send_header("Content-Type", f"text/{kind}")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body.encode())

    url = serve(Handler)
    client = dc.DaemonClient(url, timeout=0.5)
    with pytest.raises(dc.DaemonError) as err:
        client.job("envelope")
    assert str(err.value) == ("The Arting daemon could not do it: Arting refused the token; "
                              "refresh ARTING_AUTH_TOKEN.")
    assert (err.value.status, err.value.code) == (502, "upstream_auth")
    with pytest.raises(dc.DaemonError) as err:
        client.job("html")
    assert str(err.value) == (f"{url} answered HTTP 502 Bad Gateway but is not an arting-2api "
                              "daemon; check the daemon URL.")
    with pytest.raises(dc.DaemonError, match="answered HTTP 200 OK but is not an arting-2api"):
        client.job("plain")
    with pytest.raises(dc.DaemonUnreachable) as err:
        client.job("stuck")
    assert str(err.value) == (f"The Arting daemon at {url} did not answer within 0.5 s; check "
                              "that it is running and not stuck.")


def test_answers_cut_short_become_readable_messages(serve):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            self.send_response(200)
            if self.path.endswith("/events"):
                self.send_header("Content-Type", "text/event-stream")
                self.end_headers()
                self.wfile.write(b'event: job\ndata: {"id": "j", "state": "running"}\n\n')
            else:
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", "100")
                self.end_headers()
                self.wfile.write(b'{"id": ')
            self.close_connection = True

    url = serve(Handler)
    client = dc.DaemonClient(url)
    with pytest.raises(dc.DaemonUnreachable) as err:
        client.job("j")
    assert str(err.value) == (f"The connection to the Arting daemon at {url} broke off "
                              "mid-answer; try again.")
    seen = []
    with pytest.raises(dc.DaemonUnreachable) as err:
        for job in client.events("j"):
            seen.append(job["state"])
    assert seen == ["running"]
    assert str(err.value) == (f"The Arting daemon at {url} ended the event stream before the "
                              "job ended; follow it again.")


def test_daemon_down_is_one_sentence_with_the_url():
    url = f"http://127.0.0.1:{free_port()}"
    expected = (f"Arting daemon not reachable at {url} — start it with `arting-daemon` "
                "(or set ARTING_DAEMON_URL to where it runs).")
    client = dc.DaemonClient(url)
    with pytest.raises(dc.DaemonUnreachable) as err:
        client.health()
    assert str(err.value) == expected
    started = time.monotonic()
    with pytest.raises(dc.DaemonUnreachable) as err:
        client.run(T2I)
    assert str(err.value) == expected and time.monotonic() - started < 5


# --- never two generations, never an orphaned one -------------------------------------------------

class DroppingProxy(BaseHTTPRequestHandler):
    """Forwards to the daemon, but for the first ``drops[method]`` requests of a method
    it hangs up after the daemon answered: the request took effect, the answer is lost."""

    upstream: str
    drops: dict[str, int]
    seen: list[tuple[str, str, str | None]]

    def log_message(self, *args):
        pass

    def _forward(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.seen.append((self.command, self.path, self.headers.get("Idempotency-Key")))
        target = urlsplit(self.upstream)
        conn = http.client.HTTPConnection(target.hostname, target.port, timeout=10)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host",)}
        conn.request(self.command, self.path, body=body or None, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
        conn.close()
        if self.drops.get(self.command, 0) > 0:
            self.drops[self.command] -= 1
            self.close_connection = True
            return
        self.send_response(resp.status)
        for key, value in resp.getheaders():
            if key.lower() not in ("transfer-encoding", "connection", "content-length"):
                self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_DELETE = _forward


def dropping_proxy(serve, daemon, **drops: int):
    handler = type("Proxy", (DroppingProxy,), {"upstream": daemon.url, "drops": drops,
                                               "seen": []})
    return serve(handler), handler.seen


def test_a_submit_whose_answer_was_lost_is_retried_without_a_second_job(daemon, serve):
    url, seen = dropping_proxy(serve, daemon, POST=1)
    client = dc.DaemonClient(url, live=False)
    job = client.run(T2I, poll_interval=0.05)
    assert job["state"] == "succeeded"
    listed = httpx.get(daemon.url + "/arting/v1/jobs").json()["data"]
    assert [j["id"] for j in listed] == [job["id"]]
    assert len(daemon.sandbox.requests_for("create")) == 1
    posts = [s for s in seen if s[0] == "POST"]
    assert len(posts) == 2 and posts[0][2] == posts[1][2] is not None


def test_polling_rides_out_lost_answers(daemon, serve):
    url, seen = dropping_proxy(serve, daemon, GET=2)
    job = dc.DaemonClient(url, live=False).run(T2I, poll_interval=0.05)
    assert job["state"] == "succeeded"
    assert len([s for s in seen if s[0] == "GET"]) >= 3


def test_should_cancel_cancels_the_daemon_job_at_once(make_daemon):
    """``should_cancel`` is asked all through the pause between two polls, and the job
    is cancelled as soon as it says so: with no poll in between, while Arting still
    works on it."""
    daemon = make_daemon(sandbox_options={"generation_time": 6})
    client = dc.DaemonClient(daemon.url, live=False)     # polling (the WebSocket has its own test)
    calls: list[str] = []
    job, cancel = client.job, client.cancel
    client.job = lambda job_id: (calls.append("poll"), job(job_id))[1]          # type: ignore
    client.cancel = lambda job_id: (calls.append("cancel"), cancel(job_id))[1]  # type: ignore
    updates: list[dict] = []

    def should_cancel():
        yes = [u["state"] for u in updates].count("running") >= 2
        calls.append("yes" if yes else "no")
        return yes

    with pytest.raises(dc.JobCancelled):
        client.run(T2I, on_progress=updates.append, should_cancel=should_cancel,
                   poll_interval=0.5)
    said = calls.index("yes")
    assert calls[said:] == ["yes", "cancel"]
    # asked in every pause (the last one ended at its first question), not once a poll
    asked = [len(pause.split()) for pause in " ".join(calls[:said]).split("poll")]
    assert len(asked) >= 3 and min(asked[:-1]) >= 2, calls
    assert client.job(updates[-1]["id"])["state"] == "cancelled"


def test_an_error_in_a_callback_cancels_the_daemon_job(make_daemon):
    daemon = make_daemon(sandbox_options={"generation_time": 6})
    client = dc.DaemonClient(daemon.url)
    seen = []

    def explode(job):
        seen.append(job)
        if job["state"] == "running":
            raise RuntimeError("the host gave up")

    with pytest.raises(RuntimeError):
        client.run(T2I, on_progress=explode, poll_interval=0.05)
    assert client.job(seen[-1]["id"])["state"] == "cancelled"


def test_a_job_past_the_timeout_is_cancelled(make_daemon):
    daemon = make_daemon(sandbox_options={"generation_time": 6})
    client = dc.DaemonClient(daemon.url)
    seen = []
    with pytest.raises(dc.DaemonError) as err:
        client.run(T2I, on_progress=seen.append, timeout=0.5, poll_interval=0.05)
    assert str(err.value) == ("The Arting job took longer than 0.5 s and was cancelled; try "
                              "again or raise the timeout.")
    assert client.job(seen[-1]["id"])["state"] == "cancelled"


# --- configuration and shape ----------------------------------------------------------------

def test_the_daemon_url_comes_from_the_caller_then_the_environment(monkeypatch):
    monkeypatch.delenv("ARTING_DAEMON_URL", raising=False)
    assert dc.resolve_url(None) == dc.DEFAULT_URL == "http://127.0.0.1:8090"
    monkeypatch.setenv("ARTING_DAEMON_URL", "http://10.0.0.2:9000/")
    assert dc.resolve_url("") == "http://10.0.0.2:9000"
    assert dc.resolve_url(" http://h:1 ") == "http://h:1"
    assert dc.resolve_url("localhost:8091") == "http://localhost:8091"
    with pytest.raises(dc.DaemonError, match="must start with http:// or https://"):
        dc.DaemonClient("ftp://h")


def test_status_lines():
    assert dc.status_line({"state": "queued", "queue_position": 2, "eta_seconds": 31.4}) == \
        "Queued (#2 in line), about 31 s left"
    assert dc.status_line({"state": "running", "progress": 0.421, "eta_seconds": 8}) == \
        "Generating 42%, about 8 s left"
    assert dc.status_line({"state": "succeeded", "images": [{}, {}]}) == "Done: 2 images"
    assert dc.status_line({"state": "failed", "error": {"message": "No."}}) == "Failed: No."


def test_one_stdlib_only_file_serves_both_plugins():
    twin = ROOT / "sd_webui_extension" / "arting_webui" / "daemon_client.py"
    assert twin.is_symlink() and not os.path.isabs(os.readlink(twin))
    assert twin.resolve() == CLIENT
    tree = ast.parse(CLIENT.read_text(), feature_version=(3, 10))
    imported = {alias.name.split(".")[0] for node in ast.walk(tree)
                if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree)
                 if isinstance(node, ast.ImportFrom) and node.module}
    assert imported <= set(sys.stdlib_module_names) | {"__future__"}
