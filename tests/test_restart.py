"""Restart safety, with the real daemon process: ``kill -9`` mid-job and SIGTERM.

The Arting emulator runs in this test process (so it outlives the daemon and the test
can look into it); the daemon is ``python -m arting_daemon`` pointed at it, and is
killed and started again on the same data directory.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import sqlite3
import sys
import time
from pathlib import Path

import httpx
import pytest
from standardwebhooks import Webhook

from processes import TOKEN, DaemonProcess, Emulator
from webhook_receiver import Receiver

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")


@pytest.fixture
def emulator():
    emu = Emulator()
    yield emu
    emu.close()


@pytest.fixture
def daemons(tmp_path):
    """Start daemon processes on one data directory; every one is killed at the end."""
    started: list[DaemonProcess] = []
    data = tmp_path / "data"

    def start(upstream: str, **env: str) -> DaemonProcess:
        started.append(DaemonProcess(data, upstream, **env))
        return started[-1]
    start.data = data
    yield start
    for daemon in started:
        daemon.stop()


def submit(daemon: DaemonProcess, prompt: str) -> str:
    resp = httpx.post(daemon.url + "/arting/v1/jobs", json={"prompt": prompt})
    assert resp.status_code == 202, resp.text
    return resp.json()["id"]


def journaled(data_dir: Path, job_id: str) -> dict | None:
    """The job's record as it is on disk (what a restart will find)."""
    db = sqlite3.connect(f"file:{data_dir / 'jobs.sqlite3'}?mode=ro", uri=True)
    try:
        row = db.execute("SELECT record FROM jobs WHERE id = ?", (job_id,)).fetchone()
    finally:
        db.close()
    return json.loads(row[0]) if row else None


def wait_journaled(data_dir: Path, job_id: str, state: str, timeout: float = 10) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rec = journaled(data_dir, job_id)
        if rec and rec["state"] == state:
            return rec
        time.sleep(0.02)
    raise AssertionError(f"job {job_id} never reached {state} on disk: {rec}")


def wait_done(daemon: DaemonProcess, job_id: str, timeout: float = 10) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = httpx.get(f"{daemon.url}/arting/v1/jobs/{job_id}").json()
        if job["state"] in ("succeeded", "failed", "cancelled"):
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} still {job['state']}")


def png(daemon: DaemonProcess, digest: str) -> bytes:
    resp = httpx.get(f"{daemon.url}/arting/v1/images/{digest}.png")
    assert resp.status_code == 200
    assert resp.content.startswith(b"\x89PNG")
    return resp.content


def test_kill_9_mid_job_then_restart_gets_the_image(emulator, daemons):
    first = daemons(emulator.url)
    finished = wait_done(first, submit(first, "finished before the crash"))
    assert finished["state"] == "succeeded"

    emulator.configure(generation_time=1.5)
    job_id = submit(first, "running at the crash")
    rec = wait_journaled(daemons.data, job_id, "running")
    assert rec["provider_state"]["request_id"] in emulator.sandbox.jobs
    first.proc.send_signal(signal.SIGKILL)
    assert first.proc.wait(5) == -signal.SIGKILL

    second = daemons(emulator.url)
    job = wait_done(second, job_id)
    assert job["state"] == "succeeded", job
    png(second, job["images"][0]["hash"])
    png(second, finished["images"][0]["hash"])                 # served by id after restart
    assert len(emulator.sandbox.requests_for("create")) == 2   # resumed, never sent again
    assert emulator.sandbox.jobs[rec["provider_state"]["request_id"]].state == "done"
    log = second.log.read_text()
    assert "resumed 1 unfinished job" in log
    assert f"[job-{job_id[:12]}] arting_daemon.engine.runner: job {job_id} resumed running" in log


