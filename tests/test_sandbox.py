"""The Arting sandbox, driven over real loopback sockets."""

from __future__ import annotations

import asyncio
import base64
import io
import ipaddress
import json
import os
import signal
import socket
import subprocess
import sys
import time

import aiohttp
import pytest
from PIL import Image, ImageStat
from processes import START_TIMEOUT, first_line
from pydantic import ValidationError

from arting_daemon import catalog
from arting_daemon.sandbox import Fault, Sandbox, SandboxConfig
from clock import ManualClock

CREATE = "/api/cg/text-to-image/create"
GET = "/api/cg/text-to-image/get"
I2I_CREATE = "/api/cg/image-to-image/create"
I2I_GET = "/api/cg/image-to-image/get"
SIGNED_URLS = "/api/cg/get_oss_signed_urls"
ENHANCE = "/api/image/image-enhance/create-task"
ENHANCE_GET = "/api/image/image-enhance/get-task-result"
UUID = "3f2b8c1e-9d4a-4c6b-8e2f-1a2b3c4d5e6f"
BODY = {"prompt": "a lighthouse at dawn", "model_id": "oneFORALLAnime", "samples": 1,
        "width": 128, "height": 96, "negative_prompt": "blurry", "seed": 42, "lora_ids": "",
        "lora_weight": "0.7", "sampler": "Euler a", "steps": 25, "guidance": 7,
        "clip_skip": 2, "is_nsfw": False}


@pytest.fixture
async def http():
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
async def clocked():
    """An emulator on a clock the test moves (for what happens with time)."""
    sb = Sandbox(clock=ManualClock())
    await sb.start()
    yield sb
    await sb.close()


async def post(http, sb, path, body=None, token=UUID, **kw):
    """POST JSON (as an identity, unless ``token`` is None); returns (status, parsed JSON or
    None, headers)."""
    headers = {"Authorization": token} if token is not None else {}
    async with http.post(sb.url + path, json=body, headers=headers, **kw) as resp:
        raw = await resp.read()
        try:
            data = json.loads(raw)
        except ValueError:
            data = None
        return resp.status, data, resp.headers


async def create(http, sb, token=UUID, path=CREATE, **fields):
    status, data, _ = await post(http, sb, path, {**BODY, **fields}, token)
    assert status == 200 and data["code"] == 100000, data
    return data["data"]["request_id"]


async def poll(http, sb, request_id, token=None, path=GET):
    status, data, _ = await post(http, sb, path, {"request_id": request_id}, token)
    assert status == 200, data
    return data


async def generate(http, sb, path=CREATE, get_path=GET, **fields):
    """Create, poll once (generation_time is 0), and return the output URLs."""
    data = await poll(http, sb, await create(http, sb, path=path, **fields), path=get_path)
    assert data["data"]["status"] == "success", data
    return data["data"]["output"]


async def download(http, url):
    async with http.get(url) as resp:
        assert resp.status == 200 and resp.content_type == "image/png"
        return await resp.read()


def solid_png(colour, size=(64, 64)):
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, "PNG")
    return buffer.getvalue()


def jwt(exp, alg="HS256"):
    def part(obj):
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()
    return f"{part({'alg': alg, 'typ': 'JWT'})}.{part({'user_id': 7, 'exp': exp})}.c2lnbmF0dXJl"


def corner_colour(png, box=(0, 0, 16, 16)):
    """The mean colour of a corner, far from the caption band."""
    image = Image.open(io.BytesIO(png)).convert("RGB").crop(box)
    return tuple(round(channel) for channel in ImageStat.Stat(image).mean)


# --- create / get wire format ------------------------------------------------------------

async def test_create_answers_request_id_envelope(sandbox, http):
    status, data, headers = await post(http, sandbox, CREATE, BODY)
    assert status == 200
    assert data["code"] == 100000 and data["message"] == "Request Success"
    assert set(data["data"]) == {"request_id"} and isinstance(data["data"]["request_id"], str)
    assert headers["Server"] == "cloudflare" and headers["cf-ray"]


async def test_pending_then_done_wire_format(sandbox, http):
    sandbox.configure(complete_after_polls=2)
    request_id = await create(http, sandbox, samples=3)
    pending = await poll(http, sandbox, request_id)
    assert pending == {"code": 100000, "message": "Request Success",
                       "data": {"request_id": request_id, "status": "processing", "output": [],
                                "remain_balance": 997}}
    done = (await poll(http, sandbox, request_id))["data"]
    assert done["status"] == "success"
    assert done["output"] == [f"{sandbox.url}/files/{request_id}/{i}.png" for i in range(3)]
    assert sandbox.jobs[request_id].state == "done" and sandbox.jobs[request_id].polls == 2


async def test_generation_time_and_custom_status_literals(clocked, http):
    sandbox = clocked
    sandbox.configure(generation_time=0.3, pending_status="queued", done_status="finished")
    request_id = await create(http, sandbox)
    assert (await poll(http, sandbox, request_id))["data"]["status"] == "queued"
    await sandbox.clock.advance(0.35)
    data = (await poll(http, sandbox, request_id))["data"]
    assert data["status"] == "finished" and len(data["output"]) == 1


async def test_complete_after_polls_ignores_time(sandbox, http):
    sandbox.configure(complete_after_polls=3, generation_time=100)
    request_id = await create(http, sandbox)
    statuses = [(await poll(http, sandbox, request_id))["data"]["status"] for _ in range(3)]
    assert statuses == ["processing", "processing", "success"]


async def test_unknown_request_id(sandbox, http):
    status, data, _ = await post(http, sandbox, GET, {"request_id": "nope"})
    assert status == 200 and data == {"code": 100404, "message": "task not found", "data": None}


async def test_txt2img_id_is_not_an_img2img_task(sandbox, http):
    request_id = await create(http, sandbox)
    status, data, _ = await post(http, sandbox, I2I_GET, {"request_id": request_id})
    assert data["code"] == 100404


