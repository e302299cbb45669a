"""The OpenAPI document (``/openapi.json``) and the docs page's files (``/docs``).

The document must be valid OpenAPI 3.1, describe every route the daemon serves and
nothing else, and take its schemas from the models the handlers answer with. The
Schemathesis run (``test_schemathesis.py``) checks the answers against it; the page
itself is driven in a browser in ``test_docs_page.py``.
"""

from __future__ import annotations

import asyncio
import base64
import re
import time

import aiohttp
import httpx
import pytest
from a1111_standin import A1111StandIn
from webhook_receiver import Receiver
from aiohttp import web
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate
from pydantic import TypeAdapter

from arting_daemon.app import create_app
from arting_daemon.config import Settings
from arting_daemon.facades import openai_errors
from arting_daemon.facades.views import JobView
from arting_daemon.openapi import API, Undescribed, document, operation, routes

REF = "#/components/schemas/"


def schema_of(doc: dict, ref: dict) -> dict:
    return doc["components"]["schemas"][ref["$ref"].removeprefix(REF)]


def test_the_document_is_valid_openapi_3_1_and_is_what_the_daemon_serves(daemon):
    resp = httpx.get(f"{daemon.url}/openapi.json")
    assert resp.status_code == 200 and resp.headers["Content-Type"].startswith(
        "application/json")
    doc = resp.json()
    validate(doc)
    assert doc["openapi"] == "3.1.0"
    assert doc["servers"] == [{"url": daemon.url}]
    # The Schemathesis run is generated from this same document, built without a daemon.
    assert {k: v for k, v in doc.items() if k != "servers"} == document(create_app(Settings()))


def test_every_route_the_router_serves_is_documented_and_nothing_else(daemon):
    doc = httpx.get(f"{daemon.url}/openapi.json").json()
    documented = {(method.upper(), path) for path, item in doc["paths"].items()
                  for method in item}
    served = {(route.method, route.path) for route in routes(daemon.app)}
    assert documented == served
    # Sub-applications' routes, the root's, the A1111 ping, the streams, the page.
    assert {("POST", "/v1/images/generations"), ("POST", "/sdapi/v1/txt2img"),
            ("GET", "/sdapi/v1/cmd-flags"), ("GET", "/internal/ping"),
            ("GET", "/arting/v1/jobs/{id}/events"), ("PATCH", "/arting/v1/admin/keys/{id}"),
            ("GET", "/metrics"), ("GET", "/"), ("GET", "/docs")} <= documented


def test_a_route_added_without_a_description_fails_until_it_has_one():
    async def newcomer(request: web.Request) -> web.Response:
        return web.json_response({})

    app, sub = web.Application(), web.Application()
    sub[API] = openai_errors.NATIVE
    sub.router.add_get("/newcomer", newcomer)
    app.add_subapp("/arting/v1", sub)
    with pytest.raises(Undescribed, match="GET /arting/v1/newcomer"):
        document(app)
    operation("A new route", answers={200: dict})(newcomer)
    assert document(app)["paths"]["/arting/v1/newcomer"]["get"]["summary"] == "A new route"


@pytest.fixture(scope="module")
def doc() -> dict:
    return document(create_app(Settings()))


def test_schemas_are_the_handlers_own_models(doc):
    """The job view in the document is exactly what pydantic says of ``JobView``, the
    model ``GET /jobs/{id}`` builds its answer with."""
    answer = doc["paths"]["/arting/v1/jobs/{id}"]["get"]["responses"]["200"]
    ref = answer["content"]["application/json"]["schema"]
    assert ref == {"$ref": f"{REF}JobView"}
    own = TypeAdapter(JobView).json_schema(mode="serialization",
                                           ref_template=REF + "{model}")
    own.pop("$defs")
    assert schema_of(doc, ref) == own


