"""The AUTOMATIC1111 API, driven by the real ``webuiapi`` package and by replays of what
Open WebUI and SillyTavern send, over real sockets against the daemon + emulator."""

from __future__ import annotations

import asyncio
import base64
import http.client
import io
import json
import time

import aiohttp
import httpx
import pytest
import webuiapi
from PIL import Image
from threads import Background

from arting_daemon.facades.sdapi import title
from clock import ManualClock


def host_port(daemon) -> tuple[str, int]:
    host, _, port = daemon.url.removeprefix("http://").rpartition(":")
    return host, int(port)


@pytest.fixture
def api(daemon) -> webuiapi.WebUIApi:
    return webuiapi.WebUIApi(*host_port(daemon))


def sd(daemon, path: str) -> str:
    return f"{daemon.url}/sdapi/v1/{path}"


def decode_png(b64: str) -> Image.Image:
    data = base64.b64decode(b64, validate=True)
    assert data.startswith(b"\x89PNG")
    return Image.open(io.BytesIO(data))


def raw_get(daemon, path: str, authorization: str | None) -> tuple[int, dict, dict]:
    """A GET with the Authorization header byte for byte (httpx refuses ``Basic ``)."""
    host, port = host_port(daemon)
    conn = http.client.HTTPConnection(host, port, timeout=10)
    try:
        conn.request("GET", f"/sdapi/v1/{path}",
                     headers={} if authorization is None else {"authorization": authorization})
        resp = conn.getresponse()
        return resp.status, dict(resp.getheaders()), json.loads(resp.read())
    finally:
        conn.close()