async def test_extra_fields_ignored_and_empty_model_falls_back(sandbox, http):
    request_id = await create(http, sandbox, model_id="", style="anime", extra={"x": 1})
    assert sandbox.jobs[request_id].model == next(iter(catalog.MODELS))


async def test_the_newer_model_id_is_accepted(sandbox, http):
    request_id = await create(http, sandbox, model_id="waiANINSFWPONYXL_v80")
    assert sandbox.jobs[request_id].model == "waiANINSFWPONYXL_v80"


async def test_public_url_is_used_for_outputs(sandbox, http):
    sandbox.configure(public_url="https://img.example.test/")
    urls = await generate(http, sandbox)
    assert urls[0].startswith("https://img.example.test/files/")


# --- images ------------------------------------------------------------------------------

async def test_image_is_png_of_requested_size(sandbox, http):
    urls = await generate(http, sandbox, width=320, height=200, samples=2)
    for url in urls:
        image = Image.open(io.BytesIO(await download(http, url)))
        assert image.format == "PNG" and image.size == (320, 200)


async def test_image_is_deterministic_per_seed_and_prompt(sandbox, http):
    first = await download(http, (await generate(http, sandbox, seed=5))[0])
    again = await download(http, (await generate(http, sandbox, seed=5))[0])
    other_seed = await download(http, (await generate(http, sandbox, seed=6))[0])
    other_prompt = await download(http, (await generate(http, sandbox, seed=5, prompt="x"))[0])
    assert first == again
    assert first != other_seed and first != other_prompt


async def test_sample_index_shifts_the_seed(sandbox, http):
    urls = await generate(http, sandbox, seed=10, samples=2)
    second = await download(http, urls[1])
    assert second != await download(http, urls[0])
    assert second == await download(http, (await generate(http, sandbox, seed=11))[0])


async def test_images_are_rendered_once_and_cached(sandbox, http):
    url = (await generate(http, sandbox, seed=77))[0]
    before = sandbox.images.renders
    results = await asyncio.gather(*(download(http, url) for _ in range(4)))
    assert len(set(results)) == 1 and sandbox.images.renders == before + 1


async def test_image_of_unfinished_or_unknown_job_is_404(sandbox, http):
    sandbox.configure(complete_after_polls=5)
    request_id = await create(http, sandbox)
    for path in (f"/files/{request_id}/0.png", "/files/nope/0.png"):
        async with http.get(sandbox.url + path) as resp:
            assert resp.status == 404


async def test_image_expiry(clocked, http):
    sandbox = clocked
    sandbox.configure(image_expiry=0.2)
    url = (await generate(http, sandbox))[0]
    await download(http, url)
    await sandbox.clock.advance(0.3)
    async with http.get(url) as resp:
        assert resp.status == 404 and (await resp.json())["message"] == "file expired"


async def test_random_seeds_repeat_with_config_seed_and_ids_are_each_emulators_own(http):
    """Two emulators with one seed (two replicas run with --sandbox) draw the same seeds
    but never the same request id: a job taken over follows its own id only."""
    runs = []
    for _ in range(2):
        sb = Sandbox(seed=9)
        await sb.start()
        try:
            ids = [await create(http, sb, seed=-1) for _ in range(2)]
            runs.append([(rid, sb.jobs[rid].seed) for rid in ids])
        finally:
            await sb.close()
    assert [seed for _, seed in runs[0]] == [seed for _, seed in runs[1]]
    assert runs[0][0][1] != runs[0][1][1]
    ids = [rid for run in runs for rid, _ in run]
    assert len(set(ids)) == 4 and all(len(i) == 32 for i in ids)


# --- validation --------------------------------------------------------------------------

@pytest.mark.parametrize("change, code", [
    ({"prompt": "   "}, 100901),
    ({"prompt": None}, 100900),
    ({"model_id": "dall-e-3"}, 100905),
    ({"samples": 0}, 100902),
    ({"samples": 5}, 100902),
    ({"samples": "1"}, 100900),
    ({"width": 32}, 100903),
    ({"height": 4096}, 100903),
    ({"width": 512.0}, 100900),
    ({"seed": "-1"}, 100900),
    ({"is_nsfw": "false"}, 100900),
    ({"steps": True}, 100900),
    ({"guidance": "7"}, 100900),
    ({"lora_ids": ["add_detail"]}, 100900),
    ({"lora_weight": True}, 100900),
    ({"lora_ids": "a,b,c", "lora_weight": "0.7,0.5"}, 100904),
    ({"lora_ids": "a", "lora_weight": ""}, 100904),
    ({"lora_ids": "a", "lora_weight": "heavy"}, 100904),
])
async def test_validation_errors(sandbox, http, change, code):
    status, data, _ = await post(http, sandbox, CREATE, {**BODY, **change})
    assert status == 200 and data["code"] == code and data["data"] is None
    assert data["message"]
    assert not sandbox.jobs


async def test_missing_prompt_and_non_json_bodies(sandbox, http):
    body = {k: v for k, v in BODY.items() if k != "prompt"}
    assert (await post(http, sandbox, CREATE, body))[1]["code"] == 100900
    for raw in (b"prompt=cat", b"[1, 2]", b""):
        async with http.post(sandbox.url + CREATE, data=raw,
                             headers={"Authorization": UUID}) as resp:
            assert resp.status == 200 and (await resp.json())["code"] == 100400


async def test_validation_errors_as_http_400(sandbox, http):
    sandbox.configure(errors_as_http=True)
    status, data, _ = await post(http, sandbox, CREATE, {**BODY, "samples": 9})
    assert status == 400 and data["code"] == 100902
    status, data, _ = await post(http, sandbox, GET, {"request_id": "nope"})
    assert status == 404 and data["code"] == 100404


