"""kind = "stability": the daemon against the Stability AI emulator, over real sockets,
driven by the real clients (the openai SDK, webuiapi, the job API, the plugins' daemon
client): each model's route and fields, sizes as aspect ratios, n images as n calls
within max_jobs, image-to-image, CONTENT_FILTERED and every error status mapped,
upscales (fast, conservative, and the asynchronous creative one across a restart),
the balance, cancel, the check, and a fallback from Arting."""

from __future__ import annotations

import base64
import io
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import webuiapi
from openai import OpenAI
from PIL import Image
from processes import DaemonProcess, Emulator, emulators, resumed
from test_providers import png, submit
from test_midjourney import dc
from test_restart import wait_journaled

from arting_daemon.sandbox.stability import StabilityEmulator

KEY = "sk-stability-test-7781"
COMMAND = Path(sys.executable).parent / "arting-daemon"


@pytest.fixture
def stabilities():
    """Start Stability AI emulators (each on its own loop thread); closed after."""
    with emulators(StabilityEmulator, api_keys=[KEY], pixels=128 * 128,
                   upscale_time=0.2) as make:
        yield make


@pytest.fixture
def sai(stabilities) -> Emulator:
    return stabilities()


def provider(sai: Emulator, **extra) -> dict:
    return {"name": "sai", "kind": "stability", "label": "Stability", "base_url": sai.url,
            "api_key": KEY, **extra}


def calls(sai: Emulator, route: str = "generate") -> list[dict]:
    """What each call sent: its path's last part and its fields (files by size)."""
    return [{"at": r.path.rsplit("/", 1)[1],
             **{k: (len(v) if isinstance(v, bytes) else v) for k, v in r.body.items()}}
            for r in sai.sandbox.requests_for(route)]


def size_of(url: str) -> tuple[int, int]:
    return Image.open(io.BytesIO(httpx.get(url).content)).size


def test_an_entry_needs_only_its_key(tmp_path):
    from arting_daemon.config import load_settings
    path = tmp_path / "arting.toml"
    path.write_text(f'[[providers]]\nname = "stability"\nkind = "stability"\n'
                    f'api_key = "{KEY}"\nstyle_preset = "anime"\n')
    settings = load_settings(path, environ={})
    [entry] = settings.providers
    assert entry.url == "https://api.stability.ai" and entry.model_prefix == ""
    assert entry.options.style_preset == "anime" and entry.takes_img2img
    assert KEY in settings.secrets() and KEY not in repr(settings)


# --- generation ---------------------------------------------------------------------------

def test_n_images_are_n_calls_with_their_seeds_through_the_openai_sdk(make_daemon, sai):
    daemon = make_daemon(providers=[provider(sai)])
    client = OpenAI(base_url=daemon.v1, api_key="unused", max_retries=0)
    made = client.images.generate(model="sd3.5-large", prompt="a lighthouse", n=3,
                                  size="1024x576", response_format="b64_json",
                                  extra_body={"seed": 7, "negative_prompt": "fog",
                                              "steps": 30, "guidance": 5})
    sizes = [Image.open(io.BytesIO(base64.b64decode(d.b64_json))).size for d in made.data]
    assert sizes == [(192, 128)] * 3                         # 16:9 at the emulator's area
    sent = sorted(calls(sai), key=lambda c: c["seed"])
    assert sent == [{"at": "sd3", "prompt": "a lighthouse", "negative_prompt": "fog",
                     "output_format": "png", "seed": str(s), "aspect_ratio": "16:9",
                     "model": "sd3.5-large", "mode": "text-to-image"} for s in (7, 8, 9)]
    request = sai.sandbox.requests_for("generate")[0]
    assert request.header("Authorization") == f"Bearer {KEY}"
    assert request.header("Accept") == "application/json"
    assert request.header("Content-Type").startswith("multipart/form-data")
    job = httpx.get(daemon.url + "/arting/v1/jobs?limit=1").json()["data"][0]
    assert (job["provider"], [i["seed"] for i in job["images"]]) == ("sai", [7, 8, 9])


