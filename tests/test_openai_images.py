"""The OpenAI Images API, driven by the real ``openai`` package over real sockets."""

from __future__ import annotations

import asyncio
import base64
import io
import logging
import time
import uuid

import aiohttp

import httpx
import openai
import pytest
from PIL import Image

TOKEN = "0d4b5d8e-1111-4a2b-9c3d-5e6f7a8b9c0d"


def png_size(data: bytes) -> tuple[int, int]:
    assert data.startswith(b"\x89PNG")
    return Image.open(io.BytesIO(data)).size


@pytest.fixture
def client(daemon):
    return openai.OpenAI(base_url=daemon.v1, api_key="anything", max_retries=0)


def test_b64_json_is_a_png_of_the_requested_size(client):
    resp = client.images.generate(model="dall-e-3", prompt="a lighthouse",
                                  size="512x768", response_format="b64_json")
    assert isinstance(resp.created, int)
    assert png_size(base64.b64decode(resp.data[0].b64_json)) == (512, 768)
    assert resp.data[0].revised_prompt == "a lighthouse"


def test_url_serves_that_png(client):
    resp = client.images.generate(prompt="a fox", size="768x512", response_format="url")
    got = httpx.get(resp.data[0].url)
    assert got.status_code == 200 and got.headers["content-type"] == "image/png"
    assert png_size(got.content) == (768, 512)


def test_n_gives_that_many_images(client, daemon):
    resp = client.images.generate(prompt="twins", n=2, response_format="b64_json",
                                  extra_body={"seed": 10})
    images = [base64.b64decode(d.b64_json) for d in resp.data]
    assert len(images) == 2 and images[0] != images[1]
    assert daemon.sandbox.requests_for("create")[-1].body["samples"] == 2


def test_gpt_image_names_answer_base64(client):
    resp = client.images.generate(model="gpt-image-1", prompt="p")
    assert resp.data[0].b64_json and resp.data[0].url is None


def test_every_client_field_is_accepted(client, daemon):
    for size in ("auto", "512x512", "1536x1024", "1536x864"):
        client.images.generate(prompt="p", size=size, quality="hd", style="natural",
                               background="transparent", output_format="webp",
                               extra_body={"seed": 1, "steps": 4, "whatever": True})
    body = daemon.sandbox.requests_for("create")[-1].body
    assert (body["width"], body["height"], body["seed"], body["steps"]) == (1360, 768, 1, 4)


def test_arting_extras(client, daemon):
    client.images.generate(prompt="p", model="asyncsMIX_v7", extra_body={
        "negative_prompt": "blurry", "guidance": 9, "sampler": "DPM2", "clip_skip": 1,
        "loras": [{"id": "add_detail", "weight": 0.5}], "nsfw": True})
    body = daemon.sandbox.requests_for("create")[-1].body
    assert body["model_id"] == "asyncsMIX_v7" and body["negative_prompt"] == "blurry"
    assert (body["guidance"], body["sampler"], body["clip_skip"]) == (9, "DPM2", 1)
    assert (body["lora_ids"], body["lora_weight"], body["is_nsfw"]) == ("add_detail", "0.5",
                                                                        True)


def test_missing_prompt_is_a_bad_request_naming_prompt(client):
    with pytest.raises(openai.BadRequestError) as err:
        client.images.generate(prompt="", n=1)
    assert err.value.param == "prompt" and err.value.code == "invalid_request"
    assert err.value.body["type"] == "invalid_request_error"


def test_too_many_images(client):
    with pytest.raises(openai.BadRequestError) as err:
        client.images.generate(prompt="p", n=9)
    assert err.value.param == "n" and "max_images" in err.value.message