@pytest.mark.parametrize("change", [
    {"lora_ids": "add_detail,Sv5-10", "lora_weight": "0.7"},
    {"lora_ids": "add_detail,Sv5-10", "lora_weight": "0.7, 0.5"},
    {"lora_ids": "", "lora_weight": "0.7"},
    {"lora_ids": "", "lora_weight": ""},
    {"lora_ids": "add_detail,Sv5-10", "lora_weight": 0.7},   # a number, as one client sends
    {"lora_ids": "add_detail", "lora_weight": 1},
])
async def test_lora_forms_accepted(sandbox, http, change):
    await create(http, sandbox, **change)


def test_config_and_fault_validation():
    with pytest.raises(ValidationError):
        SandboxConfig(min_side=600, max_side=500)
    with pytest.raises(ValidationError):
        Sandbox(auth_mode="bogus")
    with pytest.raises(ValidationError):
        Fault(kind="explode")
    with pytest.raises(ValidationError):
        Fault(kind="never_finish", route="get")
    with pytest.raises(ValidationError):
        Fault(kind="slow")
    with pytest.raises(ValidationError):
        Fault(kind="storage_refused", route="create")
    with pytest.raises(ValidationError):
        Fault(kind="reset", route="upload")
    sb = Sandbox()
    with pytest.raises(ValidationError):
        sb.configure(max_samples=0)
    assert sb.config.max_samples == 4
    with pytest.raises(ValidationError):
        sb.config.generation_time = -1


# --- auth --------------------------------------------------------------------------------

FUTURE, PAST = time.time() + 3600, time.time() - 3600


@pytest.mark.parametrize("mode, token, problem", [
    ("lenient", None, "Authorization failed"),
    ("lenient", "Bearer anything", None),
    ("uuid", UUID, None),
    ("uuid", UUID.upper(), None),
    ("uuid", None, "Authorization failed"),
    ("uuid", "not-a-uuid", "invalid token"),
    ("uuid", jwt(FUTURE), "invalid token"),
    ("jwt", jwt(FUTURE), None),
    ("jwt", jwt(PAST), "token expired"),
    ("jwt", jwt(FUTURE, alg="none"), "invalid token"),
    ("jwt", "a.b", "invalid token"),
    ("jwt", UUID, "invalid token"),
    ("strict", UUID, None),
    ("strict", jwt(FUTURE), None),
    ("strict", jwt(PAST), "token expired"),
    ("strict", f"Bearer {UUID}", "invalid token"),
    ("strict", None, "Authorization failed"),
])
async def test_auth_modes(sandbox, http, mode, token, problem):
    sandbox.configure(auth_mode=mode)
    status, data, _ = await post(http, sandbox, CREATE, BODY, token)
    assert status == 200
    if problem is None:
        assert data["code"] == 100000
        assert sandbox.jobs[data["data"]["request_id"]].token == token
    else:
        assert data == {"code": 100401, "message": problem, "data": None}


async def test_auth_errors_as_http_401(sandbox, http):
    sandbox.configure(auth_mode="jwt", auth_error_http=True)
    status, data, _ = await post(http, sandbox, CREATE, BODY, jwt(PAST))
    assert status == 401 and data == {"code": 100401, "message": "token expired", "data": None}


async def test_poll_needs_no_token_unless_same_token_poll(sandbox, http):
    request_id = await create(http, sandbox, token=UUID)
    assert (await poll(http, sandbox, request_id, token="someone else"))["code"] == 100000
    sandbox.configure(same_token_poll=True)
    request_id = await create(http, sandbox, token=UUID)
    assert (await poll(http, sandbox, request_id, token="someone else"))["code"] == 100404
    assert (await poll(http, sandbox, request_id))["code"] == 100404
    assert (await poll(http, sandbox, request_id, token=UUID))["code"] == 100000


async def test_requests_are_recorded_as_received(sandbox, http):
    headers = {"Authorization": UUID, "Origin": "https://arting.ai"}
    async with http.post(sandbox.url + CREATE, json=BODY, headers=headers) as resp:
        assert resp.status == 200
    record = sandbox.requests_for("create")[0]
    assert record.method == "POST" and record.path == CREATE
    assert record.headers["Authorization"] == UUID and record.header("origin") == "https://arting.ai"
    assert record.body["lora_weight"] == "0.7" and record.body["is_nsfw"] is False
    assert record.client_ip == "127.0.0.1"


# --- generation time ---------------------------------------------------------------------

async def durations(http, **config):
    sb = Sandbox(**config)
    await sb.start()
    try:
        ids = [await create(http, sb) for _ in range(5)]
        return [sb.jobs[i].done_at - sb.jobs[i].created_at for i in ids]
    finally:
        await sb.close()


async def test_lognormal_durations_repeat_with_seed(http):
    config = {"generation_dist": "lognormal", "generation_median": 5, "generation_max": 6}
    first = await durations(http, seed=3, **config)
    assert first == await durations(http, seed=3, **config)
    assert first != await durations(http, seed=4, **config)
    assert all(0 < d <= 6 for d in first) and len(set(first)) > 1


async def test_uniform_durations_stay_in_range(http):
    values = await durations(http, generation_dist="uniform", generation_low=2,
                             generation_high=3)
    assert all(2 <= d <= 3 for d in values)


# --- faults ------------------------------------------------------------------------------

CF_PAGES = [
    ("cf_challenge", 403, ["<title>Just a moment...</title>", "window._cf_chl_opt={"],
     ["orchestrate", "challenge-form"], "challenge"),
    ("cf_challenge_v2", 503, ["<title>Just a moment...</title>", "window._cf_chl_opt={",
                              "cpo.src = '/cdn-cgi/challenge-platform/h/b/orchestrate/jsch/v1?"],
     [], "challenge"),
    ("cf_html_200", 200, ["<title>Just a moment...</title>"], [], None),
    ("cf_1020", 403, ['<span class="cf-error-code">1020</span>', "Access denied"], [], None),
    ("cf_5xx", 522, ['<span class="cf-error-code">522</span>', "Connection timed out"], [], None),
    ("cf_rate_limit", 429, ['<span class="cf-error-code">1015</span>',
                            "You are being rate limited"], [], None),
]


