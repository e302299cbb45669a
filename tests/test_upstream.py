"""The Arting client against the emulator: the exact wire format, and one error class
per way Arting (or Cloudflare in front of it) can fail."""

from __future__ import annotations

import io
import time

import pytest
from PIL import Image

from arting_daemon import errors
from arting_daemon.config import Settings
from arting_daemon.generation import Catalog, Lora, Rules, build_generation
from arting_daemon.providers.arting.client import ArtingClient, Upstream

TOKEN = "5f0c8a52-7d7e-4f53-9a1b-0c2d4e6f8a9b"


@pytest.fixture
async def client(sandbox):
    settings = Settings(base_url=sandbox.url, request_timeout=2.0)
    client = ArtingClient(Upstream.of(settings))
    yield client
    await client.close()


def gen(**kw):
    s = Rules.of(Settings())
    return build_generation(s, Catalog(s), **{"prompt": "a lighthouse", "seed": 7, **kw})


async def test_create_sends_exactly_what_public_clients_send(client, sandbox):
    g = gen(n=2, loras=(Lora(id="add_detail", weight=0.6), Lora(id="Sv5-10", weight=1.0)),
            negative_prompt="blurry", nsfw=True)
    request_id = await client.create(g, TOKEN)
    assert request_id
    rec = sandbox.requests_for("create")[-1]
    assert rec.headers["Authorization"] == TOKEN          # bare: no "Bearer "
    assert rec.headers["Content-Type"].startswith("application/json")
    assert rec.headers["Origin"] == "https://arting.ai"
    assert rec.headers["Referer"] == "https://arting.ai/"
    assert "Chrome/" in rec.headers["User-Agent"]
    assert rec.body == {
        "prompt": "a lighthouse", "model_id": "oneFORALLAnime", "samples": 2,
        "height": 768, "width": 512, "negative_prompt": "blurry", "seed": 7,
        "lora_ids": "add_detail,Sv5-10", "lora_weight": "0.6,1", "sampler": "Euler a",
        "steps": 25, "guidance": 7.0, "clip_skip": 2, "is_nsfw": True}
    for key in ("samples", "width", "height", "steps", "clip_skip", "seed"):
        assert type(rec.body[key]) is int
    assert isinstance(rec.body["lora_ids"], str) and isinstance(rec.body["lora_weight"], str)


async def test_no_lora_still_sends_strings(client, sandbox):
    await client.create(gen(), TOKEN)
    body = sandbox.requests_for("create")[-1].body
    assert (body["lora_ids"], body["lora_weight"]) == ("", "0.7")


async def test_no_identity_is_refused_as_authorization_failed(client, sandbox):
    with pytest.raises(errors.UpstreamAuthError, match="Authorization failed") as err:
        await client.create(gen(), None)
    assert "ARTING_AUTH_TOKEN" in err.value.message
    assert "Authorization" not in sandbox.requests_for("create")[-1].headers


async def test_the_balance_comes_with_each_poll(client, sandbox):
    sandbox.configure(balance_start=10, complete_after_polls=2)
    rid = await client.create(gen(n=3), TOKEN)
    assert (await client.poll(rid, TOKEN)).balance == 7
    sandbox.configure(balance_start=None)
    assert (await client.poll(rid, TOKEN)).balance is None


async def test_an_empty_balance_refusal_is_a_rate_limit(client, sandbox):
    sandbox.configure(balance_start=0)
    with pytest.raises(errors.UpstreamRateLimited, match="insufficient balance"):
        await client.create(gen(), TOKEN)


async def test_strict_upstream_accepts_our_bare_token(client, sandbox):
    sandbox.configure(auth_mode="strict")
    assert await client.create(gen(), TOKEN)


async def test_poll_until_done_then_download(client, sandbox):
    sandbox.configure(complete_after_polls=2)
    rid = await client.create(gen(n=2), TOKEN)
    first = await client.poll(rid, TOKEN)
    assert not first.done and first.urls == []
    done = await client.poll(rid, TOKEN)
    assert done.done and len(done.urls) == 2
    assert sandbox.requests_for("get")[-1].body == {"request_id": rid}
    png = await client.download(done.urls[0])
    assert png.startswith(b"\x89PNG")


