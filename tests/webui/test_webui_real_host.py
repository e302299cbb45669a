"""Optional: the script inside a real SD-WebUI (A1111 or Forge), over its HTTP API, and
that WebUI as the daemon's ``a1111`` provider.

Runs only when ``A1111_URL`` points at a running WebUI on this machine, started with
``--api`` (UI mode, so the Arting settings exist) and with the extension installed
(``python3 install.py --webui <webui folder>``). The test starts its own daemon + sandbox
and points the WebUI's "Arting daemon URL" setting at it for the duration. The provider
tests need only ``--api`` and a checkpoint; ``A1111_AUTH=user:password`` if it was started
with ``--api-auth``.
"""

from __future__ import annotations

import json
import os
import time

import httpx
import pytest

A1111_URL = os.environ.get("A1111_URL", "").rstrip("/")
pytestmark = pytest.mark.skipif(not A1111_URL, reason="set A1111_URL to a running SD-WebUI "
                                                      "(--api) with the extension installed")
TITLE = "Arting (remote)"
#: ui() values in order: model, NSFW, then LoRA id and weight for each of three slots
SCRIPT_ARGS = ["asyncsMIX_v7", False, "add_detail", 0.5, "None", 0.7, "None", 0.7]


@pytest.fixture
def webui(daemon):
    api = httpx.Client(base_url=A1111_URL, timeout=300)
    scripts = api.get("/sdapi/v1/scripts").json()
    assert TITLE.lower() in [s.lower() for s in scripts["txt2img"]], scripts
    options = api.get("/sdapi/v1/options").json()
    if "arting_daemon_url" not in options:
        pytest.skip("the WebUI has no Arting settings (started with --nowebui?)")
    api.post("/sdapi/v1/options", json={"arting_daemon_url": daemon.url}).raise_for_status()
    try:
        yield api
    finally:
        api.post("/sdapi/v1/options",
                 json={"arting_daemon_url": options["arting_daemon_url"]})
        api.close()


def test_txt2img_through_the_webui_api(webui, daemon):
    resp = webui.post("/sdapi/v1/txt2img", json={
        "prompt": "a lighthouse", "negative_prompt": "blurry", "seed": 77, "n_iter": 2,
        "batch_size": 1, "steps": 8, "width": 512, "height": 512,
        "script_name": TITLE, "script_args": SCRIPT_ARGS})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    info = json.loads(body["info"])
    assert len(body["images"]) == 2 and info["all_seeds"] == [77, 78]
    assert "Model: asyncsMIX_v7" in info["infotexts"][0]
    assert "Negative prompt: blurry" in info["infotexts"][0]
    creates = daemon.sandbox.requests_for("create")
    assert [(c.body["model_id"], c.body["seed"], c.body["lora_ids"]) for c in creates] == [
        ("asyncsMIX_v7", 77, "add_detail"), ("asyncsMIX_v7", 78, "add_detail")]


# --- the WebUI as the daemon's a1111 provider ------------------------------------------------

@pytest.fixture
def webui_provider(make_daemon):
    """A daemon whose provider ``webui`` is the real WebUI; returns (daemon, a model of it)."""
    provider = {"name": "webui", "kind": "a1111", "base_url": A1111_URL}
    user, _, password = os.environ.get("A1111_AUTH", "").partition(":")
    if user:
        provider |= {"username": user, "password": password}
    daemon = make_daemon(providers=[provider], run_timeout=900, job_timeout=1200)
    deadline = time.monotonic() + 60
    while not (models := [m["id"] for m in httpx.get(daemon.v1 + "/models").json()["data"]
                          if m["owned_by"] == "webui"]):
        status = httpx.get(daemon.url + "/arting/v1/status").json()["providers"][1]
        assert time.monotonic() < deadline, f"the WebUI listed no checkpoint: {status}"
        time.sleep(0.5)
    return daemon, models[0]


def test_the_a1111_provider_generates_on_the_real_webui(webui_provider):
    daemon, model = webui_provider
    job = httpx.post(daemon.url + "/arting/v1/jobs", json={
        "prompt": "a lighthouse", "model": model, "seed": 11, "steps": 4,
        "width": 256, "height": 256}).json()
    done = daemon.wait_job(job["id"], timeout=900)
    assert done["state"] == "succeeded", done
    assert done["provider"] == "webui"
    assert [(i["seed"], i["width"], i["height"]) for i in done["images"]] == [(11, 256, 256)]


def test_cancelling_reaches_the_real_webuis_interrupt(webui_provider):
    daemon, model = webui_provider
    job = httpx.post(daemon.url + "/arting/v1/jobs", json={
        "prompt": "a lighthouse", "model": model, "steps": 150, "width": 256,
        "height": 256}).json()
    deadline = time.monotonic() + 600
    while not httpx.get(A1111_URL + "/sdapi/v1/progress", auth=_auth()).json()["progress"]:
        assert time.monotonic() < deadline, "the WebUI never started on the job"
        time.sleep(0.5)
    assert daemon.wait_job(job["id"], ("running",))["state"] == "running"
    httpx.delete(f"{daemon.url}/arting/v1/jobs/{job['id']}")
    assert daemon.wait_job(job["id"])["state"] == "cancelled"
    deadline = time.monotonic() + 60
    while httpx.get(A1111_URL + "/sdapi/v1/progress", auth=_auth()).json()["state"][
            "job_count"]:
        assert time.monotonic() < deadline, "the WebUI went on generating"
        time.sleep(0.5)


def _auth():
    user, _, password = os.environ.get("A1111_AUTH", "").partition(":")
    return (user, password) if user else None
