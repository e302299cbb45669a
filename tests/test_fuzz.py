"""Random and malformed requests (hypothesis): never a 5xx, never a traceback.

One live daemon serves the whole module. Each endpoint gets at least 1,000 bodies:
arbitrary JSON, objects made of that endpoint's own field names with wild values,
truncated JSON, raw bytes, random multipart, under assorted Content-Types. Valid ones
(they happen) run real jobs against the emulator and must succeed too.
"""

from __future__ import annotations

import base64
import io
import json
import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

EXAMPLES = 1000


class Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture(scope="module")
def live(make_module_daemon):
    capture = Capture()
    root, ours = logging.getLogger(), logging.getLogger("arting_daemon")
    old_levels = root.level, ours.level
    root.addHandler(capture)
    root.setLevel(logging.INFO)          # every library's warnings and errors ...
    ours.setLevel(logging.DEBUG)         # ... and every line of ours
    daemon = make_module_daemon(max_queued_jobs=4, max_body_mb=0.25, expected_duration=0.01,
                                poll_min_interval=0.005)
    try:
        with httpx.Client(base_url=daemon.url, timeout=30) as client:
            yield daemon, client, capture
    finally:
        root.removeHandler(capture)
        root.setLevel(old_levels[0])
        ours.setLevel(old_levels[1])


def png(size=(40, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGBA", size, (10, 200, 30, 255)).save(buf, "PNG")
    return buf.getvalue()


PNG = png()
PNG_B64 = base64.b64encode(PNG).decode()

huge = st.sampled_from([2**63, -2**63 - 1, 10**400, -(10**400)])
surrogates = st.text(st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF), min_size=1,
                     max_size=2)                  # JSON can escape them; UTF-8 cannot hold them
scalars = (st.none() | st.booleans() | st.integers() | huge | st.text(max_size=30)
           | surrogates | st.floats(allow_nan=True, allow_infinity=True))
json_values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.text(max_size=10), inner, max_size=4), max_leaves=6)

#: Values close to valid ones, so requests get past the first check and deeper in.
near = {
    "prompt": st.text(max_size=40) | st.just("a lighthouse") | st.just(" ") | st.just("p" * 5000)
    | surrogates.map(lambda bad: f"a {bad} fox"),
    "n": st.integers(-3, 10) | st.integers() | huge,
    "size": st.sampled_from(["512x768", "auto", "0x0", "1x99999", "99999x99999", "x", "",
                             "1024X1024", "-5x5", "1e3x5"]) | st.text(max_size=12),
    "width": st.integers(-10, 5000) | huge, "height": st.integers(-10, 5000) | huge,
    "model": st.sampled_from(["dall-e-3", "oneFORALLAnime", "x.safetensors [abc]", ""]),
    "response_format": st.sampled_from(["url", "b64_json", "png", None]),
    "seed": st.integers() | huge, "steps": st.integers(-5, 200), "guidance": st.floats(),
    "cfg_scale": st.floats(), "clip_skip": st.integers(-2, 20), "strength": st.floats(),
    "sampler": st.text(max_size=20) | st.just("DPM++ 2M Karras"),
    "loras": st.lists(st.fixed_dictionaries({"id": st.text(max_size=8),
                                             "weight": st.floats()}) | st.text(max_size=8),
                      max_size=3) | json_values,
    "lora_ids": st.text(max_size=20), "lora_weight": st.text(max_size=12) | st.floats(),
    "nsfw": st.booleans() | json_values, "stream": st.booleans() | json_values,
    "negative_prompt": st.text(max_size=20),
    "init_image": st.sampled_from(["", "data:image/png;base64,AAAA", "not base64!",
                                   "http://169.254.169.254/latest"]) | st.text(max_size=20),
    "mask": st.text(max_size=20) | st.just(PNG_B64),
    # AUTOMATIC1111's names
    "batch_size": st.integers(-2, 10), "n_iter": st.integers(-2, 10) | huge,
    "sampler_name": st.sampled_from(["Euler a", "DPM++ 2M Karras", "nope"]),
    "scheduler": st.sampled_from(["Karras", "Automatic", "x"]),
    "denoising_strength": st.floats(), "mask_blur": st.integers(-5, 500) | huge,
    "inpainting_mask_invert": st.integers(-1, 3),
    "init_images": st.lists(st.sampled_from([PNG_B64, "data:image/png;base64," + PNG_B64,
                                             "", "AAAA", "not base64"]), max_size=2),
    "override_settings": st.fixed_dictionaries({}, optional={
        "sd_model_checkpoint": json_values, "CLIP_stop_at_last_layers": json_values}),
    "alwayson_scripts": st.dictionaries(st.text(max_size=5), json_values, max_size=1),
    "sd_model_checkpoint": st.sampled_from(["oneFORALLAnime", "asyncsMIX_v7.safetensors",
                                            "nope"]) | json_values,
    "CLIP_stop_at_last_layers": st.integers(-1, 14) | json_values,
    # chat
    "messages": st.lists(st.fixed_dictionaries({"role": st.sampled_from(["user", "system",
                                                                        "assistant", ""]),
                                                "content": json_values | st.text()}),
                         max_size=3) | json_values,
}