@pytest.mark.parametrize("model, size, expected", [
    ("core", "512x768", {"at": "core", "aspect_ratio": "2:3"}),
    ("ultra", "1000x1000", {"at": "ultra", "aspect_ratio": "1:1"}),
    ("sd3.5-medium", "1280x540", {"at": "sd3", "aspect_ratio": "21:9", "model": "sd3.5-medium",
                                  "mode": "text-to-image"}),
    ("sd3.5-large-turbo", "600x800", {"at": "sd3", "aspect_ratio": "4:5",
                                      "model": "sd3.5-large-turbo", "mode": "text-to-image"}),
])
def test_each_model_goes_to_its_route_with_only_what_it_takes(make_daemon, sai, model, size,
                                                              expected):
    daemon = make_daemon(providers=[provider(sai, style_preset="anime",
                                             output_format="webp")])
    job = daemon.run_job(prompt="a fox", model=model, size=size, seed=3,
                         negative_prompt="blurry", steps=40, loras=[{"id": "add_detail"}])
    assert job["state"] == "succeeded", job
    [sent] = calls(sai)
    negative = {} if "turbo" in model else {"negative_prompt": "blurry"}
    assert sent == {"prompt": "a fox", "output_format": "webp", "seed": "3",
                    "style_preset": "anime", **negative, **expected}
    assert httpx.get(job["images"][0]["url"]).content.startswith(b"\x89PNG")   # kept as PNG


def test_no_size_sends_no_aspect_ratio(make_daemon, sai):
    daemon = make_daemon(providers=[provider(sai)])
    client = OpenAI(base_url=daemon.v1, api_key="unused", max_retries=0)
    client.images.generate(model="core", prompt="a fox", response_format="b64_json")
    [sent] = calls(sai)
    assert "aspect_ratio" not in sent


def test_image_to_image_sends_the_picture_and_its_strength(make_daemon, stabilities):
    sai = stabilities(pixels=512 * 512)
    daemon = make_daemon(providers=[provider(sai)], img2img=False)
    client = OpenAI(base_url=daemon.v1, api_key="unused", max_retries=0)
    picture = base64.b64decode(png(96, 64, (200, 30, 30)))
    made = client.images.edit(model="ultra", image=("in.png", picture, "image/png"),
                              prompt="at night", response_format="b64_json",
                              extra_body={"strength": 0.4})
    out = Image.open(io.BytesIO(base64.b64decode(made.data[0].b64_json)))
    assert out.size[0] / out.size[1] == pytest.approx(96 / 64, rel=0.1)
    [sent] = calls(sai)
    assert sent["at"] == "ultra" and sent["strength"] == "0.4" and sent["image"] > 0
    assert "aspect_ratio" not in sent and "mode" not in sent

    sd3 = daemon.run_job(prompt="at dawn", model="sd3.5-medium", init_image=png(64, 64),
                         strength=0.6)
    assert sd3["state"] == "succeeded"
    assert calls(sai)[-1]["mode"] == "image-to-image"

    resp = httpx.post(daemon.url + "/arting/v1/jobs", json={
        "prompt": "p", "model": "core", "init_image": png(64, 64)})
    assert resp.status_code == 400 and "`core` does no image-to-image" in resp.text
    assert len(calls(sai)) == 2


def test_the_plugins_and_webuiapi_reach_stability(make_daemon, sai):
    daemon = make_daemon(providers=[provider(sai)])
    client = dc.DaemonClient(daemon.url)
    models = {m["id"]: m["provider"] for m in client.catalog()["models"]}
    assert {k: models[k] for k in ("core", "ultra", "sd3.5-large", "sd3.5-large-turbo",
                                   "sd3.5-medium")} == dict.fromkeys(
        ["core", "ultra", "sd3.5-large", "sd3.5-large-turbo", "sd3.5-medium"], "sai")
    job = client.run({"prompt": "a koi pond", "model": "core", "n": 2, "seed": 21},
                     poll_interval=0.05, client_name="ComfyUI")
    assert [i["seed"] for i in job["images"]] == [21, 22]

    host, port = daemon.url.removeprefix("http://").rsplit(":", 1)
    api = webuiapi.WebUIApi(host=host, port=int(port))
    result = api.img2img(images=[Image.new("RGB", (128, 128), (0, 90, 200))], prompt="a wave",
                         denoising_strength=0.3, width=128, height=128, seed=5,
                         override_settings={"sd_model_checkpoint": "sd3.5-medium"})
    assert result.image.size == (128, 128)
    assert calls(sai)[-1]["strength"] == "0.3" and calls(sai)[-1]["model"] == "sd3.5-medium"