@pytest.mark.parametrize("kind, status, present, absent, mitigated", CF_PAGES)
async def test_cloudflare_pages(sandbox, http, kind, status, present, absent, mitigated):
    sandbox.add_fault(kind, route="create")
    async with http.post(sandbox.url + CREATE, json=BODY) as resp:
        text = await resp.text()
        assert resp.status == status
        assert resp.headers["Server"] == "cloudflare"
        assert resp.headers["Content-Type"] == "text/html; charset=UTF-8"
        ray, _, airport = resp.headers["cf-ray"].partition("-")
        assert len(ray) == 16 and int(ray, 16) >= 0 and len(airport) == 3
        assert resp.headers.get("cf-mitigated") == mitigated
    assert all(marker in text for marker in present)
    assert not any(marker in text for marker in absent)
    assert not sandbox.jobs


async def test_cf_5xx_status_and_rate_limit_retry_after(sandbox, http):
    sandbox.add_fault("cf_5xx", route="create", status=524, count=1)
    sandbox.add_fault("cf_rate_limit", route="get", retry_after=7)
    async with http.post(sandbox.url + CREATE, json=BODY) as resp:
        assert resp.status == 524 and "A timeout occurred" in await resp.text()
    async with http.post(sandbox.url + GET, json={"request_id": "x"}) as resp:
        assert resp.status == 429 and resp.headers["Retry-After"] == "7"


async def test_challenge_form_post_is_refused(sandbox, http):
    async with http.post(sandbox.url + "/cdn-cgi/challenge-platform/h/b/jsch/v1?__cf_chl_f_tk=x",
                         data={"r": "x"}) as resp:
        assert resp.status == 403 and resp.headers["Server"] == "cloudflare"


@pytest.mark.parametrize("kind, kw, status, body", [
    ("rate_limit", {}, 429, {"code": 100429, "message": "too many requests", "data": None}),
    ("quota", {}, 200, {"code": 100460, "message": "free credits used up", "data": None}),
    ("reject", {}, 200, {"code": 100905, "message": "Model not supported", "data": None}),
    ("reject", {"code": 100999, "message": "nope"}, 200,
     {"code": 100999, "message": "nope", "data": None}),
    ("http_error", {}, 500, {"code": 100500, "message": "Internal Server Error", "data": None}),
    ("http_error", {"status": 502, "body": "empty"}, 502, None),
    ("http_error", {"status": 599}, 599, {"code": 100500, "message": "HTTP error", "data": None}),
    ("token_expired", {}, 200, {"code": 100401, "message": "token expired", "data": None}),
    ("invalid_token", {}, 200, {"code": 100401, "message": "invalid token", "data": None}),
])
async def test_json_faults(sandbox, http, kind, kw, status, body):
    sandbox.add_fault(kind, route="create", **kw)
    got_status, data, headers = await post(http, sandbox, CREATE, BODY)
    assert (got_status, data) == (status, body)
    if kind == "rate_limit":
        assert headers["Retry-After"] == "2"


async def test_token_faults_follow_auth_error_http(sandbox, http):
    sandbox.configure(auth_error_http=True)
    sandbox.add_fault("invalid_token", route="create")
    assert (await post(http, sandbox, CREATE, BODY, UUID))[0] == 401


async def test_reset_fault_drops_the_connection(sandbox, http):
    sandbox.add_fault("reset", route="create", count=1)
    with pytest.raises(aiohttp.ClientConnectionError):
        await post(http, sandbox, CREATE, BODY)
    await create(http, sandbox)


async def test_truncated_json_fault(sandbox, http):
    sandbox.add_fault("truncated_json", route="get")
    request_id = await create(http, sandbox)
    async with http.post(sandbox.url + GET, json={"request_id": request_id}) as resp:
        assert resp.status == 200 and resp.content_type == "application/json"
        raw = await resp.read()
    assert raw.startswith(b'{"code": 100000')
    with pytest.raises(ValueError):
        json.loads(raw)


async def test_slow_fault_delays_then_answers(sandbox, http):
    sandbox.add_fault("slow", route="create", delay=0.3)
    started = time.monotonic()
    await create(http, sandbox)
    assert time.monotonic() - started >= 0.3
    with pytest.raises(asyncio.TimeoutError):
        await post(http, sandbox, CREATE, BODY, timeout=aiohttp.ClientTimeout(total=0.1))


async def test_fail_fault_on_create_and_on_get(sandbox, http):
    sandbox.add_fault("fail", route="create", count=1)
    failed_at_birth = await create(http, sandbox)
    healthy = await create(http, sandbox)
    data = (await poll(http, sandbox, failed_at_birth))["data"]
    assert data == {"request_id": failed_at_birth, "status": "failed", "output": [],
                    "remain_balance": 998}
    sandbox.add_fault("fail", route="get", count=1)
    assert (await poll(http, sandbox, healthy))["data"]["status"] == "failed"
    assert sandbox.jobs[healthy].state == "failed"


async def test_fail_code_fault(sandbox, http):
    sandbox.add_fault("fail_code", route="get")
    request_id = await create(http, sandbox)
    data = await poll(http, sandbox, request_id)
    assert data == {"code": 100500, "message": "generation failed", "data": None}


async def test_never_finish_fault(sandbox, http):
    sandbox.add_fault("never_finish", route="create", count=1)
    request_id = await create(http, sandbox)
    for _ in range(3):
        data = (await poll(http, sandbox, request_id))["data"]
        assert data["status"] == "processing" and data["output"] == []
    assert sandbox.jobs[request_id].state == "never"


