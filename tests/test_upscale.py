"""Upscaling with Arting's image-enhance, from every API that offers it: the job API,
A1111's extras and Hires. fix; an upscale is a job like any other (progress, cancel,
journal), and one Arting fails ends at once with each protocol's error."""

from __future__ import annotations

import base64
import io
import json
import time

import httpx
import pytest
import webuiapi
from PIL import Image
from threads import Background

from arting_daemon.store import png_size


def png(colour=(10, 200, 30), size=(64, 48)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, "PNG")
    return buf.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def submit(daemon, **body) -> httpx.Response:
    return httpx.post(daemon.url + "/arting/v1/jobs", json={"kind": "upscale", **body})


@pytest.fixture
def api(daemon):
    return webuiapi.WebUIApi(host="127.0.0.1", port=int(daemon.url.rsplit(":", 1)[1]))


# --- the job API ---------------------------------------------------------------------------

@pytest.mark.parametrize("scale", [2, 4])
def test_an_upscale_job_of_a_sent_picture(daemon, scale):
    resp = submit(daemon, images=[b64(png())], scale=scale)
    assert resp.status_code == 202, resp.text
    queued = resp.json()
    assert queued["kind"] == "upscale" and queued["request"]["scale"] == scale
    job = daemon.wait_job(queued["id"])
    assert job["state"] == "succeeded", job
    image, = job["images"]
    assert (image["width"], image["height"]) == (64 * scale, 48 * scale)
    data = httpx.get(image["url"]).content
    assert png_size(data) == (64 * scale, 48 * scale)
    assert Image.open(io.BytesIO(data)).convert("RGB").getpixel((5, 5)) == (10, 200, 30)
    daemon.uploads()                                  # signed upload, then the enhance task
    task, = daemon.sandbox.requests_for("enhance_create")
    assert task.body["scale"] == scale and task.body["version"] == "v1.4"


def test_results_are_upscaled_by_hash_one_task_each(daemon):
    generated = daemon.run_job(n=2, width=256, height=256)
    hashes = [i["hash"] for i in generated["images"]]
    job = daemon.wait_job(submit(daemon, images=hashes).json()["id"])
    assert job["state"] == "succeeded"
    assert [(i["width"], i["height"]) for i in job["images"]] == [(512, 512)] * 2
    assert len(daemon.sandbox.requests_for("enhance_create")) == 2
    assert [u for u in daemon.uploads()] == [httpx.get(i["url"]).content
                                           for i in generated["images"]]


@pytest.mark.parametrize("body, status, param", [
    ({"images": [b64(png())], "scale": 3}, 400, "scale"),
    ({"images": []}, 400, "images"),
    ({"images": [b64(png())] * 5}, 400, "images"),
    ({"images": ["0" * 64]}, 404, "images.0"),
    ({"images": ["not an image"]}, 400, "images.0"),
    ({"images": [b64(png())], "prompt": "p"}, 400, "prompt"),
])
def test_upscale_requests_are_checked(daemon, body, status, param):
    resp = submit(daemon, **body)
    assert resp.status_code == status, resp.text
    assert resp.json()["error"]["param"] == param
    assert not daemon.sandbox.requests_for("enhance_create")


def test_too_large_a_result_is_refused(daemon):
    resp = submit(daemon, images=[b64(png(size=(2100, 2100)))], scale=4)
    assert resp.status_code == 400 and "megapixels" in resp.json()["error"]["message"]


def test_an_idempotent_resubmit_is_the_same_upscale(daemon):
    body = {"kind": "upscale", "images": [b64(png())]}
    first = httpx.post(daemon.url + "/arting/v1/jobs", json=body,
                       headers={"Idempotency-Key": "up-1"})
    again = httpx.post(daemon.url + "/arting/v1/jobs", json=body,
                       headers={"Idempotency-Key": "up-1"})
    assert (first.status_code, again.status_code) == (202, 200)
    assert first.json()["id"] == again.json()["id"]