def test_kill_9_while_submitting_never_sends_the_job_twice(emulator, daemons):
    """The create may or may not have reached Arting: sending it again could make a
    second (paid) job, so after the restart the job fails, saying to submit it again."""
    emulator.sandbox.add_fault("slow", route="create", delay=3.0, count=1)
    first = daemons(emulator.url)
    job_id = submit(first, "in the air at the crash")
    wait_journaled(daemons.data, job_id, "submitting")
    first.proc.send_signal(signal.SIGKILL)
    first.proc.wait(5)

    second = daemons(emulator.url)
    job = wait_done(second, job_id)
    assert job["state"] == "failed" and "submit it again" in job["error"]["message"], job
    time.sleep(0.3)
    assert len(emulator.sandbox.requests_for("create")) == 1  # the one still in the air


def test_sigterm_finishes_jobs_within_the_grace_and_journals_the_rest(emulator, daemons):
    first = daemons(emulator.url, ARTING_SHUTDOWN_GRACE="1.5")
    emulator.configure(generation_time=0.8)
    short = submit(first, "finishes within the grace")
    wait_journaled(daemons.data, short, "running")
    emulator.configure(generation_time=60)
    long = submit(first, "outlasts the grace")
    long_rec = wait_journaled(daemons.data, long, "running")

    sent = time.monotonic()
    first.proc.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    assert first.proc.poll() is None                           # still draining ...
    with pytest.raises(httpx.ConnectError):                    # ... and taking nothing new
        httpx.post(first.url + "/arting/v1/jobs", json={"prompt": "too late"})
    assert first.proc.wait(10) == 0
    assert time.monotonic() - sent < 1.5 + 2.5

    assert journaled(daemons.data, short)["state"] == "succeeded"
    assert journaled(daemons.data, long)["state"] == "running"

    emulator.configure(complete_after_polls=1)                 # Arting finishes meanwhile
    second = daemons(emulator.url)
    job = wait_done(second, long)
    assert job["state"] == "succeeded", job
    png(second, job["images"][0]["hash"])
    assert len(emulator.sandbox.requests_for("create")) == 2
    assert emulator.sandbox.jobs[long_rec["provider_state"]["request_id"]].polls >= 1
    assert TOKEN not in first.log.read_text() + second.log.read_text()


def test_kill_9_mid_upscale_then_restart_follows_the_same_task(emulator, daemons):
    first = daemons(emulator.url)
    picture = wait_done(first, submit(first, "to upscale"))["images"][0]
    emulator.configure(generation_time=1.5)
    resp = httpx.post(first.url + "/arting/v1/jobs",
                      json={"kind": "upscale", "images": [picture["hash"]], "scale": 2})
    job_id = resp.json()["id"]
    rec = wait_journaled(daemons.data, job_id, "running")
    task, = rec["provider_state"]["tasks"]
    assert rec["generation"]["kind"] == "upscale" and task in emulator.sandbox.tasks
    first.proc.send_signal(signal.SIGKILL)
    first.proc.wait(5)

    second = daemons(emulator.url)
    job = wait_done(second, job_id)
    assert job["state"] == "succeeded" and job["kind"] == "upscale", job
    image, = job["images"]
    assert (image["width"], image["height"]) == (picture["width"] * 2, picture["height"] * 2)
    png(second, image["hash"])
    assert len(emulator.sandbox.requests_for("enhance_create")) == 1  # followed, not resent
    assert len(emulator.sandbox.requests_for("oss_put")) == 1
    assert emulator.sandbox.tasks[task].state == "done"


def test_the_result_cache_survives_a_kill_9(emulator, daemons):
    first = daemons(emulator.url)
    resp = httpx.post(first.url + "/arting/v1/jobs", json={"prompt": "kept", "seed": 11})
    made = wait_done(first, resp.json()["id"])
    wait_journaled(daemons.data, made["id"], "succeeded")
    first.proc.send_signal(signal.SIGKILL)
    first.proc.wait(5)

    second = daemons(emulator.url)
    resp = httpx.post(second.url + "/arting/v1/jobs", json={"prompt": "kept", "seed": 11})
    hit = resp.json()
    assert resp.headers["X-Arting-Cache"] == "hit" and hit["cached_from"] == made["id"]
    assert [i["hash"] for i in hit["images"]] == [i["hash"] for i in made["images"]]
    png(second, hit["images"][0]["hash"])
    assert len(emulator.sandbox.requests_for("create")) == 1