async def test_empty_output_done_fault(sandbox, http):
    sandbox.add_fault("empty_output_done", route="get", count=1)
    request_id = await create(http, sandbox)
    assert (await poll(http, sandbox, request_id))["data"] == {
        "request_id": request_id, "status": "success", "output": [], "remain_balance": 999}
    assert len((await poll(http, sandbox, request_id))["data"]["output"]) == 1


async def test_expired_image_fault(sandbox, http):
    url = (await generate(http, sandbox))[0]
    sandbox.add_fault("expired_image", count=1)
    sandbox.add_fault("expired_image", status=403, count=1)
    statuses = []
    for _ in range(3):
        async with http.get(url) as resp:
            statuses.append(resp.status)
    assert statuses == [404, 403, 200]


async def test_fault_after_every_count(sandbox, http):
    sandbox.add_fault("http_error", route="create", after=1, every=2, count=2)
    statuses = [(await post(http, sandbox, CREATE, BODY))[0] for _ in range(7)]
    assert statuses == [200, 500, 200, 500, 200, 200, 200]


async def test_faults_only_hit_their_route(sandbox, http):
    sandbox.add_fault("http_error", route="get")
    request_id = await create(http, sandbox)
    assert (await post(http, sandbox, GET, {"request_id": request_id}))[0] == 500
    sandbox.clear_faults()
    sandbox.add_fault("http_error")
    assert (await post(http, sandbox, CREATE, BODY))[0] == 500
    assert (await post(http, sandbox, GET, {"request_id": request_id}))[0] == 500


async def test_any_fault_can_be_delayed(sandbox, http):
    sandbox.add_fault("quota", route="create", delay=0.2)
    started = time.monotonic()
    assert (await post(http, sandbox, CREATE, BODY))[1]["code"] == 100460
    assert time.monotonic() - started >= 0.2


# --- signed-URL upload (storage) ---------------------------------------------------------

async def signed(http, sb, suffix="png", token=UUID):
    status, data, _ = await post(http, sb, SIGNED_URLS, {"f_suffixs": [suffix]}, token)
    assert status == 200 and data["code"] == 100000, data
    (pair,) = data["data"]["oss_signed_urls"]
    return pair


async def put(http, url, data, content_type="image/png"):
    """PUT bytes to a signed URL, with no Authorization; returns (status, body text)."""
    async with http.put(url, data=data, headers={"Content-Type": content_type}) as resp:
        return resp.status, await resp.text()


async def upload(http, sb, data, content_type="image/png"):
    pair = await signed(http, sb, content_type.rpartition("/")[2])
    assert (await put(http, pair["put"], data, content_type))[0] == 200
    return pair["get"]


async def test_signed_urls_then_put_then_get(sandbox, http):
    red = solid_png((255, 0, 0))
    pair = await signed(http, sandbox)
    assert pair["put"].startswith(f"{sandbox.url}/oss/uploads/") and "Signature=" in pair["put"]
    assert pair["get"].startswith(f"{sandbox.url}/cdn/uploads/") and pair["get"].endswith(".png")
    async with http.get(pair["get"]) as resp:
        assert resp.status == 404                       # nothing there before the PUT
    status, _ = await put(http, pair["put"], red)
    assert status == 200
    async with http.get(pair["get"]) as resp:
        assert resp.status == 200 and resp.content_type == "image/png"
        assert await resp.read() == red
    put_request = sandbox.requests_for("oss_put")[0]
    assert put_request.method == "PUT" and put_request.body == red
    assert put_request.header("Authorization") is None
    assert sandbox.requests_for("signed_urls")[0].body == {"f_suffixs": ["png"]}


async def test_signed_urls_one_pair_per_suffix(sandbox, http):
    status, data, _ = await post(http, sandbox, SIGNED_URLS, {"f_suffixs": ["png", "jpg"]})
    pairs = data["data"]["oss_signed_urls"]
    assert [p["get"].rpartition(".")[2] for p in pairs] == ["png", "jpg"]
    assert pairs[0]["put"] != pairs[1]["put"]


@pytest.mark.parametrize("body", [{}, {"f_suffixs": []}, {"f_suffixs": "png"},
                                  {"f_suffixs": ["exe"]}, {"f_suffixs": [3]}])
async def test_signed_urls_validation(sandbox, http, body):
    assert (await post(http, sandbox, SIGNED_URLS, body))[1]["code"] == 100908


async def test_signed_urls_need_an_identity(sandbox, http):
    data = (await post(http, sandbox, SIGNED_URLS, {"f_suffixs": ["png"]}, None))[1]
    assert data == {"code": 100401, "message": "Authorization failed", "data": None}


@pytest.mark.parametrize("tamper, code", [
    (lambda url: url, None),
    (lambda url: url.replace("Signature=", "Signature=0"), "SignatureDoesNotMatch"),
    (lambda url: url.replace(".png?", ".jpg?"), "SignatureDoesNotMatch"),
    (lambda url: url.partition("?")[0], "AccessDenied"),
])
async def test_storage_checks_the_signature(sandbox, http, tamper, code):
    pair = await signed(http, sandbox)
    status, text = await put(http, tamper(pair["put"]), solid_png((0, 0, 0)))
    if code is None:
        assert status == 200 and text == ""
    else:
        assert status == 403 and f"<Code>{code}</Code>" in text and "<Message>" in text


async def test_storage_wants_the_signed_content_type(sandbox, http):
    pair = await signed(http, sandbox)
    status, text = await put(http, pair["put"], solid_png((0, 0, 0)), "image/jpeg")
    assert status == 403 and "SignatureDoesNotMatch" in text and "image/png" in text
    assert not sandbox.storage.objects


async def test_signed_put_urls_expire(clocked, http):
    sandbox = clocked
    sandbox.configure(storage_url_ttl=0)
    pair = await signed(http, sandbox)
    await sandbox.clock.advance(1.1)                    # the expiry is in whole seconds
    status, text = await put(http, pair["put"], solid_png((0, 0, 0)))
    assert status == 403 and "Request has expired" in text


