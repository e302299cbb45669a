"""Behind a proxy: real proxies on loopback (pproxy, an HTTP CONNECT and a SOCKS5 proxy,
both with a login; ``proxy_servers.py``) and their own logs show that every outbound path
goes through the configured one: Arting's API calls on each client (the light pool,
curl_cffi, cloudscraper), result downloads, the signed upload, another provider, webhooks
only with ``webhook_proxy``. NO_PROXY is respected, wrong credentials fail at once naming
the proxy masked, a dead proxy fails the job with "could not reach the proxy", and the
proxy's password is nowhere in what the daemon says or keeps."""

from __future__ import annotations

import logging
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from proxy_servers import PASSWORD, USER, ProxyServer, free_port
from test_cloudflare import EdgeSandbox
from test_providers import STUDIO_MODEL, a1111, catalogued, standin, studio  # noqa: F401
from test_webhooks import SECRET
from webhook_receiver import Receiver

from arting_daemon.providers.arting.client import PROBE_REQUEST_ID
from arting_daemon.transport.proxies import ProxyPlan


class WatchedSandbox(EdgeSandbox):
    """The emulator (behind an edge that hands out a clearance) noting the address of
    every connection it serves."""

    def _build_app(self):
        app = super()._build_app()
        self.peers: set = set()

        async def note(request, response):
            self.peers.add(request.transport.get_extra_info("peername"))
        app.on_response_prepare.append(note)
        return app


@pytest.fixture
def proxies(tmp_path):
    started: list[ProxyServer] = []

    def start(kind: str, certificate: Path | None = None) -> ProxyServer:
        started.append(ProxyServer(kind, tmp_path, certificate))
        return started[-1]
    yield start
    for server in started:
        server.stop()


@pytest.fixture
def receiver():
    made = Receiver()
    yield made
    made.close()


def netloc(url: str) -> str:
    return urlsplit(url).netloc


def said_anywhere(daemon, caplog, *jobs: dict) -> str:
    """Everything the daemon says or keeps: its log, its answers (jobs, status, token
    view, metrics) and every file in its data directory."""
    seen = [caplog.text, *map(str, jobs)]
    for path in ("/arting/v1/status", "/arting/v1/admin/tokens", "/metrics",
                 "/arting/v1/jobs"):
        seen.append(httpx.get(daemon.url + path).text)
    for path in daemon.settings.data_dir.rglob("*"):
        if path.is_file():
            seen.append(path.read_bytes().decode("latin-1"))
    return "\n".join(seen)


@pytest.mark.parametrize("kind, scheme", [("http", "http"), ("socks5", "socks5h")])
def test_every_path_to_arting_goes_through_the_proxy(make_daemon, proxies, caplog, kind,
                                                     scheme):
    """impersonate = chrome: the first create goes through curl_cffi, meets a challenge
    that cloudscraper passes, and from then on the light pool carries the calls; the
    images come down and an init image goes up. Every connection the emulator served was
    one the proxy made."""
    proxy = proxies(kind)
    caplog.set_level(logging.INFO)
    daemon = make_daemon(sandbox_class=WatchedSandbox, proxy=proxy.url(scheme),
                         impersonate="chrome", img2img=True)
    daemon.do(daemon.sandbox.add_fault, "cf_challenge", route="create", count=1)
    made = daemon.run_job(n=2)
    assert made["state"] == "succeeded", made
    sandbox = daemon.sandbox
    creates = sandbox.requests_for("create")
    assert creates[0].header("sec-ch-ua")                     # curl_cffi, challenged
    solver = [r for r in sandbox.requests_for("get") if r.body == {"request_id":
                                                                   PROBE_REQUEST_ID}]
    assert solver and "python-requests" not in solver[0].header("User-Agent")  # cloudscraper
    assert creates[1].header("sec-ch-ua") is None             # the light pool, cleared
    assert len(sandbox.requests_for("image")) == 2

    png = httpx.get(made["images"][0]["url"]).content
    edit = httpx.post(daemon.url + "/v1/images/edits", files={"image": ("a.png", png)},
                      data={"prompt": "q"}, timeout=30)
    assert edit.status_code == 200, edit.text
    assert sandbox.requests_for("oss_put") and sandbox.requests_for("i2i_create")

    served = sandbox.peers
    assert len(served) == len(proxy.connections(netloc(sandbox.url))) >= 3, \
        (served, proxy.text())
    shown = proxy.shown.replace(f"{kind}://", f"{scheme}://")
    assert f"outbound requests go through the proxy {shown} (from proxy)" in caplog.text
    assert PASSWORD not in said_anywhere(daemon, caplog, made, edit.json())


