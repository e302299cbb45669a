"""Arting tokens at runtime: added, rotated and removed over the admin API and the command
line without a restart, kept across restarts, pasted from the browser, paced, and the
operator told (signed webhook) when one is refused or runs low."""

from __future__ import annotations

import base64
import json
import logging
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from standardwebhooks.webhooks import Webhook

from arting_daemon.providers.arting.paste import parse
from arting_daemon.state import ARTING
from clock import ManualClock
from test_replicas import cluster, emulator, redis_server  # noqa: F401 (fixtures)
from webhook_receiver import Receiver, free_port

GOOD = "0f0e0d0c-1111-4222-8333-444455556666"
OTHER = "1a2b3c4d-5555-4666-8777-888899990000"
THIRD = "2b3c4d5e-6666-4777-8888-999900001111"
SECRET = "whsec_" + base64.b64encode(b"thirty-two bytes of test secret!").decode()
UA = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0"

BASH_CURL = f"""curl 'https://api.arting.ai/api/cg/text-to-image/create' \\
  -H 'accept: application/json, text/plain, */*' \\
  -H 'authorization: {GOOD}' \\
  -H 'content-type: application/json' \\
  -b '_ga=GA1.1.123; cf_clearance=clear-abc.def-1733-0-1.2.1; __cf_bm=bm-xyz' \\
  -H 'origin: https://arting.ai' \\
  -H 'user-agent: {UA}' \\
  --data-raw '{{"prompt":"it'\\''s a cat"}}'"""

CMD_CURL = f"""curl ^"https://api.arting.ai/api/cg/text-to-image/create^" ^
  -H ^"accept: application/json, text/plain, */*^" ^
  -H ^"authorization: {GOOD}^" ^
  -H ^"cookie: cf_clearance=clear-abc.def-1733-0-1.2.1; _ga=GA1.1.123^" ^
  -H ^"user-agent: {UA}^" ^
  --data-raw ^"^{{^\\^"prompt^\\^":^\\^"cat^\\^"^}}^\""""

HEADERS_BLOCK = f""":authority: api.arting.ai
:method: POST
:path: /api/cg/text-to-image/create
accept: application/json, text/plain, */*
authorization: {GOOD}
cookie: cf_clearance=clear-abc.def-1733-0-1.2.1; _ga=GA1.1.123
origin: https://arting.ai
user-agent: {UA}"""

FIREFOX_HEADERS = f"""POST /api/cg/text-to-image/create HTTP/2
Host: api.arting.ai
User-Agent: {UA}
Accept: application/json, text/plain, */*
Authorization: {GOOD}
Origin: https://arting.ai
Cookie: _ga=GA1.1.123; cf_clearance=clear-abc.def-1733-0-1.2.1"""


def admin(daemon, method: str, path: str = "", **kw) -> httpx.Response:
    return httpx.request(method, f"{daemon.url}/arting/v1/admin/tokens{path}", timeout=30, **kw)


def listed(daemon) -> dict[str, dict]:
    return {t["label"]: t for t in admin(daemon, "GET").json()["tokens"]}


def creates_with(daemon, token: str) -> list:
    return [r for r in daemon.sandbox.requests_for("create")
            if r.header("Authorization") == token]


def wait_for(predicate, timeout: float = 10.0):
    import time
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)
    return value


# --- what is pasted ----------------------------------------------------------------------

@pytest.mark.parametrize("text", [BASH_CURL, CMD_CURL, HEADERS_BLOCK, FIREFOX_HEADERS],
                         ids=["curl-bash", "curl-cmd", "headers-chrome", "headers-firefox"])
def test_a_pasted_request_yields_its_token_cloudflare_cookies_and_user_agent(text):
    [found] = parse(text)
    assert found.token == GOOD and found.user_agent == UA
    assert found.cookies["cf_clearance"] == "clear-abc.def-1733-0-1.2.1"
    assert "_ga" not in found.cookies             # the site's own cookies are not ours


def test_bare_tokens_one_a_line_and_an_authorization_value():
    assert [p.token for p in parse(f"{GOOD}\n\n  {OTHER}\n")] == [GOOD, OTHER]
    assert [p.token for p in parse(f"Authorization: {GOOD}")] == [GOOD]


# --- the admin API -----------------------------------------------------------------------