def test_wrong_key_is_an_authentication_error(make_daemon):
    daemon = make_daemon(api_keys=["right-key"])
    wrong = openai.OpenAI(base_url=daemon.v1, api_key="wrong-key", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as err:
        wrong.images.generate(prompt="p")
    assert err.value.code == "invalid_api_key" and "wrong-key" not in str(err.value)
    right = openai.OpenAI(base_url=daemon.v1, api_key="right-key", max_retries=0)
    assert right.images.generate(prompt="p").data


def test_models(client):
    ids = [m.id for m in client.models.list().data]
    assert "oneFORALLAnime" in ids and "dall-e-3" in ids
    assert client.models.retrieve("asyncsMIX_v7").owned_by == "arting"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("no-such-model")


def test_a_failed_job_answers_fast_and_says_not_to_retry(client, daemon):
    daemon.do(daemon.sandbox.add_fault, "fail", route="get")
    started = time.monotonic()
    with pytest.raises(openai.APIStatusError) as err:
        client.images.generate(prompt="p")
    assert time.monotonic() - started < 10          # not after run_timeout (240 s)
    assert err.value.status_code == 502 and err.value.code == "generation_failed"
    assert err.value.response.headers["x-should-retry"] == "false"


@pytest.mark.parametrize("kind, options, status, code", [
    ("token_expired", {}, 502, "upstream_auth"),
    ("cf_challenge", {}, 502, "cloudflare_blocked"),
    ("reject", {}, 502, "upstream_rejected"),
    ("rate_limit", {"retry_after": 100}, 429, "upstream_rate_limited"),
])
def test_upstream_faults_map_to_openai_errors(client, daemon, kind, options, status, code):
    daemon.do(daemon.sandbox.add_fault, kind, route="create", **options)
    with pytest.raises(openai.APIStatusError) as err:
        client.images.generate(prompt="p")
    assert (err.value.status_code, err.value.code) == (status, code)


def test_run_timeout_is_a_504(make_daemon):
    daemon = make_daemon(run_timeout=0.5)
    daemon.do(daemon.sandbox.add_fault, "never_finish", route="create")
    client = openai.OpenAI(base_url=daemon.v1, api_key="x", max_retries=0)
    with pytest.raises(openai.APIStatusError) as err:
        client.images.generate(prompt="p")
    assert err.value.status_code == 504 and "run_timeout" in err.value.message


def test_queue_full_is_a_429_with_retry_after(make_daemon):
    daemon = make_daemon(max_active_jobs=1, max_queued_jobs=0,
                         sandbox_options={"generation_time": 2.0})
    first = httpx.post(daemon.url + "/arting/v1/jobs", json={"prompt": "first"})
    assert first.status_code == 202
    resp = httpx.post(daemon.v1 + "/images/generations", json={"prompt": "second"})
    assert resp.status_code == 429
    assert resp.json()["error"]["code"] == "rate_limit_exceeded"
    assert int(resp.headers["Retry-After"]) >= 1


def test_body_too_large_is_a_413(make_daemon):
    daemon = make_daemon(max_body_mb=0.01)
    resp = httpx.post(daemon.v1 + "/images/generations",
                      json={"prompt": "p" * 20000})
    assert resp.status_code == 413 and resp.json()["error"]["code"] == "payload_too_large"


def test_client_going_away_cancels_the_job(make_daemon):
    daemon = make_daemon(sandbox_options={"generation_time": 5.0})
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(daemon.v1 + "/images/generations", json={"prompt": "p"}, timeout=0.5)
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        states = [j.state.value for j in daemon.engine._jobs.values()]
        if states == ["cancelled"]:
            break
        time.sleep(0.05)
    assert states == ["cancelled"]


def test_streaming_images(client):
    events = list(client.images.generate(prompt="p", stream=True, partial_images=2))
    assert [e.type for e in events] == ["image_generation.completed"]
    assert base64.b64decode(events[0].b64_json).startswith(b"\x89PNG")


def rgba_png(size=(64, 64), color=(0, 128, 255, 255)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGBA", size, color).save(buf, "PNG")
    return buf.getvalue()


def test_edit_one_image(client, daemon):
    resp = client.images.edit(image=("in.png", rgba_png((320, 256)), "image/png"),
                              prompt="as a watercolour", response_format="b64_json")
    assert png_size(base64.b64decode(resp.data[0].b64_json)) == (320, 256)
    body = daemon.sandbox.requests_for("i2i_create")[-1].body
    assert body["image_url"].startswith(daemon.sandbox.url + "/cdn/") and body["strength"] == 0.7
    uploaded, = daemon.uploads()                 # get_oss_signed_urls, then the PUT
    assert png_size(uploaded) == (320, 256)


def test_edit_two_images_and_a_mask(client, daemon):
    mask = Image.new("RGBA", (64, 64), (0, 0, 0, 255))
    mask.paste((0, 0, 0, 0), (0, 0, 32, 64))   # left half transparent: edit there
    buf = io.BytesIO()
    mask.save(buf, "PNG")
    resp = client.images.edit(
        image=[("a.png", rgba_png(), "image/png"), ("b.png", rgba_png(), "image/png")],
        mask=("m.png", buf.getvalue(), "image/png"), prompt="p", n=2, size="256x256",
        response_format="b64_json")
    assert len(resp.data) == 2
    out = Image.open(io.BytesIO(base64.b64decode(resp.data[0].b64_json))).convert("RGB")
    assert out.size == (256, 256)
    assert out.getpixel((250, 128)) == (0, 128, 255)      # kept from the original
    assert out.getpixel((5, 128)) != (0, 128, 255)        # regenerated


def uploaded_colour(daemon) -> tuple[int, int, int]:
    """The colour of the init image the daemon uploaded (the signed-URL way) for Arting."""
    data, = daemon.uploads()
    return Image.open(io.BytesIO(data)).convert("RGB").getpixel((0, 0))


def test_edit_with_two_images_uses_the_first(client, daemon):
    resp = client.images.edit(
        image=[("a.png", rgba_png((128, 96), (0, 128, 255, 255)), "image/png"),
               ("b.png", rgba_png((64, 64), (255, 0, 0, 255)), "image/png")],
        prompt="p", response_format="b64_json")
    assert png_size(base64.b64decode(resp.data[0].b64_json)) == (336, 256)  # first one's aspect
    assert uploaded_colour(daemon) == (0, 128, 255)
    assert len(daemon.sandbox.requests_for("i2i_create")) == 1


def test_edit_one_image_with_a_mask(client, daemon):
    mask = Image.new("RGBA", (64, 64), (0, 0, 0, 255))
    mask.paste((0, 0, 0, 0), (0, 32, 64, 64))   # bottom half transparent: edit there
    buf = io.BytesIO()
    mask.save(buf, "PNG")
    resp = client.images.edit(image=("in.png", rgba_png((256, 256)), "image/png"),
                              mask=("m.png", buf.getvalue(), "image/png"), prompt="p",
                              response_format="url", extra_body={"strength": 0.4})
    out = Image.open(io.BytesIO(httpx.get(resp.data[0].url).content)).convert("RGB")
    assert out.getpixel((128, 5)) == (0, 128, 255) and out.getpixel((128, 250)) != (0, 128, 255)
    assert daemon.sandbox.requests_for("i2i_create")[-1].body["strength"] == 0.4


def test_a_mask_without_transparency_is_refused(client):
    buf = io.BytesIO()
    Image.new("L", (64, 64), 255).save(buf, "PNG")
    with pytest.raises(openai.BadRequestError) as err:
        client.images.edit(image=("in.png", rgba_png(), "image/png"),
                           mask=("m.png", buf.getvalue(), "image/png"), prompt="p")
    assert err.value.param == "mask" and "transparent" in err.value.message


@pytest.mark.parametrize("key, count", [("image", 1), ("image[]", 2)])
def test_open_webui_edit_replay(daemon, key, count):
    """Open WebUI builds the multipart body itself: every field a string, uuid file names."""
    async def replay() -> dict:
        form = aiohttp.FormData()
        for name, value in {"model": "gpt-image-1", "prompt": "make it night", "n": "1",
                            "size": "512x512", "background": "auto",
                            "response_format": "b64_json"}.items():
            form.add_field(name, value)
        for i in range(count):
            form.add_field(key, rgba_png(), filename=f"{uuid.uuid4()}.png",
                           content_type="image/png")
        async with aiohttp.ClientSession() as http:
            async with http.post(daemon.v1 + "/images/edits", data=form,
                                 headers={"Authorization": "Bearer sk-x"}) as r:
                r.raise_for_status()
                return await r.json(content_type=None)

    result = asyncio.run(replay())
    assert png_size(base64.b64decode(result["data"][0]["b64_json"])) == (512, 512)


def test_edits_switched_off_say_how_to_switch_on(make_daemon):
    daemon = make_daemon(img2img=False)
    client = openai.OpenAI(base_url=daemon.v1, api_key="x", max_retries=0)
    with pytest.raises(openai.BadRequestError) as err:
        client.images.edit(image=("in.png", rgba_png(), "image/png"), prompt="p")
    assert err.value.code == "feature_disabled" and "ARTING_IMG2IMG" in err.value.message


def test_no_token_in_logs_or_responses(make_daemon, caplog):
    caplog.set_level(logging.DEBUG)
    daemon = make_daemon(auth_tokens=[TOKEN], api_keys=["the-api-key"])
    client = openai.OpenAI(base_url=daemon.v1, api_key="the-api-key", max_retries=0)
    client.images.generate(prompt="p")
    seen = [client.images.generate(prompt="p", response_format="url").model_dump_json()]
    for kind in ("token_expired", "cf_challenge", "reset"):
        daemon.do(daemon.sandbox.add_fault, kind, route="create", count=1)
        try:
            client.images.generate(prompt="p")
        except openai.APIStatusError as exc:
            seen.append(exc.response.text)
    for path in ("/arting/v1/status", "/arting/v1/jobs", "/healthz"):
        seen.append(httpx.get(daemon.url + path,
                              headers={"Authorization": "Bearer the-api-key"}).text)
    assert daemon.sandbox.requests_for("create")[0].headers["Authorization"] == TOKEN
    everything = caplog.text + "".join(seen) + "".join(
        str(r.__dict__) for r in caplog.records)
    assert TOKEN not in everything
    assert "the-api-key" not in everything


def test_a_streaming_client_going_away_cancels_its_job(make_daemon, caplog):
    """Noticed within a second or so, though the stream is silent for 10 s at a time."""
    daemon = make_daemon(sandbox_options={"generation_time": 30.0})
    with httpx.stream("POST", daemon.v1 + "/images/generations", timeout=10,
                      json={"prompt": "p", "stream": True}) as resp:
        assert resp.headers["content-type"].startswith("text/event-stream")
        deadline = time.monotonic() + 5
        while [j.state.value for j in daemon.engine._jobs.values()] != ["running"]:
            assert time.monotonic() < deadline
            time.sleep(0.02)
    left = time.monotonic()
    while [j.state.value for j in daemon.engine._jobs.values()] != ["cancelled"]:
        assert time.monotonic() - left < 3, "the daemon did not notice the client leave"
        time.sleep(0.02)
    assert "Error handling request" not in caplog.text
