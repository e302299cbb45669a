"""``check --record DIR`` and ``--sandbox --replay DIR``: a run written down with every
secret redacted, and played back by the emulator so that the daemon — configured with
the lines the check suggested — works against it as it would against the live Arting.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import json
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import openai
import pytest
from PIL import Image
from processes import START_TIMEOUT, first_line

from arting_daemon.recording import Exchange, Redactor, write_record
from arting_daemon.sandbox.replay import start_sandbox
from test_check import COMMAND, DEFAULT_HOSTS, ThreadedSandbox, check, env_for

UUID_TOKEN = "3b9c1d7e-5f2a-4c8b-9d0e-7a6f5e4d3c2b"
JWT_TOKEN = ("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJ1c2VyX2lkIjo3NzEsImV4cCI6NDEwMjQ0NDgwMH0."
             "c2lnbmF0dXJlLW9mLWEtcmVhbC1sb29raW5nLXRva2Vu")
CLEARANCE = "clearance-cookie-9f8e7d6c5b4a"
pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")


@pytest.fixture
def upstream():
    with ThreadedSandbox() as sandbox:
        yield sandbox


def every_file(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes()
            for p in directory.rglob("*") if p.is_file()}


def assert_nowhere(secrets: list[str], files: dict[str, bytes]) -> None:
    for secret in secrets:
        for name, data in files.items():
            assert secret.encode() not in data, f"a secret is in {name}"


def test_a_record_holds_every_exchange_and_no_secret(tmp_path, upstream):
    upstream.configure(cf_clearance=CLEARANCE, complete_after_polls=2)
    # Arting echoes a token in an error message: that copy must go too.
    upstream.fault("invalid_token", route="get", count=1, message=f"token {JWT_TOKEN} expired")
    record = tmp_path / "record"
    ran = check(tmp_path, upstream, "--generate", "--img2img", "--yes", "--record", str(record),
                ARTING_AUTH_TOKEN=f"{UUID_TOKEN},{JWT_TOKEN}", ARTING_CF_CLEARANCE=CLEARANCE)
    assert ran.code == 1, ran.out              # token-1 was refused (the echo)
    assert f"Recorded {len(upstream.sandbox.requests)} exchanges in {record}" in ran.out

    files = every_file(record)
    signature, payload = JWT_TOKEN.rsplit(".", 1)[1], JWT_TOKEN.split(".")[1]
    assert_nowhere([UUID_TOKEN, JWT_TOKEN, payload, signature, CLEARANCE], files)
    assert_nowhere([UUID_TOKEN, JWT_TOKEN, CLEARANCE], {"output": (ran.out + ran.err).encode()})

    index = json.loads(files["record.json"])
    assert index["format"] == "arting-2api check record"
    assert index["settings"]["identities"] == ["token-1", "token-2"]
    assert index["settings"]["cf_clearance"] == "set"
    assert index["report"]["ok"] is False
    exchanges = [json.loads(files[name]) for name in index["exchanges"]]
    # Every request the emulator got is in the record, in order, each named for what it was.
    assert len(exchanges) == len(upstream.sandbox.requests)
    # Without the clearance the light pool meets the challenge, and the browser-like
    # client it switches to (impersonate = auto) meets it too.
    assert [e["step"] for e in exchanges[:4]] == ["token-1", "cloudflare", "cloudflare",
                                                  "no such path"]
    first = exchanges[0]
    headers = dict(first["request"]["headers"])
    assert headers["Authorization"] == "<token-1>"
    assert headers["Cookie"] == "cf_clearance=<redacted>"
    assert first["outcome"] == "refused"
    assert first["response"]["json"]["message"] == "token <token-2> expired"
    assert exchanges[1]["outcome"] == "cloudflare:challenge"    # without the clearance
    assert "Just a moment..." in exchanges[1]["response"]["text"]
    outcomes = [e["outcome"] for e in exchanges if e["step"] == "generate"]
    assert outcomes[:3] == ["created", "pending", "done"]
    image = next(e for e in exchanges if e["step"] == "generate" and e["method"] == "GET")
    png = files[f"exchanges/{image['response']['file']}"]
    assert image["response"]["sha256"] == hashlib.sha256(png).hexdigest()
    assert Image.open(io.BytesIO(png)).size == (512, 512)
    sign, put = [e for e in exchanges if e["step"] == "img2img upload"]
    assert (sign["outcome"], put["outcome"], put["method"]) == ("signed", "uploaded", "PUT")
    assert put["request"]["file"].endswith(".png")


def test_the_anonymous_identity_is_redacted_too(tmp_path, upstream):
    record = tmp_path / "record"
    ran = check(tmp_path, upstream, "--record", str(record))
    assert ran.code == 0, ran.out
    identity = json.loads((tmp_path / "data" / "identity.json").read_text())["uuid"]
    files = every_file(record)
    assert_nowhere([identity], files)
    first = json.loads(files[json.loads(files["record.json"])["exchanges"][0]])
    assert dict(first["request"]["headers"])["Authorization"] == "<anonymous-identity>"


def test_cookies_keep_their_names_and_cloudflare_pages_lose_the_address(tmp_path):
    page = ('<html><head><title>Access denied</title></head><body>Your IP: 203.0.113.7 '
            '(2001:db8::1); ray 8f3a</body></html>').encode()
    seen = Exchange("POST", "https://api.example/api/cg/text-to-image/get",
                    {"Authorization": UUID_TOKEN, "Cookie": f"cf_clearance={CLEARANCE}; b=2"},
                    {"request_id": "x"}, 0.0, step="token-1")
    seen.answer(403, {"Content-Type": "text/html", "Set-Cookie": f"__cf_bm={CLEARANCE}; Path=/"},
                page)
    write_record(tmp_path, [seen], 0.0, {}, Redactor({UUID_TOKEN: "<token-1>"}))
    (written,) = (tmp_path / "exchanges").glob("*.json")
    doc = json.loads(written.read_text())
    assert doc["request"]["headers"] == [["Authorization", "<token-1>"],
                                         ["Cookie", "cf_clearance=<redacted>; b=<redacted>"]]
    assert ["Set-Cookie", "__cf_bm=<redacted>; Path=/"] in doc["response"]["headers"]
    assert doc["response"]["text"] == ("<html><head><title>Access denied</title></head><body>"
                                       "Your IP: <ip-address> (<ip-address>); ray 8f3a"
                                       "</body></html>")
    assert_nowhere([UUID_TOKEN, CLEARANCE, "203.0.113.7"], every_file(tmp_path))


# --- replay ----------------------------------------------------------------------------------

def recorded_run(tmp_path: Path, upstream: ThreadedSandbox) -> tuple[Path, list[str]]:
    """A run against an Arting unlike the defaults: its record and the lines it suggested."""
    upstream.configure(done_status="complete", pending_status="queued", generation_time=1.2,
                       public_url=f"http://localhost:{upstream.port}", errors_as_http=True)
    record = tmp_path / "record"
    ran = check(tmp_path, upstream, "--generate", "--yes", "--record", str(record))
    assert ran.code == 1, ran.out
    assert ran.lines == ['done_statuses = ["success", "succeeded", "done", "completed", '
                         '"finished", "complete"]',
                         f'image_hosts = [{DEFAULT_HOSTS}, "localhost"]']
    return record, ran.lines


def start(argv: list[str], cwd: Path, env: dict, marker: str) -> tuple[subprocess.Popen, str]:
    """A server process; returns it and the URL its first line announces."""
    proc = subprocess.Popen(argv, cwd=cwd, env=env, text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    try:
        line = first_line(proc, START_TIMEOUT)
        assert marker in line, line
    except AssertionError as failed:
        proc.kill()
        raise AssertionError(f"{failed}{proc.communicate(timeout=30)[1]}") from None
    return proc, line.split(marker, 1)[1].split()[0].rstrip(",")


def stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        assert proc.wait(15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stdout.close()
        proc.stderr.close()


def test_the_emulator_replays_the_recorded_shapes_literals_and_timings(tmp_path, upstream):
    record, _ = recorded_run(tmp_path, upstream)
    index = json.loads((record / "record.json").read_text())
    recorded = [json.loads((record / name).read_text()) for name in index["exchanges"]]
    by_outcome = {e["outcome"]: e["response"] for e in reversed(recorded) if e["response"]}

    proc, url = start([sys.executable, "-m", "arting_daemon.sandbox", "--replay", str(record)],
                      tmp_path, env_for(tmp_path, None), "listening on ")
    try:
        config = httpx.get(url + "/__sandbox__/config").json()
        assert (config["pending_status"], config["done_status"]) == ("queued", "complete")
        assert config["errors_as_http"] is True
        # The recorded job took 1.2 s; the replay's is what the polls saw of it.
        assert 0.5 <= config["generation_time"] <= 2.5
        assert config["public_url"] == f"http://localhost:{url.rsplit(':', 1)[1]}"

        arting = httpx.Client(base_url=url, headers={"Authorization": UUID_TOKEN})
        missing = arting.post("/api/cg/text-to-image/get", json={"request_id": "none"})
        assert (missing.status_code, missing.json()) == \
            (by_outcome["accepted"]["status"], by_outcome["accepted"]["json"])
        created = arting.post("/api/cg/text-to-image/create", json={"prompt": "p"}).json()
        shape = by_outcome["created"]["json"]
        assert created.keys() == shape.keys() and created["message"] == shape["message"]
        pending = arting.post("/api/cg/text-to-image/get", json=created["data"]).json()
        assert pending["data"]["status"] == "queued"
        assert pending.keys() == by_outcome["pending"]["json"].keys()
    finally:
        stop(proc)


def test_the_daemon_with_the_suggested_lines_works_against_the_replay(tmp_path, upstream):
    record, lines = recorded_run(tmp_path, upstream)

    # The check against the replay finds what it found against the original.
    again = check(tmp_path, None, "--sandbox", "--replay", str(record), "--generate")
    assert again.code == 1 and again.lines == lines, again.out
    assert "(sandbox, replaying" in again.out.splitlines()[0]
    assert again.finding("status").startswith("warn  status: Arting said 'complete' when done")

    def generate(workdir: Path):
        env = env_for(workdir, None)
        proc, url = start([str(COMMAND), "--sandbox", "--replay", str(record), "--port", "0"],
                          workdir, env, "listening on ")
        try:
            client = openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0,
                                   timeout=60)
            return client.images.generate(prompt="an apple", response_format="b64_json")
        finally:
            stop(proc)

    # As configured by default, the daemon refuses the replay's image host ...
    bare = tmp_path / "bare"
    bare.mkdir()
    with pytest.raises(openai.APIStatusError) as refused:
        generate(bare)
    assert "localhost" in refused.value.message and "image_hosts" in refused.value.message

    # ... and with the check's lines in arting.toml it gets the recorded image.
    configured = tmp_path / "configured"
    configured.mkdir()
    (configured / "arting.toml").write_text("\n".join(lines) + "\n")
    made = generate(configured)
    png = base64.b64decode(made.data[0].b64_json)
    assert Image.open(io.BytesIO(png)).size == (512, 768)


async def test_recorded_images_are_served_back_as_they_were(tmp_path, upstream):
    record = tmp_path / "record"
    assert check(tmp_path, upstream, "--generate", "--yes", "--record", str(record)).code == 0
    (recorded,) = (record / "exchanges").glob("*-image-response.png")
    sandbox = await start_sandbox(0.0, record)
    try:
        async with httpx.AsyncClient(base_url=sandbox.url,
                                     headers={"Authorization": UUID_TOKEN}) as http:
            made = (await http.post("/api/cg/text-to-image/create",
                                    json={"prompt": "p", "samples": 2})).json()
            for _ in range(100):       # the recorded job took a moment: so does this one
                done = (await http.post("/api/cg/text-to-image/get", json=made["data"])).json()
                if done["data"]["output"]:
                    break
                await asyncio.sleep(0.05)
            images = [(await http.get(url)).content for url in done["data"]["output"]]
    finally:
        await sandbox.close()
    assert images == [recorded.read_bytes()] * 2