def test_a_token_added_over_the_api_is_used_at_once_and_after_a_restart(make_daemon, tmp_path):
    data = tmp_path / "kept"
    daemon = make_daemon(data_dir=data, sandbox_options={"auth_mode": "uuid"})
    added = admin(daemon, "POST", json={"paste": BASH_CURL, "label": "alice"})
    assert added.status_code == 201, added.text
    assert added.json()["added"] == ["alice"]
    view = listed(daemon)["alice"]
    assert view["source"] == "runtime" and view["cookies"] == ["__cf_bm", "cf_clearance"]
    assert daemon.run_job()["state"] == "succeeded"
    [create] = creates_with(daemon, GOOD)               # the anonymous identity stood aside
    assert "cf_clearance=clear-abc" in create.header("Cookie")
    assert create.header("User-Agent") == UA
    again = admin(daemon, "POST", json={"token": GOOD}).json()
    assert again["added"] == [] and again["duplicates"] == ["alice"]
    path = data / "tokens.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    daemon.stop()

    restarted = make_daemon(data_dir=data, sandbox_options={"auth_mode": "uuid"})
    assert listed(restarted)["alice"]["source"] == "runtime"
    assert restarted.run_job()["state"] == "succeeded"
    assert len(creates_with(restarted, GOOD)) == 1
    again = admin(restarted, "POST", json={"paste": HEADERS_BLOCK}).json()
    assert again["duplicates"] == ["alice"]             # the fingerprint's key was kept too


def test_with_secret_key_the_file_holds_no_token_byte(make_daemon, tmp_path):
    daemon = make_daemon(data_dir=tmp_path / "sealed", secret_key="a long operator secret")
    assert admin(daemon, "POST", json={"paste": HEADERS_BLOCK}).status_code == 201
    kept = (tmp_path / "sealed" / "tokens.json").read_text()
    assert GOOD not in kept and "clear-abc" not in kept and "sealed" in json.loads(kept)
    daemon.stop()
    other = make_daemon(data_dir=tmp_path / "sealed", secret_key="a long operator secret")
    assert "added-1" in listed(other)


def test_rotation_keeps_the_label_and_removal_lets_the_running_job_finish(make_daemon):
    daemon = make_daemon(sandbox_options={"generation_time": 5.0}, clock=ManualClock())
    admin(daemon, "POST", json={"tokens": [{"token": GOOD, "label": "a"},
                                           {"token": OTHER, "label": "b"}]})
    job = httpx.post(f"{daemon.url}/arting/v1/jobs", json={"prompt": "p"}).json()
    wait_for(lambda: daemon.sandbox.requests_for("create"))
    [first] = daemon.sandbox.requests_for("create")
    held = {GOOD: "a", OTHER: "b"}[first.header("Authorization")]
    removed = admin(daemon, "DELETE", f"/{held}")
    assert removed.status_code == 200, removed.text
    assert {t["label"]: t["retired"] for t in removed.json()["tokens"]}[held] is True
    for _ in range(80):                     # the job polls with the removed token, and ends
        daemon.advance(0.1)
        if httpx.get(f"{daemon.url}/arting/v1/jobs/{job['id']}").json()["state"] \
                == "succeeded":
            break
    assert daemon.wait_job(job["id"])["state"] == "succeeded"
    wait_for(lambda: held not in listed(daemon))        # gone once its job finished
    kept = "b" if held == "a" else "a"
    rotated = admin(daemon, "PATCH", f"/{kept}", json={"token": THIRD})
    assert rotated.status_code == 200, rotated.text
    wait_for(lambda: [t for t in listed(daemon).values() if t["label"] == kept
                      and not t["retired"]])
    second = httpx.post(f"{daemon.url}/arting/v1/jobs", json={"prompt": "q"}).json()
    daemon.advance(6)
    assert daemon.wait_job(second["id"])["state"] == "succeeded"
    last = daemon.sandbox.requests_for("create")[-1]
    assert last.header("Authorization") == THIRD        # the new token, under the old label
    metrics = httpx.get(f"{daemon.url}/metrics").text
    assert metrics.count(f'arting_token_in_flight{{token="{kept}"}}') == 1
    assert [t["label"] for t in admin(daemon, "GET", "/export").json()["tokens"]] == [kept]
    assert admin(daemon, "DELETE", "/nobody").status_code == 404