def test_another_provider_goes_through_it_and_webhooks_only_when_told(
        make_daemon, proxies, studio, receiver):  # noqa: F811
    proxy = proxies("socks5")
    # (a path: pproxy forwards a bare origin as an empty request target)
    hooks = dict(webhook_urls=[receiver.url + "/hook"], webhook_secret=SECRET,
                 webhook_allow_hosts=["127.0.0.1"])
    daemon = make_daemon(proxy=proxy.url("socks5"), providers=[a1111(studio)], **hooks)
    catalogued(daemon, STUDIO_MODEL)
    assert daemon.run_job(model=STUDIO_MODEL)["state"] == "succeeded"
    receiver.wait(1)
    assert proxy.connections(netloc(studio.url))
    assert proxy.connections(netloc(receiver.url)) == []     # webhooks: direct

    other = proxies("http")
    told = make_daemon(webhook_proxy=other.url(), **hooks)
    assert told.run_job()["state"] == "succeeded"
    receiver.wait(2)
    assert len(other.connections(netloc(receiver.url))) == 1
    assert other.connections(netloc(told.sandbox.url)) == []  # the rest: no proxy set


def test_the_environment_is_honoured_with_no_proxy(make_daemon, proxies, caplog,
                                                   monkeypatch):
    proxy = proxies("http")
    caplog.set_level(logging.INFO)
    monkeypatch.setenv("HTTP_PROXY", proxy.url())
    monkeypatch.setenv("NO_PROXY", "localhost,.example.com")
    daemon = make_daemon()
    assert daemon.run_job()["state"] == "succeeded"
    assert proxy.connections(netloc(daemon.sandbox.url))
    assert (f"through the proxy http URLs through {proxy.shown} (from HTTP_PROXY); direct "
            "for localhost, .example.com (no_proxy)") in caplog.text

    monkeypatch.setenv("NO_PROXY", "127.0.0.0/8")
    before = len(proxy.connections(netloc(daemon.sandbox.url)))
    direct = make_daemon()
    assert direct.run_job()["state"] == "succeeded"
    assert proxy.connections(netloc(direct.sandbox.url)) == []
    assert len(proxy.connections(netloc(daemon.sandbox.url))) == before
    assert PASSWORD not in said_anywhere(daemon, caplog)


@pytest.mark.parametrize("kind", ["http", "socks5"])
def test_wrong_credentials_fail_at_once_naming_the_proxy_masked(make_daemon, proxies,
                                                                caplog, kind):
    proxy = proxies(kind)
    wrong = "not-the-password-99"
    daemon = make_daemon(proxy=proxy.url(password=wrong))
    job = daemon.run_job()
    assert job["state"] == "failed"
    assert job["error"]["type"] == "ProxyRefused" and job["error"]["code"] == "proxy_refused"
    assert f"The proxy {proxy.shown} refused the credentials" in job["error"]["message"]
    assert proxy.refusals() == 1                    # tried once: no retry, no backoff
    assert daemon.sandbox.requests == []
    tokens = httpx.get(daemon.url + "/arting/v1/admin/tokens").json()["tokens"]
    assert tokens[0]["state"] == "ok"               # the token is not to blame
    anywhere = said_anywhere(daemon, caplog, job)
    assert wrong not in anywhere and f"{USER}:" not in anywhere


def test_a_dead_proxy_fails_the_job_saying_so(make_daemon, caplog):
    dead = f"socks5h://{USER}:{PASSWORD}@127.0.0.1:{free_port()}"
    daemon = make_daemon(proxy=dead, retry_budget=1.0)
    job = daemon.run_job()
    assert job["state"] == "failed" and job["error"]["type"] == "ProxyUnreachable"
    message = job["error"]["message"]
    assert "could not reach the proxy socks5h://***@127.0.0.1:" in message.lower()
    assert PASSWORD not in said_anywhere(daemon, caplog, job)