def wait_for(predicate, timeout=10.0, every=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError("condition not reached")


# --- webuiapi ---------------------------------------------------------------------------

def test_webuiapi_txt2img_with_a_seed(api, daemon):
    assert not (api.has_controlnet or api.has_adetailer or api.has_animatediff)
    result = api.txt2img(prompt="a lighthouse", negative_prompt="blurry", seed=123,
                         width=512, height=768, cfg_scale=6.5)
    assert result.image.size == (512, 768)
    assert result.info["seed"] == 123 and result.info["all_seeds"] == [123]
    assert result.info["sd_model_name"] == "oneFORALLAnime"
    assert result.parameters["sampler_index"] == "Euler a"
    assert result.parameters["seed"] == 123 and result.parameters["styles"] == []
    infotext = result.info["infotexts"][0]
    assert infotext.startswith("a lighthouse\nNegative prompt: blurry\nSteps: 20, ")
    assert "Seed: 123" in infotext and "Size: 512x768" in infotext
    assert result.image.info["parameters"] == infotext     # the PNG carries it too
    body = daemon.sandbox.requests_for("create")[-1].body
    assert (body["seed"], body["steps"], body["guidance"], body["sampler"]) == (
        123, 20, 6.5, "Euler a")


def test_seed_minus_one_becomes_a_real_seed_across_batch_and_iterations(daemon):
    resp = httpx.post(sd(daemon, "txt2img"), json={
        "prompt": "twins", "seed": -1, "batch_size": 2, "n_iter": 2, "width": 256,
        "height": 256}, timeout=30)
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("application/json")
    info = json.loads(resp.json()["info"])
    seed = info["seed"]
    assert seed >= 0 and info["all_seeds"] == [seed, seed + 1, seed + 2, seed + 3]
    assert [t.split("Seed: ")[1].split(",")[0] for t in info["infotexts"]] == [
        str(s) for s in info["all_seeds"]]
    assert len(resp.json()["images"]) == 4
    assert resp.json()["parameters"]["seed"] == -1          # the request, echoed
    creates = sorted((r.body["seed"], r.body["samples"])
                     for r in daemon.sandbox.requests_for("create"))
    assert creates == [(seed, 2), (seed + 2, 2)]            # one engine job per iteration


def test_non_latin_prompts_are_kept_in_the_png(daemon):
    resp = httpx.post(sd(daemon, "txt2img"), json={"prompt": "一只猫", "seed": 1}, timeout=30)
    assert decode_png(resp.json()["images"][0]).info["parameters"].startswith("一只猫\n")


def test_webuiapi_img2img_with_a_mask(api, daemon):
    blue = Image.new("RGB", (256, 256), (0, 128, 255))
    mask = Image.new("L", (256, 256), 0)
    mask.paste(255, (0, 0, 128, 256))                       # white left half: repaint
    result = api.img2img(images=[blue], mask_image=mask, mask_blur=0, prompt="a sunset",
                         denoising_strength=0.5, width=256, height=256, seed=7)
    out = result.image.convert("RGB")
    assert out.size == (256, 256)
    assert out.getpixel((250, 128)) == (0, 128, 255)       # kept
    assert out.getpixel((5, 128)) != (0, 128, 255)         # repainted
    body = daemon.sandbox.requests_for("i2i_create")[-1].body
    assert body["strength"] == 0.5 and body["seed"] == 7
    uploaded, = daemon.uploads()                 # get_oss_signed_urls, then the PUT
    assert Image.open(io.BytesIO(uploaded)).getpixel((5, 5)) == (0, 128, 255)
    assert result.info["denoising_strength"] == 0.5
    assert "Denoising strength: 0.5" in result.info["infotexts"][0]
    assert result.parameters["init_images"] is None and result.parameters["mask"] is None


def test_img2img_switched_off_is_a_clear_error(make_daemon):
    daemon = make_daemon(img2img=False)
    api = webuiapi.WebUIApi(*host_port(daemon))
    with pytest.raises(RuntimeError) as err:
        api.img2img(images=[Image.new("RGB", (64, 64))], prompt="p")
    status, text = err.value.args
    detail = json.loads(text)["detail"][0]
    assert status == 422 and detail["loc"] == ["body", "init_images"]
    assert "ARTING_IMG2IMG" in detail["msg"]


def test_progress_idle_then_during_a_five_second_job(make_daemon):
    daemon = make_daemon(expected_duration=5.0, sandbox_options={"generation_time": 5.0},
                         clock=ManualClock())
    api = webuiapi.WebUIApi(*host_port(daemon))
    idle = api.get_progress()
    assert idle["progress"] == 0 and idle["state"]["job_count"] == 0
    call = Background(api.txt2img, prompt="slow", steps=30)
    wait_for(lambda: api.get_progress()["state"]["job_count"] == 1)
    wait_for(lambda: daemon.engine.active and daemon.engine.active[0].submitted_at)
    samples = []
    for _ in range(4):
        daemon.advance(0.8)
        samples.append(api.get_progress())
    daemon.advance(2.0)                             # the emulator's five seconds are up
    assert call.result(15).image
    for sample in samples:
        assert 0 < sample["progress"] < 1
        assert sample["state"]["job_count"] == 1 and sample["state"]["sampling_steps"] == 30
    running = [s for s in samples if s["textinfo"].startswith("Generating")]
    assert len(running) >= 3
    etas = [s["eta_relative"] for s in running]
    assert all(a > b for a, b in zip(etas, etas[1:])), etas
    progress = [s["progress"] for s in running]
    assert all(a < b for a, b in zip(progress, progress[1:])), progress
    after = api.get_progress()
    assert after["progress"] == 0 and after["state"]["job_count"] == 0


def test_interrupt_stops_the_running_request(make_daemon):
    daemon = make_daemon(sandbox_options={"generation_time": 30.0})
    api = webuiapi.WebUIApi(*host_port(daemon))
    call = Background(httpx.post, sd(daemon, "txt2img"), json={"prompt": "p"}, timeout=30)
    wait_for(lambda: api.get_progress()["state"]["job_count"] == 1)
    started = time.monotonic()
    assert api.interrupt() == {}
    resp = call.result()
    assert time.monotonic() - started < 5
    assert resp.status_code == 200 and resp.json()["images"] == []
    assert json.loads(resp.json()["info"])["interrupted"] is True
    assert [j.state.value for j in daemon.engine._jobs.values()] == ["cancelled"]
    assert api.get_progress()["state"]["job_count"] == 0


def test_skip_drops_the_current_iteration_only(make_daemon):
    daemon = make_daemon(sandbox_options={"generation_time": 2.0})
    api = webuiapi.WebUIApi(*host_port(daemon))
    call = Background(httpx.post, sd(daemon, "txt2img"),
                      json={"prompt": "p", "n_iter": 2, "seed": 10}, timeout=30)
    wait_for(lambda: api.get_progress()["state"]["job_count"] == 2)
    assert api.skip() is None
    resp = call.result()
    assert resp.status_code == 200 and len(resp.json()["images"]) == 1
    assert json.loads(resp.json()["info"])["infotexts"][0].count("Seed: 11") == 1
    assert sorted(j.state.value for j in daemon.engine._jobs.values()) == [
        "cancelled", "succeeded"]


def test_model_list_set_and_get(api, daemon):
    names = api.util_get_model_names()
    assert title("asyncsMIX_v7") in names and len(names) >= 19
    assert api.util_get_current_model() == title("oneFORALLAnime")
    api.util_set_model("asyncsMIX_v7")
    assert api.util_get_current_model() == title("asyncsMIX_v7")
    options = api.get_options()
    assert options["sd_checkpoint_hash"] == next(
        m["sha256"] for m in api.get_sd_models() if m["model_name"] == "asyncsMIX_v7")
    api.txt2img(prompt="p")
    assert daemon.sandbox.requests_for("create")[-1].body["model_id"] == "asyncsMIX_v7"
    api.txt2img(prompt="p", override_settings={"sd_model_checkpoint": "dreamshaper_8"})
    assert daemon.sandbox.requests_for("create")[-1].body["model_id"] == "dreamshaper_8"
    assert api.util_get_current_model() == title("asyncsMIX_v7")   # per request only


def test_unknown_checkpoint_changes_nothing(api, daemon):
    resp = httpx.post(sd(daemon, "options"),
                      json={"sd_model_checkpoint": "sdxl_base.safetensors", "x": 1})
    assert resp.status_code == 404
    assert resp.json()["error"] == "ModelNotFound" and "sd-models" in resp.json()["detail"]
    assert api.util_get_current_model() == title("oneFORALLAnime")
    assert "x" not in api.get_options()


def test_samplers_schedulers_loras_and_the_other_listings(api):
    samplers = [s["name"] for s in api.get_samplers()]
    assert {"Euler a", "Euler", "DPM++ 2M", "DDIM"} <= set(samplers)
    assert not any(s.endswith("Karras") for s in samplers)
    assert api.util_get_scheduler_names() == ["automatic", "karras"]
    loras = api.get_loras()
    assert {"add_detail", "Sv5-10"} <= {lo["name"] for lo in loras}
    assert all(set(lo) == {"name", "alias", "path", "metadata"} for lo in loras)
    assert [u["name"] for u in api.get_upscalers()] == ["None", "Lanczos", "Nearest", "Arting"]
    assert api.get_latent_upscale_modes() == [] and api.get_sd_vae() == []
    assert api.get_scripts() == {"txt2img": [], "img2img": ["sd upscale"]}
    assert api.get_embeddings() == {"loaded": {}, "skipped": {}}
    assert api.get_prompt_styles() == [] and api.get_hypernetworks() == []
    assert api.get_face_restorers() == [] and api.get_realesrgan_models() == []
    assert api.refresh_checkpoints() is None
    assert api.get_cmd_flags()["api"] is True


def test_samplers_and_schedulers_are_lenient_like_a1111(daemon):
    def sampler_sent(**fields):
        resp = httpx.post(sd(daemon, "txt2img"), json={"prompt": "p", **fields}, timeout=30)
        assert resp.status_code == 200, resp.text
        info = json.loads(resp.json()["info"])
        return daemon.sandbox.requests_for("create")[-1].body["sampler"], info

    sent, info = sampler_sent(sampler_name="DPM++ 2M Karras")
    assert sent == "DPM++ 2M Karras" and info["sampler_name"] == "DPM++ 2M"
    assert "Sampler: DPM++ 2M, Schedule type: Karras" in info["infotexts"][0]
    assert sampler_sent(sampler_name="DPM++ 2M", scheduler="karras")[0] == "DPM++ 2M Karras"
    assert sampler_sent(sampler_name="DPM++ 2M", scheduler="Automatic")[0] == "DPM++ 2M"
    assert sampler_sent(sampler_name="Heun", scheduler="automatic")[0] == "Heun"
    assert sampler_sent(sampler_name="Restart")[0] == "Euler a"     # unknown: falls back
    assert sampler_sent()[0] == "Euler"                              # sampler_index default


def test_loras_in_the_prompt(daemon):
    resp = httpx.post(sd(daemon, "txt2img"), timeout=30, json={
        "prompt": "a knight, <lora:add_detail:0.6> <lora:Midjourney V6.1> <lora:unknown:1>"})
    body = daemon.sandbox.requests_for("create")[-1].body
    assert body["prompt"] == "a knight"
    assert (body["lora_ids"], body["lora_weight"]) == ("add_detail,aidmaMidjourneyV6.1-v0.1",
                                                       "0.6,1")
    assert json.loads(resp.json()["info"])["prompt"].startswith("a knight, <lora:add_detail")


# --- replays of other clients -----------------------------------------------------------

def test_open_webui_a1111_sequence(daemon):
    """GET options → POST the whole dict back with another model → txt2img batch_size 2,
    with the empty `authorization: Basic ` header Open WebUI sends by default."""
    async def replay() -> tuple[dict, dict, list[Image.Image], dict]:
        headers = {"authorization": "Basic "}
        async with aiohttp.ClientSession(headers=headers) as http:
            async with http.get(sd(daemon, "options")) as r:
                options = await r.json()               # raises unless application/json
            async with http.get(sd(daemon, "sd-models")) as r:
                models = await r.json()
            chosen = next(m["title"] for m in models if m["model_name"] == "asyncsMIX_v7")
            async with http.post(sd(daemon, "options"),
                                 json={**options, "sd_model_checkpoint": chosen}) as r:
                r.raise_for_status()
            async with http.get(sd(daemon, "options")) as r:
                again = await r.json()
            async with http.post(sd(daemon, "txt2img"), json={
                    "prompt": "a lighthouse", "batch_size": 2, "width": 512, "height": 768,
                    "steps": 20, "negative_prompt": "fog"}) as r:
                res = await r.json(content_type=None)
        assert all("," not in image for image in res["images"])   # raw base64, not data URLs
        return options, again, [decode_png(i) for i in res["images"]], json.loads(res["info"])

    options, again, images, info = asyncio.run(replay())
    assert options["sd_model_checkpoint"] == title("oneFORALLAnime")
    assert "forge_preset" not in options
    assert again["sd_model_checkpoint"] == title("asyncsMIX_v7")
    assert again["sd_checkpoint_hash"] != options["sd_checkpoint_hash"]
    assert [im.size for im in images] == [(512, 768), (512, 768)]
    assert len(info["all_seeds"]) == 2 and info["sd_model_name"] == "asyncsMIX_v7"
    body = daemon.sandbox.requests_for("create")[-1].body
    assert (body["model_id"], body["samples"], body["negative_prompt"]) == (
        "asyncsMIX_v7", 2, "fog")


def test_sillytavern_sends_its_whole_settings_object(daemon):
    resp = httpx.post(sd(daemon, "options"), json={"sd_model_checkpoint": title("dreamshaper_8"),
                                                   "forge_preset": "sd"})
    assert resp.status_code == 200 and resp.json() is None
    progress = httpx.get(sd(daemon, "progress")).json()
    assert progress["progress"] == 0 and progress["state"]["job_count"] == 0
    assert "forge_preset" not in httpx.get(sd(daemon, "options")).json()
    resp = httpx.post(sd(daemon, "txt2img"), timeout=30, json={
        "url": "http://127.0.0.1:7860", "auth": "", "prompt": "a cat", "negative_prompt": "",
        "sampler_name": "DPM++ 2M", "scheduler": "Karras", "steps": 20, "cfg_scale": 7,
        "width": 512, "height": 512, "restore_faces": False, "enable_hr": False,
        "hr_upscaler": "Latent", "hr_scale": 2, "denoising_strength": 0.7,
        "hr_second_pass_steps": 0, "seed": -1, "override_settings": {"CLIP_stop_at_last_layers": 1},
        "override_settings_restore_afterwards": True, "save_images": True,
        "send_images": True, "do_not_save_grid": False, "do_not_save_samples": False})
    assert resp.status_code == 200
    assert decode_png(resp.json()["images"][0]).size == (512, 512)
    body = daemon.sandbox.requests_for("create")[-1].body
    assert (body["model_id"], body["clip_skip"], body["sampler"]) == (
        "dreamshaper_8", 1, "DPM++ 2M Karras")


# --- errors and auth --------------------------------------------------------------------

@pytest.mark.parametrize("fields, loc, kind", [
    ({"steps": "abc"}, ["body", "steps"], "type_error.integer"),
    ({"cfg_scale": "high"}, ["body", "cfg_scale"], "type_error.float"),
    ({"styles": "anime"}, ["body", "styles"], "type_error.list"),
    ({"override_settings": [1]}, ["body", "override_settings"], "type_error.dict"),
    ({"send_images": "maybe"}, ["body", "send_images"], "type_error.bool"),
    ({"batch_size": 3, "n_iter": 2}, ["body", "batch_size"], "value_error"),
    ({"prompt": ""}, ["body", "prompt"], "value_error"),
])
def test_bad_requests_are_422_in_fastapi_shape(daemon, fields, loc, kind):
    resp = httpx.post(sd(daemon, "txt2img"), json={"prompt": "p", **fields})
    assert resp.status_code == 422
    (detail,) = resp.json()["detail"]
    assert (detail["loc"], detail["type"]) == (loc, kind) and detail["msg"]
    assert daemon.sandbox.requests_for("create") == []


def test_pydantic_v1_messages_and_lenient_fields(daemon):
    resp = httpx.post(sd(daemon, "txt2img"), json={"prompt": "p", "steps": "abc"})
    assert resp.json()["detail"][0]["msg"] == "value is not a valid integer"
    assert httpx.post(sd(daemon, "txt2img"), json=[1]).json()["detail"][0]["loc"] == ["body"]
    resp = httpx.post(sd(daemon, "txt2img"), timeout=30, json={
        "prompt": 5, "steps": None, "width": "256", "height": 256.0, "nonsense": {"a": 1}})
    assert resp.status_code == 200, resp.text
    assert resp.json()["parameters"]["steps"] == 50                 # null means default
    body = daemon.sandbox.requests_for("create")[-1].body
    assert (body["prompt"], body["steps"], body["width"]) == ("5", 50, 256)


def test_upstream_failures_are_a1111_errors(daemon):
    daemon.do(daemon.sandbox.add_fault, "fail", route="get")
    resp = httpx.post(sd(daemon, "txt2img"), json={"prompt": "p"}, timeout=30)
    assert resp.status_code == 500
    body = resp.json()
    assert set(body) == {"error", "detail", "body", "errors"}
    assert body["error"] == "JobFailed" and body["detail"] == body["errors"]
    assert httpx.get(sd(daemon, "progress")).json()["state"]["job_count"] == 0


def test_queue_full_is_a_429(make_daemon):
    daemon = make_daemon(max_active_jobs=1, max_queued_jobs=0,
                         sandbox_options={"generation_time": 2.0})
    httpx.post(daemon.url + "/arting/v1/jobs", json={"prompt": "first"})
    resp = httpx.post(sd(daemon, "txt2img"), json={"prompt": "second"})
    assert resp.status_code == 429 and resp.json()["error"] == "QueueFull"
    assert int(resp.headers["Retry-After"]) >= 1


def test_unknown_routes_and_methods_and_ping(daemon):
    resp = httpx.get(sd(daemon, "no-such-thing"))
    assert (resp.status_code, resp.json()) == (404, {"detail": "Not Found"})
    resp = httpx.get(sd(daemon, "txt2img"))
    assert (resp.status_code, resp.json()) == (405, {"detail": "Method Not Allowed"})
    resp = httpx.get(daemon.url + "/internal/ping")
    assert (resp.status_code, resp.json()) == (200, {})


def test_client_going_away_cancels_its_jobs(make_daemon):
    daemon = make_daemon(sandbox_options={"generation_time": 5.0})
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(sd(daemon, "txt2img"), json={"prompt": "p", "n_iter": 2}, timeout=0.5)
    wait_for(lambda: [j.state.value for j in daemon.engine._jobs.values()] ==
             ["cancelled", "cancelled"], timeout=3)
    assert httpx.get(sd(daemon, "progress")).json()["state"]["job_count"] == 0


def test_auth_off_ignores_whatever_authorization_arrives(daemon):
    for header in ("Basic ", "", "Basic Zm9vOmJhcg==", "Bearer whatever", "Basic !!"):
        status, _, body = raw_get(daemon, "options", header)
        assert status == 200 and "sd_model_checkpoint" in body, header


def test_auth_on_takes_basic_pairs_and_bearer_keys(make_daemon):
    daemon = make_daemon(basic_auth=["alice:s3cret"], api_keys=["the-key"])
    for header in (None, "Basic ", "Bearer wrong", "Basic !!"):
        status, headers, body = raw_get(daemon, "options", header)
        assert status == 401 and body["error"] == "Unauthorized", header
        assert headers["WWW-Authenticate"].startswith("Basic")
    assert httpx.get(sd(daemon, "options"), auth=("alice", "wrong")).status_code == 401
    assert httpx.get(sd(daemon, "options"), auth=("alice", "s3cret")).status_code == 200
    assert httpx.get(sd(daemon, "options"),
                     headers={"Authorization": "Bearer the-key"}).status_code == 200
    assert httpx.get(daemon.url + "/internal/ping").status_code == 200
    api = webuiapi.WebUIApi(*host_port(daemon), username="alice", password="s3cret")
    assert api.txt2img(prompt="p", seed=3).info["seed"] == 3


def test_options_outlive_a_restart(make_daemon, tmp_path):
    first = make_daemon(data_dir=tmp_path / "kept")
    httpx.post(f"{first.url}/sdapi/v1/options",
               json={"sd_model_checkpoint": "asyncsMIX_v7", "samples_format": "webp"})
    first.stop()
    second = make_daemon(data_dir=tmp_path / "kept")
    options = httpx.get(f"{second.url}/sdapi/v1/options").json()
    assert options["sd_model_checkpoint"].startswith("asyncsMIX_v7")
    assert options["samples_format"] == "webp"