def test_configuration_tokens_stay_and_are_shown_as_such(make_daemon):
    daemon = make_daemon(auth_tokens=[GOOD])
    assert listed(daemon)["token-1"]["source"] == "configuration"
    refused = admin(daemon, "DELETE", "/token-1")
    assert refused.status_code == 400 and "auth_tokens" in refused.json()["error"]["message"]
    exported = admin(daemon, "GET", "/export").json()["tokens"]
    assert exported == [{"label": "token-1", "fingerprint": None, "source": "configuration",
                         "daily_limit": None, "min_interval": None}]


def test_no_token_byte_in_logs_job_records_metrics_status_or_exports(make_daemon, tmp_path,
                                                                      caplog):
    caplog.set_level(logging.DEBUG)
    data = tmp_path / "quiet"
    daemon = make_daemon(data_dir=data)
    admin(daemon, "POST", json={"paste": BASH_CURL, "label": "alice"})
    job = daemon.run_job()
    seen = "".join([
        caplog.text, json.dumps(job), httpx.get(f"{daemon.url}/metrics").text,
        httpx.get(f"{daemon.url}/arting/v1/status").text, admin(daemon, "GET").text,
        admin(daemon, "GET", "/export").text,
        (data / "jobs.sqlite3").read_bytes().decode("latin-1")])
    assert "alice" in seen
    for secret in (GOOD, "clear-abc", "bm-xyz"):
        assert secret not in seen


# --- pacing ------------------------------------------------------------------------------