def test_a_webhook_retry_survives_a_kill_9_with_the_same_id(emulator, daemons, tmp_path):
    """The first attempt fails (503, Retry-After 3); the daemon is killed before the
    retry; the next daemon delivers it, with the same webhook-id, once."""
    secret = "whsec_" + base64.b64encode(b"thirty-two bytes of test secret!").decode()
    receiver = Receiver((503, {"Retry-After": "3"}))
    try:
        first = daemons(emulator.url, ARTING_WEBHOOK_URLS=receiver.url + "/hook",
                        ARTING_WEBHOOK_SECRET=secret, ARTING_WEBHOOK_ALLOW_HOSTS="127.0.0.1")
        job = wait_done(first, submit(first, "announced"))
        receiver.wait(1)
        deadline = time.monotonic() + 10
        while (pending := webhook_rows(daemons.data)) != [("pending", 1)]:
            assert time.monotonic() < deadline, pending
            time.sleep(0.02)
        first.proc.send_signal(signal.SIGKILL)
        first.proc.wait(5)
        assert len(receiver.received) == 1

        second = daemons(emulator.url, ARTING_WEBHOOK_URLS=receiver.url + "/hook",
                         ARTING_WEBHOOK_SECRET=secret, ARTING_WEBHOOK_ALLOW_HOSTS="127.0.0.1")
        attempts = receiver.wait(2)
        assert attempts[0].headers["webhook-id"] == attempts[1].headers["webhook-id"]
        assert attempts[1].at - attempts[0].at >= 2.5              # the Retry-After held
        message = Webhook(secret).verify(attempts[1].body, attempts[1].headers)
        assert message["data"]["id"] == job["id"]
        deadline = time.monotonic() + 10
        while webhook_rows(daemons.data) != [("delivered", 2)]:
            assert time.monotonic() < deadline, webhook_rows(daemons.data)
            time.sleep(0.05)
        shown = httpx.get(f"{second.url}/arting/v1/jobs/{job['id']}").json()["webhooks"]
        assert [(h["state"], h["attempts"]) for h in shown] == [("delivered", 2)]
        time.sleep(1)
        assert len(receiver.received) == 2                         # never a third
        assert "1 delivery(ies) go on from the journal" in second.log.read_text()
        assert secret not in first.log.read_text() + second.log.read_text()
    finally:
        receiver.close()


def webhook_rows(data_dir: Path) -> list[tuple[str, int]]:
    db = sqlite3.connect(f"file:{data_dir / 'jobs.sqlite3'}?mode=ro", uri=True)
    try:
        return db.execute("SELECT state, attempts FROM webhooks").fetchall()
    finally:
        db.close()


def test_a_store_grown_without_a_cap_is_trimmed_when_one_is_set(emulator, daemons):
    first = daemons(emulator.url)
    made = []
    for i in range(5):
        resp = httpx.post(first.url + "/arting/v1/jobs",
                          json={"prompt": "kept", "seed": i, "size": "256x256"})
        made.append(wait_done(first, resp.json()["id"])["images"][0]["hash"])
    first.stop()
    for i, digest in enumerate(made):          # stored an hour ago, in this order
        then = time.time() - 3600 + i
        os.utime(daemons.data / "images" / digest[:2] / f"{digest}.png", (then, then))

    second = daemons(emulator.url, ARTING_STORE_MAX_IMAGES="3")
    deadline = time.monotonic() + 10
    while len(left := {p.stem for p in (daemons.data / "images").rglob("*.png")}) >= 3:
        assert time.monotonic() < deadline, left
        time.sleep(0.05)
    assert left == set(made[-2:])              # below the cap, the stalest gone
    assert "index reconciled with the folder (5 image(s) added" in second.log.read_text()