FAULTS = [
    # (fault kind, route, options, expected error, check)
    ("cf_challenge", "create", {}, errors.CloudflareBlocked, "cf_clearance"),
    ("cf_challenge_v2", "create", {}, errors.CloudflareBlocked, "cf_clearance"),
    ("cf_html_200", "create", {}, errors.CloudflareBlocked, "challenge"),
    ("cf_1020", "create", {}, errors.CloudflareBlocked, "1020"),
    ("cf_5xx", "create", {"status": 522}, errors.UpstreamUnavailable, "could not reach"),
    ("cf_rate_limit", "create", {"retry_after": 7}, errors.UpstreamRateLimited, "1015"),
    ("rate_limit", "create", {"retry_after": 3}, errors.UpstreamRateLimited, "429"),
    ("quota", "create", {}, errors.UpstreamRateLimited, "credits"),
    ("http_error", "create", {"status": 503}, errors.UpstreamServerError, "503"),
    ("http_error", "create", {"status": 500, "body": "empty"}, errors.UpstreamServerError, "500"),
    ("slow", "create", {"delay": 5}, errors.UpstreamTimeout, "within 2 s"),
    ("reset", "create", {}, errors.UpstreamUnavailable, "broke"),
    ("truncated_json", "create", {}, errors.BadUpstreamResponse, "not valid JSON"),
    ("token_expired", "create", {}, errors.UpstreamAuthError, "ARTING_AUTH_TOKEN"),
    ("invalid_token", "create", {}, errors.UpstreamAuthError, "ARTING_AUTH_TOKEN"),
    ("reject", "create", {"code": 100905, "message": "Model not supported"},
     errors.UpstreamRejected, "Model not supported"),
]


@pytest.mark.parametrize("kind, route, options, expected, words", FAULTS,
                         ids=[f"{f[0]}-{f[2].get('status', '')}" for f in FAULTS])
async def test_each_fault_has_its_own_error(client, sandbox, kind, route, options, expected,
                                             words):
    sandbox.add_fault(kind, route=route, **options)
    started = time.monotonic()
    with pytest.raises(expected) as err:
        await client.create(gen(), TOKEN)
    assert time.monotonic() - started < 3
    assert words in err.value.message
    assert TOKEN not in err.value.message
    if "retry_after" in options:
        assert err.value.retry_after == options["retry_after"]


async def test_token_errors_as_http_401_too(client, sandbox):
    sandbox.configure(auth_mode="uuid", auth_error_http=True)
    with pytest.raises(errors.UpstreamAuthError):
        await client.create(gen(), "not-a-uuid")


async def test_a_failed_job_fails_at_once(client, sandbox):
    rid = await client.create(gen(), TOKEN)
    sandbox.add_fault("fail", route="get")
    with pytest.raises(errors.JobFailed):
        await client.poll(rid, TOKEN)


@pytest.mark.parametrize("kind, expected", [("fail_code", errors.UpstreamRejected),
                                            ("empty_output_done", errors.JobFailed)])
async def test_poll_faults(client, sandbox, kind, expected):
    rid = await client.create(gen(), TOKEN)
    sandbox.add_fault(kind, route="get")
    with pytest.raises(expected):
        await client.poll(rid, TOKEN)


async def test_unknown_request_id_is_rejected(client):
    with pytest.raises(errors.UpstreamRejected, match="not found"):
        await client.poll("no-such-id", TOKEN)


async def test_expired_image_url(client, sandbox):
    rid = await client.create(gen(), TOKEN)
    url = (await client.poll(rid, TOKEN)).urls[0]
    sandbox.add_fault("expired_image", route="image")
    with pytest.raises(errors.BadUpstreamResponse, match="expired"):
        await client.download(url)


async def test_images_come_only_from_trusted_hosts(client):
    with pytest.raises(errors.BadUpstreamResponse, match="image_hosts"):
        await client.download("http://169.254.169.254/latest/meta-data.png")


async def test_nothing_listening_means_unreachable_and_safe_to_resubmit():
    settings = Settings(base_url="http://127.0.0.1:9", request_timeout=2.0)
    with pytest.raises(errors.UpstreamUnreachable) as err:
        await ArtingClient(Upstream.of(settings)).create(gen(), TOKEN)
    assert err.value.safe_to_resubmit


def red_png(size=(64, 48)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, "red").save(buf, "PNG")
    return buf.getvalue()


async def test_image_to_image_signed_upload_then_create(client, sandbox):
    png = red_png()
    url = await client.upload(png, TOKEN)
    sign, = sandbox.requests_for("signed_urls")
    assert sign.body == {"f_suffixs": ["png"]} and sign.headers["Authorization"] == TOKEN
    put, = sandbox.requests_for("oss_put")
    assert put.method == "PUT" and put.body == png
    assert put.header("Content-Type") == "image/png"
    assert put.header("Authorization") is None and put.header("Cookie") is None
    assert url.startswith(f"{sandbox.url}/cdn/uploads/")
    g = gen(init_image="0" * 64, strength=0.4)
    rid = await client.create(g, TOKEN, image_url=url)
    body = sandbox.requests_for("i2i_create")[-1].body
    assert body["image_url"] == url and body["strength"] == 0.4
    assert (await client.poll(rid, TOKEN, img2img=True)).done