def test_a_token_at_its_daily_limit_is_skipped_until_the_next_utc_day(make_daemon):
    clock = ManualClock()
    daemon = make_daemon(token_daily_limit=2, clock=clock)
    admin(daemon, "POST", json={"token": GOOD, "label": "capped"})
    assert daemon.run_job()["state"] == "succeeded"
    assert daemon.run_job(n=1)["state"] == "succeeded"
    refused = httpx.post(f"{daemon.url}/arting/v1/jobs", json={"prompt": "p"})
    assert refused.status_code == 429, refused.text         # refused before it is queued
    assert "daily_limit" in refused.json()["error"]["message"]
    view = listed(daemon)["capped"]
    midnight = (int(clock.time()) // 86400 + 1) * 86400
    assert view["images_today"] == 2 and view["paced_until"] == midnight
    assert len(creates_with(daemon, GOOD)) == 2
    daemon.advance(midnight - clock.time() + 1)
    assert daemon.run_job()["state"] == "succeeded"
    assert len(creates_with(daemon, GOOD)) == 3


def test_min_interval_is_set_per_token(make_daemon):
    clock = ManualClock()
    daemon = make_daemon(clock=clock)
    admin(daemon, "POST", json={"token": GOOD, "label": "slow", "min_interval": 60})
    assert daemon.run_job()["state"] == "succeeded"
    refused = httpx.post(f"{daemon.url}/arting/v1/jobs", json={"prompt": "p"})
    assert refused.status_code == 429 and "min_interval" in refused.json()["error"]["message"]
    daemon.advance(61)
    assert daemon.run_job()["state"] == "succeeded"
    paced = admin(daemon, "PATCH", "/slow", json={"min_interval": 0})   # at runtime
    assert paced.status_code == 200, paced.text
    assert listed(daemon)["slow"]["min_interval"] == 0
    assert daemon.run_job()["state"] == "succeeded"            # no pause any more


# --- operator events ---------------------------------------------------------------------

@pytest.fixture
def receiver():
    made = Receiver()
    yield made
    made.close()


def test_the_operator_hears_of_a_refused_token_and_a_low_balance(make_daemon, receiver):
    daemon = make_daemon(operator_webhook_url=receiver.url + "/ops", webhook_secret=SECRET,
                         webhook_allow_hosts=["127.0.0.1"], low_balance=10,
                         sandbox_options={"balance_start": 10})
    admin(daemon, "POST", json={"tokens": [{"token": GOOD, "label": "a"},
                                           {"token": OTHER, "label": "b"}]})
    daemon.do(daemon.sandbox.add_fault, "invalid_token", route="create", count=1)
    assert daemon.run_job()["state"] == "succeeded"        # refused on one, made on the other
    messages = [Webhook(SECRET).verify(r.body, r.headers) for r in receiver.wait(2)]
    kinds = {m["type"]: m["data"] for m in messages}
    assert set(kinds) == {"operator.token_refused", "operator.low_balance"}
    assert kinds["operator.token_refused"]["token"] in ("a", "b")
    assert "below low_balance" in kinds["operator.low_balance"]["message"]
    status = httpx.get(f"{daemon.url}/arting/v1/status").json()
    assert {e["event"] for e in status["operator_events"]} == {"token_refused", "low_balance"}
    metrics = httpx.get(f"{daemon.url}/metrics").text
    assert 'arting_operator_events_total{event="token_refused"} 1.0' in metrics
    assert GOOD not in json.dumps(messages) and OTHER not in json.dumps(messages)



def metric(daemon, line: str) -> float:
    text = httpx.get(f"{daemon.url}/metrics").text
    return next((float(m.rsplit(" ", 1)[1]) for m in text.splitlines()
                 if m.startswith(line + " ")), 0.0)


def test_an_operator_event_raised_while_the_receiver_is_down_arrives_after_a_restart(
        make_daemon, tmp_path):
    port = free_port()                               # the receiver is down
    data = tmp_path / "journaled"
    settings = dict(data_dir=data, operator_webhook_url=f"http://127.0.0.1:{port}/ops",
                    webhook_secret=SECRET, webhook_allow_hosts=["127.0.0.1"])
    daemon = make_daemon(**settings)
    admin(daemon, "POST", json={"tokens": [{"token": GOOD, "label": "a"},
                                           {"token": OTHER, "label": "b"}]})
    daemon.do(daemon.sandbox.add_fault, "invalid_token", route="create", count=1)
    assert daemon.run_job()["state"] == "succeeded"
    [event] = httpx.get(f"{daemon.url}/arting/v1/status").json()["operator_events"]
    assert event["event"] == "token_refused"
    wait_for(lambda: metric(daemon, 'arting_webhook_deliveries_total{result="retry"}') >= 1,
             timeout=30)                             # attempted, refused, kept for later
    daemon.stop()

    restarted = make_daemon(**settings)
    receiver = Receiver(503, port=port)              # up, and failing once more
    try:
        wait_for(lambda: metric(restarted, 'arting_webhook_deliveries_total'
                                           '{result="delivered"}') == 1, timeout=90)
        assert metric(restarted, "arting_webhooks_pending") == 0      # nothing left to send
        got = [r for r in receiver.received if r.path == "/ops"]
        assert [r.headers["webhook-id"] for r in got] == [event["id"]] * 2
        for r in got:                                # each attempt signed, the same message
            sent = Webhook(SECRET).verify(r.body, r.headers)
            assert sent["type"] == "operator.token_refused" and sent["data"] == event
    finally:
        receiver.close()

def test_a_job_is_refused_before_it_is_queued_when_every_token_was_refused(make_daemon):
    daemon = make_daemon(sandbox_options={"auth_mode": "uuid"})
    admin(daemon, "POST", json={"token": "not-a-uuid-token", "label": "dead"})
    assert daemon.run_job()["state"] == "failed"
    refused = httpx.post(f"{daemon.url}/arting/v1/jobs", json={"prompt": "p"})
    assert refused.status_code in (401, 502), refused.text
    assert "POST /arting/v1/admin/tokens" in refused.json()["error"]["message"]
    status = httpx.get(f"{daemon.url}/arting/v1/status").json()
    assert {e["event"] for e in status["operator_events"]} >= {"token_refused",
                                                                 "pool_exhausted"}


# --- the command line --------------------------------------------------------------------

def cli(data: Path, *args: str, stdin: str = "", **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(Path(sys.executable).with_name("arting-daemon")), "tokens",
                           *args, "--data-dir", str(data)], input=stdin, capture_output=True,
                          text=True, timeout=60, env={"PATH": "/usr/bin:/bin", **env})


