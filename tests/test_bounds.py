"""Every resource a request can spend is bounded: pictures are measured from their header
before they are decoded (``max_input_pixels``), every upscale's target is bounded
(``max_upscale_pixels``), a key with no room left stores no picture, and JSON nesting,
LoRAs and A1111 options are bounded with a 400 (422 in A1111's shape), never a 500.

Memory is measured as the daemon's peak resident size: the daemon runs in this process
(``LiveDaemon``), and Linux resets the peak (``VmHWM``) on request."""

from __future__ import annotations

import base64
import io
import re
import struct
import zlib
from pathlib import Path

import httpx
import pytest
from PIL import Image

from arting_daemon import imaging
from arting_daemon.catalog import LORAS
from arting_daemon.errors import InvalidRequest

ADMIN = "sk-admin-bounds"
MB = 1024 * 1024


def png_b64(size=(64, 64), colour=(10, 200, 30)) -> str:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, "PNG")
    return base64.b64encode(buf.getvalue()).decode()


def huge_png(width: int, height: int) -> bytes:
    """A grey PNG of ``width``×``height``, written row by row: small to send and to make,
    large only once decoded."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(
            ">I", zlib.crc32(kind + data))
    packer = zlib.compressobj(9)
    row = b"\0" + b"\x80" * width
    body = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0,
                                                              0, 0, 0))
            + chunk(b"IDAT", body) + chunk(b"IEND", b""))


def peak_rss() -> int:
    """The peak resident size of this process (the daemon's) since ``reset_peak``."""
    status = Path("/proc/self/status").read_text()
    return int(re.search(r"VmHWM:\s+(\d+) kB", status)[1]) * 1024


def reset_peak() -> int:
    Path("/proc/self/clear_refs").write_text("5")
    return peak_rss()


def stored_files(daemon) -> list[Path]:
    root = daemon.settings.data_dir / "images"
    return sorted(root.rglob("*.png")) if root.exists() else []


# --- pictures: measured before they are decoded ------------------------------------------------

def test_a_12000_square_extras_upscale_is_refused_before_any_work(daemon):
    start = reset_peak()
    resp = httpx.post(f"{daemon.url}/sdapi/v1/extra-single-image", timeout=30, json={
        "image": png_b64(), "upscaler_1": "Nearest", "resize_mode": 1,
        "upscaling_resize_w": 12000, "upscaling_resize_h": 12000})
    assert resp.status_code == 422, resp.text[:300]
    (detail,) = resp.json()["detail"]
    assert detail["loc"] == ["body", "upscaling_resize_w"]
    assert "max_upscale_pixels" in detail["msg"]
    assert peak_rss() - start < 100 * MB
    assert stored_files(daemon) == []          # not even the small picture was taken in


@pytest.mark.parametrize("path, body", [
    ("/sdapi/v1/extra-single-image", {"upscaling_resize": 200}),
    ("/sdapi/v1/extra-batch-images", {"upscaling_resize": 200, "imageList": None}),
])
def test_a_factor_past_the_bound_is_refused_before_the_upscale(daemon, path, body):
    picture = png_b64()
    body = {**body, "upscaler_1": "Lanczos"}
    if "imageList" in body:
        body["imageList"] = [{"data": picture, "name": "a.png"}]
    else:
        body["image"] = picture
    start = reset_peak()
    resp = httpx.post(daemon.url + path, json=body, timeout=30)
    assert resp.status_code == 422, resp.text[:300]
    (detail,) = resp.json()["detail"]
    assert "max_upscale_pixels" in detail["msg"] and "12800x12800" in detail["msg"]
    assert peak_rss() - start < 100 * MB


def test_an_upscale_bound_is_a_setting(make_daemon):
    daemon = make_daemon(max_upscale_pixels=1000 * 1000)
    resp = httpx.post(f"{daemon.url}/sdapi/v1/extra-single-image", timeout=30, json={
        "image": png_b64(), "upscaler_1": "Nearest", "resize_mode": 1,
        "upscaling_resize_w": 1024, "upscaling_resize_h": 1024})
    assert resp.status_code == 422 and "max_upscale_pixels" in resp.text
    resp = httpx.post(f"{daemon.url}/sdapi/v1/extra-single-image", timeout=30, json={
        "image": png_b64(), "upscaler_1": "Nearest", "resize_mode": 1,
        "upscaling_resize_w": 960, "upscaling_resize_h": 960})
    assert resp.status_code == 200, resp.text[:300]
    image = base64.b64decode(resp.json()["image"])
    assert Image.open(io.BytesIO(image)).size == (960, 960)


def test_an_arting_upscale_past_the_bound_is_refused_before_a_job(make_daemon):
    daemon = make_daemon(upscale=True, max_upscale_pixels=200 * 200)
    resp = httpx.post(f"{daemon.url}/arting/v1/jobs", timeout=30,
                      json={"kind": "upscale", "images": [png_b64((64, 64))], "scale": 4})
    assert resp.status_code == 400, resp.text[:300]
    assert "max_upscale_pixels" in resp.json()["error"]["message"]
    assert not daemon.sandbox.requests


@pytest.mark.parametrize("body, param", [
    ({"enable_hr": True, "hr_scale": 20}, "hr_scale"),
    ({"enable_hr": True, "hr_resize_x": 12000, "hr_resize_y": 12000}, "hr_resize_x"),
])
def test_a_hires_fix_past_the_bound_is_refused_before_a_generation(daemon, body, param):
    resp = httpx.post(f"{daemon.url}/sdapi/v1/txt2img", timeout=30,
                      json={"prompt": "p", "width": 512, "height": 512, **body})
    assert resp.status_code == 422, resp.text[:300]
    (detail,) = resp.json()["detail"]
    assert detail["loc"] == ["body", param] and "max_upscale_pixels" in detail["msg"]
    assert not daemon.sandbox.requests_for("create")


def test_an_sd_upscale_past_the_bound_is_refused_before_a_generation(daemon):
    resp = httpx.post(f"{daemon.url}/sdapi/v1/img2img", timeout=30, json={
        "prompt": "p", "init_images": [png_b64((512, 512))], "script_name": "SD upscale",
        "script_args": [None, 64, "Lanczos", 20]})
    assert resp.status_code == 422, resp.text[:300]
    assert "max_upscale_pixels" in resp.text
    assert not daemon.sandbox.requests_for("create")


@pytest.mark.parametrize("protocol", ["jobs", "a1111", "openai"])
def test_an_8000_square_init_image_is_refused_before_it_is_decoded(daemon, protocol):
    big = huge_png(8000, 8000)
    assert len(big) < 1 * MB
    picture = base64.b64encode(big).decode()
    start = reset_peak()
    if protocol == "jobs":
        resp = httpx.post(f"{daemon.url}/arting/v1/jobs", timeout=30,
                          json={"prompt": "p", "init_image": picture})
        assert resp.status_code == 400, resp.text[:300]
        error = resp.json()["error"]
        message, param = error["message"], error["param"]
    elif protocol == "a1111":
        resp = httpx.post(f"{daemon.url}/sdapi/v1/img2img", timeout=30,
                          json={"prompt": "p", "init_images": [picture]})
        assert resp.status_code == 422, resp.text[:300]
        (detail,) = resp.json()["detail"]
        message, param = detail["msg"], detail["loc"][1]
    else:
        resp = httpx.post(f"{daemon.url}/v1/images/edits", timeout=30,
                          data={"prompt": "p"}, files={"image": ("a.png", big, "image/png")})
        assert resp.status_code == 400, resp.text[:300]
        error = resp.json()["error"]
        message, param = error["message"], error["param"]
    assert "8000x8000" in message and "max_input_pixels" in message
    assert param in ("init_image", "init_images", "image")
    assert peak_rss() - start < 100 * MB
    assert stored_files(daemon) == []


def test_a_mask_is_measured_too(daemon):
    resp = httpx.post(f"{daemon.url}/arting/v1/jobs", timeout=30, json={
        "prompt": "p", "init_image": png_b64(),
        "mask": base64.b64encode(huge_png(5000, 5000)).decode()})
    assert resp.status_code == 400
    assert resp.json()["error"]["param"] == "mask" and "max_input_pixels" in resp.text


def test_the_input_bound_is_a_setting(make_daemon):
    daemon = make_daemon(max_input_pixels=100 * 100)
    refused = httpx.post(f"{daemon.url}/arting/v1/jobs", timeout=30,
                         json={"prompt": "p", "init_image": png_b64((128, 128))})
    assert refused.status_code == 400 and "max_input_pixels" in refused.text
    taken = httpx.post(f"{daemon.url}/arting/v1/jobs", timeout=30,
                       json={"prompt": "p", "init_image": png_b64((96, 96))})
    assert taken.status_code == 202, taken.text[:300]


def test_pillows_own_guard_refuses_what_gets_past(monkeypatch):
    """Whatever opens a picture, Pillow's decompression-bomb guard (set from the bounds,
    its warning an error) refuses one past it: opening alone raises, nothing is decoded."""
    import warnings
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", Image.MAX_IMAGE_PIXELS)
    with warnings.catch_warnings():
        imaging.guard(1000 * 1000)
        for size in ((1200, 1000), (3000, 3000)):     # past the warning, past the error
            with pytest.raises(InvalidRequest, match="max_input_pixels"):
                imaging.open_image(huge_png(*size), "image", 10**9)
            with pytest.raises((Image.DecompressionBombWarning, Image.DecompressionBombError)):
                Image.open(io.BytesIO(huge_png(*size)))


def test_only_plain_picture_formats_are_opened():
    eps = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n"
    with pytest.raises(InvalidRequest, match="not an image"):
        imaging.open_image(eps, "image", 10**6)


# --- pictures are stored only for a caller with room left --------------------------------------

def user_key(daemon, name: str, **limits) -> str:
    resp = httpx.post(f"{daemon.url}/arting/v1/admin/keys", json={"name": name, **limits},
                      headers={"Authorization": f"Bearer {ADMIN}"})
    assert resp.status_code == 201, resp.text
    return resp.json()["key"]


def test_a_key_with_no_quota_left_stores_no_picture(make_daemon):
    daemon = make_daemon(api_keys=[ADMIN], upscale=True)
    spent = {"Authorization": f"Bearer {user_key(daemon, 'spent', images_per_day=0)}"}
    big = Image.frombytes("RGB", (1024, 1024), bytes(range(256)) * 12288)
    buf = io.BytesIO()
    big.save(buf, "PNG")
    picture = base64.b64encode(buf.getvalue()).decode()
    before = stored_files(daemon)
    answers = [
        httpx.post(f"{daemon.url}/arting/v1/jobs", headers=spent, timeout=30,
                   json={"prompt": "p", "init_image": picture, "mask": picture}),
        httpx.post(f"{daemon.url}/arting/v1/jobs", headers=spent, timeout=30,
                   json={"kind": "upscale", "images": [picture], "scale": 2}),
        httpx.post(f"{daemon.url}/sdapi/v1/img2img", headers=spent, timeout=30,
                   json={"prompt": "p", "init_images": [picture]}),
        httpx.post(f"{daemon.url}/sdapi/v1/extra-single-image", headers=spent, timeout=30,
                   json={"image": picture, "upscaler_1": "Nearest", "upscaling_resize": 2}),
        httpx.post(f"{daemon.url}/v1/images/edits", headers=spent, timeout=30,
                   data={"prompt": "p"}, files={"image": ("a.png", buf.getvalue(),
                                                          "image/png")}),
    ]
    assert [a.status_code for a in answers] == [429] * 5, [a.text[:200] for a in answers]
    assert "images_per_day" in answers[0].json()["error"]["message"]
    assert stored_files(daemon) == before
    assert not daemon.sandbox.requests_for("create")

    # a key with room stores its picture as before
    room = {"Authorization": f"Bearer {user_key(daemon, 'room', images_per_day=5)}"}
    resp = httpx.post(f"{daemon.url}/arting/v1/jobs", headers=room, timeout=30,
                      json={"prompt": "p", "init_image": picture})
    assert resp.status_code == 202, resp.text[:300]
    daemon.wait_job(resp.json()["id"], headers=room)
    assert len(stored_files(daemon)) > len(before)


# --- bodies: nesting, LoRAs, options ------------------------------------------------------------

DEEP = b"[" * 100_000 + b"]" * 100_000


@pytest.mark.parametrize("path, body", [
    ("/arting/v1/jobs", DEEP),
    ("/v1/images/generations", DEEP),
    ("/v1/chat/completions", DEEP),
    ("/sdapi/v1/txt2img", DEEP),
    ("/sdapi/v1/options", DEEP),
    ("/arting/v1/jobs", b'{"prompt": "p", "loras": ' + b"[" * 40 + b"]" * 40 + b"}"),
])
def test_deep_nesting_is_a_400_not_a_500(daemon, path, body, caplog):
    resp = httpx.post(daemon.url + path, content=body, timeout=30,
                      headers={"Content-Type": "application/json"})
    assert resp.status_code in (400, 422), resp.text[:300]
    assert "nests arrays and objects more than 32 deep" in resp.text
    assert not [r for r in caplog.records if r.levelname in ("ERROR", "CRITICAL")]


def test_a_deeply_nested_websocket_message_is_an_error_message(daemon):
    import asyncio

    import aiohttp

    async def talk() -> dict:
        async with aiohttp.ClientSession() as session, \
                session.ws_connect(f"{daemon.url}/arting/v1/ws") as ws:
            ready = await asyncio.wait_for(ws.receive_json(), 10)
            assert ready["event"] == "ready"
            await ws.send_str("[" * 5000 + "]" * 5000)
            return await asyncio.wait_for(ws.receive_json(), 10)
    message = asyncio.run(talk())
    assert "32 deep" in str(message)


@pytest.mark.parametrize("path, extra, param", [
    ("/arting/v1/jobs", {"loras": [{"id": f"l{i}"} for i in range(100_000)]}, "loras"),
    ("/arting/v1/jobs", {"loras": [{"id": f"l{i}", "weight": 0.5} for i in range(9)]},
     "loras"),
    ("/v1/images/generations", {"loras": [f"l{i}:0.5" for i in range(100_000)]}, "loras"),
    ("/v1/images/generations", {"lora_ids": ",".join(f"l{i}" for i in range(100_000))},
     "lora_ids"),
])
def test_too_many_loras_are_refused(daemon, path, extra, param):
    resp = httpx.post(daemon.url + path, json={"prompt": "p", **extra}, timeout=30)
    assert resp.status_code == 400, resp.text[:300]
    error = resp.json()["error"]
    assert error["param"] == param and "at most 8 LoRAs" in error["message"]
    assert not daemon.sandbox.requests_for("create")


def test_too_many_lora_tags_in_an_a1111_prompt_are_refused(daemon):
    lora = next(iter(LORAS))
    resp = httpx.post(f"{daemon.url}/sdapi/v1/txt2img", timeout=30,
                      json={"prompt": "p " + f"<lora:{lora}:0.5> " * 9})
    assert resp.status_code == 422, resp.text[:300]
    assert "at most 8 LoRAs" in resp.text
    eight = httpx.post(f"{daemon.url}/sdapi/v1/txt2img", timeout=30,
                       json={"prompt": "p " + f"<lora:{lora}:0.5> " * 8})
    assert eight.status_code == 200, eight.text[:300]


@pytest.mark.parametrize("options, what", [
    ({"made_up": "x" * 100_000}, "larger than 65536 bytes"),
    ({"n" * 200: 1}, "at most 128 characters"),
    ({f"made_up_{i}": i for i in range(65)}, "At most 64 options"),
])
def test_oversized_options_are_refused_and_not_kept(daemon, options, what):
    state = daemon.settings.data_dir / "a1111.json"
    before = state.read_bytes() if state.exists() else None
    resp = httpx.post(f"{daemon.url}/sdapi/v1/options", json=options, timeout=30)
    assert resp.status_code == 422, resp.text[:300]
    assert what in resp.text
    assert (state.read_bytes() if state.exists() else None) == before
    kept = httpx.get(f"{daemon.url}/sdapi/v1/options").json()
    assert not set(options) & set(kept)


def test_open_webui_posting_back_every_option_is_still_fine(daemon):
    options = httpx.get(f"{daemon.url}/sdapi/v1/options").json()
    resp = httpx.post(f"{daemon.url}/sdapi/v1/options",
                      json={**options, **{f"mine_{i}": i for i in range(64)}})
    assert resp.status_code == 200, resp.text[:300]