async def test_storage_url_points_signed_urls_elsewhere(sandbox, http):
    sandbox.configure(storage_url="https://bucket.oss.example.test")
    pair = await signed(http, sandbox)
    assert pair["put"].startswith("https://bucket.oss.example.test/oss/uploads/")
    assert pair["get"].startswith("https://bucket.oss.example.test/cdn/uploads/")


async def test_storage_refused_fault(sandbox, http):
    sandbox.add_fault("storage_refused", route="oss_put", count=1)
    pair = await signed(http, sandbox)
    status, text = await put(http, pair["put"], solid_png((0, 0, 0)))
    assert status == 403 and "<Code>AccessDenied</Code>" in text
    assert (await put(http, pair["put"], solid_png((0, 0, 0))))[0] == 200


async def test_image_to_image_reads_the_uploaded_object(sandbox, http):
    url = await upload(http, sandbox, solid_png((255, 0, 0)))
    outputs = {}
    for strength in (0.0, 0.3, 0.9):
        urls = await generate(http, sandbox, I2I_CREATE, I2I_GET, image_url=url,
                              strength=strength, seed=1)
        outputs[strength] = await download(http, urls[0])
    assert corner_colour(outputs[0.0]) == (255, 0, 0)
    red, green, blue = corner_colour(outputs[0.3])
    assert red > 150 and red > green + 60 and red > blue + 60
    assert len(set(outputs.values())) == 3
    plain = await download(http, (await generate(http, sandbox, seed=1))[0])
    assert plain not in outputs.values()


async def test_image_to_image_refuses_a_get_url_with_nothing_put(sandbox, http):
    pair = await signed(http, sandbox)
    body = {**BODY, "image_url": pair["get"], "strength": 0.5}
    data = (await post(http, sandbox, I2I_CREATE, body))[1]
    assert data["code"] == 100906 and "PUT" in data["message"]
    not_an_image = await upload(http, sandbox, b"not an image")
    body["image_url"] = not_an_image
    assert (await post(http, sandbox, I2I_CREATE, body))[1]["code"] == 100906


async def test_img2img_accepts_data_urls(sandbox, http):
    data_url = "data:image/png;base64," + base64.b64encode(solid_png((0, 0, 255))).decode()
    urls = await generate(http, sandbox, I2I_CREATE, I2I_GET, image_url=data_url, strength=0.0)
    assert corner_colour(await download(http, urls[0])) == (0, 0, 255)


@pytest.mark.parametrize("change, code", [
    ({"image_url": "https://example.com/cat.png"}, 100906),
    ({"image_url": "data:image/png;base64,bm90IGFuIGltYWdl"}, 100906),
    ({"strength": 1.5}, 100907),
    ({"strength": "0.5"}, 100900),
    ({"image_url": None}, 100900),
])
async def test_img2img_validation(sandbox, http, change, code):
    data_url = "data:image/png;base64," + base64.b64encode(solid_png((0, 0, 0))).decode()
    body = {**BODY, "image_url": data_url, "strength": 0.5, **change}
    assert (await post(http, sandbox, I2I_CREATE, body))[1]["code"] == code


async def test_img2img_unknown_upload(sandbox, http):
    body = {**BODY, "image_url": f"{sandbox.url}/cdn/uploads/feedface.png", "strength": 0.5}
    assert (await post(http, sandbox, I2I_CREATE, body))[1]["code"] == 100906


async def test_img2img_and_enhance_can_be_switched_off(sandbox, http):
    sandbox.configure(img2img_enabled=False, enhance_enabled=False)
    for path in (I2I_CREATE, I2I_GET, ENHANCE):
        assert (await post(http, sandbox, path, BODY))[0] == 404
    async with http.get(sandbox.url + ENHANCE_GET, params={"task_id": "x"}) as resp:
        assert resp.status == 404


# --- image-enhance -------------------------------------------------------------------------

async def enhance_task(http, sb, image_url, scale=2, token=UUID, **extra):
    body = {"image_url": image_url, "scale": scale, "version": "v1.4", **extra}
    status, data, _ = await post(http, sb, ENHANCE, body, token)
    assert status == 200 and data["code"] == 100000, data
    return data["data"]["task_id"]


async def task_result(http, sb, task_id, token=UUID):
    async with http.get(sb.url + ENHANCE_GET, params={"task_id": task_id},
                        headers={"Authorization": token}) as resp:
        assert resp.status == 200
        return (await resp.json())["data"]


@pytest.mark.parametrize("scale", [2, 4])
async def test_enhance_upscales_the_uploaded_image(sandbox, http, scale):
    source = solid_png((10, 200, 30), size=(40, 30))
    task_id = await enhance_task(http, sandbox, await upload(http, sandbox, source), scale)
    data = await task_result(http, sandbox, task_id)
    url = f"{sandbox.url}/cdn/enhanced/{task_id}.png"
    assert data == {"task_id": task_id, "status": 1, "task_result": {"file_oss_path": url},
                    "remain_balance": 999}
    image = Image.open(io.BytesIO(await download(http, url)))
    assert image.size == (40 * scale, 30 * scale)
    assert corner_colour(await download(http, url)) == (10, 200, 30)


async def test_enhance_statuses_are_integers_and_configurable(sandbox, http):
    sandbox.configure(complete_after_polls=2, enhance_pending_status=7, enhance_done_status=9)
    task_id = await enhance_task(http, sandbox, await upload(http, sandbox, solid_png((0, 0, 0))))
    pending = await task_result(http, sandbox, task_id)
    assert pending["status"] == 7 and pending["task_result"] is None
    assert (await task_result(http, sandbox, task_id))["status"] == 9
    async with http.get(sandbox.url + f"/cdn/enhanced/{task_id}.png") as resp:
        assert resp.status == 200


