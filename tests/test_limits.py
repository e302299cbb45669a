"""Every limit is configurable, and every refusal comes in the protocol's own error shape,
naming the limit (and the field) so the caller knows what to change.

A protocol is one entry in ``PROTOCOLS``: how to send a request, and how to read a
refusal (status, the field it names, message, headers).
"""

from __future__ import annotations

import base64
import io
import os
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx
import pytest
from PIL import Image

from arting_daemon.facades.sdapi_errors import FIELDS as A1111_FIELDS


@dataclass(frozen=True)
class Refusal:
    status: int
    param: str | None
    message: str
    retry_after: str | None


def openai_shape(resp: httpx.Response) -> Refusal:
    error = resp.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == ("requests" if resp.status_code == 429 else "invalid_request_error")
    return Refusal(resp.status_code, error["param"], error["message"],
                   resp.headers.get("Retry-After"))


def a1111_shape(resp: httpx.Response) -> Refusal:
    body = resp.json()
    if resp.status_code == 422:                    # FastAPI's validation shape
        (detail,) = body["detail"]
        assert detail["loc"][0] == "body" and detail["type"] == "value_error"
        param = detail["loc"][1] if len(detail["loc"]) > 1 else None
        return Refusal(422, param, detail["msg"], resp.headers.get("Retry-After"))
    assert set(body) == {"error", "detail", "body", "errors"}
    return Refusal(resp.status_code, None, body["detail"], resp.headers.get("Retry-After"))


def a1111_body(body: dict) -> dict:
    """The same request in A1111's words: batch_size for n, width and height for size."""
    out = {"prompt": body["prompt"], "steps": 5}
    if "n" in body:
        out["batch_size"] = body["n"]
    if "size" in body:
        width, _, height = body["size"].partition("x")
        out["width"], out["height"] = int(width), int(height)
    return out


@dataclass(frozen=True)
class Protocol:
    send: Callable[[object, dict], httpx.Response]
    read: Callable[[httpx.Response], Refusal]
    status: Callable[[int], int] = lambda generic: generic   # its status for a generic one
    param: Callable[[str | None], str | None] = lambda p: p  # its name for a field
    sizes: bool = True                                        # has a WIDTHxHEIGHT field


PROTOCOLS = {
    "openai": Protocol(lambda d, body: httpx.post(d.v1 + "/images/generations", json=body),
                       openai_shape),
    "jobs": Protocol(lambda d, body: httpx.post(d.url + "/arting/v1/jobs", json=body),
                     openai_shape),
    "sdapi": Protocol(lambda d, body: httpx.post(d.url + "/sdapi/v1/txt2img",
                                                 json=a1111_body(body)),
                      a1111_shape, status=lambda s: 422 if s == 400 else s,
                      param=lambda p: A1111_FIELDS.get(p, p) if p else None, sizes=False),
}


@dataclass(frozen=True)
class Limit:
    name: str
    settings: dict
    body: dict
    status: int
    param: str | None
    words: str
    sandbox: dict = field(default_factory=dict)
    busy: bool = False           # a job runs already (for the queue limit)


LIMITS = [
    Limit("body size", {"max_body_mb": 0.01}, {"prompt": "p" * 20_000}, 413, None,
          "max_body_mb"),
    Limit("prompt length", {"max_prompt_chars": 10}, {"prompt": "p" * 11}, 400, "prompt",
          "max_prompt_chars"),
    Limit("images per request", {"max_images": 2}, {"prompt": "p", "n": 3}, 400, "n",
          "max_images"),
    Limit("size format", {}, {"prompt": "p", "size": "big"}, 400, "size", "WIDTHxHEIGHT"),
    Limit("absurd size", {}, {"prompt": "p", "size": "0x512"}, 400, "size", "positive"),
    Limit("queue length", {"max_active_jobs": 1, "max_queued_jobs": 0}, {"prompt": "p"}, 429,
          None, "max_queued_jobs", sandbox={"generation_time": 2.0}, busy=True),
]