def test_the_plan_reads_the_environment_as_curl_does():
    env = {"https_proxy": "proxy.corp:3128", "HTTPS_PROXY": "http://other:1",
           "ALL_PROXY": "socks5h://u:p@socks.corp", "NO_PROXY": "internal.corp, 10.0.0.0/8,"
           "[::1]:8080"}
    plan = ProxyPlan.of(None, [], env)
    assert str(plan.for_url("https://api.arting.ai/x")) == "http://proxy.corp:3128"
    assert str(plan.for_url("http://api.arting.ai/x")) == "socks5h://***@socks.corp:1080"
    for direct in ("https://internal.corp/", "https://a.internal.corp/", "http://10.1.2.3/",
                   "http://[::1]:8080/"):
        assert plan.for_url(direct) is None, direct
    assert plan.for_url("https://notinternal.corp/") is not None
    assert plan.for_url("http://[::1]:8081/") is not None
    cgi = ProxyPlan.of(None, [], {"HTTP_PROXY": "http://evil:1", "REQUEST_METHOD": "GET"})
    assert cgi.for_url("http://api.arting.ai/") is None     # httpoxy: not from a header
    setting = ProxyPlan.of("https://u:p%40ss@p.corp:8443", ["*"], env)
    assert setting.for_url("https://api.arting.ai/") is None  # no_proxy = * wins
    assert ProxyPlan.of("direct", [], env).for_url("https://api.arting.ai/") is None


def test_the_check_says_what_the_proxy_did(tmp_path, proxies):
    """`arting-daemon check` reaches Arting through the proxy and says whether it answered,
    refused the credentials, or could not reach Arting; and which client got through."""
    from test_check import ThreadedSandbox, check

    proxy = proxies("socks5")
    with ThreadedSandbox() as upstream:
        ran = check(tmp_path, upstream, ARTING_PROXY=proxy.url("socks5h"))
        assert ran.code == 0, ran.out
        assert f"ok    reach: through the proxy socks5h://***@127.0.0.1:{proxy.port} (proxy): " \
               f"it took the credentials and reached 127.0.0.1:{upstream.port}" in ran.out
        assert "info  client: light pool through socks5h://***@" in ran.out
        assert proxy.connections(f"127.0.0.1:{upstream.port}")

        refused = check(tmp_path, upstream, ARTING_PROXY=proxy.url("socks5h", "wrong-one"))
        assert refused.code == 1
        assert "refused the credentials" in refused.finding("reach")

        dead = check(tmp_path, upstream, ARTING_PROXY=f"http://{USER}:{PASSWORD}@127.0.0.1:"
                                                      f"{free_port()}")
        assert "Could not reach the proxy http://***@127.0.0.1:" in dead.finding("reach")

        port = upstream.port
    connect = proxies("http")        # (pproxy's SOCKS5 says yes before it tries)
    gone = check(tmp_path, None, ARTING_PROXY=connect.url(),
                 ARTING_BASE_URL=f"https://127.0.0.1:{port}")
    assert f"could not reach 127.0.0.1:{port}" in gone.finding("reach")
    for ran in (ran, refused, dead, gone):
        assert PASSWORD not in ran.out + ran.err and "wrong-one" not in ran.out + ran.err


def test_an_https_proxy_is_spoken_to_over_tls_and_its_certificate_checked(tmp_path, proxies):
    """``https://`` names a proxy reached over TLS (the CONNECT itself is encrypted, so the
    login never crosses the network in the clear): the check gets through one whose
    certificate this machine trusts, and says why it cannot when the certificate is not
    trusted, without sending the login."""
    from test_check import ThreadedSandbox, check

    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(tmp_path / "key.pem"), "-out", str(tmp_path / "cert.pem")],
                   check=True, capture_output=True, timeout=60)
    proxy = proxies("https", tmp_path)
    with ThreadedSandbox() as upstream:
        trusted = check(tmp_path, upstream, ARTING_PROXY=proxy.url(),
                        SSL_CERT_FILE=str(tmp_path / "cert.pem"))
        assert trusted.code == 0, trusted.out
        assert f"ok    reach: through the proxy https://***@127.0.0.1:{proxy.port}" in trusted.out
        assert f"info  client: light pool through https://***@127.0.0.1:{proxy.port} got " \
               "through" in trusted.out
        assert proxy.connections(f"127.0.0.1:{upstream.port}")
        before = len(proxy.connections(f"127.0.0.1:{upstream.port}"))

        untrusted = check(tmp_path, upstream, ARTING_PROXY=proxy.url())
        assert untrusted.code == 1, untrusted.out
        assert "its TLS certificate is not trusted: self-signed certificate; add its CA to " \
               "this machine's trust, or point SSL_CERT_FILE at it" in untrusted.finding("reach")
        assert len(proxy.connections(f"127.0.0.1:{upstream.port}")) == before
    for ran in (trusted, untrusted):
        assert PASSWORD not in ran.out + ran.err