def test_the_command_line_adds_lists_exports_and_removes(make_daemon, tmp_path):
    data = tmp_path / "cli"
    made = cli(data, "add", "--label", "ops", "--daily-limit", "50", stdin=CMD_CURL)
    assert made.returncode == 0, made.stderr
    assert made.stdout.startswith("ops  ") and GOOD not in made.stdout + made.stderr
    bulk = cli(data, "import", stdin=f"{OTHER}\n{GOOD}\n")
    assert bulk.returncode == 0 and "added-1" in bulk.stdout and "already there" in bulk.stderr
    listing = json.loads(cli(data, "list", "--json").stdout)
    assert [t["label"] for t in listing] == ["ops", "added-1"]
    exported = cli(data, "export").stdout
    assert GOOD not in exported and OTHER not in exported and "fingerprint" in exported
    assert os.stat(data / "tokens.json").st_mode & 0o077 == 0

    daemon = make_daemon(data_dir=data)                 # a running daemon follows the file
    assert {"ops", "added-1"} <= set(listed(daemon))
    gone = cli(data, "remove", "added-1")
    assert gone.returncode == 0, gone.stderr
    wait_for(lambda: "added-1" not in listed(daemon))
    assert cli(data, "remove", "added-1").returncode == 1
    assert daemon.app[ARTING].pool.live()[0].label == "ops"



def waiting_on(lock: Path) -> int:
    """How many processes or threads wait for the flock on ``lock`` (``/proc/locks``)."""
    inode = f":{lock.stat().st_ino} "
    return sum(1 for line in Path("/proc/locks").read_text().splitlines()
               if "->" in line and "FLOCK" in line and inode in line + " ")


def test_concurrent_adds_from_the_command_line_and_the_api_all_survive(make_daemon, tmp_path):
    import fcntl
    import threading
    import uuid
    data = tmp_path / "contended"
    daemon = make_daemon(data_dir=data)
    assert cli(data, "add", stdin=GOOD).returncode == 0       # the file and its lock exist
    wait_for(lambda: "added-1" in listed(daemon))
    lock = data / "tokens.json.lock"
    batches = [[str(uuid.uuid4()) for _ in range(3)] for _ in range(6)]
    posted = [str(uuid.uuid4()) for _ in range(4)]
    answers: list[httpx.Response] = []
    procs: list[subprocess.Popen] = []
    threads = [threading.Thread(target=lambda t=t: answers.append(
        admin(daemon, "POST", json={"token": t}))) for t in posted]
    held = os.open(lock, os.O_RDWR)
    try:
        fcntl.flock(held, fcntl.LOCK_EX)        # every writer queues up behind this one
        for n, batch in enumerate(batches):
            (listing := tmp_path / f"batch-{n}.txt").write_text("\n".join(batch))
            procs.append(subprocess.Popen(
                [str(Path(sys.executable).with_name("arting-daemon")), "tokens", "import",
                 "--from", str(listing), "--data-dir", str(data)], stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                env={"PATH": "/usr/bin:/bin"}))
        for thread in threads:
            thread.start()
        wait_for(lambda: waiting_on(lock) == len(batches) + len(posted), timeout=60)
    finally:
        os.close(held)                          # and they all go at once
        outs = [p.communicate(timeout=60) for p in procs]
        for thread in threads:
            thread.join(60)
    assert [p.returncode for p in procs] == [0] * len(procs), outs
    assert [a.status_code for a in answers] == [201] * len(posted)
    everyone = {GOOD, *posted, *(t for batch in batches for t in batch)}
    doc = json.loads((data / "tokens.json").read_text())        # whole, not torn
    assert {t["secret"] for t in doc["tokens"]} == everyone
    labels = [t["label"] for t in doc["tokens"]]
    assert len(set(labels)) == len(everyone) == 1 + 18 + 4     # renumbered, none replaced
    assert not [p.name for p in data.iterdir() if p.name.endswith(".tmp")]
    wait_for(lambda: set(labels) <= set(listed(daemon)))       # the daemon follows the file
    assert {t.secret for t in daemon.app[ARTING].pool.live()} >= everyone

# --- replicas ----------------------------------------------------------------------------

@pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server")
def test_a_token_added_on_one_replica_is_used_by_another(cluster):
    from test_replicas import ADMIN, bearer, finished, submit, until
    a = cluster.start(ARTING_SECRET_KEY="shared by the replicas")
    b = cluster.start(ARTING_SECRET_KEY="shared by the replicas")
    bare = cluster.start()                                 # no secret_key: cannot add any
    refused = httpx.post(f"{bare.url}/arting/v1/admin/tokens", headers=bearer(ADMIN),
                         json={"token": OTHER})
    assert refused.status_code == 400 and "secret_key" in refused.json()["error"]["message"]
    added = httpx.post(f"{a.url}/arting/v1/admin/tokens", headers=bearer(ADMIN),
                       json={"paste": BASH_CURL, "label": "shared"})
    assert added.status_code == 201, added.text
    until(lambda: "shared" in {t["label"] for t in httpx.get(
        f"{b.url}/arting/v1/admin/tokens", headers=bearer(ADMIN)).json()["tokens"]}, timeout=5)
    # b's configured token is refused once: b goes on with the token a added
    cluster.emulator.sandbox.add_fault("invalid_token", route="create", count=1)
    job = submit(b)
    assert finished(b, job.json()["id"])["state"] == "succeeded"
    assert [r.header("Authorization") for r in cluster.emulator.sandbox.requests_for(
        "create")][-1] == GOOD
    import redis
    stored = redis.Redis.from_url(cluster.redis.url).hgetall("arting:tokens:vault")
    assert stored and GOOD.encode() not in b"".join(stored.values())
    removed = httpx.delete(f"{b.url}/arting/v1/admin/tokens/shared", headers=bearer(ADMIN))
    assert removed.status_code == 200
    until(lambda: "shared" not in {t["label"] for t in httpx.get(
        f"{a.url}/arting/v1/admin/tokens", headers=bearer(ADMIN)).json()["tokens"]}, timeout=5)
    # the command line, on the replicas' Redis, reaches a running replica too
    made = cli(cluster.data, "add", "--label", "cli", stdin=OTHER,
               ARTING_REDIS_URL=cluster.redis.url, ARTING_SECRET_KEY="shared by the replicas")
    assert made.returncode == 0, made.stderr
    until(lambda: "cli" in {t["label"] for t in httpx.get(
        f"{a.url}/arting/v1/admin/tokens", headers=bearer(ADMIN)).json()["tokens"]}, timeout=5)


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server")
def test_concurrent_adds_on_the_replicas_redis_all_survive(cluster, tmp_path):
    import threading
    import uuid

    import redis
    from test_replicas import ADMIN, bearer
    key = {"ARTING_SECRET_KEY": "shared by the replicas"}
    replicas = [cluster.start(**key), cluster.start(**key)]
    batches = [[str(uuid.uuid4()) for _ in range(3)] for _ in range(4)]
    posted = [str(uuid.uuid4()) for _ in range(4)]
    answers: list[httpx.Response] = []
    threads = [threading.Thread(target=lambda n=n, t=t: answers.append(httpx.post(
        f"{replicas[n % 2].url}/arting/v1/admin/tokens", headers=bearer(ADMIN),
        json={"token": t}, timeout=30))) for n, t in enumerate(posted)]
    procs = []
    try:
        for n, batch in enumerate(batches):
            (listing := tmp_path / f"batch-{n}.txt").write_text("\n".join(batch))
            procs.append(subprocess.Popen(
                [str(Path(sys.executable).with_name("arting-daemon")), "tokens", "import",
                 "--from", str(listing), "--data-dir", str(cluster.data)],
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                text=True, env={"PATH": "/usr/bin:/bin", "ARTING_REDIS_URL": cluster.redis.url,
                                **key}))
        for thread in threads:
            thread.start()
    finally:
        outs = [p.communicate(timeout=60) for p in procs]
        for thread in threads:
            thread.join(60)
    assert [p.returncode for p in procs] == [0] * len(procs), outs
    assert [a.status_code for a in answers] == [201] * len(posted)
    labels = redis.Redis.from_url(cluster.redis.url).hkeys("arting:tokens:vault")
    assert len(set(labels)) == len(posted) + 3 * len(batches)     # renumbered, none replaced

@pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server")
def test_a_daily_limit_holds_across_replicas(cluster):
    from test_replicas import ADMIN, bearer, finished, submit, until
    a = cluster.start(ARTING_TOKEN_DAILY_LIMIT="1")
    b = cluster.start(ARTING_TOKEN_DAILY_LIMIT="1")
    assert finished(a, submit(a).json()["id"])["state"] == "succeeded"
    until(lambda: httpx.get(f"{b.url}/arting/v1/admin/tokens", headers=bearer(ADMIN))
          .json()["tokens"][0]["images_today"] == 1, timeout=5)
    refused = submit(b)
    assert refused.status_code == 429 and "daily_limit" in refused.json()["error"]["message"]
    assert len(cluster.emulator.sandbox.requests_for("create")) == 1
