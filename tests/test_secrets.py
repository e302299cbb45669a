"""No secret leaves the daemon: not in a log line (tracebacks included), an error body, the
metrics, the status and admin views, or the job journal on disk.

Secrets: the Arting tokens, the API key, a Basic auth pair, a configured
``cf_clearance`` and the clearance cookie cloudscraper brings back. The run goes through
every kind of failure, including an Arting that echoes the token in its error message.
"""

from __future__ import annotations

import base64
import logging
import time

import httpx
import openai
import pytest

from arting_daemon import logs
from test_cloudflare import CLEARANCE, EdgeSandbox

UUID_TOKEN = "7d3c9f0e-2b1a-4c8d-9e7f-6a5b4c3d2e1f"
JWT_TOKEN = ("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJ1c2VyX2lkIjo0MiwiZXhwIjo0MTAyNDQ0ODAwfQ."
             "c2lnbmF0dXJlLW9mLXRoZS10b2tlbg")
API_KEY = "sk-daemon-key-5fa1"
BASIC = "webui:basic-pass-77"
CONFIGURED = "configured-clearance-c0ffee"

FAULTS = [
    ("invalid_token", "create", {"message": f"invalid token {UUID_TOKEN}", "count": 1}),
    ("token_expired", "create", {"message": f"token {JWT_TOKEN} expired"}),
    ("reject", "create", {"message": f"bad request from {UUID_TOKEN} / {JWT_TOKEN}"}),
    ("cf_challenge", "create", {"count": 1}),
    ("cf_challenge_v2", "*", {}),
    ("reset", "create", {"count": 1}),
    ("truncated_json", "get", {"count": 1}),
    ("rate_limit", "create", {"retry_after": 0.2, "count": 3}),
    ("fail_code", "get", {"message": f"failed for {JWT_TOKEN}"}),
    ("expired_image", "image", {}),
]


@pytest.fixture
def daemon(make_daemon):
    return make_daemon(sandbox_class=EdgeSandbox, auth_tokens=[UUID_TOKEN, JWT_TOKEN],
                       api_keys=[API_KEY], basic_auth=[BASIC], cf_clearance=CONFIGURED,
                       token_probe_backoff=0.05, log_level="debug",
                       impersonate="off")   # cloudscraper's clearance flow, as before


def test_no_secret_in_logs_errors_metrics_or_the_journal(daemon, caplog):
    caplog.set_level(logging.DEBUG)
    key = {"Authorization": f"Bearer {API_KEY}"}
    client = openai.OpenAI(base_url=daemon.v1, api_key=API_KEY, max_retries=0)
    seen: list[str] = []

    for kind, route, options in FAULTS:
        daemon.do(daemon.sandbox.clear_faults)
        daemon.do(daemon.sandbox.add_fault, kind, route=route, **options)
        try:
            seen.append(client.images.generate(prompt="p", response_format="url").to_json())
        except openai.APIStatusError as exc:
            seen.append(exc.response.text)
        seen.append(httpx.post(daemon.url + "/sdapi/v1/txt2img", json={"prompt": "r"},
                               headers=key, timeout=30).text)
        job = httpx.post(daemon.url + "/arting/v1/jobs", json={"prompt": "q"}, headers=key)
        seen.append(job.text)
        for _ in range(100 if job.status_code == 202 else 0):   # else no token could take it
            view = httpx.get(job.json()["links"]["self"], headers=key)
            if view.json()["state"] in ("succeeded", "failed"):
                break
            time.sleep(0.02)
        seen.append(view.text if job.status_code == 202 else "")
        # the views show why each token is out, in Arting's own (echoing) words
        seen.append(httpx.get(daemon.url + "/arting/v1/admin/tokens", headers=key).text)
        seen.append(httpx.get(daemon.url + "/arting/v1/status", headers=key).text)
        daemon.do(daemon.sandbox.clear_faults)
        for _ in range(100):                          # the prober brings the tokens back
            if httpx.get(daemon.url + "/arting/v1/admin/tokens", headers=key).json()[
                    "tokens"] == [] or all(t["state"] == "ok" for t in httpx.get(
                    daemon.url + "/arting/v1/admin/tokens", headers=key).json()["tokens"]):
                break
            time.sleep(0.05)
    seen.append(httpx.post(daemon.url + "/arting/v1/admin/tokens/probe", headers=key).text)
    for path in ("/arting/v1/status", "/arting/v1/jobs?limit=100", "/arting/v1/admin/tokens",
                 "/metrics", "/readyz", "/healthz"):
        seen.append(httpx.get(daemon.url + path, headers=key).text)
    seen.append(httpx.get(daemon.v1 + "/models", headers={
        "Authorization": "Basic " + base64.b64encode(BASIC.encode()).decode()}).text)
    daemon.call(daemon.engine.journal.flush())
    journal = (daemon.settings.data_dir / "jobs.sqlite3").read_bytes()
    wal = daemon.settings.data_dir / "jobs.sqlite3-wal"
    journal += wal.read_bytes() if wal.exists() else b""

    # The run did meet every secret: the tokens went upstream, the edge's cookie came back.
    creates = daemon.sandbox.requests_for("create")
    assert {r.header("Authorization") for r in creates} == {UUID_TOKEN, JWT_TOKEN}
    assert any(CLEARANCE in (r.header("Cookie") or "") for r in creates)
    assert any(CONFIGURED in (r.header("Cookie") or "") for r in creates)
    assert any("upstream_auth" in s for s in seen) and any("cloudflare" in s for s in seen)

    formatter = logs._Formatter("%(asctime)s [%(request_id)s] %(name)s: %(message)s")
    lines = [formatter.format(r) for r in caplog.records]
    lines += [str(r.__dict__) for r in caplog.records]
    everything = "\n".join([*lines, *seen])
    basic_b64 = base64.b64encode(BASIC.encode()).decode()
    for secret in (UUID_TOKEN, JWT_TOKEN, API_KEY, BASIC, basic_b64, CONFIGURED, CLEARANCE):
        assert secret not in everything, secret
        assert secret.encode() not in journal, secret
    assert logs.MASK in everything                    # the echoed tokens were masked
