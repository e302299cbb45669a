"""Optional: the script inside a real SD-WebUI (A1111 or Forge), over its HTTP API.

Runs only when ``A1111_URL`` points at a running WebUI on this machine, started with
``--api`` (UI mode, so the Arting settings exist) and with the extension installed
(``python3 install.py --webui <webui folder>``). The test starts its own daemon + sandbox
and points the WebUI's "Arting daemon URL" setting at it for the duration.
"""

from __future__ import annotations

import json
import os

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
