"""``arting-daemon check``, the real command in a subprocess, against an Arting emulator
made to differ from the daemon's defaults in each thing nobody knows about the live
service: the done literal, the image host, errors as HTTP 4xx, a refused token, a
Cloudflare challenge or block, no image-to-image endpoint. Each time: the finding, the
``arting.toml`` line it suggests, the exit status — and that the line, once added,
makes the check pass.
"""

from __future__ import annotations

import json
import os
import re
import select
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from threads import LoopThread

from arting_daemon.config import Settings, load_settings
from arting_daemon.sandbox import Sandbox

COMMAND = Path(sys.executable).with_name("arting-daemon")
UUID_TOKEN = "0f5e3c1a-9b7d-4e2f-8a6c-5d4b3a2f1e0d"
DEFAULT_HOSTS = '"arting.ai", "*.arting.ai", "*.r2.dev"'
pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX paths and signals")


class ThreadedSandbox:
    """An emulator on its own event loop in a thread; the tests set it up over its admin
    API, as one would a standalone emulator."""

    def __init__(self) -> None:
        self.sandbox = Sandbox()
        self.url = ""

    def __enter__(self) -> ThreadedSandbox:
        self._loop = LoopThread("threaded sandbox")
        try:
            self.url = self._run(self.sandbox.start())
        except BaseException:
            self._loop.close(self.sandbox.close())
            raise
        return self

    def __exit__(self, *exc) -> None:
        self._loop.close(self.sandbox.close())

    def _run(self, coro):
        return self._loop.call(coro)

    @property
    def port(self) -> int:
        return urlsplit(self.url).port or 0

    def configure(self, **changes) -> None:
        httpx.post(self.url + "/__sandbox__/config", json=changes).raise_for_status()

    def fault(self, kind: str, route: str = "*", **options) -> None:
        httpx.post(self.url + "/__sandbox__/faults",
                   json={"kind": kind, "route": route, **options}).raise_for_status()

    def requests(self, route: str) -> list[dict]:
        return httpx.get(self.url + "/__sandbox__/requests", params={"route": route}).json()


@pytest.fixture
def upstream():
    with ThreadedSandbox() as sandbox:
        yield sandbox


@dataclass
class Ran:
    code: int
    out: str
    err: str

    def finding(self, topic: str) -> str:
        """The one line about ``topic``: ``<level>  <topic>: <message>``."""
        found = [line for line in self.out.splitlines()
                 if re.match(rf"(ok|info|warn|fail)\s+{re.escape(topic)}: ", line)]
        assert len(found) == 1, f"{topic!r} in:\n{self.out}"
        return found[0]

    @property
    def lines(self) -> list[str]:
        """The block of lines to add to arting.toml."""
        out = self.out.splitlines()
        if "Add to arting.toml:" not in out:
            return []
        block = out[out.index("Add to arting.toml:") + 1:]
        return [line.strip() for line in block[:block.index("")]
                if not line.strip().startswith("(")]      # notes on the environment


