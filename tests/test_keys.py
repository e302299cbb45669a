"""A shared daemon: user keys, what each may see, their limits, their usage, and the
secrets at rest — driven with the real ``openai`` and ``webuiapi`` clients."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import signal
import sqlite3
import stat
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import openai
import pytest

from clock import ManualClock
from processes import TOKEN, DaemonProcess, Emulator
from threads import Background

ADMIN = "admin-key-0123456789"
POOL_TOKEN = "7d1f2a3b-4c5d-4e6f-8a9b-0c1d2e3f4a5b"
COMMAND = Path(sys.executable).with_name("arting-daemon")


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def make_key(daemon, **body) -> dict:
    resp = httpx.post(f"{daemon.url}/arting/v1/admin/keys", headers=bearer(ADMIN),
                      json={"name": "someone", **body})
    assert resp.status_code == 201, resp.text
    return resp.json()


@pytest.fixture
def shared(make_daemon):
    """A daemon with an operator key, as a team would run it."""
    return make_daemon(api_keys=[ADMIN], auth_tokens=[POOL_TOKEN])


def submit(daemon, key: str, **body) -> httpx.Response:
    return httpx.post(f"{daemon.url}/arting/v1/jobs", headers=bearer(key),
                      json={"prompt": "p", **body})


# --- keys and who sees what ----------------------------------------------------------------

def test_a_user_key_generates_with_the_openai_client(shared):
    made = make_key(shared, name="alice")
    assert made["key"].startswith("sk-arting-") and len(made["key"]) >= 10 + 32
    assert made["id"].startswith("key_") and made["key_prefix"] == made["key"][:14]
    client = openai.OpenAI(base_url=shared.v1, api_key=made["key"], max_retries=0)
    result = client.images.generate(prompt="a lighthouse", response_format="b64_json")
    assert result.data[0].b64_json
    listed = httpx.get(f"{shared.url}/arting/v1/admin/keys", headers=bearer(ADMIN)).json()
    assert [k["name"] for k in listed["data"]] == ["alice"]
    assert "key" not in listed["data"][0] and "hash" not in listed["data"][0]
    assert listed["data"][0]["usage"]["today"]["images"] == 1


def test_users_see_and_cancel_only_their_own_jobs(shared):
    alice, bob = make_key(shared, name="alice")["key"], make_key(shared, name="bob")["key"]
    shared.do(shared.sandbox.configure, generation_time=30)
    job = submit(shared, alice).json()
    for method, path in [("GET", ""), ("GET", "/events"), ("DELETE", "")]:
        resp = httpx.request(method, f"{shared.url}/arting/v1/jobs/{job['id']}{path}",
                             headers=bearer(bob))
        assert resp.status_code == 404, (method, path, resp.text)
    assert httpx.get(f"{shared.url}/arting/v1/jobs", headers=bearer(bob)).json()["data"] == []
    mine = httpx.get(f"{shared.url}/arting/v1/jobs", headers=bearer(alice)).json()["data"]
    assert [j["id"] for j in mine] == [job["id"]]
    everyone = httpx.get(f"{shared.url}/arting/v1/jobs", headers=bearer(ADMIN)).json()["data"]
    assert [j["id"] for j in everyone] == [job["id"]]
    # the same Idempotency-Key from another user is another job
    again = httpx.post(f"{shared.url}/arting/v1/jobs", json={"prompt": "p"},
                       headers={**bearer(bob), "Idempotency-Key": "k1"}).json()
    mine_again = httpx.post(f"{shared.url}/arting/v1/jobs", json={"prompt": "p"},
                            headers={**bearer(alice), "Idempotency-Key": "k1"}).json()
    assert again["id"] != mine_again["id"]
    cancelled = httpx.delete(f"{shared.url}/arting/v1/jobs/{job['id']}", headers=bearer(alice))
    assert cancelled.json()["state"] == "cancelled"


def test_users_never_reach_the_administration(shared):
    bob = make_key(shared, name="bob")["key"]
    for method, path in [("GET", "/arting/v1/admin/tokens"),
                         ("POST", "/arting/v1/admin/tokens/probe"),
                         ("GET", "/arting/v1/admin/keys"), ("POST", "/arting/v1/admin/keys"),
                         ("DELETE", "/arting/v1/admin/keys/key_000000000000")]:
        resp = httpx.request(method, shared.url + path, headers=bearer(bob), json={"name": "x"})
        assert resp.status_code == 403, (path, resp.text)
        assert "admin key" in resp.json()["error"]["message"]
    assert httpx.get(shared.url + "/metrics", headers=bearer(bob)).status_code == 403
    assert httpx.get(shared.url + "/metrics", headers=bearer(ADMIN)).status_code == 200


def test_a_user_keys_status_shows_only_its_own(shared):
    """Least knowledge: no token (label, health, balance), provider, total or other
    user's job in a user key's status; the operator's shows them all, as before."""
    alice, bob = make_key(shared, name="alice"), make_key(shared, name="bob")
    shared.do(shared.sandbox.add_fault, "fail", route="get", count=1)
    failed = submit(shared, bob["key"]).json()
    assert shared.wait_job(failed["id"], headers=bearer(bob["key"]))["state"] == "failed"
    done = shared.run_job(headers=bearer(alice["key"]))
    assert done["state"] == "succeeded"
    url = f"{shared.url}/arting/v1/status"
    full = httpx.get(url, headers=bearer(ADMIN)).json()
    [token] = full["tokens"]
    assert "balance" in token and full["last_outcomes"]["failure"] and full["jobs"]["failed"]

    mine = httpx.get(url, headers=bearer(alice["key"])).json()
    assert set(mine) == {"version", "sandbox", "img2img", "upscale", "auth_required",
                         "caller", "queue", "last_outcomes"}
    assert mine["caller"] == {"id": alice["id"], "name": "alice", "admin": False}
    assert mine["queue"] == {"active": 0, "queued": 0, "position": None}
    assert mine["last_outcomes"] == {"succeeded_at": done["finished_at"], "failed_at": None,
                                     "failure": None}
    said = json.dumps(mine)
    for never in (POOL_TOKEN, token["label"], "balance", "token", bob["id"], "bob",
                  failed["id"], shared.settings.base_url):
        assert never not in said, never
    # Bob's last failure is his own to see.
    his = httpx.get(url, headers=bearer(bob["key"])).json()["last_outcomes"]
    assert his["failure"]["code"] == full["last_outcomes"]["failure"]["code"]