def test_n_calls_stay_within_max_jobs(make_daemon, sai):
    sai.do(sai.sandbox.add_fault, "slow", route="generate", delay=0.3)
    daemon = make_daemon(providers=[provider(sai, max_jobs=2)])
    job = daemon.run_job(prompt="a fox", model="core", n=4)
    assert job["state"] == "succeeded" and len(calls(sai)) == 4
    assert sai.sandbox.most_in_flight == 2


# --- refusals and errors ------------------------------------------------------------------

def test_a_filtered_image_is_a_refused_prompt_and_costs_nothing(make_daemon, sai):
    daemon = make_daemon(providers=[provider(sai)])
    job = daemon.run_job(prompt="please blurme", model="ultra")
    assert (job["state"], job["error"]["code"]) == ("failed", "content_refused")
    assert "CONTENT_FILTERED" in job["error"]["message"]
    assert sai.sandbox.credits == 1000


@pytest.mark.parametrize("setup, code, words", [
    ({"fault": {"kind": "http_error", "status": 400, "message": "aspect_ratio: invalid"}},
     "upstream_invalid_request", "(HTTP 400 bad_request): aspect_ratio: invalid"),
    ({"key": "sk-wrong-key-1"}, "upstream_auth", "refused the API key (HTTP 401)"),
    ({"options": {"credits": 1}}, "upstream_rejected", "out of credits (HTTP 402)"),
    ({"prompt": "something forbidden"}, "content_refused",
     "(HTTP 403 content_moderation): Your request was flagged"),
    ({"fault": {"kind": "http_error", "status": 413}}, "upstream_invalid_request",
     "too large (HTTP 413"),
    ({"fault": {"kind": "http_error", "status": 422, "message": "English only"}},
     "upstream_invalid_request", "(HTTP 422 invalid_request): English only"),
    ({"fault": {"kind": "http_error", "status": 429, "retry_after": 3}},
     "upstream_rate_limited", "rate-limiting (HTTP 429)"),
    ({"fault": {"kind": "http_error", "status": 500}}, "upstream_error", "failed (HTTP 500)"),
    ({"fault": {"kind": "garbled"}}, "bad_upstream_response", "neither an image nor JSON"),
])
def test_every_error_maps_onto_the_taxonomy(make_daemon, stabilities, setup, code, words):
    sai = stabilities(**setup.get("options", {}))
    if "fault" in setup:
        sai.do(sai.sandbox.add_fault, route="generate", **setup["fault"])
    daemon = make_daemon(providers=[provider(sai, api_key=setup.get("key", KEY))])
    job = daemon.run_job(prompt=setup.get("prompt", "a fox"), model="core")
    assert (job["state"], job["error"]["code"]) == ("failed", code), job
    assert words in job["error"]["message"] and job["error"]["message"].startswith("Stability")
    if code == "upstream_rate_limited":
        assert job["error"]["retry_after"] == 3
    if code == "upstream_auth":
        assert "Set api_key of provider `sai` in arting.toml" in job["error"]["message"]
    assert "sk-wrong-key-1" not in json.dumps(job)


def test_the_rate_window_of_the_emulator(stabilities):
    sai = stabilities(rate_limit=2, rate_window=60)
    headers = {"Authorization": f"Bearer {KEY}"}
    answers = [httpx.get(sai.url + "/v1/user/balance", headers=headers) for _ in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 429]
    assert answers[2].json()["name"] == "rate_limit_exceeded"
    assert int(answers[2].headers["Retry-After"]) > 0