def env_for(tmp_path: Path, upstream: ThreadedSandbox | None, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ARTING_", "API_"))}
    env.update(HOME=str(tmp_path), ARTING_DATA_DIR=str(tmp_path / "data"),
               ARTING_POLL_MIN_INTERVAL="0.05", ARTING_POLL_MAX_INTERVAL="0.1",
               ARTING_REQUEST_TIMEOUT="10")
    if upstream is not None:
        env["ARTING_BASE_URL"] = upstream.url
    env.update(extra)
    return env


def check(tmp_path: Path, upstream: ThreadedSandbox | None, *args: str, **env: str) -> Ran:
    """``arting-daemon check ARGS`` in ``tmp_path`` (where an arting.toml is read from)."""
    done = subprocess.run([str(COMMAND), "check", *args], cwd=tmp_path, text=True,
                          capture_output=True, stdin=subprocess.DEVNULL, timeout=120,
                          env=env_for(tmp_path, upstream, **env))
    assert "Traceback" not in done.stderr, done.stderr
    return Ran(done.returncode, done.stdout, done.stderr)


def add_to_config(tmp_path: Path, lines: list[str]) -> None:
    with (tmp_path / "arting.toml").open("a") as fh:
        fh.write("\n".join(lines) + "\n")


# --- costs nothing ------------------------------------------------------------------------

def test_an_arting_as_the_daemon_expects_passes_without_spending(tmp_path, upstream):
    ran = check(tmp_path, upstream)
    assert ran.code == 0, ran.out
    assert ran.out.splitlines()[0] == \
        f"arting-daemon check: {upstream.url} (live) with anonymous identity"
    assert ran.finding("reach").startswith("ok    reach: 127.0.0.1 resolves to 1 address")
    assert "plain HTTP, no TLS" in ran.finding("reach")
    assert ran.finding("cloudflare") == \
        "ok    cloudflare: no challenge or block: Arting's API answered directly."
    assert ran.finding("anonymous identity") == (
        "ok    anonymous identity: accepted: a poll of a job id that does not exist was "
        'answered by Arting (HTTP 200, code 100404 "task not found").')
    assert ran.finding("envelope").startswith("info  envelope: answers are {code, data, message}; "
                                              "errors come as HTTP 200 with a code")
    assert ran.lines == []
    assert ran.out.rstrip().splitlines()[-1].startswith("Everything the daemon needs works.")
    # Polls only: nothing was created, nothing spent.
    assert upstream.requests("create") == [] and upstream.requests("i2i_create") == []
    assert len(upstream.requests("get")) == 1 and len(upstream.requests("i2i_get")) == 1


def test_errors_as_http_4xx_are_reported_and_need_no_setting(tmp_path, upstream):
    upstream.configure(errors_as_http=True)
    ran = check(tmp_path, upstream)
    assert ran.code == 0, ran.out
    assert ran.finding("envelope") == (
        "info  envelope: answers are {code, data, message}; errors come as HTTP 404 with the "
        'envelope, not as HTTP 200 (HTTP 404, code 100404 "task not found"). The daemon '
        "reads both: nothing to change.")
    assert ran.finding("anonymous identity").startswith("ok    anonymous identity: accepted")
    assert ran.lines == []


def test_a_refused_token_is_named_by_label_never_shown(tmp_path, upstream):
    upstream.configure(auth_mode="uuid")
    ran = check(tmp_path, upstream, ARTING_AUTH_TOKEN=f"not-a-uuid-token,{UUID_TOKEN}")
    assert ran.code == 1, ran.out
    assert ran.finding("token-1").startswith(
        'fail  token-1: refused by Arting (HTTP 200, code 100401 "invalid token"): replace it '
        "in auth_tokens (or ARTING_AUTH_TOKEN).")
    assert ran.finding("token-2").startswith("ok    token-2: accepted")
    assert ran.lines == ['auth_tokens = ["<a fresh token: arting.ai, F12, Network, the '
                         'Authorization header>", "<token-2>"]']
    assert "(auth_tokens is set by ARTING_AUTH_TOKEN in the environment" in ran.out
    assert "not-a-uuid-token" not in ran.out + ran.err and UUID_TOKEN not in ran.out + ran.err


def test_a_refused_guest_identity_asks_for_a_token(tmp_path, upstream):
    upstream.configure(auth_mode="jwt")           # only logged-in users get in
    ran = check(tmp_path, upstream)
    assert ran.code == 1, ran.out
    assert ran.finding("anonymous identity").startswith(
        "fail  anonymous identity: refused by Arting (HTTP 200, code 100401 \"invalid token\"): "
        "no token is configured and Arting refuses the guest identity: set a token.")
    assert ran.lines == ['auth_tokens = ["<a token from a logged-in arting.ai session: F12, '
                         'Network, Authorization>"]']


def test_rate_limited_identities_are_named_and_all_of_them_is_a_problem(tmp_path, upstream):
    upstream.fault("rate_limit", route="get", retry_after=30, count=1)
    ran = check(tmp_path, upstream, ARTING_AUTH_TOKEN=f"{UUID_TOKEN},second-token-77")
    assert ran.code == 0, ran.out                         # token-2 gets in
    assert ran.finding("token-1") == (
        'warn  token-1: rate-limited (HTTP 429, code 100429 "too many requests", retry after '
        "30 s): the daemon rests it and tries it again later.")
    assert ran.finding("token-2").startswith("ok    token-2: accepted")
    upstream.fault("rate_limit", route="get", retry_after=30)
    ran = check(tmp_path, upstream, ARTING_AUTH_TOKEN=f"{UUID_TOKEN},second-token-77")
    assert ran.code == 1, ran.out
    assert ran.finding("tokens") == (
        "fail  tokens: every identity is rate-limited right now: the daemon could not create "
        "a job; try again later, or add tokens.")


def test_a_cloudflare_challenge_cloudscraper_cannot_pass(tmp_path, upstream):
    upstream.fault("cf_challenge")
    ran = check(tmp_path, upstream)
    assert ran.code == 1, ran.out
    line = ran.finding("cloudflare")
    assert line.startswith("fail  cloudflare: Cloudflare shows a browser challenge that "
                           "cloudscraper cannot pass (Cloudflare still answered HTTP 403 with "
                           "its challenge page). Pass it once in a browser on this machine")
    assert ran.lines == [
        'cf_clearance = "<the cf_clearance cookie of a browser that passed the check>"',
        'user_agent = "<that browser\'s exact User-Agent>"']
    assert ran.finding("tokens") == \
        "info  tokens: not checked: Cloudflare answers instead of Arting."
    # The lines, filled in, are settings the daemon takes.
    add_to_config(tmp_path, ran.lines)
    assert load_settings(tmp_path / "arting.toml").user_agent == "<that browser's exact User-Agent>"


def test_a_challenge_cloudscraper_passes_is_a_warning(tmp_path, upstream):
    upstream.fault("cf_challenge", route="get", count=1)
    ran = check(tmp_path, upstream)
    assert ran.code == 0, ran.out
    assert ran.finding("cloudflare").startswith(
        "warn  cloudflare: Cloudflare showed a browser challenge; cloudscraper passed it")
    assert ran.finding("anonymous identity").startswith("ok    anonymous identity: accepted")
    assert [r["headers"].get("User-Agent", "") for r in upstream.requests("get")][1] != \
        Settings().user_agent                     # the second poll was cloudscraper's own


def test_the_configured_clearance_is_seen_to_pass_or_to_have_expired(tmp_path, upstream):
    upstream.configure(cf_clearance="clearance-from-a-browser-41")
    ran = check(tmp_path, upstream, ARTING_CF_CLEARANCE="clearance-from-a-browser-41")
    assert ran.code == 0, ran.out
    assert ran.finding("cloudflare").startswith(
        "ok    cloudflare: the configured cf_clearance passes: without it Cloudflare shows a "
        "browser challenge.")
    stale = check(tmp_path, upstream, ARTING_CF_CLEARANCE="an-expired-clearance")
    assert stale.code == 1
    assert stale.finding("cloudflare").startswith(
        "fail  cloudflare: The configured cf_clearance is no longer accepted.")
    assert stale.lines[0].startswith("cf_clearance = ")
    assert "clearance-from-a-browser-41" not in ran.out and "an-expired" not in stale.out


def test_a_1020_block_needs_another_network_not_a_setting(tmp_path, upstream):
    upstream.fault("cf_1020")
    ran = check(tmp_path, upstream)
    assert ran.code == 1, ran.out
    assert ran.finding("cloudflare") == (
        "fail  cloudflare: Cloudflare blocks this machine's address (error 1020, a firewall "
        "rule). No setting of the daemon changes that: another network or proxy is needed.")
    assert ran.lines == []


def test_an_unreachable_arting_is_named_by_its_layer(tmp_path):
    ran = check(tmp_path, None, ARTING_BASE_URL="http://127.0.0.1:9")   # discard port: closed
    assert ran.code == 1
    assert ran.finding("reach").startswith(
        "fail  reach: 127.0.0.1 resolves (127.0.0.1), but nothing accepts a TCP connection on "
        "port 9")
    assert ran.finding("arting") == "info  arting: nothing else checked: Arting is out of reach."


def test_a_wrong_base_url_is_suspected(tmp_path, upstream):
    # Answered in Arting's envelope, but as a path that does not exist is.
    ran = check(tmp_path, upstream, ARTING_BASE_URL=upstream.url + "/not-the-api")
    assert ran.code == 0, ran.out
    assert ran.finding("anonymous identity") == (
        'warn  anonymous identity: the poll was answered (HTTP 404, code 100404 "not found") '
        'as a path that does not exist is: if jobs fail with "not found", check base_url '
        f"({upstream.url}/not-the-api).")
    # Not in Arting's envelope at all: a web page, say.
    upstream.fault("http_error", route="get", status=404, body="empty")
    ran = check(tmp_path, upstream, ARTING_BASE_URL=upstream.url)
    assert ran.code == 1, ran.out
    assert ran.finding("anonymous identity").startswith(
        "fail  anonymous identity: the answer is not Arting's JSON envelope (HTTP 404, "
        "no Content-Type, 0 bytes): is base_url")
    assert ran.lines == ['base_url = "https://api.arting.ai"']


# --- spends a generation ------------------------------------------------------------------

def test_spending_needs_yes_off_a_terminal_and_sends_nothing_without_it(tmp_path, upstream):
    ran = check(tmp_path, upstream, "--generate")
    assert ran.code == 2
    assert "will send one image (512x512, model oneFORALLAnime)" in ran.err
    assert "pass --yes to spend it. Nothing was sent." in ran.err
    assert upstream.requests("create") == [] and upstream.requests("get") == []


def test_on_a_terminal_it_asks_before_spending(tmp_path, upstream):
    def answer(reply: str) -> tuple[int, str]:
        main, side = os.openpty()
        proc = subprocess.Popen([str(COMMAND), "check", "--generate"], cwd=tmp_path,
                                env=env_for(tmp_path, upstream), stdin=side, stderr=side,
                                stdout=subprocess.PIPE, text=True)
        os.close(side)
        said = b""
        try:
            while b"Go ahead? [y/N] " not in said:
                assert select.select([main], [], [], 30)[0], f"no question, only {said!r}"
                said += os.read(main, 1024)
            os.write(main, reply.encode() + b"\n")
            out = proc.communicate(timeout=60)[0]
        finally:
            if proc.poll() is None:
                proc.kill()
            os.close(main)
        assert b"will send one image (512x512, model oneFORALLAnime)" in said
        return proc.returncode, out

    code, out = answer("n")
    assert code == 2 and out == ""
    assert upstream.requests("create") == [] and upstream.requests("get") == []
    code, out = answer("y")
    assert code == 0, out
    assert len(upstream.requests("create")) == 1


def test_generate_reports_the_job_and_spends_exactly_one(tmp_path, upstream):
    upstream.configure(complete_after_polls=3)
    ran = check(tmp_path, upstream, "--generate", "--yes")
    assert ran.code == 0, ran.out
    assert re.fullmatch(r"ok    generate: 1 image: request_id after \d+\.\d\d s, 3 polls, "
                        r"\d+\.\d s in all\.", ran.finding("generate")), ran.out
    assert ran.finding("status") == \
        "ok    status: while running 'processing'; done 'success': as the settings expect."
    assert ran.finding("image host") == \
        "ok    image host: the images come from 127.0.0.1, which image_hosts admits."
    assert ran.finding("image") == "ok    image: PNG, 512×512, " \
        f"{_kb(ran.finding('image'))} kB, as asked."
    assert ran.finding("balance") == ("info  balance: Arting says 999 remain for this identity "
                                      "after the job (`remain_balance`).")
    assert ran.lines == []
    (create,) = upstream.requests("create")
    assert create["body"]["samples"] == 1 and create["body"]["is_nsfw"] is False
    assert len(upstream.requests("image")) == 1


def test_generate_makes_one_image_on_each_other_provider_and_says_which(tmp_path, upstream):
    """Midjourney and Stability AI (at their emulators) each make one small image as the
    daemon makes it; one that refuses the check's question or is out of reach spends
    nothing. The question before spending names each."""
    from processes import emulators
    from test_midjourney import SECRET, provider as mj_provider
    from test_stability import KEY, calls, provider as sai_provider

    from arting_daemon.sandbox.midjourney import MidjourneyEmulator
    from arting_daemon.sandbox.stability import StabilityEmulator
    with emulators(MidjourneyEmulator, api_secret=SECRET, generation_time=0.3,
                   quadrant_pixels=64 * 64) as mj, \
            emulators(StabilityEmulator, api_keys=[KEY], pixels=64 * 64) as st:
        proxy, sai = mj(), st()
        providers = json.dumps([
            mj_provider(proxy), sai_provider(sai, default_model="sd3.5-medium"),
            {**mj_provider(proxy), "name": "wrong", "api_key": "nope", "prefix": "w/"},
            {"name": "gone", "kind": "stability", "base_url": "http://127.0.0.1:9",
             "api_key": KEY, "prefix": "g/"}])
        refused = check(tmp_path, upstream, "--generate", ARTING_PROVIDERS=providers)
        assert refused.code == 2 and "Nothing was sent." in refused.err
        assert ("and one image to each of mj (midjourney, model midjourney), sai (stability, "
                "model sd3.5-medium), wrong (midjourney, model midjourney), gone (stability, "
                "model core), spending one generation there.") in refused.err
        assert proxy.sandbox.requests_for("imagine") == [] and calls(sai) == []

        ran = check(tmp_path, upstream, "--generate", "--yes", ARTING_PROVIDERS=providers)
    assert re.fullmatch(r"ok    mj generate: 1 image \(64×64\) from model midjourney in "
                        r"\d+\.\d s\.", ran.finding("mj generate")), ran.out
    assert re.fullmatch(r"ok    sai generate: 1 image \(64×64\) from model sd3\.5-medium in "
                        r"\d+\.\d s\.", ran.finding("sai generate")), ran.out
    assert ran.finding("wrong generate") == ("info  wrong generate: not run: it did not take "
                                             "the check's question, so nothing was spent.")
    assert ran.finding("gone generate") == "info  gone generate: not run: it is out of reach."
    assert ran.finding("generate").startswith("ok    generate: 1 image")       # Arting's
    assert len(upstream.requests("create")) == 1
    [imagine] = [r.body for r in proxy.sandbox.requests_for("imagine")]
    assert imagine["prompt"].startswith("a small red apple on a wooden table, soft daylight "
                                        "--ar 1:1 --seed ")
    assert [(c["at"], c["model"]) for c in calls(sai)] == [("sd3", "sd3.5-medium")]
    assert not (tmp_path / "data" / "images").exists()       # nothing kept in the store
    assert SECRET not in ran.out + ran.err and KEY not in ran.out + ran.err


def test_generate_reaches_a_webui_and_an_openai_server_as_well(tmp_path, upstream,
                                                                make_daemon):
    from a1111_standin import A1111StandIn
    relay = make_daemon()                       # another daemon: an OpenAI-compatible server
    studio = A1111StandIn().start()
    try:
        providers = json.dumps([
            {"name": "studio", "kind": "a1111", "base_url": studio.url},
            {"name": "relay", "kind": "openai", "base_url": relay.v1}])
        ran = check(tmp_path, upstream, "--generate", "--yes", ARTING_PROVIDERS=providers)
    finally:
        studio.stop()
    assert "one image to each of studio (a1111), relay (openai)" in ran.err
    assert re.fullmatch(r"ok    studio generate: 1 image \(512×512\) from its loaded model "
                        r"in \d+\.\d s\.", ran.finding("studio generate")), ran.out
    assert re.fullmatch(r"ok    relay generate: 1 image \(512×512\) from model \S+ in "
                        r"\d+\.\d s\.", ran.finding("relay generate")), ran.out
    assert [route for route, _ in studio.requests] == ["txt2img"]
    assert len(relay.sandbox.requests_for("create")) == 1
    assert ran.code == 0, ran.out


def test_the_sandbox_generates_on_its_emulated_providers_too(tmp_path):
    ran = check(tmp_path, None, "--sandbox", "--generate", ARTING_SANDBOX_GENERATION_TIME="0.2")
    assert "and one to each emulated provider (nothing is spent)" in ran.err
    assert ran.finding("midjourney generate").startswith("ok    midjourney generate: 1 image")
    assert ran.finding("stability generate").startswith("ok    stability generate: 1 image")
    assert ran.code == 0, ran.out


def _kb(line: str) -> str:
    return re.search(r"(\d+) kB", line)[1]


def test_another_done_literal_is_a_line_to_add(tmp_path, upstream):
    upstream.configure(done_status="complete", pending_status="queued", complete_after_polls=2)
    ran = check(tmp_path, upstream, "--generate", "--yes")
    assert ran.code == 0, ran.out            # the daemon finishes on the images anyway
    assert ran.finding("status") == (
        "warn  status: Arting said 'complete' when done, which done_statuses does not list "
        "(the daemon finishes on the images anyway, but a finished job without images would "
        "wait for run_timeout). → arting.toml: done_statuses = [\"success\", \"succeeded\", "
        "\"done\", \"completed\", \"finished\", \"complete\"]")
    assert ran.lines == ['done_statuses = ["success", "succeeded", "done", "completed", '
                         '"finished", "complete"]']
    add_to_config(tmp_path, ran.lines)
    again = check(tmp_path, upstream, "--generate", "--yes")
    assert again.code == 0 and again.lines == []
    assert again.finding("status") == \
        "ok    status: while running 'queued'; done 'complete': as the settings expect."


def test_a_pending_literal_the_settings_take_for_failure_is_a_problem(tmp_path, upstream):
    upstream.configure(pending_status="error", complete_after_polls=2)
    ran = check(tmp_path, upstream, "--generate", "--yes")
    assert ran.code == 1, ran.out
    assert ran.finding("status").startswith(
        "fail  status: Arting said 'error' while the job was still running, but "
        "failed_statuses lists it: the daemon would fail every job.")
    assert ran.lines == ['failed_statuses = ["failed"]']


def test_another_image_host_is_a_line_to_add(tmp_path, upstream):
    upstream.configure(public_url=f"http://localhost:{upstream.port}")
    ran = check(tmp_path, upstream, "--generate", "--yes")
    assert ran.code == 1, ran.out
    assert ran.finding("image host").startswith(
        "fail  image host: the images come from localhost, which image_hosts does not admit: "
        "the daemon would refuse to download them.")
    assert ran.lines == [f'image_hosts = [{DEFAULT_HOSTS}, "localhost"]']
    assert upstream.requests("image") == []          # never fetched from a host not admitted
    add_to_config(tmp_path, ran.lines)
    again = check(tmp_path, upstream, "--generate", "--yes")
    assert again.code == 0, again.out
    assert again.finding("image host") == \
        "ok    image host: the images come from localhost, which image_hosts admits."
    assert again.finding("image").startswith("ok    image: PNG, 512×512")


def test_an_image_that_cannot_be_fetched_is_a_problem(tmp_path, upstream):
    upstream.fault("expired_image", route="image")
    ran = check(tmp_path, upstream, "--generate", "--yes")
    assert ran.code == 1, ran.out
    assert ran.finding("image") == ("fail  image: the result could not be used: The result "
                                    "image is gone (HTTP 404); its URL expired.")


def test_a_failed_job_with_an_unknown_literal_suggests_it(tmp_path, upstream):
    upstream.configure(failed_status="aborted", complete_after_polls=50)
    upstream.fault("fail", route="get", after=2, count=1)    # (after the token's probe)
    ran = check(tmp_path, upstream, "--generate", "--yes", ARTING_RUN_TIMEOUT="2")
    assert ran.code == 1, ran.out
    assert ran.finding("status").startswith(
        "fail  status: the job stopped at 'aborted', which failed_statuses does not list")
    assert ran.lines == ['failed_statuses = ["failed", "error", "aborted"]']
    assert ran.finding("generate").startswith("fail  generate: no images within run_timeout")


def test_no_image_to_image_endpoint_means_switching_it_off(tmp_path, upstream):
    upstream.configure(img2img_enabled=False)
    ran = check(tmp_path, upstream, "--img2img", "--yes", ARTING_IMG2IMG="true")
    assert ran.code == 1, ran.out
    hint, verdict = [line for line in ran.out.splitlines()
                     if re.match(r"\w+\s+image-to-image: ", line)]
    assert hint == ("warn  image-to-image: a poll of its endpoint was answered as a path that "
                    'does not exist is (HTTP 404, code 100404 "not found"): it seems missing. '
                    "img2img is on: `arting-daemon check --img2img` settles it.")
    assert verdict == (
        'fail  image-to-image: Arting has no image-to-image endpoint (HTTP 404, code 100404 '
        '"not found"): with img2img on, every edit would fail. → arting.toml: img2img = false')
    assert ran.lines == ["img2img = false"]
    assert "(img2img is set by ARTING_IMG2IMG in the environment" in ran.out
    off = check(tmp_path, upstream, "--img2img", "--yes")
    assert off.code == 0 and off.lines == []
    assert "ok    image-to-image: Arting has no image-to-image endpoint (HTTP 404, code 100404 " \
           '"not found"): keep img2img off.' in off.out.splitlines()


def test_a_working_image_to_image_endpoint_means_switching_it_on(tmp_path, upstream):
    ran = check(tmp_path, upstream, "--generate", "--img2img", "--yes")
    assert ran.code == 0, ran.out
    assert "info  image-to-image: image-to-image works: switch it on. → arting.toml: " \
           "img2img = true" in ran.out
    assert ran.finding("image-to-image generate").startswith(
        "ok    image-to-image generate: 1 image")
    assert ran.lines == ["img2img = true"]
    # Uploaded the way the daemon does (a signed URL, then the PUT), the picture
    # --generate made, and that upload's URL is what the create names.
    (sign,) = upstream.requests("signed_urls")
    (put,) = upstream.requests("oss_put")
    assert sign["body"] == {"f_suffixs": ["png"]} and put["body"]["bytes"] > 1000
    (create,) = upstream.requests("i2i_create")
    assert create["body"]["image_url"].startswith(upstream.url + "/cdn/")


def test_without_a_signed_upload_the_inline_transport_is_suggested(tmp_path, upstream):
    upstream.fault("http_error", route="signed_urls", status=404, body="empty")
    ran = check(tmp_path, upstream, "--img2img", "--yes", ARTING_IMG2IMG="1")
    assert ran.code == 0, ran.out
    assert ran.lines == ['img2img_transport = "data_url"']
    assert "image-to-image works with the init image inline (no signed upload: " \
           "get_oss_signed_urls: HTTP 404, no Content-Type, 0 bytes)." in ran.out
    (create,) = upstream.requests("i2i_create")
    assert create["body"]["image_url"].startswith("data:image/png;base64,")


def test_json_report(tmp_path, upstream):
    upstream.configure(done_status="complete")
    ran = check(tmp_path, upstream, "--generate", "--yes", "--json")
    report = json.loads(ran.out)
    assert ran.code == 0 and report["ok"] is True
    assert report["target"] == {"base_url": upstream.url, "mode": "live",
                                "identities": ["anonymous identity"], "generate": True,
                                "img2img": False}
    status = next(f for f in report["findings"] if f["topic"] == "status")
    assert status["level"] == "warn" and status["data"]["last"] == "complete"
    assert report["config_lines"] == status["lines"]
    generate = next(f for f in report["findings"] if f["topic"] == "generate")
    assert set(generate["data"]) >= {"to_request_id", "polls", "total", "statuses"}
    assert {f["level"] for f in report["findings"]} <= {"ok", "info", "warn", "fail"}


# --- in the daemon ----------------------------------------------------------------------------

def test_the_daemon_runs_the_free_check_in_process(make_daemon):
    daemon = make_daemon(api_keys=["k"], sandbox_options={"errors_as_http": True})
    key = {"Authorization": "Bearer k"}
    url = daemon.url + "/arting/v1/admin/check"
    assert httpx.post(url).status_code == 401
    user = httpx.post(daemon.url + "/arting/v1/admin/keys", headers=key,
                      json={"name": "a user"}).json()["key"]
    assert httpx.post(url, headers={"Authorization": f"Bearer {user}"}).status_code == 403
    assert httpx.get(url, headers=key).json() is None             # none run yet

    daemon.do(daemon.sandbox.add_fault, "slow", route="get", delay=1.0, count=1)
    with ThreadPoolExecutor(2) as pool:             # the second comes while the first runs
        first, second = pool.map(lambda _: httpx.post(url, headers=key, timeout=60).json(),
                                 range(2))
    assert first == second
    assert first["ok"] is True and first["target"]["mode"] == "live"
    assert [f["topic"] for f in first["findings"]] == \
        ["reach", "cloudflare", "anonymous identity", "client", "image-to-image", "envelope"]
    assert "errors come as HTTP 404" in first["findings"][-1]["message"]
    assert httpx.get(url, headers=key).json() == first
    # Polls only, and the guest identity is never shown.
    assert daemon.sandbox.requests_for("create") == []
    identity = json.loads((daemon.settings.data_dir / "identity.json").read_text())["uuid"]
    assert identity not in json.dumps(first)