def test_a_user_key_sees_its_own_place_in_the_queue_not_the_queue(make_daemon):
    daemon = make_daemon(api_keys=[ADMIN], max_active_jobs=1,
                         sandbox_options={"generation_time": 60})
    alice = make_key(daemon, name="alice")
    first = submit(daemon, ADMIN).json()
    daemon.wait_job(first["id"], ("running",), headers=bearer(ADMIN))
    queued = submit(daemon, alice["key"]).json()
    assert queued["queue_position"] == 1
    url = f"{daemon.url}/arting/v1/status"
    assert httpx.get(url, headers=bearer(alice["key"])).json()["queue"] == \
        {"active": 0, "queued": 1, "position": 1}
    queue = httpx.get(url, headers=bearer(ADMIN)).json()["queue"]
    assert (queue["active"], queue["queued"]) == (1, 1)


def test_a_revoked_or_expired_key_is_refused_at_once_and_says_so(make_daemon):
    shared = make_daemon(api_keys=[ADMIN], auth_tokens=[POOL_TOKEN], clock=ManualClock())
    alice = make_key(shared, name="alice")
    client = openai.OpenAI(base_url=shared.v1, api_key=alice["key"], max_retries=0)
    client.models.list()
    revoked = httpx.delete(f"{shared.url}/arting/v1/admin/keys/{alice['id']}",
                           headers=bearer(ADMIN)).json()
    assert revoked["revoked_at"]
    with pytest.raises(openai.AuthenticationError, match="revoked"):
        client.models.list()
    short = make_key(shared, name="brief", expires_at=shared.clock.time() + 1.5)
    assert submit(shared, short["key"]).status_code == 202
    shared.advance(1.6)
    refused = submit(shared, short["key"])
    assert refused.status_code == 401 and "expired" in refused.json()["error"]["message"]


