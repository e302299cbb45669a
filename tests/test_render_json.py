"""JSON answers with stored images spliced in as base64 (``facades.http.render_json``)."""

from __future__ import annotations

import base64
import json

from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from arting_daemon.facades.http import StoredB64, json_with_images, render_json
from arting_daemon.sandbox.render import Picture, render_png
from arting_daemon.state import STORE
from arting_daemon.store import ImageStore


async def test_images_are_spliced_into_exactly_the_json_of_the_data(tmp_path):
    store = ImageStore(tmp_path)
    pngs = [render_png(Picture(prompt="p", seed=s, model="m", width=64, height=64))
            for s in (1, 2)]
    digests = [(await store.put(png)).hash for png in pngs]
    app = web.Application()
    app[STORE] = store
    request = make_mocked_request("POST", "/", app=app)
    # text that looks like JSON, escapes, NUL bytes and non-ASCII must come out intact
    tricky = 'a "quoted" \\ prompt \x00 with ünïcode and "}]'
    data = {"created": 1, "data": [{"revised_prompt": tricky, "b64_json": StoredB64(d)}
                                   for d in digests], "note": tricky}

    answer = json.loads(await render_json(request, data))

    assert answer["note"] == tricky and answer["created"] == 1
    assert [item["revised_prompt"] for item in answer["data"]] == [tricky, tricky]
    assert [base64.b64decode(item["b64_json"]) for item in answer["data"]] == pngs


async def test_without_images_it_is_plain_json(tmp_path):
    app = web.Application()
    app[STORE] = ImageStore(tmp_path)
    request = make_mocked_request("GET", "/", app=app)
    response = await json_with_images(request, {"data": [{"url": "http://x/a.png"}]})
    assert json.loads(response.body) == {"data": [{"url": "http://x/a.png"}]}
    assert response.content_type == "application/json" and response.charset == "utf-8"


async def test_a_prefix_and_an_edit_are_applied_in_the_splice(tmp_path):
    store = ImageStore(tmp_path)
    png = render_png(Picture(prompt="p", seed=3, model="m", width=32, height=32))
    digest = (await store.put(png)).hash
    app = web.Application()
    app[STORE] = store
    request = make_mocked_request("POST", "/", app=app)
    data = {"url": StoredB64(digest, prefix="data:image/png;base64,"),
            "raw": StoredB64(digest, edit=lambda b: b + b"tail")}
    answer = json.loads(await render_json(request, data))
    assert answer["url"] == "data:image/png;base64," + base64.b64encode(png).decode()
    assert base64.b64decode(answer["raw"]) == png + b"tail"