# --- upscales -----------------------------------------------------------------------------

@pytest.mark.parametrize("mode, scale", [("fast", 2), ("fast", 4), ("conservative", 2)])
def test_a_synchronous_upscale_is_exactly_as_large_as_asked(make_daemon, sai, mode, scale):
    daemon = make_daemon(providers=[provider(sai, upscale=mode)], upscale=False)
    resp = httpx.post(daemon.url + "/arting/v1/jobs", json={
        "kind": "upscale", "images": [png(64, 48)], "scale": scale})
    job = daemon.wait_job(resp.json()["id"])
    assert (job["state"], job["provider"]) == ("succeeded", "sai"), job
    assert (job["images"][0]["width"], job["images"][0]["height"]) == (64 * scale, 48 * scale)
    [sent] = calls(sai, "upscale")
    assert sent["at"] == mode and sent["image"] > 0
    assert ("prompt" in sent) == (mode == "conservative")


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_a_creative_upscale_is_followed_across_a_restart(tmp_path, stabilities):
    sai = stabilities(upscale_time=2.0, creative_status=202)
    env = {"ARTING_PROVIDERS": json.dumps([provider(sai, upscale="creative", creativity=0.2)]),
           "ARTING_UPSCALE": "false"}
    first = DaemonProcess(tmp_path / "data", "http://127.0.0.1:9", **env)
    try:
        job = httpx.post(first.url + "/arting/v1/jobs", json={
            "kind": "upscale", "images": [png(40, 30), png(30, 40)], "scale": 2}).json()
        record = wait_journaled(tmp_path / "data", job["id"], "running")
        assert sorted(record["provider_state"]["results"]) == sorted(sai.sandbox.results)
    finally:
        first.stop()
    done = resumed(tmp_path / "data", job["id"], **env)
    assert done["state"] == "succeeded", done
    assert [(i["width"], i["height"]) for i in done["images"]] == [(80, 60), (60, 80)]
    assert len(calls(sai, "upscale")) == 2                       # never sent again
    assert {c["creativity"] for c in calls(sai, "upscale")} == {"0.2"}
    polls = sai.sandbox.requests_for("results")
    assert polls and all(r.path.startswith("/v2beta/results/") for r in polls)


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
@pytest.mark.parametrize("free_to_repeat", [True, False])
def test_a_generation_in_flight_during_a_crash(tmp_path, sai, free_to_repeat):
    """A call cannot be picked up again: run again where that costs nothing, else failed
    (never sent twice unseen)."""
    sai.do(sai.sandbox.add_fault, "slow", route="generate", delay=30, count=1)
    env = {"ARTING_PROVIDERS": json.dumps([provider(sai, free_to_repeat=free_to_repeat)])}
    first = DaemonProcess(tmp_path / "data", "http://127.0.0.1:9", **env)
    try:
        job = httpx.post(first.url + "/arting/v1/jobs", json={"prompt": "p", "model": "core",
                                                             "seed": 3}).json()
        wait_journaled(tmp_path / "data", job["id"], "running")
        deadline = time.monotonic() + 10
        while sai.sandbox.in_flight == 0:
            assert time.monotonic() < deadline, "the call never arrived"
            time.sleep(0.02)
    finally:
        first.stop()
    done = resumed(tmp_path / "data", job["id"], **env)
    if free_to_repeat:
        assert done["state"] == "succeeded" and len(calls(sai)) == 2
    else:
        assert done["state"] == "failed" and "submit it again" in done["error"]["message"]
        assert len(calls(sai)) == 1


# --- the account, cancel, the check, fallbacks ---------------------------------------------

def test_the_balance_is_shown_as_the_providers(make_daemon, sai):
    daemon = make_daemon(providers=[provider(sai)])
    daemon.run_job(prompt="a fox", model="ultra", n=2)
    deadline = 100
    while deadline:
        status = httpx.get(daemon.url + "/arting/v1/status").json()
        [mine] = [p for p in status["providers"] if p["name"] == "sai"]
        if mine.get("balance") == 984:
            break
        deadline -= 1
        time.sleep(0.05)
    assert mine["balance"] == 984 and mine["credentials"] == "set"     # 1000 - 2 × 8
    assert KEY not in json.dumps(status)


