"""The browser-like client: the emulator behind a Cloudflare that checks fingerprints
(``cf_browser_check``) challenges every request that does not look like a browser's; with
``impersonate = "auto"`` the daemon passes it by moving the identity's calls to curl_cffi,
says so in the status and the log, and keeps the cookies the edge gives; with ``off`` it
fails with the Cloudflare message, as before."""

from __future__ import annotations

import logging

import httpx

from arting_daemon.sandbox import Sandbox

BROWSER_CHECK = {"cf_browser_check": True}


class BotManagedSandbox(Sandbox):
    """The emulator behind an edge that gives what passes a bot-management cookie."""

    def _build_app(self):
        app = super()._build_app()

        async def set_cookie(request, response):
            if request.path.startswith("/api/") and response.status == 200:
                response.headers.add("Set-Cookie", "__cf_bm=edge-cookie-0042; Path=/; HttpOnly")
        app.on_response_prepare.append(set_cookie)
        return app


def tokens(daemon) -> list[dict]:
    return httpx.get(daemon.url + "/arting/v1/admin/tokens").json()["tokens"]


def test_auto_passes_a_fingerprint_check_by_switching_that_identity(make_daemon, caplog):
    daemon = make_daemon(sandbox_options=BROWSER_CHECK, sandbox_class=BotManagedSandbox,
                         auth_tokens=["token-a-0001", "token-b-0002"])
    assert [t["client"] for t in tokens(daemon)] == ["light pool", "light pool"]
    with caplog.at_level(logging.WARNING):
        first, second = daemon.run_job(), daemon.run_job()
    assert first["state"] == second["state"] == "succeeded", (first, second)

    creates = daemon.sandbox.requests_for("create")
    light, browser = creates[0], creates[1]
    assert light.header("User-Agent").startswith("Mozilla/5.0") and \
        light.header("sec-ch-ua") is None                    # challenged
    assert browser.header("sec-ch-ua") and "h2c" in browser.header("Upgrade")
    assert browser.header("Authorization") == light.header("Authorization")
    # the cookie the edge gave that identity's first answer comes back with its next ones
    later = [r for r in daemon.sandbox.requests_for("get")
             if r.header("Authorization") == browser.header("Authorization")]
    assert later and all("__cf_bm=edge-cookie-0042" in (r.header("Cookie") or "")
                         for r in later)
    # the images and the solver were not needed: no cloudscraper, downloads on the pool
    assert all(r.header("sec-ch-ua") is None for r in daemon.sandbox.requests_for("image"))

    switched = [t for t in tokens(daemon) if t["client"].startswith("browser-like client")]
    assert switched and all("curl_cffi, chrome" in t["client"] for t in switched)
    status = httpx.get(daemon.url + "/arting/v1/status").json()
    assert any(t["client"].startswith("browser-like") for t in status["tokens"])
    assert any("browser-like client (curl_cffi, chrome)" in r.getMessage()
               and "token-" in r.getMessage() for r in caplog.records)
    assert "token-a-0001" not in caplog.text and "token-b-0002" not in caplog.text


def test_off_fails_with_the_cloudflare_message_as_before(make_daemon):
    daemon = make_daemon(sandbox_options=BROWSER_CHECK, impersonate="off")
    job = daemon.run_job()
    assert job["state"] == "failed"
    assert job["error"]["type"] == "CloudflareBlocked" and job["error"]["kind"] == "challenge"
    assert "cf_clearance" in job["error"]["message"]
    # cloudscraper tried and met the challenge too: it is no browser either
    assert all(r.header("sec-ch-ua") is None for r in daemon.sandbox.requests)
    assert [t["client"] for t in tokens(daemon)] == ["light pool"]


def test_a_browser_profile_carries_every_api_call_from_the_start(make_daemon):
    daemon = make_daemon(impersonate="chrome", img2img=True)
    assert tokens(daemon)[0]["client"] == "browser-like client (curl_cffi, chrome)"
    assert daemon.run_job()["state"] == "succeeded"
    assert all(r.header("sec-ch-ua") for r in daemon.sandbox.requests_for("create")
               + daemon.sandbox.requests_for("get"))
    # result images and uploads stay on the light pool
    assert all(r.header("sec-ch-ua") is None for r in daemon.sandbox.requests_for("image"))


def test_the_emulator_tells_clients_apart(make_daemon):
    """What the fingerprint check keys on, one tell at a time."""
    daemon = make_daemon(sandbox_options=BROWSER_CHECK)
    chrome = {"sec-ch-ua": '"Chromium";v="131", "Google Chrome";v="131"',
              "user-agent": "Mozilla/5.0 (X11) Chrome/131.0.0.0 Safari/537.36",
              "sec-fetch-mode": "cors", "accept-language": "en", "Upgrade": "h2c",
              "Connection": "Upgrade", "Authorization": "t"}
    url = daemon.sandbox.url + "/api/cg/text-to-image/get"

    def challenged(headers) -> bool:
        answer = httpx.post(url, json={"request_id": "x"}, headers=headers)
        return answer.headers.get("cf-mitigated") == "challenge"

    assert not challenged(chrome)
    assert challenged({**chrome, "sec-ch-ua": '"Google Chrome";v="130"'})   # disagrees
    assert challenged({k: v for k, v in chrome.items() if k != "accept-language"})
    assert challenged({k: v for k, v in chrome.items() if k != "Upgrade"})   # no HTTP/2
    assert challenged({**{k: v for k, v in chrome.items() if k != "user-agent"},
                       "User-Agent": chrome["user-agent"]})                 # its case