def test_an_upscale_shows_progress_and_can_be_cancelled(daemon):
    daemon.do(daemon.sandbox.add_fault, "never_finish", route="enhance_create")
    job = submit(daemon, images=[b64(png())]).json()
    running = daemon.wait_job(job["id"], states=("running",))
    assert 0 < running["progress"] < 1 and running["eta_seconds"] is not None
    cancelled = httpx.delete(running["links"]["self"]).json()
    assert cancelled["state"] == "cancelled"
    assert len(daemon.sandbox.requests_for("enhance_create")) == 1


def test_a_failed_upscale_fails_the_job_at_once(daemon):
    daemon.do(daemon.sandbox.configure, generation_time=60)
    daemon.do(daemon.sandbox.add_fault, "fail", route="enhance_get")
    job = daemon.wait_job(submit(daemon, images=[b64(png())]).json()["id"])
    assert job["state"] == "failed"
    assert job["error"]["code"] == "generation_failed"
    assert "upscale failed" in job["error"]["message"]
    assert len(daemon.sandbox.requests_for("enhance_get")) == 1    # no waiting it out


def test_upscale_switched_off_is_refused_with_how_to_switch_it_on(make_daemon):
    daemon = make_daemon(upscale=False)
    resp = submit(daemon, images=[b64(png())])
    assert resp.status_code == 400
    assert resp.json()["error"]["code"] == "feature_disabled"
    assert "upscale = true" in resp.json()["error"]["message"]
    catalog = httpx.get(daemon.url + "/arting/v1/catalog").json()
    assert catalog["upscale"] is False and catalog["upscale_scales"] == [2, 4]
    status = httpx.get(daemon.url + "/arting/v1/status").json()
    assert status["upscale"] is False
    assert not daemon.sandbox.requests_for("signed_urls")


def test_the_balance_enhance_polls_report_is_kept(daemon):
    job = daemon.wait_job(submit(daemon, images=[b64(png())]).json()["id"])
    assert job["state"] == "succeeded"
    token, = httpx.get(daemon.url + "/arting/v1/admin/tokens").json()["tokens"]
    assert token["balance"] == 999


# --- A1111: extras -------------------------------------------------------------------------

@pytest.mark.parametrize("scale", [2, 4])
def test_webuiapi_extra_single_image(api, daemon, scale):
    result = api.extra_single_image(image=Image.open(io.BytesIO(png())), upscaler_1="Arting",
                                    upscaling_resize=scale)
    assert result.image.size == (64 * scale, 48 * scale)
    assert result.image.convert("RGB").getpixel((5, 5)) == (10, 200, 30)
    assert result.info == f"<p>Postprocess upscale by: {scale}, Postprocess upscaler: Arting</p>"
    assert daemon.sandbox.requests_for("enhance_create")[-1].body["scale"] == scale


def test_webuiapi_extra_batch_images(api, daemon):
    pictures = [Image.open(io.BytesIO(png(c))) for c in ((255, 0, 0), (0, 0, 255))]
    result = api.extra_batch_images(images=pictures, upscaler_1="Arting", upscaling_resize=2)
    assert [i.size for i in result.images] == [(128, 96)] * 2
    assert [i.convert("RGB").getpixel((1, 1)) for i in result.images] == [(255, 0, 0),
                                                                          (0, 0, 255)]
    assert len(daemon.sandbox.requests_for("enhance_create")) == 2


def test_any_factor_and_exact_sizes_as_a1111_makes_them(api, daemon):
    three = api.extra_single_image(image=Image.open(io.BytesIO(png())), upscaler_1="Arting",
                                   upscaling_resize=3)
    assert three.image.size == (192, 144)                       # 4× by Arting, then resized
    assert daemon.sandbox.requests_for("enhance_create")[-1].body["scale"] == 4
    cut = api.extra_single_image(image=Image.open(io.BytesIO(png())), upscaler_1="Arting",
                                 resize_mode=1, upscaling_resize_w=100,
                                 upscaling_resize_h=100, upscaling_crop=True)
    assert cut.image.size == (100, 100)
    assert daemon.sandbox.requests_for("enhance_create")[-1].body["scale"] == 4  # 100/48 > 2


