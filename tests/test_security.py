"""Security: key comparison, exposure, CORS, and where the daemon will (not) fetch from."""

from __future__ import annotations

import base64
import hmac
import os
import subprocess
import sys
import threading

import httpx
import openai
import pytest
from processes import START_TIMEOUT, first_line

from arting_daemon import auth

KEYS = ["first-key-aaaa", "second-key-bbbb", "third-key-cccc"]


# --- API keys -------------------------------------------------------------------------------

def test_keys_are_compared_in_constant_time_against_every_key(make_daemon, monkeypatch):
    """Every request is compared with every key by hmac.compare_digest: no early exit,
    no ``==``, so timing tells nothing about which key (or how much of it) matched."""
    calls = []
    compare = hmac.compare_digest

    def counting(a, b):
        calls.append((a, b))
        return compare(a, b)
    monkeypatch.setattr(auth.hmac, "compare_digest", counting)
    daemon = make_daemon(api_keys=KEYS)
    for given, status in [(KEYS[0], 200), (KEYS[2], 200), ("first-key", 401),
                          (KEYS[0] + "x", 401), (KEYS[1].upper(), 401)]:
        calls.clear()
        resp = httpx.get(daemon.v1 + "/models", headers={"Authorization": f"Bearer {given}"})
        assert resp.status_code == status, given
        assert len(calls) == len(KEYS), given
        assert all(isinstance(a, bytes) for a, _ in calls)


def test_a1111_style_basic_auth_with_the_key_as_password(make_daemon):
    daemon = make_daemon(api_keys=KEYS, basic_auth=["user:secret-pass"])
    settings = daemon.settings

    class Req:
        def __init__(self, value):
            self.headers = {"Authorization": value}
    basic = lambda pair: "Basic " + base64.b64encode(pair.encode()).decode()   # noqa: E731
    assert auth.is_authorized(Req(basic("user:secret-pass")), settings, basic=True)
    assert auth.is_authorized(Req(basic("anyone:" + KEYS[1])), settings, basic=True)
    assert not auth.is_authorized(Req(basic("user:wrong")), settings, basic=True)
    assert not auth.is_authorized(Req(basic("user:secret-pass")), settings, basic=False)
    assert not auth.is_authorized(Req("Basic !!!not-base64"), settings, basic=True)


def test_metrics_need_the_key_when_keys_are_set(make_daemon):
    daemon = make_daemon(api_keys=KEYS, basic_auth=["prometheus:scrape-pass"])
    refused = httpx.get(daemon.url + "/metrics")
    assert refused.status_code == 401 and "Bearer" in refused.headers["WWW-Authenticate"]
    assert httpx.get(daemon.url + "/metrics", auth=("prometheus", "nope")).status_code == 401
    ok = httpx.get(daemon.url + "/metrics", headers={"Authorization": f"Bearer {KEYS[1]}"})
    assert ok.status_code == 200 and ok.text.startswith("# HELP")
    assert httpx.get(daemon.url + "/metrics",
                     auth=("prometheus", "scrape-pass")).status_code == 200
    assert httpx.get(daemon.url + "/readyz").status_code == 200     # probes stay open
    assert httpx.get(daemon.url + "/healthz").status_code == 200


# --- exposure ----------------------------------------------------------------------------

def run_cli(tmp_path, *args, **env) -> subprocess.Popen:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("ARTING_", "API_"))}
    return subprocess.Popen([sys.executable, "-m", "arting_daemon", "--port", "0",
                             "--data-dir", str(tmp_path / "data"), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**clean, **env}, cwd=tmp_path)


def test_no_network_listening_without_a_key(tmp_path):
    proc = run_cli(tmp_path, "--host", "0.0.0.0")
    try:
        out, err = proc.communicate(timeout=60)
    finally:            # had it listened, it would not end by itself
        proc.kill()
        proc.wait(30)
    assert proc.returncode == 2 and "listening" not in out
    assert "Refusing to listen on 0.0.0.0" in err and "API_MASTER_KEY" in err
    assert "--allow-insecure" in err


