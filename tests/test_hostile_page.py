"""A hostile web page, in a real headless Chromium, against a daemon on this machine.

The page is served from another loopback port (another origin, the same site) and tries
what pages can: "simple" requests that need no preflight (``no-cors`` fetches of JSON as
``text/plain``, an untyped ``Blob``, a form; an HTML form posting JSON-looking
``text/plain``), CORS reads, a WebSocket; with the user's HTTP Basic pair sent by the
browser itself where the daemon has one. Then a DNS-rebinding page: Chromium resolves
``rebind.attacker.example`` to 127.0.0.1 (``--host-resolver-rules``), so a page of that
name is of the same origin as the daemon's port, and reads whatever is answered to it.

What counts is the daemon's side, read by the test's own client (no ``Origin``): no job
was made, the options did not change, a running generation was not interrupted.
"""

from __future__ import annotations

import base64
import concurrent.futures
import contextlib
import http.server
import threading
import time

import httpx
import pytest

from test_web_page import start_chromium, until

REBIND = "rebind.attacker.example"
PAIR = "me:open-sesame"
KEY = "sesame-0123456789"

#: The hostile page: every attempt, then ``window.done`` with what the page could learn.
PAGE = """<!doctype html><meta charset="utf-8"><title>cute cats</title>
<iframe name="sink"></iframe>
<form id="form" target="sink" method="post" enctype="text/plain">
<input name='{"sd_model_checkpoint": "pwned", "x": "' value='"}'></form>
<script>
const D = new URLSearchParams(location.search).get("daemon");
const job = JSON.stringify({prompt: "pwned", model: "asyncsMIX_v7"});
const blind = {method: "POST", mode: "no-cors", credentials: "include"};
const text = {...blind, headers: {"Content-Type": "text/plain"}};
const waited = () => new Promise(done => setTimeout(() => done("no answer yet"), 5000));
const settle = p => Promise.race([waited(), p.then(
  r => "answered " + (r.type === "opaque" ? "(opaque)" : r.status), e => "failed")]);
const tries = {
  jobs_text: () => fetch(D + "/arting/v1/jobs", {...text, body: job}),
  jobs_blob: () => fetch(D + "/arting/v1/jobs", {...blind, body: new Blob([job])}),
  openai: () => fetch(D + "/v1/images/generations", {...text, body: job}),
  txt2img: () => fetch(D + "/sdapi/v1/txt2img", {...text, body: job}),
  txt2img_form: () => fetch(D + "/sdapi/v1/txt2img",
                            {...blind, body: new URLSearchParams({prompt: "pwned"})}),
  options: () => fetch(D + "/sdapi/v1/options", {...text,
      body: JSON.stringify({sd_model_checkpoint: "pwned", enable_pnginfo: false})}),
  interrupt: () => fetch(D + "/sdapi/v1/interrupt", blind),
  interrupt_json: () => fetch(D + "/sdapi/v1/interrupt", {...text, body: "{}"}),
  cors_json: () => fetch(D + "/arting/v1/jobs", {method: "POST", credentials: "include",
      headers: {"Content-Type": "application/json"}, body: job}),
};
const reads = {
  read_jobs: () => fetch(D + "/arting/v1/jobs", {credentials: "include"}).then(r => r.text()),
  read_options: () => fetch(D + "/sdapi/v1/options", {credentials: "include"})
                        .then(r => r.text()),
};
const socket = () => new Promise(done => {
  const seen = [];
  const ws = new WebSocket(D.replace("http", "ws") + "/arting/v1/ws");
  ws.onopen = () => { seen.push("open"); ws.send(JSON.stringify({submit: {prompt: "pwned"}})); };
  ws.onmessage = m => seen.push(m.data);
  ws.onclose = () => done(seen.concat("closed"));
  setTimeout(() => { ws.close(); done(seen.concat("timeout")); }, 5000);
});
(async () => {
  const form = document.getElementById("form");
  form.action = D + "/sdapi/v1/options";
  form.submit();
  // All at once, none waited for past a few seconds (a generation let in would hold its
  // answer back for a minute).
  const names = [...Object.keys(tries), ...Object.keys(reads), "websocket"];
  const got = await Promise.all([
    ...Object.values(tries).map(go => settle(go())),
    ...Object.values(reads).map(go => Promise.race([waited(), go().then(
      t => "read: " + t, e => "failed")])),
    socket()]);
  window.done = Object.fromEntries(names.map((name, i) => [name, got[i]]));
})();
</script>
"""


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    driver = start_chromium(tmp_path_factory.mktemp("chromium-hostile"),
                            flags=(f"--host-resolver-rules=MAP {REBIND} 127.0.0.1",))
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def hostile():
    """The hostile page's origin: a server on another loopback port."""
    class Handler(http.server.BaseHTTPRequestHandler):
        timeout = 5     # a connection the browser opened ahead and left idle ends too

        def do_GET(self):
            body = PAGE.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = False       # so server_close() waits for each request's thread
    thread = threading.Thread(target=server.serve_forever, name="hostile page", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def jobs(daemon, reader: dict) -> list[tuple[str, str]]:
    """(id, state) of every job, as the job API shows them to the operator."""
    return [(j["id"], j["state"]) for j in httpx.get(
        daemon.url + "/arting/v1/jobs", headers=reader, timeout=10).json()["data"]]


@contextlib.contextmanager
def a_running_generation(daemon, headers: dict, reader: dict):
    """An A1111 txt2img that runs until interrupted (its call waits in a thread); yields
    its job's id, and interrupts it at the end as its own client would."""
    pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="txt2img")
    try:
        call = pool.submit(httpx.post, daemon.url + "/sdapi/v1/txt2img", headers=headers,
                           json={"prompt": "the user's own", "steps": 20}, timeout=60)
        deadline = time.monotonic() + 15
        while True:
            running = [id for id, state in jobs(daemon, reader) if state == "running"]
            if running:
                break
            assert time.monotonic() < deadline and not call.done(), "no running job"
            time.sleep(0.05)
        yield running[0]
    finally:
        httpx.post(daemon.url + "/sdapi/v1/interrupt", headers=headers, timeout=10)
        pool.shutdown(wait=True, cancel_futures=True)
    assert call.result(timeout=1).status_code == 200


