"""More than one provider: an A1111 stand-in (``a1111_standin.py``) and a second arting-2api
daemon as the ``openai`` provider, behind the router, all over real sockets.

Generation through each, model routing, fallbacks (from an Arting sandbox in a
Cloudflare fault to the A1111 provider, and where they must not happen), cancel reaching
A1111's ``interrupt``, progress from its ``progress``, errors mapped and named, restarts
of jobs in flight at a synchronous provider, and what status and metrics show.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import re
import sys
import time
from pathlib import Path

import httpx
import pytest
from a1111_standin import A1111StandIn, title
from openai import OpenAI
from PIL import Image
from processes import DaemonProcess
from test_restart import wait_journaled

from arting_daemon import catalog
from arting_daemon.config import ConfigError, Settings, load_settings
from arting_daemon.errors import ModelNotFound
from arting_daemon.generation import Catalog, Rules

ROOT = Path(__file__).resolve().parent.parent
STUDIO_MODEL = "studio/dreamshaper_8"


@pytest.fixture
def standin():
    started = []

    def make(**options) -> A1111StandIn:
        started.append(A1111StandIn(**options).start())
        return started[-1]

    yield make
    for server in started:
        server.stop()


@pytest.fixture
def studio(standin) -> A1111StandIn:
    return standin()


def a1111(server: A1111StandIn, **extra) -> dict:
    return {"name": "studio", "kind": "a1111", "base_url": server.url, **extra}


def catalogued(daemon, model: str, timeout: float = 10.0) -> None:
    """Until the daemon lists ``model`` (catalogues are read in the background)."""
    deadline = time.monotonic() + timeout
    while model not in [m["id"] for m in httpx.get(daemon.v1 + "/models").json()["data"]]:
        assert time.monotonic() < deadline, f"{model} never listed"
        time.sleep(0.02)


def submit(daemon, **body) -> dict:
    resp = httpx.post(daemon.url + "/arting/v1/jobs", json={"prompt": "a lighthouse", **body})
    assert resp.status_code == 202, resp.text
    return resp.json()


def metric(daemon, name: str, **labels) -> float:
    text = httpx.get(daemon.url + "/metrics").text
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith(f"{name}{{") and f"{{{wanted}}}" in line:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def png(width: int, height: int, colour=(10, 200, 30)) -> str:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(buf, "PNG")
    return base64.b64encode(buf.getvalue()).decode()


# --- the A1111 provider ----------------------------------------------------------------

def test_a_generation_through_the_a1111_provider(make_daemon, studio):
    daemon = make_daemon(providers=[a1111(studio)])
    catalogued(daemon, STUDIO_MODEL)
    job = daemon.run_job(prompt="a lighthouse", model="studio/DreamShaper_8", n=2, seed=41,
                         steps=6, guidance=5.5,
                         sampler="DPM++ 2M Karras", clip_skip=1, size="640x384",
                         negative_prompt="blurry", loras=[{"id": "add_detail", "weight": 0.6}])
    assert job["state"] == "succeeded", job
    assert job["provider"] == "studio" and job["fallbacks"] == []
    assert [(i["seed"], i["width"], i["height"]) for i in job["images"]] == [
        (41, 640, 384), (42, 640, 384)]
    [(route, body)] = studio.requests
    assert route == "txt2img"
    assert body["prompt"] == "a lighthouse <lora:add_detail:0.6>"
    assert (body["negative_prompt"], body["seed"], body["steps"], body["cfg_scale"],
            body["sampler_name"], body["batch_size"], body["width"], body["height"]) == (
        "blurry", 41, 6, 5.5, "DPM++ 2M Karras", 2, 640, 384)
    assert body["override_settings"] == {"sd_model_checkpoint": title("dreamshaper_8"),
                                         "CLIP_stop_at_last_layers": 1}
    image = httpx.get(job["images"][1]["url"])
    assert Image.open(io.BytesIO(image.content)).getpixel((5, 5)) == (42 * 37 % 256,
                                                                      42 * 91 % 256, 200)
    assert daemon.sandbox.requests_for("create") == []           # Arting was not asked


def test_image_to_image_goes_to_a1111_with_its_picture(make_daemon, studio):
    daemon = make_daemon(providers=[a1111(studio)], img2img=False)
    catalogued(daemon, STUDIO_MODEL)
    job = daemon.run_job(model=STUDIO_MODEL, init_image=png(320, 256), strength=0.4)
    assert job["state"] == "succeeded", job
    [(route, body)] = studio.requests
    assert route == "img2img" and body["denoising_strength"] == 0.4
    sent = Image.open(io.BytesIO(base64.b64decode(body["init_images"][0])))
    assert sent.size == (320, 256) and sent.getpixel((0, 0)) == (10, 200, 30)
    # Arting's image-to-image is off here, and no fallback leads elsewhere: refused at once.
    resp = httpx.post(daemon.url + "/arting/v1/jobs",
                      json={"prompt": "p", "model": "asyncsMIX_v7", "init_image": png(64, 64)})
    assert resp.status_code == 400 and resp.json()["error"]["code"] == "feature_disabled"


def test_progress_comes_from_a1111s_progress(make_daemon, standin):
    studio = standin(step_time=0.02)
    studio.hold_at = 6                                   # 5 of 10 steps done, then it waits
    daemon = make_daemon(providers=[a1111(studio)])
    job = submit(daemon, model=STUDIO_MODEL, steps=10)
    studio.wait_until(lambda s: s.step == 5)
    deadline = time.monotonic() + 10
    while (view := daemon.wait_job(job["id"], ("running",)))["progress"] != 0.5:
        assert time.monotonic() < deadline, view       # 0.05 + 0.9 × A1111's 0.5
        time.sleep(0.05)
    assert studio.progress_reads >= 1 and view["eta_seconds"] > 0
    studio.release()
    assert daemon.wait_job(job["id"])["state"] == "succeeded"


def test_cancel_reaches_a1111s_interrupt(make_daemon, standin):
    studio = standin()
    studio.hold_at = 3
    daemon = make_daemon(providers=[a1111(studio)])
    job = submit(daemon, model=STUDIO_MODEL, steps=20)
    studio.wait_until(lambda s: s.step == 2)
    cancelled = httpx.delete(f"{daemon.url}/arting/v1/jobs/{job['id']}").json()
    assert cancelled["state"] == "cancelled"
    assert studio.interrupts == 1
    studio.wait_until(lambda s: s.step < 20 and s.interrupts == 1)
    # The stand-in stopped where it was, and the next job runs normally.
    assert daemon.run_job(model=STUDIO_MODEL, steps=2)["state"] == "succeeded"
    assert studio.interrupts == 1


def test_a1111s_basic_credentials_and_a_refusal_that_names_the_provider(make_daemon,
                                                                        standin):
    studio = standin(auth="painter:s3cret-pass")
    good = make_daemon(providers=[a1111(studio, username="painter",
                                        password="s3cret-pass")])
    assert good.run_job(model=STUDIO_MODEL)["state"] == "succeeded"

    bad = make_daemon(providers=[a1111(studio, username="painter", password="wrong-pass",
                                       label="Studio")])
    job = bad.run_job(model=STUDIO_MODEL)
    assert job["state"] == "failed" and job["error"]["code"] == "upstream_auth"
    message = job["error"]["message"]
    assert message.startswith("Studio refused the credentials (HTTP 401)")
    assert "username and password of provider `studio`" in message
    assert "wrong-pass" not in message
    status = httpx.get(bad.url + "/arting/v1/status").json()
    studio_health = next(p for p in status["providers"] if p["name"] == "studio")
    assert studio_health["state"] == "refused" and studio_health["credentials"] == "set"
    assert "wrong-pass" not in httpx.get(bad.url + "/arting/v1/status").text


@pytest.mark.parametrize("status, answer, code", [
    (500, {"error": "RuntimeError", "detail": "CUDA out of memory"}, "upstream_error"),
    (422, {"detail": [{"loc": ["body", "steps"], "msg": "value is not a valid integer",
                       "type": "type_error.integer"}]}, "upstream_invalid_request"),
])
def test_a1111_failures_map_into_the_taxonomy(make_daemon, studio, status, answer, code):
    studio.fail_with = (status, answer)
    daemon = make_daemon(providers=[a1111(studio)])
    job = daemon.run_job(model=STUDIO_MODEL)
    assert job["state"] == "failed" and job["error"]["code"] == code
    assert job["error"]["message"].startswith("studio ")
    said = "CUDA out of memory" if status == 500 else "steps: value is not a valid integer"
    assert said in job["error"]["message"]


def test_an_unknown_checkpoint_is_refused_by_name(make_daemon, studio):
    daemon = make_daemon(providers=[a1111(studio)])
    job = daemon.run_job(model="studio/nosuchmodel")
    assert job["state"] == "failed" and job["error"]["code"] == "model_not_found"
    assert "studio has no checkpoint `nosuchmodel`" in job["error"]["message"]
    assert "dreamshaper_8" in job["error"]["message"] and studio.requests == []


def test_an_a1111_that_is_down_is_reported_as_such(make_daemon):
    daemon = make_daemon(providers=[{"name": "studio", "kind": "a1111",
                                     "base_url": "http://127.0.0.1:9"}])
    job = daemon.run_job(model=STUDIO_MODEL)
    assert job["state"] == "failed" and job["error"]["code"] == "upstream_error"
    assert "studio could not be reached at http://127.0.0.1:9" in job["error"]["message"]
    assert httpx.get(daemon.url + "/readyz").json() == {"status": "ready"}   # Arting can


# --- another arting-2api daemon as the openai provider --------------------------------

def test_a_generation_through_another_daemon_as_the_openai_provider(make_daemon):
    relay = make_daemon(api_keys=["sk-relay-key"])
    daemon = make_daemon(providers=[{"name": "relay", "kind": "openai", "base_url": relay.v1,
                                     "api_key": "sk-relay-key", "extras": True}])
    catalogued(daemon, "relay/asyncsMIX_v7")
    job = daemon.run_job(model="relay/asyncsMIX_v7", seed=9, n=2, size="512x512",
                         negative_prompt="fog")
    assert job["state"] == "succeeded" and job["provider"] == "relay", job
    assert [i["seed"] for i in job["images"]] == [9, 10]
    [create] = relay.sandbox.requests_for("create")
    assert (create.body["model_id"], create.body["seed"], create.body["samples"],
            create.body["negative_prompt"], create.body["width"]) == (
        "asyncsMIX_v7", 9, 2, "fog", 512)
    assert daemon.sandbox.requests_for("create") == []
    relayed = httpx.get(relay.url + "/arting/v1/jobs",
                        headers={"Authorization": "Bearer sk-relay-key"}).json()["data"]
    assert [j["source"] for j in relayed] == ["openai"]


def test_url_answers_are_downloaded_from_the_providers_own_host(make_daemon):
    relay = make_daemon()
    daemon = make_daemon(providers=[{"name": "relay", "kind": "openai", "base_url": relay.v1,
                                     "models": ["relay-model"], "response_format": "url"}])
    # The openai SDK against the first daemon: relay-model goes to the relay daemon,
    # which answers with a link to its own store.
    client = OpenAI(base_url=daemon.v1, api_key="unused")
    result = client.images.generate(model="relay-model", prompt="a fox",
                                    response_format="b64_json")
    data = base64.b64decode(result.data[0].b64_json)
    assert Image.open(io.BytesIO(data)).size == (512, 768)
    assert len(relay.sandbox.requests_for("create")) == 1


def test_the_relays_edits_carry_the_init_image(make_daemon):
    relay = make_daemon()
    daemon = make_daemon(providers=[{"name": "relay", "kind": "openai", "base_url": relay.v1,
                                     "models": ["relay-model"], "img2img": True,
                                     "extras": True}], img2img=False)
    job = daemon.run_job(model="relay-model", init_image=png(256, 320), strength=0.3)
    assert job["state"] == "succeeded", job
    [create] = relay.sandbox.requests_for("i2i_create")
    assert create.body["strength"] == 0.3 and "image_url" in create.body
    assert (job["images"][0]["width"], job["images"][0]["height"]) == (256, 320)


def test_cancel_reaches_the_relay_daemons_job(make_daemon):
    relay = make_daemon(sandbox_options={"generation_time": 30})
    daemon = make_daemon(providers=[{"name": "relay", "kind": "openai", "base_url": relay.v1,
                                     "models": ["relay-model"]}])
    job = submit(daemon, model="relay-model")
    relayed = relay.wait_job(_first_job(relay), ("running",))
    cancelled = httpx.delete(f"{daemon.url}/arting/v1/jobs/{job['id']}").json()
    assert cancelled["state"] == "cancelled"
    assert relay.wait_job(relayed["id"])["state"] == "cancelled"   # the relay let it go too


def _first_job(daemon, timeout: float = 10.0) -> str:
    deadline = time.monotonic() + timeout
    while not (data := httpx.get(daemon.url + "/arting/v1/jobs").json()["data"]):
        assert time.monotonic() < deadline, "no job arrived"
        time.sleep(0.02)
    return data[0]["id"]


def test_the_relays_refusals_are_mapped_and_never_passed_through(make_daemon):
    relay = make_daemon(api_keys=["sk-right"])
    daemon = make_daemon(providers=[{"name": "relay", "kind": "openai", "base_url": relay.v1,
                                     "api_key": "sk-wrong-key", "models": ["relay-model"]}])
    job = daemon.run_job(model="relay-model")
    assert job["state"] == "failed" and job["error"]["code"] == "upstream_auth"
    assert "relay refused the credentials (HTTP 401)" in job["error"]["message"]
    assert "api_key of provider `relay`" in job["error"]["message"]
    assert "sk-wrong-key" not in job["error"]["message"]

    relay.do(relay.sandbox.add_fault, "reject", route="create",
             message="NSFW content not allowed")
    open_relay = make_daemon(providers=[{"name": "relay", "kind": "openai",
                                         "base_url": relay.v1, "api_key": "sk-right",
                                         "models": ["relay-model"]}])
    job = open_relay.run_job(model="relay-model")
    assert job["state"] == "failed" and job["error"]["code"] == "content_refused"


@pytest.fixture
def openai_server():
    """An OpenAI-compatible images server that keeps every body it gets and answers
    with one small PNG per image asked for."""
    import http.server
    import threading
    bodies: list[dict] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            bodies.append(body)
            answer = json.dumps({"created": 1, "data": [{"b64_json": png(16, 16)}] *
                                 body.get("n", 1)}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    server.bodies = bodies
    server.url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    yield server
    server.shutdown()
    server.server_close()


def test_openai_models_are_sent_only_what_they_take(make_daemon, openai_server):
    daemon = make_daemon(providers=[{"name": "oai", "kind": "openai",
                                     "base_url": openai_server.url,
                                     "models": ["dall-e-3", "gpt-image-1", "my-model"]}])
    client = OpenAI(base_url=daemon.v1, api_key="unused", max_retries=0)
    client.images.generate(model="dall-e-3", prompt="a fox", n=2, size="1000x600",
                           response_format="b64_json")
    client.images.generate(model="gpt-image-1", prompt="a fox", size="512x768")
    client.images.generate(model="my-model", prompt="a fox", size="640x384")
    client.images.generate(model="dall-e-3", prompt="a fox")           # no size: none sent
    assert openai_server.bodies == [
        {"prompt": "a fox", "n": 1, "size": "1792x1024", "response_format": "b64_json",
         "model": "dall-e-3"}] * 2 + [
        {"prompt": "a fox", "n": 1, "size": "1024x1536", "model": "gpt-image-1"},
        {"prompt": "a fox", "n": 1, "size": "640x384", "response_format": "b64_json",
         "model": "my-model"},
        {"prompt": "a fox", "n": 1, "response_format": "b64_json", "model": "dall-e-3"}]


# --- routing ------------------------------------------------------------------------

def test_every_providers_models_are_listed_with_their_provider(make_daemon, studio):
    relay = make_daemon()
    daemon = make_daemon(providers=[a1111(studio, label="Studio"),
                                    {"name": "relay", "kind": "openai",
                                     "base_url": relay.v1, "models": ["relay-model"]}])
    catalogued(daemon, STUDIO_MODEL)
    owned = {m["id"]: m["owned_by"] for m in httpx.get(daemon.v1 + "/models").json()["data"]}
    assert (owned["oneFORALLAnime"], owned[STUDIO_MODEL], owned["studio/realisticVisionV51"],
            owned["relay-model"], owned["dall-e-3"]) == (
        "arting", "studio", "studio", "relay", "arting-2api")
    catalog = httpx.get(daemon.url + "/arting/v1/catalog").json()
    assert catalog["providers"] == [{"name": "arting", "label": "Arting"},
                                    {"name": "studio", "label": "Studio"},
                                    {"name": "relay", "label": "relay"}]
    assert {"id": "relay-model", "name": "relay-model", "provider": "relay"} in \
        catalog["models"]
    sd = {m["model_name"]: m for m in httpx.get(daemon.url + "/sdapi/v1/sd-models").json()}
    assert sd[STUDIO_MODEL]["provider"] == "studio"
    assert sd[STUDIO_MODEL]["title"].startswith("studio/dreamshaper_8.safetensors [")

    # Each id goes to its provider; "<provider>/<model>" names any provider's model.
    for model, provider in (("asyncsMIX_v7", "arting"), (STUDIO_MODEL, "studio"),
                            ("relay/relay-model", "relay"), ("arting/dreamshaper_8",
                                                             "arting")):
        job = daemon.run_job(model=model)
        assert (job["state"], job["provider"]) == ("succeeded", provider), (model, job)
    assert [c.body["model_id"] for c in daemon.sandbox.requests_for("create")] == [
        "asyncsMIX_v7", "dreamshaper_8"]
    assert len(studio.requests) == 1 and len(relay.sandbox.requests_for("create")) == 1
    # The A1111 facade takes provider models as checkpoints too.
    answer = httpx.post(daemon.url + "/sdapi/v1/txt2img", json={
        "prompt": "p", "steps": 2, "override_settings": {
            "sd_model_checkpoint": sd["studio/realisticVisionV51"]["title"]}}, timeout=30)
    assert answer.status_code == 200 and len(studio.requests) == 2
    assert studio.requests[-1][1]["override_settings"]["sd_model_checkpoint"] == \
        title("realisticVisionV51")


def test_the_catalog_routes_ids_prefixes_and_provider_qualified_names():
    catalog_ = Catalog(Rules.of(Settings(unknown_models="reject")))
    catalog_.offer("studio", {"studio/DreamShaper_8": "DreamShaper_8"}, "studio/")
    catalog_.offer("relay", {"relay-model": "relay-model"})
    resolve = catalog_.resolve_model
    assert resolve("STUDIO/dreamshaper_8") == "studio/DreamShaper_8"
    assert resolve("studio/DreamShaper_8.safetensors [0123abcd45]") == "studio/DreamShaper_8"
    assert resolve("studio/added_since") == "studio/added_since"       # studio judges it
    assert resolve("relay/RELAY-MODEL") == "relay-model"
    assert resolve("arting/asyncsmix_v7") == "asyncsMIX_v7"
    assert resolve("dall-e-3") == "oneFORALLAnime"
    assert [catalog_.owner(m) for m in ("studio/added_since", "relay-model", "asyncsMIX_v7")] \
        == ["studio", "relay", "arting"]
    assert list(catalog_.models)[-2:] == ["studio/DreamShaper_8", "relay-model"]
    catalog_.offer("studio", {"studio/sdxl": "sdxl"}, "studio/")        # a catalogue re-read
    assert list(catalog_.models)[-2:] == ["studio/sdxl", "relay-model"]
    with pytest.raises(ModelNotFound):
        resolve("relay/other")


def test_an_upscale_goes_to_the_provider_that_upscales(make_daemon, studio):
    daemon = make_daemon(providers=[a1111(studio)], fallbacks={"*": ["studio/*"]})
    resp = httpx.post(daemon.url + "/arting/v1/jobs", json={
        "kind": "upscale", "images": [png(64, 48)], "scale": 2})
    assert resp.status_code == 202, resp.text
    job = daemon.wait_job(resp.json()["id"])
    assert (job["state"], job["provider"]) == ("succeeded", "arting"), job
    assert (job["images"][0]["width"], job["images"][0]["height"]) == (128, 96)
    assert studio.requests == []
    status = httpx.get(daemon.url + "/arting/v1/status").json()
    assert status["upscale"] is True
    assert [(p["name"], p["upscale"]) for p in status["providers"]] == [("arting", True),
                                                                        ("studio", False)]


# --- fallbacks ---------------------------------------------------------------------------

def test_cloudflare_at_arting_falls_back_to_a1111_and_the_job_says_so(make_daemon, studio,
                                                                      caplog):
    caplog.set_level(logging.INFO, logger="arting_daemon")
    daemon = make_daemon(providers=[a1111(studio, free_to_repeat=True)],
                         fallbacks={"oneFORALLAnime": ["studio/*"]}, retry_budget=0.5)
    daemon.do(daemon.sandbox.add_fault, "cf_1020", route="create")
    job = daemon.run_job(model="oneFORALLAnime", seed=5)
    assert job["state"] == "succeeded" and job["provider"] == "studio", job
    [move] = job["fallbacks"]
    assert (move["from"], move["to"], move["model"], move["error"]["code"]) == (
        "arting", "studio", None, "cloudflare_blocked")
    assert "1020" in move["error"]["message"]
    assert len(daemon.sandbox.requests_for("create")) == 1
    [(route, body)] = studio.requests
    assert "sd_model_checkpoint" not in body["override_settings"]   # studio/*: its own model
    assert body["seed"] == 5
    assert any(f"job {job['id']}: Arting failed" in r.getMessage() and
               "falling back to studio" in r.getMessage() for r in caplog.records)

    # The token is now blocked: the next job falls back before anything is sent.
    second = daemon.run_job(model="oneFORALLAnime")
    assert second["provider"] == "studio" and second["state"] == "succeeded"
    assert len(daemon.sandbox.requests_for("create")) == 1
    assert metric(daemon, "arting_provider_fallbacks_total", from_provider="arting",
                  to_provider="studio") == 2
    assert metric(daemon, "arting_provider_jobs_total", provider="studio",
                  outcome="succeeded") == 2
    assert metric(daemon, "arting_provider_up", provider="arting") == 0
    status = httpx.get(daemon.url + "/arting/v1/status").json()
    arting = next(p for p in status["providers"] if p["name"] == "arting")
    assert arting["state"] == "blocked" and arting["tokens"][0]["state"] == "blocked"


def test_a_failed_generation_falls_back_along_the_list_to_the_relay(make_daemon, standin):
    studio = standin()
    studio.fail_with = (500, {"error": "RuntimeError", "detail": "boom"})
    relay = make_daemon()
    daemon = make_daemon(providers=[a1111(studio),
                                    {"name": "relay", "kind": "openai", "base_url": relay.v1,
                                     "models": ["relay-model"]}],
                         fallbacks={"*": [STUDIO_MODEL, "relay-model"]})
    daemon.do(daemon.sandbox.add_fault, "fail", route="get")     # Arting's job fails
    job = daemon.run_job(model="asyncsMIX_v7")
    assert job["state"] == "succeeded" and job["provider"] == "relay", job
    assert [(m["from"], m["to"], m["model"], m["error"]["code"]) for m in job["fallbacks"]] == [
        ("arting", "studio", "dreamshaper_8", "generation_failed"),
        ("studio", "relay", "relay-model", "upstream_error")]
    assert len(studio.requests) == 1 and len(relay.sandbox.requests_for("create")) == 1


def test_no_fallback_for_a_refused_prompt_or_when_the_list_is_spent(make_daemon, standin):
    studio = standin()
    daemon = make_daemon(providers=[a1111(studio)],
                         fallbacks={"oneFORALLAnime": ["studio/*"]})
    daemon.do(daemon.sandbox.add_fault, "reject", route="create", count=1,
              message="NSFW content not allowed")
    job = daemon.run_job(model="oneFORALLAnime")
    assert job["state"] == "failed" and job["error"]["code"] == "content_refused"
    assert job["fallbacks"] == [] and studio.requests == []

    studio.fail_with = (503, {"detail": "busy"})
    daemon.do(daemon.sandbox.add_fault, "http_error", route="create", status=500)
    job = daemon.run_job(model="oneFORALLAnime")
    assert job["state"] == "failed" and job["provider"] == "studio"
    assert job["error"]["message"] == "studio failed (HTTP 503): busy"
    assert [m["to"] for m in job["fallbacks"]] == ["studio"]
    # A model without fallbacks fails where it is.
    job = daemon.run_job(model="asyncsMIX_v7")
    assert (job["state"], job["provider"], job["fallbacks"]) == ("failed", "arting", [])


def test_a_second_arting_provider_with_its_own_token(make_daemon):
    spare = make_daemon()                                # its emulator stands for Arting
    daemon = make_daemon(
        providers=[{"name": "backup", "kind": "arting", "label": "Arting (backup)",
                    "base_url": spare.settings.base_url,
                    "auth_tokens": ["5f0e2d1c-0b9a-4877-8665-544332211000"]}],
        fallbacks={"oneFORALLAnime": ["backup/oneFORALLAnime"]}, retry_budget=0.5)
    daemon.do(daemon.sandbox.add_fault, "cf_1020", route="create")
    job = daemon.run_job(model="oneFORALLAnime")
    assert (job["state"], job["provider"]) == ("succeeded", "backup"), job
    assert job["fallbacks"][0]["model"] == "oneFORALLAnime"
    [create] = spare.sandbox.requests_for("create")
    assert create.header("Authorization") == "5f0e2d1c-0b9a-4877-8665-544332211000"
    assert create.body["model_id"] == "oneFORALLAnime"
    status = httpx.get(daemon.url + "/arting/v1/status").json()
    backup = next(p for p in status["providers"] if p["name"] == "backup")
    assert backup["label"] == "Arting (backup)" and backup["tokens"][0]["label"] == "token-1"
    assert backup["models"] == len(catalog.MODELS)      # as backup/<id>
    assert "5f0e2d1c" not in httpx.get(daemon.url + "/arting/v1/status").text


def test_no_provider_secret_in_logs_errors_status_metrics_or_the_journal(make_daemon,
                                                                         standin, caplog):
    caplog.set_level(logging.DEBUG)
    password, key = "studio-pass-9911", "sk-relay-secret-4242"
    basic = base64.b64encode(f"painter:{password}".encode()).decode()
    studio = standin(auth=f"painter:{password}")
    studio.fail_with = (500, {"error": "RuntimeError",
                              "detail": f"bad auth header Basic {basic} ({password})"})
    relay = make_daemon(api_keys=[key])
    daemon = make_daemon(log_level="debug", providers=[
        a1111(studio, username="painter", password=password),
        {"name": "relay", "kind": "openai", "base_url": relay.v1, "api_key": key,
         "models": ["relay-model"]}], fallbacks={"*": ["relay-model"]})
    fell_back = daemon.run_job(model=STUDIO_MODEL)          # studio echoes; relay makes it
    seen = [str(fell_back), str(daemon.run_job(model="relay-model"))]
    assert fell_back["provider"] == "relay"
    assert "(HTTP 500): RuntimeError: bad auth header Basic ***" in seen[0]
    for path in ("/arting/v1/status", "/arting/v1/jobs?limit=10", "/metrics",
                 "/arting/v1/catalog"):
        seen.append(httpx.get(daemon.url + path).text)
    seen.append(httpx.get(daemon.v1 + "/models").text)
    daemon.call(daemon.engine.journal.flush())
    journal = b"".join(f.read_bytes() for f in daemon.settings.data_dir.glob("jobs.sqlite3*"))
    everything = "\n".join([*seen, *(r.getMessage() for r in caplog.records)])
    for secret in (password, basic, key):
        assert secret not in everything, secret
        assert secret.encode() not in journal, secret
    assert studio.requests and len(relay.sandbox.requests_for("create")) == 2


# --- restarts of jobs in flight at a synchronous provider ------------------------------

@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
@pytest.mark.parametrize("free_to_repeat", [True, False])
def test_a_job_in_flight_at_a1111_during_a_crash(tmp_path, standin, free_to_repeat):
    studio = standin()
    studio.hold_at = 2
    env = {"ARTING_PROVIDERS": (
        f'[{{"name": "studio", "kind": "a1111", "base_url": "{studio.url}", '
        f'"free_to_repeat": {str(free_to_repeat).lower()}}}]')}
    first = DaemonProcess(tmp_path / "data", "http://127.0.0.1:9", **env)
    try:
        job = httpx.post(first.url + "/arting/v1/jobs",
                         json={"prompt": "p", "model": STUDIO_MODEL, "seed": 3}).json()
        studio.wait_until(lambda s: s.step == 1)
        wait_journaled(tmp_path / "data", job["id"], "running")   # what a restart finds
    finally:
        first.stop()                                     # kill -9 while A1111 works on it
    studio.hold_at = None
    studio.release()
    second = DaemonProcess(tmp_path / "data", "http://127.0.0.1:9", **env)
    try:
        deadline = time.monotonic() + 15
        while (view := httpx.get(f"{second.url}/arting/v1/jobs/{job['id']}").json())[
                "state"] not in ("succeeded", "failed"):
            assert time.monotonic() < deadline, view
            time.sleep(0.05)
    finally:
        second.stop()
    if free_to_repeat:                                   # a local A1111: made again
        assert view["state"] == "succeeded"
        assert [b["seed"] for _, b in studio.requests] == [3, 3]
    else:
        assert view["state"] == "failed" and "submit it again" in view["error"]["message"]
        assert len(studio.requests) == 1


# --- configuration ----------------------------------------------------------------------

def docs_example(page: str = "providers.md") -> str:
    """The first ``toml`` block of a documentation page (the Providers page's example)."""
    return re.search(r"```toml\n(.*?)```", (ROOT / "docs" / page).read_text(), re.S)[1]


@pytest.mark.parametrize("page", ["providers.md", "providers.zh-CN.md"])
def test_the_documented_example_loads(tmp_path, page):
    path = tmp_path / "arting.toml"
    path.write_text(docs_example(page))
    settings = load_settings(path, environ={})
    assert [(p.name, p.kind) for p in settings.providers] == [("studio", "a1111"),
                                                              ("relay", "openai")]
    assert settings.fallbacks == {"oneFORALLAnime": ["relay-model", "studio/*"]}
    assert settings.providers[0].model_prefix == "studio/" and settings.providers[0].free_to_repeat
    assert "sk-" not in repr(settings)


@pytest.mark.parametrize("toml, expected", [
    ('[[providers]]\nname = "studio"\nkind = "a1111"\n',
     r"providers\[0\] \(studio\): a provider of kind a1111 needs `base_url`"),
    ('[[providers]]\nname = "Studio"\nkind = "a1111"\nbase_url = "http://x"\n',
     r"providers\[0\] \(Studio\)\.name: String should match pattern"),
    ('[[providers]]\nname = "r"\nkind = "openai"\nbase_url = "ftp://x"\n',
     r"providers\[0\] \(r\)\.base_url: must be an http:// or https:// URL"),
    ('[[providers]]\nname = "s"\nkind = "a1111"\nbase_url = "http://x"\napi_key = "sk-1"\n',
     r"`api_key` is for kind openai; a provider of kind a1111 takes username and password"),
    ('[[providers]]\nname = "s"\nkind = "a1111"\nbase_url = "http://x"\nmodels = ["x"]\n'
     '[[providers]]\nname = "s"\nkind = "a1111"\nbase_url = "http://y"\n',
     r"two providers are named `s`"),
    ('[[providers]]\nname = "r"\nkind = "openai"\nbase_url = "http://x"\n'
     'models = ["asyncsMIX_v7"]\n',
     r"`asyncsMIX_v7` is offered by both `arting` and `r`; give one of them a `prefix`"),
    ('[[providers]]\nname = "b"\nkind = "arting"\n',
     r"provider `b` \(kind arting\) needs its own `auth_tokens`"),
    ('[[providers]]\nname = "arting"\nkind = "a1111"\nbase_url = "http://x"\n',
     r"the provider named `arting` stands for Arting: its kind is arting"),
    ('[fallbacks]\noneFORALLAnime = ["nowhere/*"]\n',
     r"fallbacks.oneFORALLAnime: `nowhere/\*` names no provider"),
    ('[fallbacks]\nnosuch = ["asyncsMIX_v7"]\n', r"fallbacks: `nosuch` is no model"),
    ('[[providers]]\nname = "mj"\nkind = "midjourney"\n',
     r"providers\[0\] \(mj\): a provider of kind midjourney needs `base_url`"),
    ('[[providers]]\nname = "r"\nkind = "openai"\nbase_url = "http://x"\nversion = "7"\n',
     r"`version` is for kind midjourney; a provider of kind openai does not take it"),
    ('[[providers]]\nname = "s"\nkind = "stability"\napi_key = "sk-1"\nstyle_preset = "oil"\n',
     r"providers\[0\] \(s\): `style_preset`: Input should be '3d-model', "),
    ('[[providers]]\nname = "s"\nkind = "stability"\nupscale = "huge"\n',
     r"`upscale`: Input should be 'fast', 'conservative', 'creative' or 'off'"),
    ('[[providers]]\nname = "s"\nkind = "stability"\nmodels = ["core"]\n'
     '[[providers]]\nname = "t"\nkind = "stability"\n',
     r"`core` is offered by both `s` and `t`; give one of them a `prefix`"),
])
def test_provider_mistakes_stop_start_up_with_one_line(tmp_path, toml, expected):
    path = tmp_path / "arting.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError, match=expected) as caught:
        load_settings(path, environ={})
    assert "\n" not in str(caught.value) and "sk-1" not in str(caught.value)


def test_providers_and_fallbacks_from_the_environment(tmp_path):
    settings = load_settings(environ={
        "ARTING_PROVIDERS": '[{"name": "studio", "kind": "a1111", '
                            '"base_url": "http://127.0.0.1:7860/", "password": "pw-123", '
                            '"username": "me"}]',
        "ARTING_FALLBACKS": '{"*": ["studio/*"]}', "ARTING_CONFIG": ""})
    assert settings.providers[0].base_url == "http://127.0.0.1:7860"
    assert settings.fallbacks == {"*": ["studio/*"]}
    assert "pw-123" in settings.secrets()