def test_a_cancelled_call_ends_the_job_at_once(make_daemon, sai):
    sai.do(sai.sandbox.add_fault, "slow", route="generate", delay=30)
    daemon = make_daemon(providers=[provider(sai)])
    job = submit(daemon, model="core")
    daemon.wait_job(job["id"], ("running",))
    assert httpx.delete(f"{daemon.url}/arting/v1/jobs/{job['id']}").json()["state"] \
        == "cancelled"


def test_arting_failing_falls_back_to_stability(make_daemon, sai):
    daemon = make_daemon(providers=[provider(sai)], fallbacks={"*": ["sai/*"]},
                         retry_budget=0.5)
    daemon.do(daemon.sandbox.add_fault, "fail", route="get")
    job = daemon.run_job(prompt="a fox", size="512x768", seed=9)
    assert (job["state"], job["provider"]) == ("succeeded", "sai"), job
    assert [(m["from"], m["to"], m["model"]) for m in job["fallbacks"]] == [
        ("arting", "sai", "core")]
    assert calls(sai)[0]["aspect_ratio"] == "2:3" and calls(sai)[0]["seed"] == "9"


def test_stability_failing_falls_back_to_arting(make_daemon, sai):
    sai.do(sai.sandbox.add_fault, "http_error", route="generate", status=503)
    daemon = make_daemon(providers=[provider(sai)], fallbacks={"core": ["arting/*"]})
    job = daemon.run_job(prompt="a fox", model="core", seed=4, size="512x512")
    assert (job["state"], job["provider"]) == ("succeeded", "arting"), job
    assert [(m["from"], m["to"], m["error"]["code"]) for m in job["fallbacks"]] == [
        ("sai", "arting", "upstream_error")]
    [create] = daemon.sandbox.requests_for("create")
    assert (create.body["model_id"], create.body["seed"]) == ("oneFORALLAnime", 4)


def test_a_full_midjourney_queue_falls_back_to_stability(make_daemon, sai):
    from test_midjourney import provider as mj_provider
    from arting_daemon.sandbox.midjourney import MidjourneyEmulator
    proxy = Emulator(MidjourneyEmulator, api_secret="mj-secret-20240611", plus=False)
    try:
        proxy.do(proxy.sandbox.add_fault, "code", route="imagine", code=23,
                 message="队列已满，请稍后尝试")
        daemon = make_daemon(providers=[mj_provider(proxy), provider(sai)],
                             fallbacks={"midjourney": ["sd3.5-large"]})
        job = daemon.run_job(prompt="a fox", model="midjourney", size="1024x1024", seed=2)
    finally:
        proxy.close()
    assert (job["state"], job["provider"]) == ("succeeded", "sai"), job
    [move] = job["fallbacks"]
    assert (move["from"], move["to"], move["model"], move["error"]["code"]) == (
        "mj", "sai", "sd3.5-large", "upstream_rate_limited")
    assert calls(sai)[0]["model"] == "sd3.5-large" and calls(sai)[0]["aspect_ratio"] == "1:1"


