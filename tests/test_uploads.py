"""Init images reach Arting the signed-URL way, and a failed upload fails the job before
any create is sent."""

from __future__ import annotations

import base64
import io

import httpx
from PIL import Image


def png(colour=(0, 128, 255), size=(96, 64)) -> str:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, "PNG")
    return base64.b64encode(buf.getvalue()).decode()


def test_the_job_api_uploads_the_init_image_then_creates(daemon):
    job = daemon.run_job(init_image=png(), strength=0.4)
    assert job["state"] == "succeeded"
    uploaded, = daemon.uploads()
    assert Image.open(io.BytesIO(uploaded)).getpixel((1, 1)) == (0, 128, 255)
    order = [r.route for r in daemon.sandbox.requests
             if r.route in ("signed_urls", "oss_put", "i2i_create")]
    assert order == ["signed_urls", "oss_put", "i2i_create"]


def test_a_put_refused_by_storage_fails_the_job_and_sends_no_create(daemon):
    daemon.do(daemon.sandbox.add_fault, "storage_refused", route="oss_put")
    job = daemon.run_job(init_image=png())
    assert job["state"] == "failed"
    error = job["error"]
    assert error["code"] == "upstream_rejected"
    assert "storage" in error["message"] and "refused the image upload" in error["message"]
    assert "AccessDenied" in error["message"]
    assert daemon.sandbox.requests_for("oss_put")
    assert not daemon.sandbox.requests_for("i2i_create")


def test_an_openai_edit_refused_by_storage_is_an_openai_error(daemon):
    daemon.do(daemon.sandbox.add_fault, "storage_refused", route="oss_put")
    resp = httpx.post(daemon.v1 + "/images/edits", data={"prompt": "p"},
                      files={"image": ("a.png", base64.b64decode(png()), "image/png")},
                      timeout=30)
    assert resp.status_code == 502
    assert resp.json()["error"]["code"] == "upstream_rejected"
    assert "refused the image upload" in resp.json()["error"]["message"]
    assert not daemon.sandbox.requests_for("i2i_create")


def test_a_signed_url_into_the_local_network_is_not_followed(daemon, spy):
    """Arting's answer names the PUT host; one on a local address (here ``localhost``,
    not the upstream's own 127.0.0.1) gets nothing, and the job says why."""
    daemon.do(daemon.sandbox.configure,
              storage_url=f"http://localhost:{spy.server_address[1]}")
    job = daemon.run_job(init_image=png())
    assert job["state"] == "failed"
    assert "'localhost'" in job["error"]["message"] and "not sent" in job["error"]["message"]
    assert spy.hits == [] and not daemon.sandbox.requests_for("i2i_create")


def test_the_data_url_transport_sends_no_upload(make_daemon):
    daemon = make_daemon(img2img_transport="data_url")
    assert daemon.run_job(init_image=png())["state"] == "succeeded"
    assert daemon.sandbox.requests_for("i2i_create")[0].body["image_url"].startswith(
        "data:image/png;base64,")
    assert not daemon.sandbox.requests_for("signed_urls")