@pytest.mark.parametrize("args, env", [(["--allow-insecure"], {}),
                                       ([], {"API_MASTER_KEY": "a-real-key"}),
                                       ([], {"ARTING_PUBLISHED_HOST": "127.0.0.1"})])
def test_network_listening_with_a_key_or_when_told(tmp_path, args, env):
    proc = run_cli(tmp_path, "--host", "0.0.0.0", *args, **env)
    try:
        line = first_line(proc, START_TIMEOUT)
        assert "listening on http://0.0.0.0:" in line, proc.stderr.read()
    finally:
        proc.kill()
        proc.communicate(timeout=10)


# --- CORS --------------------------------------------------------------------------------

def preflight(daemon, origin: str) -> httpx.Response:
    return httpx.options(daemon.v1 + "/images/generations", headers={
        "Origin": origin, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type"})


def test_cors_is_off_by_default(daemon):
    assert "access-control-allow-origin" not in preflight(daemon, "https://evil.example").headers
    resp = httpx.get(daemon.v1 + "/models", headers={"Origin": "https://evil.example"})
    assert resp.status_code == 200 and "access-control-allow-origin" not in resp.headers


def test_cors_allows_exactly_the_configured_origins(make_daemon):
    daemon = make_daemon(cors_origins=["https://app.example"])
    ok = preflight(daemon, "https://app.example")
    assert ok.status_code == 204
    assert ok.headers["access-control-allow-origin"] == "https://app.example"
    assert "authorization" in ok.headers["access-control-allow-headers"]
    assert "access-control-allow-origin" not in preflight(daemon, "https://evil.example").headers
    got = httpx.get(daemon.v1 + "/models", headers={"Origin": "https://app.example"})
    assert got.headers["access-control-allow-origin"] == "https://app.example"
    assert got.headers["vary"] == "Origin"


# --- no SSRF --------------------------------------------------------------------------------

def test_results_are_fetched_only_from_allowed_hosts(make_daemon, spy):
    daemon = make_daemon()
    port = spy.server_address[1]
    daemon.do(daemon.sandbox.configure, public_url=f"http://localhost:{port}")
    job = httpx.post(daemon.url + "/arting/v1/jobs", json={"prompt": "p"}).json()
    for _ in range(200):
        job = httpx.get(job["links"]["self"]).json()
        if job["state"] in ("succeeded", "failed"):
            break
        threading.Event().wait(0.02)
    assert job["state"] == "failed" and "image_hosts" in job["error"]["message"]
    assert "'localhost'" in job["error"]["message"]
    assert spy.hits == []


def test_urls_from_clients_are_never_fetched(daemon, spy):
    target = spy.url + "/latest/meta-data.png"
    native = httpx.post(daemon.url + "/arting/v1/jobs",
                        json={"prompt": "p", "init_image": target})
    assert native.status_code == 400 and native.json()["error"]["param"] == "init_image"
    masked = httpx.post(daemon.url + "/arting/v1/jobs", json={
        "prompt": "p", "init_image": base64.b64encode(b"\x89PNG").decode(), "mask": target})
    assert masked.status_code == 400
    edits = httpx.post(daemon.v1 + "/images/edits",
                       data={"prompt": "p", "image": target, "mask": target},
                       files={"other": ("x.txt", b"x")})
    assert edits.status_code == 400 and edits.json()["error"]["param"] == "image"
    client = openai.OpenAI(base_url=daemon.v1, api_key="x", max_retries=0)
    client.images.generate(prompt="p", extra_body={"image": target, "image_url": target,
                                                   "init_image": target, "url": target})
    assert spy.hits == []


def test_the_token_never_goes_to_image_hosts(make_daemon):
    daemon = make_daemon(auth_tokens=["5e6f7a8b-0000-4000-8000-000000000001"],
                         cf_clearance="a-configured-clearance")
    assert httpx.post(daemon.v1 + "/images/generations", json={"prompt": "p"}).status_code == 200
    (image,) = daemon.sandbox.requests_for("image")
    assert image.header("Authorization") is None and image.header("Cookie") is None