def test_the_check_asks_each_provider_what_spends_nothing(tmp_path, sai, stabilities):
    from test_midjourney import SECRET, provider as mj_provider
    from arting_daemon.sandbox.midjourney import MidjourneyEmulator
    proxy = Emulator(MidjourneyEmulator, api_secret=SECRET)
    broke = stabilities(credits=0)
    try:
        env = {"ARTING_PROVIDERS": json.dumps([
            provider(sai), {**provider(broke), "name": "broke", "prefix": "b/"}, mj_provider(proxy),
            {**mj_provider(proxy), "name": "wrong", "api_key": "nope", "prefix": "w/"},
            {"name": "gone", "kind": "stability", "base_url": "http://127.0.0.1:9",
             "api_key": KEY, "prefix": "g/"}]),
               "ARTING_SANDBOX": "true", "ARTING_SANDBOX_PROVIDERS": "[]"}
        ran = subprocess.run([str(COMMAND), "check", "--data-dir", str(tmp_path / "data")],
                             capture_output=True, text=True, timeout=60, cwd=tmp_path,
                             env={**{k: v for k, v in os.environ.items()
                                     if not k.startswith("ARTING_")}, **env})
    finally:
        proxy.close()
    lines = {line.split(":", 1)[0].split(None, 1)[1]: line for line in ran.stdout.splitlines()
             if line[:4].strip() in ("ok", "info", "warn", "fail")}
    assert lines["sai reach"].startswith("ok") and "plain HTTP" in lines["sai reach"]
    assert lines["sai (stability)"].startswith("ok")
    assert "takes its credentials; its balance is 1000 credits" in lines["sai (stability)"]
    assert lines["broke (stability)"].startswith("warn") and "402" in lines["broke (stability)"]
    assert lines["mj (midjourney)"].startswith("ok")
    assert lines["wrong (midjourney)"].startswith("fail")
    assert "refused the credentials (HTTP 401)" in lines["wrong (midjourney)"]
    assert lines["gone reach"].startswith("fail") and "gone (stability)" in lines
    assert ran.returncode == 1
    assert KEY not in ran.stdout and SECRET not in ran.stdout
    # Nothing was spent: no generation, no imagine.
    assert calls(sai) == [] and proxy.sandbox.requests_for("imagine") == []
    assert [r.route for r in sai.sandbox.requests] == ["balance"]


def test_no_secret_anywhere(make_daemon, sai, caplog):
    caplog.set_level(logging.DEBUG)
    daemon = make_daemon(providers=[provider(sai)], log_level="debug")
    daemon.run_job(prompt="a fox", model="core")
    daemon.run_job(prompt="something forbidden", model="core")
    seen = "\n".join([httpx.get(daemon.url + p).text for p in
                      ("/arting/v1/status", "/arting/v1/jobs", "/metrics")]
                     + [r.getMessage() for r in caplog.records])
    assert KEY not in seen


def test_what_the_protocol_reads():
    from arting_daemon.errors import ContentRefused, UpstreamAuthError, UpstreamInvalid
    from arting_daemon.providers.stability import protocol as sai

    picture = base64.b64decode(png(8, 8))
    made = sai.made("S", 200, {"Content-Type": "image/png", "finish-reason": "SUCCESS",
                               "seed": "343940597"}, picture)
    assert (made.image, made.seed) == (picture, 343940597)
    made = sai.made("S", 200, {"Content-Type": "application/json; type=image/png"},
                    json.dumps({"image": png(8, 8), "finish_reason": "SUCCESS",
                                "seed": 12}).encode())
    assert made.seed == 12
    result = sai.made("S", 200, {"Content-Type": "application/json"},
                      json.dumps({"result": png(8, 8), "finish_reason": "SUCCESS"}).encode())
    assert result.image == picture and result.seed is None
    with pytest.raises(ContentRefused):
        sai.made("S", 200, {"Content-Type": "image/png", "finish-reason": "CONTENT_FILTERED"},
                 picture)
    with pytest.raises(UpstreamAuthError, match="invalid API key"):    # v1's error shape
        sai.made("S", 401, {}, b'{"id": "x", "name": "unauthorized", '
                               b'"message": "invalid API key"}')
    with pytest.raises(UpstreamInvalid, match="prompt: is required"):
        sai.made("S", 400, {}, b'{"id": "x", "name": "bad_request", '
                               b'"errors": ["prompt: is required"]}')
    assert sai.accepted_id("S", 202, {}, b'{"id": "a1b2"}') == "a1b2"
    assert [sai.aspect_ratio(*s) for s in ((1792, 1024), (1024, 1792), (512, 512),
                                           (2100, 900))] == ["16:9", "9:16", "1:1", "21:9"]

