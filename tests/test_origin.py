"""Host, Origin and body-type checks (``facades/origin.py``), over real sockets.

A web page may make the browser send requests to the daemon (CSRF), and read the answers
once its own name resolves to the daemon's address (DNS rebinding): what such requests
look like on the wire is sent here by hand; ``test_hostile_page.py`` has a real browser
send them.
"""

from __future__ import annotations

import base64
import io

import httpx
import pytest
from PIL import Image

from arting_daemon.config import Settings

REBIND = "rebind.attacker.example"
KEY = "sesame-0123456789"
EVIL = "http://127.0.0.1:1"


def port_of(daemon) -> str:
    return daemon.url.rpartition(":")[2]


def as_host(daemon, host: str, path: str, method: str = "GET", **kw) -> httpx.Response:
    """A request to ``daemon`` that names ``host`` (with the daemon's port) as its Host."""
    headers = {"Host": f"{host}:{port_of(daemon)}", **kw.pop("headers", {})}
    return httpx.request(method, daemon.url + path, headers=headers, timeout=10, **kw)


def jobs(daemon, **headers) -> list[dict]:
    return httpx.get(daemon.url + "/arting/v1/jobs", headers=headers).json()["data"]


def png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (64, 64), "teal").save(out, "PNG")
    return out.getvalue()


# --- Host ---------------------------------------------------------------------------------

def test_a_rebinding_host_is_refused_in_local_mode_in_each_protocols_shape(daemon):
    got = as_host(daemon, REBIND, "/arting/v1/jobs")
    assert got.status_code == 421
    error = got.json()["error"]
    assert error["code"] == "host_not_allowed" and "allowed_hosts" in error["message"]
    assert REBIND in error["message"]

    for method, path in (("GET", "/sdapi/v1/options"), ("POST", "/sdapi/v1/interrupt"),
                         ("POST", "/sdapi/v1/options")):
        got = as_host(daemon, REBIND, path, method, json={} if method == "POST" else None)
        assert got.status_code == 421, path
        assert got.json()["error"] == "HostNotAllowed" and "allowed_hosts" in \
            got.json()["detail"]

    got = as_host(daemon, REBIND, "/v1/images/generations", "POST", json={"prompt": "p"})
    assert got.status_code == 421 and got.json()["error"]["code"] == "host_not_allowed"
    got = as_host(daemon, REBIND, "/metrics")
    assert got.status_code == 421 and "allowed_hosts" in got.text
    assert jobs(daemon) == []
    # The page and the health check stay where anyone may read them.
    assert as_host(daemon, REBIND, "/healthz").status_code == 200


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1", "[::1]", "LOCALHOST.",
                                  "192.168.1.20", "[fd00::1]"])
def test_loopback_names_and_addresses_pass(daemon, host):
    assert as_host(daemon, host, "/arting/v1/jobs").status_code == 200
    assert as_host(daemon, host, "/sdapi/v1/options").status_code == 200


@pytest.mark.parametrize(("settings", "host"), [
    ({"allowed_hosts": [REBIND]}, REBIND),
    ({"allowed_hosts": [".attacker.example"]}, REBIND),
    ({"allowed_hosts": [".attacker.example"]}, "attacker.example"),
    ({"allowed_hosts": ["*"]}, "anything.example"),
    ({"public_url": "https://arting.lan.example"}, "arting.lan.example"),
    ({"host": "arting-box"}, "arting-box"),
])
def test_the_names_given_pass(make_daemon, settings, host):
    daemon = make_daemon(**settings)
    assert as_host(daemon, host, "/arting/v1/jobs").status_code == 200
    other = as_host(daemon, "other.example", "/arting/v1/jobs").status_code
    assert other == (200 if settings.get("allowed_hosts") == ["*"] else 421)


def test_bearer_keys_leave_the_host_free_and_basic_auth_checks_it(make_daemon):
    """A page has no bearer key to borrow, so behind a proxy any name serves; a browser
    sends a Basic pair by itself, so there the Host is checked as with no keys."""
    daemon = make_daemon(api_keys=[KEY])
    bearer = {"Authorization": f"Bearer {KEY}"}
    assert as_host(daemon, "arting", "/arting/v1/jobs", headers=bearer).status_code == 200
    assert as_host(daemon, REBIND, "/arting/v1/jobs").status_code == 401

    basic = make_daemon(basic_auth=["me:secret"])
    pair = {"Authorization": "Basic " + base64.b64encode(b"me:secret").decode()}
    assert as_host(basic, REBIND, "/sdapi/v1/options", headers=pair).status_code == 421
    assert as_host(basic, "localhost", "/sdapi/v1/options", headers=pair).status_code == 200


def test_allowed_hosts_takes_names_only():
    assert Settings(allowed_hosts="Arting.LAN., .example.com,*").allowed_hosts == [
        "arting.lan", ".example.com", "*"]
    for wrong in ("http://arting.lan", "arting.lan:8090", "arting.lan/x"):
        with pytest.raises(ValueError, match="host name"):
            Settings(allowed_hosts=[wrong])


# --- Origin -------------------------------------------------------------------------------