def attack(browser, hostile: str, daemon) -> dict:
    browser.get(f"{hostile}/?daemon={daemon.url}")
    return until(browser, lambda d: d.execute_script("return window.done"), timeout=30,
                 what="the hostile page's attempts")


def fetch_here(browser, path: str, method: str = "GET") -> dict:
    """A same-origin fetch from the page the browser shows: its status and text."""
    return browser.execute_async_script(
        "const [path, method, done] = arguments;"
        "fetch(path, {method, credentials: 'include'})"
        ".then(r => r.text().then(t => done({status: r.status, text: t})),"
        "      e => done({status: 0, text: String(e)}))", path, method)


@pytest.mark.parametrize("mode", ["local", "basic_auth"])
def test_a_hostile_page_can_make_the_daemon_do_nothing(browser, hostile, make_daemon, mode):
    if mode == "local":
        daemon, headers = make_daemon(sandbox=True, sandbox_generation_time=60), {}
        reader = {}
    else:    # A1111 clients sign in with the pair; the operator reads jobs with a key
        daemon = make_daemon(sandbox=True, sandbox_generation_time=60, basic_auth=[PAIR],
                             api_keys=[KEY])
        headers = {"Authorization": "Basic " + base64.b64encode(PAIR.encode()).decode()}
        reader = {"Authorization": f"Bearer {KEY}"}
        # The user has signed in here: from now on the browser sends the pair by itself.
        user, _, password = PAIR.partition(":")
        browser.get(daemon.url.replace("://", f"://{user}:{password}@") + "/sdapi/v1/options")
        browser.get(daemon.url + "/healthz")
        assert fetch_here(browser, "/sdapi/v1/options")["status"] == 200
    options = httpx.get(daemon.url + "/sdapi/v1/options", headers=headers).json()

    with a_running_generation(daemon, headers, reader) as running:
        seen = attack(browser, hostile, daemon)
        # The daemon's side: no job but the user's, which still runs; no option changed.
        assert jobs(daemon, reader) == [(running, "running")], seen
        assert httpx.get(daemon.url + "/sdapi/v1/options", headers=headers).json() == options
        # The page's: it read nothing, and its WebSocket never opened.
        assert all(not v.startswith("read") for k, v in seen.items() if k.startswith("read")), \
            seen
        assert seen["cors_json"] == "failed"        # its preflight gets no CORS answer
        assert "open" not in seen["websocket"], seen["websocket"]

        # DNS rebinding: a page named rebind.attacker.example, now resolving to this
        # machine, is of the same origin as the daemon's port, but not a name it answers to.
        port = daemon.url.rpartition(":")[2]
        browser.get(f"http://{REBIND}:{port}/healthz")
        assert browser.execute_script("return location.host") == f"{REBIND}:{port}"
        for path, method in (("/arting/v1/jobs", "GET"), ("/sdapi/v1/options", "GET"),
                             ("/sdapi/v1/interrupt", "POST"), ("/arting/v1/status", "GET")):
            got = fetch_here(browser, path, method)
            assert got["status"] == 421 and "allowed_hosts" in got["text"], (path, got)
            assert "the user's own" not in got["text"]
        assert jobs(daemon, reader) == [(running, "running")]


def test_the_daemons_own_origin_still_may(browser, make_daemon):
    """The same requests from the daemon's own origin are served: the refusals above are
    about where a page comes from, not what it asks."""
    daemon = make_daemon(sandbox=True)
    browser.get(daemon.url + "/healthz")
    got = browser.execute_async_script(
        "const done = arguments[0];"
        "fetch('/arting/v1/jobs', {method: 'POST', headers: {'Content-Type': "
        "'application/json'}, body: JSON.stringify({prompt: 'mine'})})"
        ".then(r => done(r.status), e => done(String(e)))")
    assert got == 202
    assert fetch_here(browser, "/sdapi/v1/interrupt", "POST")["status"] == 200