async def test_enhance_failure_and_faults(sandbox, http):
    url = await upload(http, sandbox, solid_png((0, 0, 0)))
    sandbox.add_fault("fail", route="enhance_create", count=1)
    failed = await enhance_task(http, sandbox, url)
    assert (await task_result(http, sandbox, failed))["status"] == -1
    async with http.get(sandbox.url + f"/cdn/enhanced/{failed}.png") as resp:
        assert resp.status == 404
    sandbox.add_fault("never_finish", route="enhance_create", count=1)
    never = await enhance_task(http, sandbox, url)
    assert (await task_result(http, sandbox, never))["status"] == 0
    sandbox.add_fault("empty_output_done", route="enhance_get", count=1)
    empty = await enhance_task(http, sandbox, url)
    assert (await task_result(http, sandbox, empty)) == {
        "task_id": empty, "status": 1, "task_result": None, "remain_balance": 997}
    sandbox.add_fault("fail_code", route="enhance_get", count=1)
    async with http.get(sandbox.url + ENHANCE_GET, params={"task_id": empty}) as resp:
        assert (await resp.json())["code"] == 100500


@pytest.mark.parametrize("change, code", [
    ({"scale": 3}, 100909),
    ({"scale": "2"}, 100900),
    ({"version": "v9"}, 100910),
    ({"image_url": 5}, 100900),
    ({"image_url": "https://example.com/cat.png"}, 100906),
])
async def test_enhance_validation(sandbox, http, change, code):
    body = {"image_url": await upload(http, sandbox, solid_png((0, 0, 0))), "scale": 2,
            "version": "v1.4", **change}
    assert (await post(http, sandbox, ENHANCE, body))[1]["code"] == code
    assert not sandbox.tasks


async def test_enhance_limits_the_source_size(sandbox, http):
    sandbox.configure(enhance_max_side=32)
    body = {"image_url": await upload(http, sandbox, solid_png((0, 0, 0), size=(33, 8))),
            "scale": 2, "version": "v1.4"}
    assert (await post(http, sandbox, ENHANCE, body))[1]["code"] == 100903


async def test_enhance_unknown_or_missing_task(sandbox, http):
    async with http.get(sandbox.url + ENHANCE_GET, params={"task_id": "nope"}) as resp:
        assert (await resp.json()) == {"code": 100404, "message": "task not found", "data": None}
    async with http.get(sandbox.url + ENHANCE_GET) as resp:
        assert (await resp.json())["code"] == 100900


# --- balance -------------------------------------------------------------------------------

async def test_balance_decreases_per_image_and_upscale_per_identity(sandbox, http):
    sandbox.configure(balance_start=10, balance_per_image=2, balance_per_upscale=3)
    request_id = await create(http, sandbox, samples=2)
    assert (await poll(http, sandbox, request_id, token=UUID))["data"]["remain_balance"] == 6
    other = await create(http, sandbox, token="another-identity")
    assert (await poll(http, sandbox, other, token="another-identity"))["data"][
        "remain_balance"] == 8
    task_id = await enhance_task(http, sandbox, await upload(http, sandbox, solid_png((0, 0, 0))))
    assert (await task_result(http, sandbox, task_id))["remain_balance"] == 3
    # a poll with no identity reports the job's own
    assert (await poll(http, sandbox, request_id))["data"]["remain_balance"] == 3


async def test_a_create_the_balance_cannot_pay_for_is_refused(sandbox, http):
    sandbox.configure(balance_start=3)
    await create(http, sandbox, samples=3)
    status, data, _ = await post(http, sandbox, CREATE, BODY)
    assert status == 200 and data == {"code": 100461, "message": "insufficient balance",
                                      "data": None}
    assert len(sandbox.jobs) == 1
    await create(http, sandbox, token="another-identity")


async def test_no_balance_no_field(sandbox, http):
    sandbox.configure(balance_start=None)
    request_id = await create(http, sandbox)
    assert "remain_balance" not in (await poll(http, sandbox, request_id))["data"]


# --- NSFW --------------------------------------------------------------------------------

async def test_nsfw_placeholder(sandbox, http):
    sandbox.configure(nsfw_mode="placeholder")
    blocked = await download(http, (await generate(http, sandbox, prompt="NSFW scene"))[0])
    image = Image.open(io.BytesIO(blocked)).convert("RGB")
    counts = {colour: n for n, colour in image.getcolors(image.width * image.height)}
    assert counts[(128, 128, 128)] > 0.9 * image.width * image.height
    allowed = await download(http, (await generate(http, sandbox, prompt="NSFW scene",
                                                   is_nsfw=True))[0])
    assert allowed != blocked


async def test_nsfw_refuse_and_allow(sandbox, http):
    sandbox.configure(nsfw_mode="refuse")
    status, data, _ = await post(http, sandbox, CREATE, {**BODY, "prompt": "nude study"})
    assert status == 200 and data["code"] == 100451
    await create(http, sandbox, prompt="nude study", is_nsfw=True)
    sandbox.configure(nsfw_mode="allow")
    await create(http, sandbox, prompt="nude study")


# --- rate limiting -----------------------------------------------------------------------

async def test_rate_limit_per_token(sandbox, http):
    sandbox.configure(rate_limit_requests=2, rate_limit_window=30)
    for _ in range(2):
        await create(http, sandbox, token=UUID)
    status, data, headers = await post(http, sandbox, CREATE, BODY, UUID)
    assert status == 429 and data["code"] == 100429 and 1 <= int(headers["Retry-After"]) <= 30
    await create(http, sandbox, token="another-token")


async def test_rate_limit_per_ip_and_window(clocked, http):
    sandbox = clocked
    sandbox.configure(rate_limit_requests=1, rate_limit_window=0.3, rate_limit_per="ip")
    await create(http, sandbox, token="a")
    assert (await post(http, sandbox, CREATE, BODY, "b"))[0] == 429
    await sandbox.clock.advance(0.35)
    await create(http, sandbox, token="b")