def test_a_page_of_another_origin_may_change_nothing(daemon):
    evil = {"Origin": EVIL}
    got = httpx.post(daemon.url + "/arting/v1/jobs", json={"prompt": "p"}, headers=evil)
    assert got.status_code == 403
    assert got.json()["error"]["code"] == "origin_not_allowed"
    assert "cors_origins" in got.json()["error"]["message"] and EVIL in \
        got.json()["error"]["message"]
    for path in ("/sdapi/v1/txt2img", "/sdapi/v1/options", "/sdapi/v1/interrupt"):
        got = httpx.post(daemon.url + path, json={"prompt": "p"}, headers=evil)
        assert got.status_code == 403, path
        assert got.json()["error"] == "OriginNotAllowed" and "cors_origins" in \
            got.json()["detail"]
    got = httpx.post(daemon.v1 + "/images/generations", json={"prompt": "p"},
                     headers={"Sec-Fetch-Site": "cross-site"})
    assert got.status_code == 403 and "cors_origins" in got.json()["error"]["message"]
    got = httpx.post(daemon.url + "/arting/v1/jobs", json={"prompt": "p"},
                     headers={"Origin": "null"})
    assert got.status_code == 403
    assert jobs(daemon) == []

    # Its GETs are answered (the browser keeps the answer from the page: no CORS header).
    read = httpx.get(daemon.url + "/arting/v1/jobs", headers=evil)
    assert read.status_code == 200 and "access-control-allow-origin" not in read.headers


def test_the_daemons_own_pages_and_clients_without_origin_pass(daemon):
    own = {"Origin": daemon.url, "Sec-Fetch-Site": "same-origin"}
    job = httpx.post(daemon.url + "/arting/v1/jobs", json={"prompt": "p"}, headers=own)
    assert job.status_code == 202, job.text
    got = httpx.delete(daemon.url + f"/arting/v1/jobs/{job.json()['id']}",
                       headers={"Origin": daemon.url})
    assert got.status_code in (200, 409), got.text
    assert httpx.post(daemon.url + "/sdapi/v1/interrupt").status_code == 200


def test_an_origin_in_cors_origins_passes(make_daemon):
    daemon = make_daemon(cors_origins=[EVIL], public_url="https://arting.example")
    got = httpx.post(daemon.url + "/arting/v1/jobs", json={"prompt": "p"},
                     headers={"Origin": EVIL, "Sec-Fetch-Site": "cross-site"})
    assert got.status_code == 202 and got.headers["access-control-allow-origin"] == EVIL
    # public_url is the daemon's own origin too (behind a proxy that names it otherwise).
    got = httpx.post(daemon.url + "/sdapi/v1/options", json={},
                     headers={"Origin": "https://arting.example"})
    assert got.status_code == 200
    assert httpx.post(daemon.url + "/sdapi/v1/options", json={},
                      headers={"Origin": "http://127.0.0.1:2"}).status_code == 403


# --- body types ---------------------------------------------------------------------------

def test_bodies_a_page_sends_without_asking_are_415(daemon):
    body = '{"prompt": "p"}'
    for kind in ("text/plain", "text/plain;charset=UTF-8", "application/x-www-form-urlencoded"):
        got = httpx.post(daemon.url + "/arting/v1/jobs", content=body,
                         headers={"Content-Type": kind})
        assert got.status_code == 415, kind
        assert got.json()["error"]["code"] == "unsupported_media_type"
        assert "application/json" in got.json()["error"]["message"]
        got = httpx.post(daemon.url + "/sdapi/v1/options", content=body,
                         headers={"Content-Type": kind})
        assert got.status_code == 415 and got.json()["error"] == "UnsupportedMediaType"
    got = httpx.post(daemon.v1 + "/images/generations", content=body,
                     headers={"Content-Type": "multipart/form-data; boundary=x"})
    assert got.status_code == 415
    assert jobs(daemon) == []


def test_json_and_untyped_bodies_and_the_edits_form_are_taken(daemon):
    body = '{"prompt": "p"}'
    for headers in ({"Content-Type": "application/json; charset=utf-8"},
                    {"Content-Type": "application/vnd.api+json"}, {"Content-Type": ""}, {}):
        got = httpx.post(daemon.url + "/arting/v1/jobs", content=body, headers=headers)
        assert got.status_code == 202, (headers, got.text)
    got = httpx.post(daemon.v1 + "/images/edits", data={"prompt": "p", "size": "512x512"},
                     files={"image": ("a.png", png(), "image/png")}, timeout=30)
    assert got.status_code == 200, got.text
    got = httpx.post(daemon.v1 + "/images/edits", content="prompt=p",
                     headers={"Content-Type": "text/plain"})
    assert got.status_code == 415
    assert "multipart/form-data" in got.json()["error"]["message"]


def test_the_openapi_document_lists_these_answers(daemon):
    paths = httpx.get(daemon.url + "/openapi.json").json()["paths"]
    jobs_ = paths["/arting/v1/jobs"]
    assert "allowed_hosts" in jobs_["get"]["responses"]["421"]["description"]
    assert {"403", "415"}.isdisjoint(jobs_["get"]["responses"])
    assert "cors_origins" in jobs_["post"]["responses"]["403"]["description"]
    assert "application/json" in jobs_["post"]["responses"]["415"]["description"]
    assert {"403", "415", "421"} <= set(paths["/sdapi/v1/interrupt"]["post"]["responses"])
    assert {"403", "421"} <= set(paths["/arting/v1/ws"]["get"]["responses"])
    assert "421" in paths["/metrics"]["get"]["responses"]