def objects(fields: list[str], valid: dict):
    """Objects of the endpoint's own fields; and valid requests with one or two fields
    made wild, which get past every other check and deep into the validation."""
    keys = st.sampled_from(fields) | st.text(max_size=8)

    def mutate(body: dict):
        field = st.sampled_from(fields)
        return field.flatmap(lambda f: (near.get(f, json_values) | json_values).map(
            lambda v: {**body, f: v}))

    return st.one_of(
        st.dictionaries(keys, json_values, max_size=6),
        st.fixed_dictionaries({}, optional={f: near.get(f, json_values) for f in fields}),
        mutate(valid), mutate(valid).flatmap(mutate))


def dumps(value) -> bytes:
    return json.dumps(value).encode()           # NaN and Infinity included, as some send


def json_bodies(fields: list[str], valid: dict):
    encoded = (json_values | objects(fields, valid)).map(dumps)
    return st.one_of(encoded, encoded, encoded.map(lambda b: b[: len(b) // 2]),
                     st.binary(max_size=200), st.just(b""), st.just(b"x" * (300 << 10)))


content_types = st.sampled_from([
    "application/json", "application/json; charset=utf-8", "text/plain", "",
    "application/x-www-form-urlencoded", "multipart/form-data",
    "multipart/form-data; boundary=zz", "application/json; charset=latin-1"])
extra_headers = st.fixed_dictionaries({}, optional={
    "Idempotency-Key": st.text(st.characters(min_codepoint=33, max_codepoint=126),
                               max_size=300),
    "X-Request-Id": st.text(st.characters(min_codepoint=33, max_codepoint=126), max_size=80),
    "X-Arting-Client": st.text(st.characters(min_codepoint=33, max_codepoint=126),
                               max_size=60)})


@st.composite
def raw_requests(draw, fields: list[str], valid: dict):
    headers = {"Content-Type": draw(content_types), **draw(extra_headers)}
    return {"content": draw(json_bodies(fields, valid)), "headers": headers}


@st.composite
def multipart_requests(draw):
    fields = draw(st.dictionaries(st.sampled_from(["prompt", "n", "size", "response_format",
                                                   "model", "strength", "seed", "stream"])
                                  | st.text(min_size=1, max_size=8),
                                  st.text(max_size=20) | st.just("a fox"), max_size=6))
    parts = draw(st.lists(st.tuples(st.sampled_from(["image", "image[]", "mask", "other"]),
                                    st.binary(max_size=300) | st.just(PNG)
                                    | st.just(PNG[:60]) | st.just(png((1, 3000)))),
                          max_size=3))
    if not parts:
        return draw(raw_requests(["prompt", "image", "mask"], {"prompt": "p"}))
    files = [(name, ("f.png", data, "image/png")) for name, data in parts]
    return {"data": fields, "files": files}


def openai_shape(body: Any) -> bool:
    return set(body["error"]) >= {"message", "type", "code"}


def a1111_shape(body: Any) -> bool:
    return isinstance(body, dict) and "detail" in body


@dataclass(frozen=True)
class Endpoint:
    path: str
    requests: st.SearchStrategy
    error_shape: Callable[[Any], bool]      # the protocol's own error body
    refused: int                            # its status for a request it cannot take


IMAGE_FIELDS = ["prompt", "model", "n", "size", "response_format", "stream", "quality",
                "style", "user", "negative_prompt", "seed", "steps", "guidance", "cfg_scale",
                "sampler", "clip_skip", "loras", "lora_ids", "lora_weight", "nsfw", "strength"]
CHAT_FIELDS = ["model", "messages", "stream", "size", "n", "seed", "negative_prompt",
               "steps", "guidance", "loras", "user"]
JOB_FIELDS = ["prompt", "negative_prompt", "model", "width", "height", "size", "n", "seed",
              "steps", "guidance", "sampler", "clip_skip", "loras", "nsfw", "init_image",
              "mask", "strength"]
TXT2IMG_FIELDS = ["prompt", "negative_prompt", "seed", "sampler_name", "scheduler",
                  "batch_size", "n_iter", "steps", "cfg_scale", "width", "height",
                  "override_settings", "alwayson_scripts", "send_images", "styles"]
IMG2IMG_FIELDS = [*TXT2IMG_FIELDS, "init_images", "denoising_strength", "mask", "mask_blur",
                  "inpainting_mask_invert"]
OPTIONS_FIELDS = ["sd_model_checkpoint", "CLIP_stop_at_last_layers", "samples_format",
                  "enable_pnginfo"]
A1111_VALID = {"prompt": "a fox", "width": 256, "height": 256, "steps": 5}

ENDPOINTS = {
    "openai generations": Endpoint("/v1/images/generations", raw_requests(
        IMAGE_FIELDS, {"prompt": "a fox", "size": "256x256", "response_format": "url"}),
        openai_shape, 400),
    "openai edits": Endpoint("/v1/images/edits", multipart_requests(), openai_shape, 400),
    "openai chat": Endpoint("/v1/chat/completions", raw_requests(
        CHAT_FIELDS, {"model": "oneFORALLAnime", "size": "256x256",
                      "messages": [{"role": "user", "content": "a fox"}]}), openai_shape, 400),
    "native jobs": Endpoint("/arting/v1/jobs", raw_requests(
        JOB_FIELDS, {"prompt": "a fox", "width": 256, "height": 256}), openai_shape, 400),
    "a1111 txt2img": Endpoint("/sdapi/v1/txt2img", raw_requests(TXT2IMG_FIELDS, A1111_VALID),
                              a1111_shape, 422),
    "a1111 img2img": Endpoint("/sdapi/v1/img2img", raw_requests(
        IMG2IMG_FIELDS, {**A1111_VALID, "init_images": [PNG_B64]}), a1111_shape, 422),
    "a1111 options": Endpoint("/sdapi/v1/options", raw_requests(
        OPTIONS_FIELDS, {"sd_model_checkpoint": "oneFORALLAnime"}), a1111_shape, 422),
}


@pytest.mark.parametrize("name", list(ENDPOINTS))
def test_no_5xx_and_no_traceback(live, name):
    daemon, client, capture = live
    endpoint = ENDPOINTS[name]
    statuses: Counter[int] = Counter()
    first_record = len(capture.records)

    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(endpoint.requests)
    def post(request):
        resp = client.post(endpoint.path, **request)
        statuses[resp.status_code] += 1
        assert resp.status_code < 500, (resp.status_code, resp.text[:500], request)
        assert "Traceback" not in resp.text and 'File "' not in resp.text, resp.text[:500]
        if resp.status_code >= 400:
            assert endpoint.error_shape(resp.json()), resp.text[:500]

    post()
    assert sum(statuses.values()) >= EXAMPLES
    # mostly refused, rightly: as invalid, or (a body not sent as JSON) as 415
    assert statuses[endpoint.refused] + statuses[415] > EXAMPLES / 3, statuses
    problems = [r for r in capture.records[first_record:]
                if r.exc_info or r.levelno >= logging.ERROR or "Traceback" in r.getMessage()]
    assert not problems, [f"{r.name}: {r.getMessage()}" for r in problems[:5]]