def test_each_protocol_has_its_error_shapes_security_and_tag(doc):
    paths = doc["paths"]
    openai = paths["/v1/images/generations"]["post"]
    assert openai["tags"] == ["OpenAI"] and openai["security"] == [{"bearer": []}]
    for status in ("400", "401", "429", "502", "504"):
        assert openai["responses"][status]["content"]["application/json"]["schema"] == {
            "$ref": f"{REF}ErrorBody"}
    assert "text/event-stream" in openai["responses"]["200"]["content"]

    a1111 = paths["/sdapi/v1/txt2img"]["post"]
    assert a1111["tags"] == ["AUTOMATIC1111"]
    assert a1111["security"] == [{"bearer": []}, {"basic": []}]
    errors = {s: [ref["$ref"].removeprefix(REF) for ref in
                  schema.get("anyOf", [schema])]
              for s, r in a1111["responses"].items() if not s.startswith("2")
              for schema in [r["content"]["application/json"]["schema"]]}
    assert errors == {"401": ["A1111Error"], "403": ["A1111Error"], "404": ["A1111Error"],
                      "413": ["A1111Error"], "415": ["A1111Error"], "421": ["A1111Error"],
                      "422": ["ValidationErrors", "A1111Error"],
                      "429": ["A1111Error"], "500": ["A1111Error"], "503": ["A1111Error"]}
    assert a1111["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": f"{REF}Txt2ImgRequest"}

    submit = paths["/arting/v1/jobs"]["post"]
    assert submit["tags"] == ["Job API"]
    assert submit["responses"]["202"]["headers"]["Location"]["required"] is True
    assert {p["name"] for p in submit["parameters"]} == {"Idempotency-Key", "X-Arting-Client",
                                                         "Cache-Control"}
    assert set(submit["responses"]["202"]["headers"]) == {"Location", "X-Arting-Cache"}
    for path in ("/v1/images/generations", "/v1/chat/completions", "/sdapi/v1/txt2img"):
        assert "X-Arting-Cache" in paths[path]["post"]["responses"]["200"]["headers"], path
    assert submit["responses"]["400"]["content"]["application/json"]["schema"] == {
        "$ref": f"{REF}ErrorBody"}
    events = paths["/arting/v1/jobs/{id}/events"]["get"]["responses"]["200"]["content"]
    assert set(events) == {"text/event-stream"}
    ws = paths["/arting/v1/ws"]["get"]
    assert ws["tags"] == ["Job API"] and "content" not in ws["responses"]["101"]
    assert {side: [r["$ref"].removeprefix(REF) for r in schema["anyOf"]]
            for side, schema in ws["x-websocket"].items()} == {
        "client": ["WsAuth", "WsSubscribe", "WsUnsubscribe", "WsSubmit"],
        "server": ["WsReady", "WsJob", "WsSubmitted", "WsError"]}

    for path, method in (("/arting/v1/admin/keys", "post"), ("/arting/v1/admin/tokens", "get")):
        admin = paths[path][method]
        assert admin["tags"] == ["Administration"] and "403" in admin["responses"]
    for path in ("/healthz", "/readyz", "/arting/v1/catalog", "/internal/ping", "/docs",
                 "/arting/v1/images/{hash}.png"):
        assert paths[path]["get"]["security"] == []
    assert doc["components"]["securitySchemes"]["basic"]["scheme"] == "basic"


def conforms(doc: dict, method: str, path: str, resp: httpx.Response) -> dict:
    """``resp``'s JSON, after checking it against what the document declares for it
    (its headers too)."""
    declared = doc["paths"][path][method]["responses"][str(resp.status_code)]
    schema = declared["content"]["application/json"]["schema"]
    valid(doc, schema, resp.json())
    assert all(name in resp.headers for name in declared.get("headers", {})), resp.headers
    return resp.json()


def valid(doc: dict, schema: dict, value) -> None:
    Draft202012Validator({**schema, "components": doc["components"]}).validate(value)


def test_what_the_schemathesis_run_cannot_reach_matches_the_document_too(doc, make_daemon):
    """A daemon with a second provider and a fallback: each provider's health, each
    model's provider, a job that left a provider, and the check's report."""
    studio = A1111StandIn().start()
    try:
        daemon = make_daemon(
            providers=[{"name": "studio", "kind": "a1111", "base_url": studio.url}],
            fallbacks={"oneFORALLAnime": ["studio/*"]}, retry_budget=0.5)
        daemon.do(daemon.sandbox.add_fault, "cf_1020", route="create")
        job = daemon.run_job(model="oneFORALLAnime")
        url, jobs = daemon.url, "/arting/v1/jobs"
        job = conforms(doc, "get", jobs + "/{id}", httpx.get(f"{url}{jobs}/{job['id']}"))
        assert job["provider"] == "studio" and job["fallbacks"][0]["from"] == "arting", job
        assert conforms(doc, "get", jobs, httpx.get(url + jobs))["data"][0]["fallbacks"]

        status = conforms(doc, "get", "/arting/v1/status", httpx.get(url + "/arting/v1/status"))
        arting, other = status["providers"]
        assert arting["tokens"] and "base_url" not in arting, arting
        assert other["base_url"] == studio.url and "tokens" not in other, other
        catalog = conforms(doc, "get", "/arting/v1/catalog",
                           httpx.get(url + "/arting/v1/catalog"))
        assert [p["name"] for p in catalog["providers"]] == ["arting", "studio"]
        conforms(doc, "get", "/v1/models", httpx.get(url + "/v1/models"))
        conforms(doc, "get", "/sdapi/v1/sd-models", httpx.get(url + "/sdapi/v1/sd-models"))

        check = "/arting/v1/admin/check"
        assert conforms(doc, "get", check, httpx.get(url + check)) is None
        report = conforms(doc, "post", check, httpx.post(url + check, timeout=60))
        assert report["findings"] and report == httpx.get(url + check).json()
    finally:
        studio.stop()


SECRET = "whsec_" + base64.b64encode(b"thirty-two bytes of test secret!").decode()