def test_local_upscalers_and_none_need_no_arting(api, daemon):
    source = Image.open(io.BytesIO(png()))
    assert api.extra_single_image(image=source, upscaler_1="Lanczos",
                                  upscaling_resize=2).image.size == (128, 96)
    assert api.extra_single_image(image=source, upscaler_1="Nearest",
                                  upscaling_resize=1.5).image.size == (96, 72)
    assert api.extra_single_image(image=source).image.size == (64, 48)    # "None"
    assert not daemon.sandbox.requests_for("enhance_create")


def test_two_upscalers_are_blended(api, daemon):
    result = api.extra_single_image(image=Image.open(io.BytesIO(png())), upscaler_1="Arting",
                                    upscaler_2="Nearest", extras_upscaler_2_visibility=0.5)
    assert result.image.size == (128, 96)
    assert len(daemon.sandbox.requests_for("enhance_create")) == 1


def test_an_unknown_upscaler_is_an_a1111_error(daemon):
    resp = httpx.post(daemon.url + "/sdapi/v1/extra-single-image",
                      json={"image": b64(png()), "upscaler_1": "R-ESRGAN 4x+"})
    assert resp.status_code == 422
    assert "could not find upscaler named R-ESRGAN 4x+" in json.dumps(resp.json())


def test_a_failed_upscale_is_an_a1111_error_at_once(daemon):
    daemon.do(daemon.sandbox.configure, generation_time=60)
    daemon.do(daemon.sandbox.add_fault, "fail", route="enhance_get")
    resp = httpx.post(daemon.url + "/sdapi/v1/extra-single-image",
                      json={"image": b64(png()), "upscaler_1": "Arting"}, timeout=30)
    assert resp.status_code == 500
    body = resp.json()
    assert body["error"] == "JobFailed" and "upscale failed" in body["detail"]
    assert len(daemon.sandbox.requests_for("enhance_get")) == 1


def test_arting_is_listed_only_when_upscaling_is_on(make_daemon):
    daemon = make_daemon(upscale=False)
    names = [u["name"] for u in httpx.get(daemon.url + "/sdapi/v1/upscalers").json()]
    assert names == ["None", "Lanczos", "Nearest"]
    resp = httpx.post(daemon.url + "/sdapi/v1/extra-single-image",
                      json={"image": b64(png()), "upscaler_1": "Arting"})
    assert resp.status_code == 422 and "upscale = true" in json.dumps(resp.json()["detail"])


def test_progress_and_interrupt_see_an_extras_upscale(daemon):
    daemon.do(daemon.sandbox.add_fault, "never_finish", route="enhance_create")
    call = Background(httpx.post, daemon.url + "/sdapi/v1/extra-single-image",
                      json={"image": b64(png()), "upscaler_1": "Arting"}, timeout=30)
    deadline = time.monotonic() + 10
    while True:
        progress = httpx.get(daemon.url + "/sdapi/v1/progress").json()
        if progress["state"]["job_count"] and progress["textinfo"].startswith("Upscaling"):
            break
        assert time.monotonic() < deadline, progress
        time.sleep(0.02)
    assert progress["textinfo"] == "Upscaling 2× on Arting"
    httpx.post(daemon.url + "/sdapi/v1/interrupt")
    resp = call.result()
    assert resp.status_code == 200                       # the picture as it was
    assert png_size(base64.b64decode(resp.json()["image"])) == (64, 48)


# --- A1111: Hires. fix ---------------------------------------------------------------------