@pytest.mark.parametrize("protocol", list(PROTOCOLS))
@pytest.mark.parametrize("limit", LIMITS, ids=[lim.name for lim in LIMITS])
def test_refusal_names_the_limit(make_daemon, limit: Limit, protocol: str):
    daemon = make_daemon(sandbox_options=limit.sandbox, **limit.settings)
    if limit.busy:
        assert httpx.post(daemon.url + "/arting/v1/jobs", json={"prompt": "busy"}
                          ).status_code == 202
    proto = PROTOCOLS[protocol]
    if limit.name == "size format" and not proto.sizes:
        pytest.skip("this protocol has no WIDTHxHEIGHT field")
    refusal = proto.read(proto.send(daemon, limit.body))
    assert refusal.status == proto.status(limit.status), refusal
    assert refusal.param == proto.param(limit.param), refusal
    assert limit.words in refusal.message, refusal
    if limit.status == 429:
        assert refusal.retry_after and int(refusal.retry_after) >= 1
    assert not daemon.sandbox.requests_for("create")[int(limit.busy):]   # nothing was sent


def test_limits_are_settings_and_the_catalog_shows_them(make_daemon):
    daemon = make_daemon(max_images=2, max_prompt_chars=99, max_side=1024, max_pixels=512 * 512)
    limits = httpx.get(daemon.url + "/arting/v1/catalog").json()["limits"]
    assert (limits["max_images"], limits["max_prompt_chars"]) == (2, 99)
    assert (limits["max_side"], limits["max_pixels"]) == (1024, 512 * 512)


def test_sizes_past_the_limits_are_fitted_not_refused(make_daemon):
    daemon = make_daemon(max_side=1024, max_pixels=512 * 512)
    resp = httpx.post(daemon.url + "/arting/v1/jobs",
                      json={"prompt": "p", "width": 99_999, "height": 40_000})
    assert resp.status_code == 202
    req = resp.json()["request"]
    assert req["width"] <= 1024 and req["width"] * req["height"] <= 512 * 512
    assert req["width"] / req["height"] == pytest.approx(99_999 / 40_000, rel=0.02)


def test_a_side_too_big_for_a_float_is_refused_not_a_crash(daemon):
    """It once raised OverflowError in the size rule (HTTP 500)."""
    body = b'{"prompt": "p", "width": 1' + b"0" * 400 + b', "height": 5}'
    resp = httpx.post(daemon.url + "/arting/v1/jobs", content=body,
                      headers={"Content-Type": "application/json"})
    assert resp.status_code == 400 and resp.json()["error"]["param"] == "size"


@pytest.mark.parametrize("path", ["/arting/v1/jobs", "/v1/images/generations"])
def test_a_lone_surrogate_is_refused_up_front(daemon, path):
    """It was once accepted, and the job then failed far downstream, slowly."""
    resp = httpx.post(daemon.url + path, content=b'{"prompt": "a \\ud800 fox"}',
                      headers={"Content-Type": "application/json"}, timeout=10)
    assert resp.status_code == 400 and "surrogate" in resp.json()["error"]["message"]
    assert not daemon.sandbox.requests_for("create")


def test_the_default_body_limit_fits_an_img2img_upload(daemon):
    buf = io.BytesIO()
    Image.frombytes("RGB", (1024, 1024), os.urandom(1024 * 1024 * 3)).save(buf, "PNG")
    init = base64.b64encode(buf.getvalue()).decode()
    assert len(init) > 4 * 1024 * 1024                 # a big, incompressible photo
    resp = httpx.post(daemon.url + "/arting/v1/jobs", json={"prompt": "p", "init_image": init},
                      timeout=30)
    assert resp.status_code == 202, resp.text[:300]


@pytest.mark.parametrize("extra, param", [({"lora_ids": "a", "lora_weight": ":"}, "lora_weight"),
                                          ({"loras": ["a:heavy"]}, "loras"),
                                          ({"loras": [{"id": "a", "weight": [1]}]}, "loras")])
def test_lora_weights_that_are_not_numbers_are_refused(daemon, extra, param):
    """They once raised ValueError (HTTP 500); the fuzzer found it."""
    resp = httpx.post(daemon.v1 + "/images/generations", json={"prompt": "p", **extra})
    assert resp.status_code == 400 and resp.json()["error"]["param"] == param