def test_a_key_made_on_the_command_line_works_on_the_running_daemon(shared):
    made = subprocess.run([str(COMMAND), "keys", "create", "--name", "cli user",
                           "--images-per-day", "3", "--data-dir", str(shared.settings.data_dir)],
                          capture_output=True, text=True, timeout=30)
    assert made.returncode == 0, made.stderr
    secret = made.stdout.strip()
    assert secret.startswith("sk-arting-") and "shown this once" in made.stderr
    deadline = time.monotonic() + 5
    while submit(shared, secret).status_code == 401:    # noticed within REFRESH
        assert time.monotonic() < deadline
        time.sleep(0.1)
    listed = subprocess.run([str(COMMAND), "keys", "list", "--json", "--data-dir",
                             str(shared.settings.data_dir)], capture_output=True, text=True)
    [key] = json.loads(listed.stdout)
    assert key["name"] == "cli user" and key["images_per_day"] == 3
    revoked = subprocess.run([str(COMMAND), "keys", "revoke", key["id"], "--data-dir",
                              str(shared.settings.data_dir)], capture_output=True, text=True)
    assert revoked.returncode == 0, revoked.stderr
    deadline = time.monotonic() + 5
    while (resp := submit(shared, secret)).status_code != 401:   # refused within a second
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert "revoked" in resp.json()["error"]["message"]


# --- limits ---------------------------------------------------------------------------

def test_twenty_concurrent_requests_against_five_images_admit_exactly_five(shared):
    key = make_key(shared, name="five", images_per_day=5)["key"]
    shared.do(shared.sandbox.configure, generation_time=1)
    start = threading.Barrier(20)

    def one(_):
        start.wait()
        return submit(shared, key)
    with ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(one, range(20)))
    assert sorted(r.status_code for r in answers).count(202) == 5
    refused = [r for r in answers if r.status_code == 429]
    assert len(refused) == 15
    assert all(r.json()["error"]["code"] == "quota_exceeded" and "images_per_day" in
               r.json()["error"]["message"] and int(r.headers["Retry-After"]) > 0
               for r in refused)
    for r in answers:
        if r.status_code == 202:
            assert shared.wait_job(r.json()["id"], headers=bearer(key))["state"] == "succeeded"
    assert submit(shared, key).status_code == 429        # used up for today


def test_quota_refusals_in_each_protocols_shape(shared):
    import webuiapi
    key = make_key(shared, name="tight", images_per_day=1)["key"]
    client = openai.OpenAI(base_url=shared.v1, api_key=key, max_retries=0)
    client.images.generate(prompt="one")
    with pytest.raises(openai.RateLimitError) as err:
        client.images.generate(prompt="two")
    assert err.value.response.headers["Retry-After"] and "images_per_day" in str(err.value)
    a1111 = httpx.post(f"{shared.url}/sdapi/v1/txt2img", headers=bearer(key),
                       json={"prompt": "three"})
    assert a1111.status_code == 429 and int(a1111.headers["Retry-After"]) > 0
    assert a1111.json()["error"] == "QuotaExceeded" and "images_per_day" in a1111.json()["detail"]
    api = webuiapi.WebUIApi(host="127.0.0.1", port=int(shared.url.rsplit(":", 1)[1]),
                            username="anyone", password=key)
    with pytest.raises(RuntimeError, match="429"):
        api.txt2img(prompt="four")
    jobs = submit(shared, key)
    assert jobs.status_code == 429 and jobs.json()["error"]["code"] == "quota_exceeded"

    fast = make_key(shared, name="quick", requests_per_minute=2)["key"]
    assert [submit(shared, fast).status_code for _ in range(3)] == [202, 202, 429]
    refused = submit(shared, fast)
    assert "requests_per_minute" in refused.json()["error"]["message"]
    assert 0 < int(refused.headers["Retry-After"]) <= 60


def test_models_and_jobs_in_flight(shared):
    key = make_key(shared, name="narrow", models=["asyncsMIX_v7"], max_concurrent=1)["key"]
    client = openai.OpenAI(base_url=shared.v1, api_key=key, max_retries=0)
    with pytest.raises(openai.PermissionDeniedError, match="oneFORALLAnime"):
        client.images.generate(prompt="p", model="oneFORALLAnime")
    shared.do(shared.sandbox.configure, generation_time=30)
    first = submit(shared, key, model="asyncsMIX_v7")
    assert first.status_code == 202
    second = submit(shared, key, model="asyncsMIX_v7")
    assert second.status_code == 429 and "max_concurrent" in second.json()["error"]["message"]
    httpx.delete(f"{shared.url}/arting/v1/jobs/{first.json()['id']}", headers=bearer(key))
    assert submit(shared, key, model="asyncsMIX_v7").status_code == 202