def test_txt2img_with_enable_hr_returns_the_doubled_size(api, daemon):
    result = api.txt2img(prompt="a lighthouse", width=256, height=384, seed=5,
                         enable_hr=True, hr_scale=2, hr_upscaler="Latent")
    assert result.image.size == (512, 768)
    assert daemon.sandbox.requests_for("create")[-1].body["width"] == 256   # generated first
    assert daemon.sandbox.requests_for("enhance_create")[-1].body["scale"] == 2
    text = result.info["infotexts"][0]
    assert "Size: 256x384" in text and "Hires upscale: 2" in text
    assert "Hires upscaler: Arting (image-enhance v1.4)" in text
    assert result.info["extra_generation_params"]["Hires upscaler"].startswith("Arting")
    assert result.image.info["parameters"] == text
    assert result.info["all_seeds"] == [5]


def test_enable_hr_to_a_size_and_by_an_odd_factor(daemon):
    sized = httpx.post(daemon.url + "/sdapi/v1/txt2img", timeout=30, json={
        "prompt": "p", "width": 256, "height": 256, "batch_size": 2, "enable_hr": True,
        "hr_resize_x": 600, "hr_resize_y": 400}).json()
    assert [png_size(base64.b64decode(i)) for i in sized["images"]] == [(600, 400)] * 2
    assert "Hires resize: 600x400" in json.loads(sized["info"])["infotexts"][0]
    odd = httpx.post(daemon.url + "/sdapi/v1/txt2img", timeout=30, json={
        "prompt": "p", "width": 256, "height": 256, "enable_hr": True, "hr_scale": 1.5}).json()
    assert png_size(base64.b64decode(odd["images"][0])) == (384, 384)


def test_without_enable_hr_nothing_is_upscaled(api, daemon):
    assert api.txt2img(prompt="p", width=256, height=256).image.size == (256, 256)
    assert not daemon.sandbox.requests_for("enhance_create")


def test_a_failed_hires_upscale_is_an_a1111_error(daemon):
    daemon.do(daemon.sandbox.add_fault, "fail", route="enhance_get")
    resp = httpx.post(daemon.url + "/sdapi/v1/txt2img", timeout=30, json={
        "prompt": "p", "width": 256, "height": 256, "enable_hr": True})
    assert resp.status_code == 500 and resp.json()["error"] == "JobFailed"
    assert "upscale failed" in resp.json()["detail"]


def test_enable_hr_with_upscaling_off_is_refused_before_generating(make_daemon):
    daemon = make_daemon(upscale=False)
    resp = httpx.post(daemon.url + "/sdapi/v1/txt2img", timeout=30, json={
        "prompt": "p", "enable_hr": True})
    assert resp.status_code == 422 and "upscale = true" in json.dumps(resp.json()["detail"])
    assert not daemon.sandbox.requests_for("create")


# --- with user keys --------------------------------------------------------------------------

def test_a_users_upscales_count_as_images_and_models_do_not_limit_them(make_daemon):
    admin = "admin-key-0123456789"
    daemon = make_daemon(api_keys=[admin])
    made = httpx.post(f"{daemon.url}/arting/v1/admin/keys", json={
        "name": "alice", "images_per_day": 3, "models": ["asyncsMIX_v7"]},
        headers={"Authorization": f"Bearer {admin}"}).json()
    alice = {"Authorization": f"Bearer {made['key']}"}
    resp = httpx.post(daemon.url + "/arting/v1/jobs", headers=alice,
                      json={"kind": "upscale", "images": [b64(png()), b64(png((1, 2, 3)))]})
    assert resp.status_code == 202, resp.text
    assert daemon.wait_job(resp.json()["id"], headers=alice)["state"] == "succeeded"
    usage = httpx.get(daemon.url + "/arting/v1/usage", headers=alice).json()["data"][0]
    assert usage["days"][0]["models"] == {"image-enhance v1.4 2x": {"jobs": 1, "images": 2}}
    assert usage["remaining"]["images_today"] == 1
    refused = httpx.post(daemon.url + "/arting/v1/jobs", headers=alice,
                         json={"kind": "upscale", "images": [b64(png())] * 2})
    assert refused.status_code == 429 and "images_per_day" in refused.json()["error"]["message"]
    others = httpx.get(daemon.url + "/arting/v1/jobs", headers=alice).json()["data"]
    assert [j["kind"] for j in others] == ["upscale"]