# --- routing and admin -------------------------------------------------------------------

async def test_wrong_method_and_unknown_path(sandbox, http):
    async with http.get(sandbox.url + CREATE) as resp:
        assert resp.status == 405 and resp.headers["Allow"] == "POST"
        assert (await resp.json())["code"] == 100405
    async with http.post(sandbox.url + "/files/x/0.png") as resp:
        assert resp.status == 405
    async with http.get(sandbox.url + "/api/cg/text-to-video/create") as resp:
        assert resp.status == 404 and (await resp.json())["code"] == 100404


async def test_admin_api(sandbox, http):
    base = sandbox.url + "/__sandbox__"
    request_id = await create(http, sandbox, token=UUID)
    async with http.get(base + "/requests") as resp:
        records = await resp.json()
    assert [r["route"] for r in records] == ["create"]
    assert records[0]["headers"]["Authorization"] == UUID
    async with http.get(base + "/jobs") as resp:
        assert (await resp.json())[request_id]["state"] == "pending"
    async with http.post(base + "/config", json={"done_status": "ok"}) as resp:
        assert resp.status == 200 and (await resp.json())["done_status"] == "ok"
    async with http.post(base + "/config", json={"max_samples": "many"}) as resp:
        assert resp.status == 400
    async with http.get(base + "/config") as resp:
        assert (await resp.json())["done_status"] == "ok"
    async with http.post(base + "/faults", json={"kind": "quota", "route": "create"}) as resp:
        assert resp.status == 200
    async with http.post(base + "/faults", json=[{"kind": "reject"}, {"kind": "bad"}]) as resp:
        assert resp.status == 400
    assert (await post(http, sandbox, CREATE, BODY))[1]["code"] == 100460
    async with http.get(base + "/faults") as resp:
        assert [(f["kind"], f["fired"]) for f in await resp.json()] == [("quota", 1)]
    async with http.delete(base + "/faults") as resp:
        assert resp.status == 200
    await create(http, sandbox)
    async with http.post(base + "/reset") as resp:
        assert resp.status == 200
    assert sandbox.requests == [] and sandbox.jobs == {}
    assert sandbox.config.done_status == "success"


async def test_reset_restores_construction_config(http):
    sb = Sandbox(SandboxConfig(max_samples=2), done_status="ready")
    sb.configure(max_samples=4, done_status="x")
    sb.add_fault("quota")
    sb.reset()
    assert (sb.config.max_samples, sb.config.done_status) == (2, "ready")
    await sb.start()
    try:
        await create(http, sb)
    finally:
        await sb.close()


async def test_works_under_aiohttp_test_client(aiohttp_client):
    sb = Sandbox()
    client = await aiohttp_client(sb.app)
    resp = await client.post(CREATE, json=BODY, headers={"Authorization": UUID})
    request_id = (await resp.json())["data"]["request_id"]
    resp = await client.post(GET, json={"request_id": request_id})
    url = (await resp.json())["data"]["output"][0]
    assert url.startswith(str(client.make_url("/")).rstrip("/"))
    resp = await client.get(url[url.index("/files/"):])
    assert resp.status == 200


@pytest.mark.skipif(sys.platform == "win32", reason="sends SIGTERM")
def test_standalone_main():
    proc = subprocess.Popen([sys.executable, "-m", "arting_daemon.sandbox", "--port", "0"],
                            stdout=subprocess.PIPE, text=True)
    try:
        line = first_line(proc, START_TIMEOUT).strip()
        assert line.startswith("Arting sandbox listening on http://127.0.0.1:")
        os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


# --- cloudscraper against the emulated Cloudflare pages ----------------------------------

@pytest.fixture
def loopback_only(monkeypatch):
    """Make any connection off loopback fail, and undo cloudscraper's global traceback tweak."""
    connect = socket.socket.connect

    def guarded(sock, address):
        if not ipaddress.ip_address(address[0]).is_loopback:
            raise OSError(f"test tried to reach {address[0]}")
        return connect(sock, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)
    had_limit = hasattr(sys, "tracebacklimit")
    limit = getattr(sys, "tracebacklimit", None)
    yield
    if had_limit:
        sys.tracebacklimit = limit
    elif hasattr(sys, "tracebacklimit"):
        del sys.tracebacklimit


class TestCloudscraper:
    """What the original project's cloudscraper session makes of each page (§7)."""

    @staticmethod
    async def scrape(sb, kind):
        cloudscraper = pytest.importorskip("cloudscraper")
        sb.add_fault(kind, route="create")

        def call():
            scraper = cloudscraper.create_scraper()
            scraper.trust_env = False  # no proxies from the environment: loopback only
            started = time.monotonic()
            try:
                return scraper.post(sb.url + CREATE, json=BODY, timeout=10), \
                    time.monotonic() - started
            except Exception as exc:  # the point of the test is which one
                return exc, time.monotonic() - started

        return await asyncio.to_thread(call)

    @pytest.mark.parametrize("kind, status", [("cf_challenge", 403), ("cf_html_200", 200),
                                              ("cf_5xx", 522), ("cf_rate_limit", 429)])
    async def test_pages_it_does_not_detect(self, sandbox, loopback_only, kind, status):
        result, _ = await self.scrape(sandbox, kind)
        assert not isinstance(result, Exception), result
        assert result.status_code == status and result.headers["Server"] == "cloudflare"

    async def test_v2_challenge_raises_quickly(self, sandbox, loopback_only):
        from cloudscraper.exceptions import CloudflareChallengeError
        result, elapsed = await self.scrape(sandbox, "cf_challenge_v2")
        assert isinstance(result, CloudflareChallengeError), result
        assert elapsed < 5

    async def test_1020_raises(self, sandbox, loopback_only):
        from cloudscraper.exceptions import CloudflareCode1020
        result, _ = await self.scrape(sandbox, "cf_1020")
        assert isinstance(result, CloudflareCode1020), result