def test_a_failed_or_cancelled_job_costs_nothing(shared):
    key = make_key(shared, name="unlucky", images_per_day=2)["key"]
    shared.do(shared.sandbox.add_fault, "fail", route="get", count=2)
    for _ in range(2):
        job = submit(shared, key).json()
        assert shared.wait_job(job["id"], headers=bearer(key))["state"] == "failed"
    usage = httpx.get(f"{shared.url}/arting/v1/usage", headers=bearer(key)).json()["data"][0]
    assert usage["today"]["images"] == 0 and usage["remaining"]["images_today"] == 2
    assert usage["totals"]["jobs"]["failed"] == 2
    job = submit(shared, key, n=2).json()
    assert shared.wait_job(job["id"], headers=bearer(key))["state"] == "succeeded"
    usage = httpx.get(f"{shared.url}/arting/v1/usage", headers=bearer(key)).json()["data"][0]
    assert usage["remaining"]["images_today"] == 0 and usage["totals"]["images"] == 2


# --- usage ---------------------------------------------------------------------------------

def test_usage_by_day_and_model_for_the_caller_and_for_admins(shared):
    alice = make_key(shared, name="alice", images_per_day=10, requests_per_minute=50)
    bob = make_key(shared, name="bob")
    for model in ("asyncsMIX_v7", "asyncsMIX_v7", "oneFORALLAnime"):
        job = submit(shared, alice["key"], model=model).json()
        shared.wait_job(job["id"], headers=bearer(alice["key"]))
    job = submit(shared, bob["key"], n=2).json()
    shared.wait_job(job["id"], headers=bearer(bob["key"]))

    own = httpx.get(f"{shared.url}/arting/v1/usage", headers=bearer(alice["key"])).json()
    [mine] = own["data"]
    today = mine["days"][0]
    assert (mine["owner"], mine["totals"]["requests"], mine["totals"]["images"]) == (
        alice["id"], 3, 3)
    assert today["models"]["asyncsMIX_v7"] == {"jobs": 2, "images": 2}
    assert mine["remaining"]["images_today"] == 7
    assert mine["remaining"]["requests_this_minute"] == 47
    other = httpx.get(f"{shared.url}/arting/v1/usage?key={bob['id']}",
                      headers=bearer(alice["key"]))
    assert other.status_code == 404

    every = httpx.get(f"{shared.url}/arting/v1/usage", headers=bearer(ADMIN)).json()["data"]
    assert {e["name"]: e["totals"]["images"] for e in every} == {
        "admin": 0, "local": 0, "alice": 3, "bob": 2}
    one = httpx.get(f"{shared.url}/arting/v1/usage?key={bob['id']}", headers=bearer(ADMIN))
    assert one.json()["data"][0]["totals"]["images"] == 2
    metrics = httpx.get(shared.url + "/metrics", headers=bearer(ADMIN)).text
    assert 'arting_key_images_total{key="alice"} 3.0' in metrics
    assert alice["key"] not in metrics


def test_a1111_progress_and_interrupt_are_per_key(shared):
    alice, bob = make_key(shared, name="alice")["key"], make_key(shared, name="bob")["key"]
    shared.do(shared.sandbox.configure, generation_time=30)
    call = Background(httpx.post, f"{shared.url}/sdapi/v1/txt2img", headers=bearer(alice),
                      json={"prompt": "p"}, timeout=30)
    deadline = time.monotonic() + 10
    while httpx.get(f"{shared.url}/sdapi/v1/progress",
                    headers=bearer(alice)).json()["state"]["job_count"] == 0:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert httpx.get(f"{shared.url}/sdapi/v1/progress",
                     headers=bearer(bob)).json()["state"]["job_count"] == 0
    httpx.post(f"{shared.url}/sdapi/v1/interrupt", headers=bearer(bob))
    # had it stopped alice's jobs, they would have ended by the time the next request is
    # answered: her request is still in flight
    assert httpx.get(f"{shared.url}/sdapi/v1/progress",
                     headers=bearer(alice)).json()["state"]["job_count"] == 1
    assert call.running()                       # bob cannot stop alice's request
    httpx.post(f"{shared.url}/sdapi/v1/interrupt", headers=bearer(alice))
    answer = call.result()
    assert answer.status_code == 200 and answer.json()["images"] == []