@pytest.mark.parametrize("fault, expected, words", [
    ({"kind": "storage_refused"}, errors.UpstreamRejected, "AccessDenied"),
    ({"kind": "http_error", "status": 503}, errors.UpstreamUnavailable, "503"),
    ({"kind": "reset"}, errors.UpstreamUnavailable, "failed"),
])
async def test_a_refused_put_is_reported_as_the_storage_said(client, sandbox, fault, expected,
                                                              words):
    sandbox.add_fault(route="oss_put", **fault)
    with pytest.raises(expected, match=words) as err:
        await client.upload(red_png(), TOKEN)
    assert "storage" in err.value.message and TOKEN not in err.value.message
    assert not sandbox.storage.objects


@pytest.mark.parametrize("kind, expected", [("reject", errors.UpstreamRejected),
                                            ("token_expired", errors.UpstreamAuthError),
                                            ("truncated_json", errors.BadUpstreamResponse)])
async def test_signed_url_faults(client, sandbox, kind, expected):
    sandbox.add_fault(kind, route="signed_urls")
    with pytest.raises(expected):
        await client.upload(red_png(), TOKEN)
    assert not sandbox.requests_for("oss_put")


@pytest.mark.parametrize("storage", ["http://localhost:{port}", "http://10.1.2.3",
                                     "ftp://{host}"])
async def test_a_signed_url_into_the_local_network_gets_nothing(client, sandbox, storage):
    from urllib.parse import urlsplit
    parts = urlsplit(sandbox.url)
    sandbox.configure(storage_url=storage.format(port=parts.port, host=parts.hostname)
                      if not storage.startswith("ftp") else None)
    if storage.startswith("ftp"):
        client.outbound._plain_http = False     # as against https://api.arting.ai
    with pytest.raises(errors.BadUpstreamResponse, match="not sent"):
        await client.upload(red_png(), TOKEN)
    assert not sandbox.requests_for("oss_put")


async def test_a_trusted_storage_host_may_be_local(sandbox):
    from urllib.parse import urlsplit
    port = urlsplit(sandbox.url).port
    sandbox.configure(storage_url=f"http://localhost:{port}")
    settings = Settings(base_url=sandbox.url, image_hosts=["localhost"])
    client = ArtingClient(Upstream.of(settings))
    url = await client.upload(red_png(), TOKEN)
    await client.close()
    assert url.startswith(f"http://localhost:{port}/cdn/") and sandbox.storage.objects


@pytest.mark.parametrize("scale", [2, 4])
async def test_upscale_round_trip(client, sandbox, scale):
    sandbox.configure(complete_after_polls=2, balance_start=50)
    url = await client.upload(red_png((30, 20)), TOKEN)
    task_id = await client.enhance(url, scale, TOKEN)
    assert sandbox.requests_for("enhance_create")[-1].body == {
        "image_url": url, "scale": scale, "version": "v1.4"}
    first = await client.enhance_poll(task_id, TOKEN)
    assert not first.done and first.status == "0" and first.balance == 49
    done = await client.enhance_poll(task_id, TOKEN)
    get = sandbox.requests_for("enhance_get")[-1]
    assert get.method == "GET" and get.path.endswith(f"get-task-result?task_id={task_id}")
    with Image.open(io.BytesIO(await client.download(done.urls[0]))) as image:
        assert image.size == (30 * scale, 20 * scale)


async def test_upscale_statuses_follow_the_settings(sandbox):
    sandbox.configure(enhance_done_status=5, enhance_failed_status=6)
    settings = Settings(base_url=sandbox.url, upscale_done_statuses=[5],
                        upscale_failed_statuses=[6])
    client = ArtingClient(Upstream.of(settings))
    task_id = await client.enhance(await client.upload(red_png(), TOKEN), 2, TOKEN)
    assert (await client.enhance_poll(task_id, TOKEN)).done
    sandbox.add_fault("fail", route="enhance_get")
    with pytest.raises(errors.JobFailed, match="upscale failed"):
        await client.enhance_poll(task_id, TOKEN)
    await client.close()


@pytest.mark.parametrize("kind, expected, words", [
    ("fail", errors.JobFailed, "upscale failed"),
    ("empty_output_done", errors.JobFailed, "no image"),
    ("fail_code", errors.UpstreamRejected, "generation failed"),
])
async def test_upscale_poll_faults(client, sandbox, kind, expected, words):
    task_id = await client.enhance(await client.upload(red_png(), TOKEN), 2, TOKEN)
    sandbox.add_fault(kind, route="enhance_get")
    with pytest.raises(expected, match=words):
        await client.enhance_poll(task_id, TOKEN)


async def test_upscale_refusals(client, sandbox):
    url = await client.upload(red_png(), TOKEN)
    sandbox.configure(enhance_scales=[2])
    with pytest.raises(errors.UpstreamRejected, match="scale must be"):
        await client.enhance(url, 4, TOKEN)
    sandbox.configure(enhance_enabled=False)
    with pytest.raises(errors.UpstreamRejected, match="not found"):
        await client.enhance(url, 2, TOKEN)