def test_the_cache_the_store_webhooks_and_the_websocket_match_the_document(doc, make_daemon):
    """A cache hit and its header, webhook deliveries, the bounded store, and each message
    the WebSocket sends, checked against the document (``x-websocket`` for the last)."""
    receiver = Receiver()
    try:
        daemon = make_daemon(webhook_urls=[receiver.url + "/hook"], webhook_secret=SECRET,
                             webhook_allow_hosts=["127.0.0.1"], store_max_images=1000)
        url, jobs = daemon.url, "/arting/v1/jobs"
        made = daemon.run_job(prompt="a lighthouse", seed=7)
        hit = httpx.post(url + jobs, json={"prompt": "a lighthouse", "seed": 7})
        assert hit.headers["X-Arting-Cache"] == "hit"
        hit = conforms(doc, "post", jobs, hit)
        assert (hit["cache"], hit["cached_from"]) == ("hit", made["id"]), hit
        receiver.wait(2)
        deadline = time.monotonic() + 15
        while (job := httpx.get(f"{url}{jobs}/{made['id']}").json())["webhooks"][0][
                "state"] == "pending":
            assert time.monotonic() < deadline, job
            time.sleep(0.05)
        job = conforms(doc, "get", jobs + "/{id}", httpx.get(f"{url}{jobs}/{made['id']}"))
        assert job["webhooks"][0]["state"] == "delivered" and not job["images_expired"]
        status = conforms(doc, "get", "/arting/v1/status", httpx.get(url + "/arting/v1/status"))
        assert status["store"]["max_images"] == 1000

        server = doc["paths"]["/arting/v1/ws"]["get"]["x-websocket"]["server"]
        messages = asyncio.run(_talk(url, made["id"]))
        assert [m["event"] for m in messages] == ["ready", "job", "error", "submitted"]
        assert messages[2]["ref"] == "bad" and messages[3]["ref"] == "good"
        for message in messages:
            valid(doc, server, message)
    finally:
        receiver.close()


async def _talk(url: str, job_id: str) -> list[dict]:
    """What the WebSocket answers: ready, a subscribed job, a refused and a good submit."""
    async with aiohttp.ClientSession() as session, \
            session.ws_connect(url + "/arting/v1/ws") as ws:
        said = [await ws.receive_json()]
        await ws.send_json({"subscribe": [job_id]})
        said.append(await ws.receive_json())
        await ws.send_json({"submit": {"prompt": ""}, "ref": "bad"})
        said.append(await ws.receive_json())
        await ws.send_json({"submit": {"prompt": "a lighthouse", "seed": 7}, "ref": "good"})
        said.append(await ws.receive_json())
        return said


def test_every_operation_has_a_summary_a_tag_and_an_answer(doc):
    tags = {t["name"] for t in doc["tags"]}
    for path, item in doc["paths"].items():
        for method, op in item.items():
            assert op["summary"] and len(op["tags"]) == 1 and op["tags"][0] in tags, (method, path)
            assert any(s.startswith("2") or s == "101" for s in op["responses"]), (method, path)
    operation_ids = [op["operationId"] for item in doc["paths"].values() for op in item.values()]
    assert len(operation_ids) == len(set(operation_ids))


def test_request_bodies_carry_examples(doc):
    for path in ("/v1/images/generations", "/v1/chat/completions", "/sdapi/v1/txt2img",
                 "/arting/v1/admin/keys"):
        ref = doc["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"]
        assert schema_of(doc, ref)["examples"], path


def test_the_docs_page_and_its_files_come_from_the_daemon(daemon):
    page = httpx.get(f"{daemon.url}/docs")
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    csp = page.headers["Content-Security-Policy"]
    assert "script-src 'self';" in csp and "default-src 'none'" in csp
    assert "connect-src 'self'" in csp and "unsafe" not in csp
    # No inline script (the CSP would refuse it): every <script> has a src on this origin.
    scripts = re.findall(r"<script([^>]*)>(.*?)</script>", page.text, re.S)
    assert scripts and all(' src="' in attrs and not body.strip() for attrs, body in scripts)
    assert not re.search(r'(src|href)="(https?:)?//', page.text)
    for path, kind in (("/docs/swagger-ui-bundle.js", "text/javascript"),
                       ("/docs/swagger-ui.css", "text/css"), ("/static/docs.js", "text/javascript")):
        resp = httpx.get(daemon.url + path)
        assert resp.status_code == 200 and resp.headers["Content-Type"].startswith(kind), path
        assert "script-src 'self';" in resp.headers["Content-Security-Policy"]
    assert httpx.get(f"{daemon.url}/docs/index.html").status_code == 404
    assert httpx.get(f"{daemon.url}/docs/..%2Fweb.py").status_code == 404


def test_the_docs_need_no_key_and_show_none(make_daemon):
    daemon = make_daemon(api_keys=["sesame-0123456789"])
    for path in ("/docs", "/openapi.json", "/docs/swagger-ui.css"):
        resp = httpx.get(daemon.url + path)
        assert resp.status_code == 200, path
        assert "sesame" not in resp.text