def test_a1111_options_are_per_key_over_the_defaults_the_admin_sets(shared):
    alice, bob = make_key(shared, name="alice")["key"], make_key(shared, name="bob")["key"]

    def options(key: str) -> dict:
        return httpx.get(f"{shared.url}/sdapi/v1/options", headers=bearer(key)).json()

    def set_options(key: str, **values) -> httpx.Response:
        return httpx.post(f"{shared.url}/sdapi/v1/options", headers=bearer(key), json=values)

    def model_used(key: str) -> str:
        answer = httpx.post(f"{shared.url}/sdapi/v1/txt2img", headers=bearer(key),
                            json={"prompt": "p"}, timeout=30)
        assert answer.status_code == 200, answer.text
        return shared.sandbox.requests_for("create")[-1].body["model_id"]

    assert set_options(ADMIN, sd_model_checkpoint="asyncsMIX_v7",
                       samples_format="webp").status_code == 200
    assert options(bob)["sd_model_checkpoint"].startswith("asyncsMIX_v7")   # the defaults
    assert options(bob)["samples_format"] == "webp"
    as_read = options(alice)
    assert set_options(alice, **{**as_read, "sd_model_checkpoint": "dreamshaper_8",
                                 "enable_pnginfo": False, "made_up": [1, 2]}).status_code == 200
    mine, theirs = options(alice), options(bob)
    assert mine["sd_model_checkpoint"].startswith("dreamshaper_8")
    assert (mine["enable_pnginfo"], mine["made_up"]) == (False, [1, 2])
    assert theirs["sd_model_checkpoint"].startswith("asyncsMIX_v7")
    assert theirs["enable_pnginfo"] is True and "made_up" not in theirs
    assert "made_up" not in options(ADMIN)
    assert (model_used(alice), model_used(bob)) == ("dreamshaper_8", "asyncsMIX_v7")

    # alice posted the rest back as she read it: she follows later defaults in it
    assert set_options(ADMIN, samples_format="jpg", sd_model_checkpoint="oneFORALLAnime"
                       ).status_code == 200
    mine = options(alice)
    assert (mine["samples_format"], mine["enable_pnginfo"]) == ("jpg", False)
    assert mine["sd_model_checkpoint"].startswith("dreamshaper_8")
    assert model_used(bob) == "oneFORALLAnime"

    # what one key keeps is bounded: beyond it a bad request in A1111's shape (422, as
    # A1111 answers one), nothing changed
    too_much = set_options(bob, **{f"name_{i}": "x" * 1200 for i in range(60)})
    assert too_much.status_code == 422
    assert "at most 65536" in too_much.json()["detail"][0]["msg"]
    assert "name_0" not in options(bob) and "name_0" not in options(ADMIN)
    assert model_used(alice) == "dreamshaper_8"


# --- restarts and secrets at rest -----------------------------------------------------------

@pytest.fixture
def emulator():
    emu = Emulator()
    yield emu
    emu.close()


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_a_job_resumed_after_sigkill_is_counted_once(emulator, tmp_path):
    data = tmp_path / "data"
    env = {"API_MASTER_KEY": ADMIN}
    made = subprocess.run([str(COMMAND), "keys", "create", "--name", "resumed",
                           "--images-per-day", "4", "--data-dir", str(data)],
                          capture_output=True, text=True, timeout=30)
    key = made.stdout.strip()
    first = DaemonProcess(data, emulator.url, **env)
    try:
        emulator.configure(generation_time=1.5)
        job = httpx.post(first.url + "/arting/v1/jobs", json={"prompt": "p", "n": 2},
                         headers=bearer(key)).json()
        deadline = time.monotonic() + 10
        while httpx.get(f"{first.url}/arting/v1/jobs/{job['id']}",
                        headers=bearer(key)).json()["state"] != "running":
            assert time.monotonic() < deadline
            time.sleep(0.02)
        first.proc.send_signal(signal.SIGKILL)
        first.proc.wait(5)
    finally:
        first.stop()
    second = DaemonProcess(data, emulator.url, **env)
    try:
        deadline = time.monotonic() + 15
        while (done := httpx.get(f"{second.url}/arting/v1/jobs/{job['id']}",
                                 headers=bearer(key)).json())["state"] != "succeeded":
            assert time.monotonic() < deadline, done
            time.sleep(0.05)
        usage = httpx.get(f"{second.url}/arting/v1/usage", headers=bearer(key)).json()["data"][0]
        assert usage["today"]["images"] == 2 and usage["remaining"]["images_today"] == 2
    finally:
        second.stop()
    third = DaemonProcess(data, emulator.url, **env)     # and once more, from the journal
    try:
        usage = httpx.get(f"{third.url}/arting/v1/usage", headers=bearer(key)).json()["data"][0]
        assert usage["today"]["images"] == 2
        assert len(emulator.sandbox.requests_for("create")) == 1
    finally:
        third.stop()


