"""Optional: the script and the Arting upscaler inside a real SD-WebUI (A1111 or Forge),
over its HTTP API, and that WebUI as the daemon's ``a1111`` provider.

Runs only when ``A1111_URL`` points at a running WebUI on this machine, started with
``--api`` (UI mode, so the Arting settings exist) and with the extension installed
(``python3 install.py --webui <webui folder>``). The test starts its own daemon + sandbox
and points the WebUI's "Arting daemon URL" setting at it for the duration. The provider
tests need only ``--api`` and a checkpoint; ``A1111_AUTH=user:password`` if it was started
with ``--api-auth``.

With ``A1111_HOME`` (the WebUI's folder) and ``A1111_START`` (a command that starts it
API-only: ``A1111_START PORT [args]``, as the hosts build's ``start.sh``), one more test
clones this repository into its ``extensions/`` as "Install from URL" does, starts a
WebUI of its own on it (our other copies disabled for it) and uses the extension.
"""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from checkout import clone
from PIL import Image

A1111_URL = os.environ.get("A1111_URL", "").rstrip("/")
pytestmark = [
    pytest.mark.skipif(not A1111_URL, reason="set A1111_URL to a running SD-WebUI (--api) "
                                             "with the extension installed"),
    pytest.mark.timeout(900),       # a real WebUI generates on the CPU: minutes a request
]
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


def png_b64(size=(96, 64), color=(40, 160, 90)) -> str:
    """A flat picture (each of a test's own colour: the WebUI caches upscales by pixels)."""
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, "PNG")
    return base64.b64encode(buf.getvalue()).decode()


def size_of(b64: str) -> tuple[int, int]:
    return Image.open(io.BytesIO(base64.b64decode(b64))).size


def test_extras_upscales_with_arting(webui, daemon):
    """The WebUI's own Extras API with the Arting upscaler: single and batch, 2×."""
    assert "Arting" in [u["name"] for u in webui.get("/sdapi/v1/upscalers").json()]
    single = webui.post("/sdapi/v1/extra-single-image", json={
        "image": png_b64(color=(7, 8, int(time.time()) % 256)), "upscaler_1": "Arting",
        "upscaling_resize": 2})
    assert single.status_code == 200, single.text
    assert size_of(single.json()["image"]) == (192, 128)
    batch = webui.post("/sdapi/v1/extra-batch-images", json={
        "imageList": [{"data": png_b64((64, 64), (1, 2, int(time.time()) % 256)),
                       "name": "a.png"},
                      {"data": png_b64((64, 96), (4, 5, int(time.time()) % 256)),
                       "name": "b.png"}],
        "upscaler_1": "Arting", "upscaling_resize": 2})
    assert [size_of(i) for i in batch.json()["images"]] == [(128, 128), (128, 192)]
    assert len(daemon.sandbox.requests_for("enhance_create")) == 3


@pytest.mark.parametrize("upscaler, said", [("Arting", "Arting"), ("Lanczos", "Lanczos"),
                                            ("Latent", "Arting (for Latent)")])
def test_txt2img_with_the_script_and_hires_fix_doubles_the_size(webui, daemon, upscaler, said):
    resp = webui.post("/sdapi/v1/txt2img", json={
        "prompt": "a lighthouse", "seed": 21, "steps": 5, "width": 512, "height": 512,
        "enable_hr": True, "hr_scale": 2, "hr_upscaler": upscaler,
        "script_name": TITLE, "script_args": SCRIPT_ARGS})
    assert resp.status_code == 200, resp.text
    assert [size_of(i) for i in resp.json()["images"]] == [(1024, 1024)]
    info = json.loads(resp.json()["info"])
    assert info["extra_generation_params"]["Hires upscaler"] == said
    assert f"Hires upscaler: {said}" in info["infotexts"][0]


A1111_HOME, A1111_START = os.environ.get("A1111_HOME"), os.environ.get("A1111_START")


@pytest.mark.skipif(not (A1111_HOME and A1111_START),
                    reason="set A1111_HOME and A1111_START to start a WebUI of the test's own")
def test_installed_from_its_url_in_a_webui_of_its_own(daemon, tmp_path):
    home = Path(A1111_HOME).resolve()
    name = f"arting-url-test-{os.getpid()}"
    extension = home / "extensions" / name
    ours = [entry.name for entry in (home / "extensions").iterdir()
            if (entry / "sd_webui_extension").exists() or (entry / "arting_webui").exists()]
    settings = tmp_path / "config.json"
    settings.write_text(json.dumps({"disabled_extensions": ours}))
    port = free_port()
    log = tmp_path / "webui.log"
    proc = None
    try:
        clone(extension)
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [A1111_START, str(port), "--ui-settings-file", str(settings)], stdout=out,
                stderr=subprocess.STDOUT, env={**os.environ, "ARTING_DAEMON_URL": daemon.url},
                start_new_session=True)
        api = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=300)
        deadline = time.monotonic() + 600
        while True:
            assert proc.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            try:
                if api.get("/sdapi/v1/scripts").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(1)
        assert api.get("/sdapi/v1/scripts").json()["txt2img"].count(TITLE.lower()) == 1
        assert "Arting" in [u["name"] for u in api.get("/sdapi/v1/upscalers").json()]
        resp = api.post("/sdapi/v1/txt2img", json={
            "prompt": "p", "seed": 3, "steps": 5, "width": 256, "height": 256,
            "script_name": TITLE, "script_args": SCRIPT_ARGS})
        assert resp.status_code == 200 and json.loads(resp.json()["info"])["all_seeds"] == [3]
        assert "Error loading script" not in log.read_text()
    finally:
        if proc is not None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        shutil.rmtree(extension, ignore_errors=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


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