def test_no_key_or_token_in_clear_on_disk_and_every_file_private(emulator, tmp_path):
    data = tmp_path / "data"
    data.mkdir(mode=0o755)
    (data / "old-file.txt").write_text("from before")
    os.chmod(data / "old-file.txt", 0o644)
    daemon = DaemonProcess(data, emulator.url, API_MASTER_KEY=ADMIN)
    try:
        made = httpx.post(daemon.url + "/arting/v1/admin/keys", headers=bearer(ADMIN),
                          json={"name": "someone"}).json()
        job = httpx.post(daemon.url + "/arting/v1/jobs", json={"prompt": "p"},
                         headers=bearer(made["key"])).json()
        deadline = time.monotonic() + 10
        while httpx.get(f"{daemon.url}/arting/v1/jobs/{job['id']}",
                        headers=bearer(made["key"])).json()["state"] != "succeeded":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        while requests_on_disk(data) < 1:       # the request's count reaches the disk
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        daemon.stop()
    secrets = [made["key"].encode(), TOKEN.encode(), ADMIN.encode()]
    files = [p for p in data.rglob("*") if p.is_file()]
    assert {p.name for p in files} >= {"jobs.sqlite3", "keys.sqlite3", "old-file.txt"}
    assert any(p.suffix == ".png" for p in files)
    for path in files:
        content = path.read_bytes()
        assert not any(s in content for s in secrets), path
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    for path in [data, *(p for p in data.rglob("*") if p.is_dir())]:
        assert stat.S_IMODE(path.stat().st_mode) == 0o700, path


def test_the_journal_names_a_token_by_a_fingerprint_keyed_per_data_directory(emulator,
                                                                             tmp_path):
    """Not a bare SHA-256, which a weak token could be guessed back from: an HMAC under
    a key made once in the data directory, private, and the same after a restart."""
    data = tmp_path / "data"

    def token_named(daemon: DaemonProcess) -> str:
        job = daemon_job(daemon)
        with sqlite3.connect(data / "jobs.sqlite3") as db:
            [(record,)] = db.execute("SELECT record FROM jobs WHERE id = ?", (job,))
        return json.loads(record)["provider_state"]["token"]

    first = DaemonProcess(data, emulator.url)
    try:
        named = token_named(first)
    finally:
        first.stop()
    key_file = data / "fingerprint.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    key = bytes.fromhex(key_file.read_text())
    assert len(key) == 32
    assert named == hmac.new(key, TOKEN.encode(), hashlib.sha256).hexdigest()[:16]
    assert named != hashlib.sha256(TOKEN.encode()).hexdigest()[:16]
    second = DaemonProcess(data, emulator.url)
    try:
        assert token_named(second) == named
    finally:
        second.stop()


def daemon_job(daemon: DaemonProcess) -> str:
    """A job run to its end on a daemon without keys: its id."""
    job = httpx.post(daemon.url + "/arting/v1/jobs", json={"prompt": "p"}).json()
    deadline = time.monotonic() + 10
    while httpx.get(f"{daemon.url}/arting/v1/jobs/{job['id']}").json()["state"] != "succeeded":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    return job["id"]


def requests_on_disk(data: Path) -> int:
    """The requests counted in the key file, as another process reads it."""
    import sqlite3
    with sqlite3.connect(f"file:{data / 'keys.sqlite3'}?mode=ro", uri=True) as db:
        return db.execute("SELECT coalesce(sum(count), 0) FROM requests").fetchone()[0]
