"""kind = "midjourney": the daemon against the midjourney-proxy emulator, over real sockets,
driven by the real clients (the openai SDK, webuiapi, the job API, the plugins' daemon
client): the imagine and its parameters, the grid cut into up to four quadrants, U1-U4
upscales, the proxy's queue and progress, every submit code and a failed task mapped,
cancel, a restart mid-job (no second submit), and a fallback from Arting."""

from __future__ import annotations

import base64
import importlib.util
import io
import json
import logging
import sys
import time
from pathlib import Path

import httpx
import pytest
import webuiapi
from clock import ManualClock
from openai import OpenAI
from PIL import Image
from processes import DaemonProcess, Emulator, emulators, resumed
from test_providers import metric, png, submit
from test_restart import journaled, wait_journaled

from arting_daemon import provenance
from arting_daemon.sandbox.midjourney import MidjourneyEmulator

SECRET = "mj-secret-20240611"
ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location(
    "arting_plugin_daemon_client", ROOT / "comfyui_nodes" / "arting_comfy" / "daemon_client.py")
dc = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(dc)


@pytest.fixture
def proxies():
    """Start midjourney-proxy emulators (each on its own loop thread); closed after."""
    with emulators(MidjourneyEmulator, generation_time=0.2, upscale_time=0.1,
                   api_secret=SECRET, quadrant_pixels=128 * 128) as make:
        yield make


@pytest.fixture
def proxy(proxies) -> Emulator:
    return proxies()


def provider(proxy: Emulator, **extra) -> dict:
    return {"name": "mj", "kind": "midjourney", "label": "Midjourney",
            "base_url": proxy.url + "/mj", "api_key": SECRET, **extra}


def imagined(proxy: Emulator) -> list[dict]:
    return [r.body for r in proxy.sandbox.requests_for("imagine")]


def grid_of(proxy: Emulator, task_id: str) -> Image.Image:
    task = httpx.get(f"{proxy.url}/mj/task/{task_id}/fetch",
                     headers={"mj-api-secret": SECRET}).json()
    return Image.open(io.BytesIO(httpx.get(task["imageUrl"]).content)).convert("RGB")


def picture(daemon, image: dict) -> tuple[bytes, Image.Image]:
    data = httpx.get(image["url"]).content
    return data, Image.open(io.BytesIO(data)).convert("RGB")


# --- generation ---------------------------------------------------------------------------

def test_four_quadrants_of_one_grid_through_the_openai_sdk(make_daemon, proxy):
    daemon = make_daemon(providers=[provider(proxy)])
    client = OpenAI(base_url=daemon.v1, api_key="unused", max_retries=0)
    made = client.images.generate(model="midjourney", prompt="a lighthouse at dawn", n=4,
                                  size="1024x576", response_format="b64_json")
    assert len(made.data) == 4
    [body] = imagined(proxy)
    assert body["botType"] == "MID_JOURNEY"
    assert body["prompt"].startswith("a lighthouse at dawn --ar 16:9 --seed ")
    assert proxy.sandbox.requests_for("imagine")[0].header("mj-api-secret") == SECRET
    seed = int(body["prompt"].rsplit("--seed ", 1)[1])

    [task_id] = proxy.sandbox.tasks
    grid = grid_of(proxy, task_id)
    half = (grid.width // 2, grid.height // 2)
    assert half[0] / half[1] == pytest.approx(16 / 9, rel=0.05)
    for i, item in enumerate(made.data):
        image = Image.open(io.BytesIO(base64.b64decode(item.b64_json)))
        assert image.size == half
        col, row = i % 2, i // 2
        box = (col * half[0], row * half[1], (col + 1) * half[0], (row + 1) * half[1])
        assert image.convert("RGB").tobytes() == grid.crop(box).tobytes(), i
        # Each picture says where it came from, and its seed.
        assert f"--seed {seed}" in image.info["Description"]
        origin = provenance.origin(base64.b64decode(item.b64_json))
        assert (origin.provider, origin.ref) == ("mj", f"{task_id}/{i + 1}")

    job = httpx.get(daemon.url + "/arting/v1/jobs?limit=1").json()["data"][0]
    assert job["provider"] == "mj" and job["source"] == "openai"
    assert [i["seed"] for i in job["images"]] == [seed] * 4      # one grid, one seed


@pytest.mark.parametrize("n", [1, 2, 3])
def test_n_images_are_the_first_n_quadrants(make_daemon, proxy, n):
    daemon = make_daemon(providers=[provider(proxy)])
    job = daemon.run_job(prompt="a fox", model="midjourney", n=n, size="512x768", seed=77)
    assert job["state"] == "succeeded", job
    assert len(imagined(proxy)) == 1
    assert [(i["seed"], i["width"], i["height"]) for i in job["images"]] == [(77, 104, 160)] * n
    origins = [provenance.origin(picture(daemon, i)[0]).ref.rsplit("/", 1)[1]
               for i in job["images"]]
    assert origins == [str(k) for k in range(1, n + 1)]


def test_more_than_four_images_are_refused_before_anything_is_sent(make_daemon, proxy):
    daemon = make_daemon(providers=[provider(proxy)], max_images=8)
    resp = httpx.post(daemon.url + "/arting/v1/jobs",
                      json={"prompt": "a fox", "model": "midjourney", "n": 5})
    assert resp.status_code == 400, resp.text
    assert "makes 4 images per job" in resp.json()["error"]["message"]
    assert resp.json()["error"]["param"] == "n" and imagined(proxy) == []


def test_parameters_come_from_the_request_unless_the_prompt_carries_them(make_daemon, proxy):
    daemon = make_daemon(providers=[provider(proxy, version="6.1", niji_version="6",
                                             flags="--stylize 250 --relax")])
    daemon.run_job(prompt="a cat", model="midjourney", size="768x512", seed=5,
                   negative_prompt="dogs, fog")
    daemon.run_job(prompt="a cat --ar 1:2 --seed 9 --no birds --v 5 --relax", model="midjourney",
                   size="768x512", seed=5, negative_prompt="dogs")
    daemon.run_job(prompt="a cat", model="niji", seed=6)           # no size: none sent
    first, second, niji = imagined(proxy)
    assert first == {"prompt": "a cat --ar 3:2 --no dogs, fog --seed 5 --v 6.1 "
                               "--stylize 250 --relax", "botType": "MID_JOURNEY"}
    assert second["prompt"] == "a cat --ar 1:2 --seed 9 --no birds --v 5 --relax --stylize 250"
    assert niji == {"prompt": "a cat --seed 6 --niji 6 --stylize 250 --relax",
                    "botType": "NIJI_JOURNEY"}
    seeds = {j["request"]["prompt"]: j["images"][0]["seed"] for j in
             httpx.get(daemon.url + "/arting/v1/jobs").json()["data"]}
    assert seeds["a cat --ar 1:2 --seed 9 --no birds --v 5 --relax"] == 9   # the prompt's


def test_the_plugins_and_webuiapi_reach_midjourney_by_model_name(make_daemon, proxy):
    daemon = make_daemon(providers=[provider(proxy)])
    client = dc.DaemonClient(daemon.url)
    assert {"midjourney", "niji"} <= {m["id"] for m in client.catalog()["models"]}
    job = client.run({"prompt": "a koi pond", "model": "niji", "n": 2, "seed": 3},
                     poll_interval=0.05, client_name="ComfyUI")
    assert job["state"] == "succeeded" and len(job["images"]) == 2
    assert client.download(job["images"][1]["url"]).startswith(b"\x89PNG")

    host, port = daemon.url.removeprefix("http://").rsplit(":", 1)
    api = webuiapi.WebUIApi(host=host, port=int(port))
    titles = [m["title"] for m in api.get_sd_models()]
    assert any(t.startswith("midjourney") for t in titles)
    result = api.txt2img(prompt="a lantern", width=512, height=512, batch_size=2, seed=11,
                         override_settings={"sd_model_checkpoint": "midjourney"})
    assert len(result.images) == 2 and result.images[0].size == (128, 128)
    assert result.info["all_seeds"] == [11, 11]
    assert [b["botType"] for b in imagined(proxy)] == ["NIJI_JOURNEY", "MID_JOURNEY"]


def test_an_init_image_goes_as_an_image_prompt_where_allowed(make_daemon, proxy):
    daemon = make_daemon(providers=[provider(proxy)], img2img=False)
    resp = httpx.post(daemon.url + "/arting/v1/jobs", json={
        "prompt": "a cat", "model": "midjourney", "init_image": png(32, 32)})
    assert (resp.status_code, resp.json()["error"]["code"]) == (400, "feature_disabled")

    allowed = make_daemon(providers=[provider(proxy, img2img=True)], img2img=False)
    job = allowed.run_job(prompt="a cat", model="midjourney", init_image=png(32, 32),
                          strength=0.3, seed=1)
    assert job["state"] == "succeeded", job
    [body] = imagined(proxy)
    assert body["prompt"] == "a cat --iw 1.4 --ar 1:1 --seed 1"
    [image] = body["base64Array"]
    assert image.startswith("data:image/png;base64,")
    sent = Image.open(io.BytesIO(base64.b64decode(image.partition(",")[2]))).convert("RGB")
    assert sent.size == (32, 32) and sent.getpixel((3, 3)) == (10, 200, 30)


def test_a_chat_turn_to_niji_is_one_imagine(make_daemon, proxy):
    daemon = make_daemon(providers=[provider(proxy)])
    client = OpenAI(base_url=daemon.v1, api_key="unused", max_retries=0)
    chunks = list(client.chat.completions.create(
        model="niji", stream=True, messages=[{"role": "user", "content": "a paper crane"}]))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert "/arting/v1/images/" in text
    [body] = imagined(proxy)
    assert body["botType"] == "NIJI_JOURNEY" and body["prompt"].startswith("a paper crane")


# --- the proxy's queue, progress, cancel --------------------------------------------------

def test_the_proxys_queue_place_and_progress_are_shown_and_cancel_reaches_it(make_daemon,
                                                                             proxies):
    proxy = proxies(generation_time=30, concurrency=1, progress_steps=10)
    daemon = make_daemon(providers=[provider(proxy)])
    first = submit(daemon, model="midjourney")
    daemon.wait_job(first["id"], ("running",))
    second = submit(daemon, model="midjourney")
    queued = daemon.wait_job(second["id"], ("running",))
    assert queued["upstream_queue_position"] == 1
    assert queued["progress"] < 0.1
    # The first one moves as the proxy's "45%" says: its run made 45 % done (and long, so
    # the share holds while the test looks, however slowly it runs).
    task = next(iter(proxy.sandbox.tasks.values()))

    def run_for(seconds: float, done: float) -> None:
        now = proxy.sandbox.clock.time()
        task.starts_at, task.ends_at = now - done * seconds, now + (1 - done) * seconds

    proxy.do(run_for, 300, 0.45)
    running = daemon.wait_job(first["id"], ("running",))
    deadline = 50
    while running["progress"] < 0.4 and deadline:
        running, deadline = daemon.wait_job(first["id"], ("running",)), deadline - 1
    assert 0.4 < running["progress"] < 0.6, running
    assert running["upstream_queue_position"] is None

    for job in (first, second):
        assert httpx.delete(f"{daemon.url}/arting/v1/jobs/{job['id']}").json()["state"] \
            == "cancelled"
    cancelled = [r.path for r in proxy.sandbox.requests_for("cancel")]
    assert sorted(cancelled) == sorted(f"/mj/task/{t}/cancel" for t in proxy.sandbox.tasks)
    assert all(t.cancelled_at for t in proxy.sandbox.tasks.values())


def test_a_queued_jobs_place_goes_down_as_the_proxys_queue_drains(make_daemon, proxies):
    clock = ManualClock()                   # the proxy's: its queue moves when told
    proxy = proxies(generation_time=10, concurrency=1, clock=clock)
    daemon = make_daemon(providers=[provider(proxy)])
    jobs = []
    for place in (None, 1, 2, 3):           # one runs, three wait behind it
        jobs.append(submit(daemon, model="midjourney", seed=len(jobs)))
        job = daemon.wait_job(jobs[-1]["id"], ("running",))
        assert job["upstream_queue_position"] == place, job
        proxy.call(clock.advance(0.01))     # each its own submit time (and task id)
    last = jobs[-1]["id"]
    seen = [3]
    for place in (2, 1, None):
        proxy.call(clock.advance(10))       # the one running ends; the next one starts
        seen.append(wait_place(daemon, last, place))
    assert seen == [3, 2, 1, None]
    assert proxy.sandbox.requests_for("queue")          # read from the proxy's queue list
    proxy.call(clock.advance(10))
    assert [daemon.wait_job(j["id"])["state"] for j in jobs] == ["succeeded"] * 4
    assert len(imagined(proxy)) == 4


def test_a_proxy_without_a_queue_list_is_asked_once_and_the_submits_place_stays(
        make_daemon, proxies):
    clock = ManualClock()
    proxy = proxies(generation_time=10, concurrency=1, clock=clock, task_queue=False)
    daemon = make_daemon(providers=[provider(proxy)])
    first = submit(daemon, model="midjourney")
    daemon.wait_job(first["id"], ("running",))
    proxy.call(clock.advance(0.01))
    second = submit(daemon, model="midjourney")
    assert daemon.wait_job(second["id"], ("running",))["upstream_queue_position"] == 1
    fetches = len(proxy.sandbox.requests_for("fetch"))
    while len(proxy.sandbox.requests_for("fetch")) < fetches + 3:     # polls go on
        time.sleep(0.02)
    assert daemon.wait_job(second["id"], ("running",))["upstream_queue_position"] == 1
    assert len(proxy.sandbox.requests_for("queue")) == 1          # 404: not asked again
    proxy.call(clock.advance(10))                   # it is Midjourney's now: no place
    assert wait_place(daemon, second["id"], None) is None
    proxy.call(clock.advance(10))
    assert daemon.wait_job(second["id"])["state"] == "succeeded"


def wait_place(daemon, job_id: str, place: int | None, polls: int = 300) -> int | None:
    """The job's place in the proxy's queue once the daemon has seen it become ``place``
    (bounded: the daemon polls every 0.2 s at most)."""
    for _ in range(polls):
        job = daemon.wait_job(job_id, ("running",))
        if job["upstream_queue_position"] == place:
            return place
        time.sleep(0.02)
    return job["upstream_queue_position"]


def test_an_open_proxy_without_cancel_lets_the_task_finish_unseen(make_daemon, proxies):
    proxy = proxies(plus=False, generation_time=30, unknown_task="empty")
    daemon = make_daemon(providers=[provider(proxy)])
    job = submit(daemon, model="midjourney")
    daemon.wait_job(job["id"], ("running",))
    assert httpx.delete(f"{daemon.url}/arting/v1/jobs/{job['id']}").json()["state"] \
        == "cancelled"
    assert len(proxy.sandbox.requests_for("cancel")) == 1      # asked; 404 from novicezk
    assert not any(t.cancelled_at for t in proxy.sandbox.tasks.values())


# --- upscales ----------------------------------------------------------------------------

@pytest.mark.parametrize("actions", ["change", "action"])
def test_an_upscale_of_a_quadrant_runs_its_u_button(make_daemon, proxy, actions):
    daemon = make_daemon(providers=[provider(proxy, actions=actions)])
    job = daemon.run_job(prompt="a lighthouse", model="midjourney", n=4, size="512x512")
    resp = httpx.post(daemon.url + "/arting/v1/jobs", json={
        "kind": "upscale", "images": [job["images"][2]["hash"]], "scale": 2})
    assert resp.status_code == 202, resp.text
    up = daemon.wait_job(resp.json()["id"])
    assert (up["state"], up["provider"]) == ("succeeded", "mj"), up
    assert (up["images"][0]["width"], up["images"][0]["height"]) == (256, 256)
    assert up["request"]["images"][0]["origin"]["ref"].endswith("/3")
    [grid_task] = [t for t in proxy.sandbox.tasks.values() if t.action == "IMAGINE"]
    if actions == "change":
        [sent] = [r.body for r in proxy.sandbox.requests_for("change")]
        assert sent == {"taskId": grid_task.id, "action": "UPSCALE", "index": 3}
    else:
        [sent] = [r.body for r in proxy.sandbox.requests_for("action")]
        assert sent == {"taskId": grid_task.id,
                        "customId": f"MJ::JOB::upsample::3::{grid_task.message_hash}"}
    # U3 is the third quadrant, larger.
    _, quadrant = picture(daemon, job["images"][2])
    _, upscaled = picture(daemon, up["images"][0])
    assert upscaled.resize(quadrant.size).getpixel((10, 10)) == pytest.approx(
        quadrant.getpixel((10, 10)), abs=40)


def test_its_pixels_sent_back_without_the_mark_still_upscale_with_u(make_daemon, proxy):
    """A client with only the pixels (a ComfyUI IMAGE, SD-WebUI's Extras) sends them
    re-encoded, the mark gone: the daemon finds the quadrant by them. A picture one pixel
    off is not Midjourney's, and goes elsewhere."""
    daemon = make_daemon(providers=[provider(proxy)])
    job = daemon.run_job(prompt="a lighthouse", model="midjourney", n=2, size="512x512")
    _, second = picture(daemon, job["images"][1])
    plain = io.BytesIO()
    second.save(plain, "PNG", compress_level=9)
    assert provenance.origin(plain.getvalue()) is None
    up = upscaled(daemon, plain.getvalue())
    assert (up["state"], up["provider"]) == ("succeeded", "mj"), up
    assert up["request"]["images"][0]["hash"] == job["images"][1]["hash"]
    assert [r.body["index"] for r in proxy.sandbox.requests_for("change")] == [2]

    second.putpixel((0, 0), tuple(255 - v for v in second.getpixel((0, 0))))
    other = io.BytesIO()
    second.save(other, "PNG")
    up = upscaled(daemon, other.getvalue())
    assert (up["state"], up["provider"]) == ("succeeded", "arting"), up
    assert len(proxy.sandbox.requests_for("change")) == 1


def test_the_store_finds_a_marked_picture_by_its_pixels_until_it_is_removed(tmp_path):
    import asyncio

    from arting_daemon.store import ImageStore
    from arting_daemon.upscaling import Origin
    store = ImageStore(tmp_path)
    image = Image.new("RGB", (24, 16), (200, 40, 90))
    marked, plain = io.BytesIO(), io.BytesIO()
    image.save(marked, "PNG", pnginfo=provenance.mark(
        Origin(provider="mj", upstream="u", ref="1/1"), "note"))
    image.save(plain, "PNG", optimize=True)
    assert store.marked_like(plain.getvalue()) is None
    unmarked = asyncio.run(store.put(plain.getvalue())).hash    # a client's: no likeness
    assert store.marked_like(plain.getvalue()) is None
    digest = asyncio.run(store.put(marked.getvalue())).hash
    assert store.marked_like(plain.getvalue()) == digest != unmarked
    assert [p.name for p in store.likenesses.iterdir()] == [
        provenance.likeness(plain.getvalue())]
    assert store.remove(digest, fresh=-1) and store.marked_like(plain.getvalue()) is None
    assert list(store.likenesses.iterdir()) == []


def upscaled(daemon, png: bytes) -> dict:
    resp = httpx.post(daemon.url + "/arting/v1/jobs", json={
        "kind": "upscale", "scale": 2, "images": [base64.b64encode(png).decode()]})
    assert resp.status_code == 202, resp.text
    return daemon.wait_job(resp.json()["id"])


def test_hires_fix_of_a_midjourney_model_upscales_with_u(make_daemon, proxy):
    daemon = make_daemon(providers=[provider(proxy)])
    host, port = daemon.url.removeprefix("http://").rsplit(":", 1)
    api = webuiapi.WebUIApi(host=host, port=int(port))
    result = api.txt2img(prompt="a harbour", enable_hr=True, hr_scale=2, batch_size=2,
                         override_settings={"sd_model_checkpoint": "midjourney"})
    assert [i.size for i in result.images] == [(256, 256)] * 2
    assert sorted(r.body["index"] for r in proxy.sandbox.requests_for("change")) == [1, 2]


def test_pictures_midjourney_did_not_make_are_upscaled_elsewhere(make_daemon, proxy):
    daemon = make_daemon(providers=[provider(proxy)])
    arting = daemon.run_job(prompt="p", size="256x256")
    resp = httpx.post(daemon.url + "/arting/v1/jobs", json={
        "kind": "upscale", "images": [arting["images"][0]["hash"], png(64, 64)], "scale": 2})
    up = daemon.wait_job(resp.json()["id"])
    assert (up["state"], up["provider"]) == ("succeeded", "arting"), up
    assert proxy.sandbox.requests_for("change") == []

    alone = make_daemon(providers=[provider(proxy)], upscale=False)
    resp = httpx.post(alone.url + "/arting/v1/jobs", json={
        "kind": "upscale", "images": [png(64, 64)], "scale": 2})
    assert resp.status_code == 400
    assert resp.json()["error"]["message"] == ("No provider here upscales these pictures: "
                                               "Midjourney upscales only the pictures it made.")


# --- errors -------------------------------------------------------------------------------

@pytest.mark.parametrize("fault, options, code, words", [
    ({}, {"banned_words": ["lighthouse"]}, "content_refused",
     "refused the prompt (可能包含敏感词; banned word: 'lighthouse')"),
    ({"kind": "code", "code": 23, "message": "队列已满，请稍后尝试"}, {}, "upstream_rate_limited",
     "queue is full (队列已满，请稍后尝试)"),
    ({"kind": "code", "code": 9, "message": "提交失败，队列已满，请稍后重试"}, {},
     "upstream_rate_limited", "queue is full"),
    ({"kind": "code", "code": 9, "message": "系统异常"}, {}, "upstream_error",
     "failed to submit the task: 系统异常"),
    ({"kind": "code", "code": 4, "message": "prompt不能为空"}, {}, "upstream_invalid_request",
     "found the request invalid: prompt不能为空"),
    ({"kind": "code", "code": 3, "message": "无可用的账号实例"}, {}, "upstream_rejected",
     "code 3: 无可用的账号实例"),
    ({"kind": "code", "code": 30, "message": "奇怪"}, {}, "upstream_rejected",
     "did not take the task (code 30: 奇怪)"),
    ({"kind": "unauthorized"}, {}, "upstream_auth", "refused the credentials (HTTP 401)"),
    ({"kind": "http_error", "status": 400, "code": 4, "message": "请求参数错误"}, {},
     "upstream_invalid_request", "(HTTP 400): 请求参数错误"),
    ({"kind": "http_error", "status": 429, "message": "请求过于频繁"}, {},
     "upstream_rate_limited", "rate-limiting (HTTP 429)"),
])
def test_every_submit_answer_maps_onto_the_taxonomy(make_daemon, proxies, fault, options,
                                                    code, words):
    proxy = proxies(**options)
    if fault:
        proxy.do(proxy.sandbox.add_fault, route="imagine", **fault)
    daemon = make_daemon(providers=[provider(proxy)])
    job = daemon.run_job(prompt="a lighthouse", model="midjourney")
    assert (job["state"], job["error"]["code"]) == ("failed", code), job
    assert words in job["error"]["message"] and "Midjourney" in job["error"]["message"]
    assert SECRET not in json.dumps(job)


def test_queued_and_existing_tasks_are_followed(make_daemon, proxies):
    proxy = proxies(concurrency=1, generation_time=0.3)
    daemon = make_daemon(providers=[provider(proxy)])
    jobs = [submit(daemon, model="midjourney", seed=i) for i in range(3)]
    done = [daemon.wait_job(j["id"]) for j in jobs]
    assert [j["state"] for j in done] == ["succeeded"] * 3
    answers = [t for t in proxy.sandbox.tasks.values() if t.starts_at > t.submitted_at]
    assert answers            # some waited in the proxy's queue (code 22) and were followed


def test_a_failed_task_is_quoted_with_secrets_masked(make_daemon, proxies, caplog):
    caplog.set_level(logging.DEBUG)
    proxy = proxies(fail_reason=f"[Invalid parameter] bad --v with key {SECRET}")
    daemon = make_daemon(providers=[provider(proxy)])
    job = daemon.run_job(prompt="please failme", model="midjourney")
    assert (job["state"], job["error"]["code"]) == ("failed", "generation_failed")
    assert job["error"]["message"] == (
        f"Midjourney failed task {next(iter(proxy.sandbox.tasks))}: "
        "'[Invalid parameter] bad --v with key ***'.")
    proxy.configure(fail_reason="Banned prompt detected: the word 'x'")
    refused = daemon.run_job(prompt="failme again", model="midjourney")
    assert refused["error"]["code"] == "content_refused"
    assert SECRET not in "\n".join(r.getMessage() for r in caplog.records)


def test_a_proxy_that_forgot_the_task_fails_the_job_once(make_daemon, proxy):
    proxy.do(proxy.sandbox.add_fault, "forget", route="fetch")
    daemon = make_daemon(providers=[provider(proxy)])
    job = daemon.run_job(model="midjourney")
    assert job["state"] == "failed" and "no longer knows task" in job["error"]["message"]
    assert len(imagined(proxy)) == 1 and len(proxy.sandbox.requests_for("fetch")) == 3


def test_a_submit_whose_connection_broke_is_not_sent_again(make_daemon, proxy):
    proxy.do(proxy.sandbox.add_fault, "reset", route="imagine", count=1)
    daemon = make_daemon(providers=[provider(proxy)])
    job = daemon.run_job(model="midjourney")
    assert job["state"] == "failed" and job["error"]["code"] == "upstream_error"
    assert len(imagined(proxy)) == 1           # it may have been taken: not sent twice


@pytest.mark.parametrize("code, message, confirmed", [
    (21, "Waiting for window confirm", True),     # a plus proxy in remix mode
    (21, "任务已存在", False),                      # novicezk: the task exists already
    (22, "排队中，前面还有0个任务", False)])
def test_a_task_the_proxy_took_otherwise_is_followed(make_daemon, proxy, code, message,
                                                     confirmed):
    proxy.do(proxy.sandbox.add_fault, "code", route="imagine", code=code, message=message)
    daemon = make_daemon(providers=[provider(proxy)])
    job = daemon.run_job(prompt="a cat", model="midjourney", seed=4)
    assert job["state"] == "succeeded", job
    modals = [r.body for r in proxy.sandbox.requests_for("modal")]
    assert modals == ([{"taskId": next(iter(proxy.sandbox.tasks)),
                        "prompt": "a cat --seed 4"}] if confirmed else [])
    assert len(imagined(proxy)) == 1


# --- restarts and fallbacks ----------------------------------------------------------------

@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_a_restart_mid_job_follows_the_task_and_submits_nothing_again(tmp_path, proxies):
    proxy = proxies(generation_time=2.0)
    env = {"ARTING_PROVIDERS": json.dumps([provider(proxy)])}
    first = DaemonProcess(tmp_path / "data", "http://127.0.0.1:9", **env)
    try:
        job = httpx.post(first.url + "/arting/v1/jobs", json={
            "prompt": "a lighthouse", "model": "midjourney", "n": 2}).json()
        record = wait_journaled(tmp_path / "data", job["id"], "running")
        assert record["provider_state"]["task"] in proxy.sandbox.tasks
    finally:
        first.stop()                                     # kill -9 while Midjourney works
    done = resumed(tmp_path / "data", job["id"], **env)
    assert done["state"] == "succeeded" and len(done["images"]) == 2, done
    assert len(imagined(proxy)) == 1
    assert journaled(tmp_path / "data", job["id"])["state"] == "succeeded"


def test_arting_failing_falls_back_to_midjourney(make_daemon, proxy):
    daemon = make_daemon(providers=[provider(proxy)],
                         fallbacks={"oneFORALLAnime": ["mj/*"]}, retry_budget=0.5)
    daemon.do(daemon.sandbox.add_fault, "cf_1020", route="create")
    job = daemon.run_job(model="oneFORALLAnime", prompt="a lighthouse", size="512x768", seed=8)
    assert (job["state"], job["provider"]) == ("succeeded", "mj"), job
    [move] = job["fallbacks"]
    assert (move["from"], move["to"], move["model"]) == ("arting", "mj", "midjourney")
    assert imagined(proxy)[0]["prompt"] == "a lighthouse --ar 2:3 --seed 8"
    assert metric(daemon, "arting_provider_fallbacks_total", from_provider="arting",
                  to_provider="mj") == 1


def test_status_and_secrets(make_daemon, proxy, caplog):
    caplog.set_level(logging.DEBUG)
    daemon = make_daemon(providers=[provider(proxy)], log_level="debug")
    daemon.run_job(model="midjourney")
    status = httpx.get(daemon.url + "/arting/v1/status").json()
    [mj] = [p for p in status["providers"] if p["name"] == "mj"]
    assert (mj["kind"], mj["state"], mj["models"], mj["credentials"], mj["upscale"]) == (
        "midjourney", "ok", 2, "set", True)
    assert mj["base_url"] == proxy.url
    seen = "\n".join([json.dumps(status), *(r.getMessage() for r in caplog.records),
                      httpx.get(daemon.url + "/arting/v1/jobs").text])
    assert SECRET not in seen


def test_the_emulator_pushes_each_step_to_the_notify_hook(proxies):
    from webhook_receiver import Receiver
    receiver = Receiver()
    proxy = proxies(generation_time=0.3, progress_steps=3)
    try:
        answer = httpx.post(proxy.url + "/mj/submit/imagine", headers={"mj-api-secret": SECRET},
                            json={"prompt": "a cat", "notifyHook": receiver.url + "/hook",
                                  "state": "mine"}).json()
        assert answer["code"] == 1
        pushes = [json.loads(r.body) for r in receiver.wait(2)]
        while pushes[-1]["status"] != "SUCCESS":
            pushes = [json.loads(r.body) for r in receiver.wait(len(pushes) + 1)]
    finally:
        receiver.close()
    assert {p["id"] for p in pushes} == {answer["result"]} and pushes[0]["state"] == "mine"
    assert [p["status"] for p in pushes][-1] == "SUCCESS"
    progress = [int(p["progress"].rstrip("%")) for p in pushes]
    assert progress == sorted(progress) and progress[-1] == 100
    assert [b["label"] for b in pushes[-1]["buttons"] if b["label"]] == [
        "U1", "U2", "U3", "U4", "V1", "V2", "V3", "V4"]


# --- answers as the proxies and gateways give them -------------------------------------------

@pytest.mark.parametrize("options", [{"image_format": "webp"}, {"unknown_task": "204"}])
def test_a_webp_grid_and_trueais_204_are_read(make_daemon, proxies, options):
    proxy = proxies(**options)
    daemon = make_daemon(providers=[provider(proxy)])
    assert daemon.run_job(model="midjourney", n=2)["state"] == "succeeded"
    proxy.do(proxy.sandbox.add_fault, "forget", route="fetch")
    job = daemon.run_job(model="midjourney")
    assert "no longer knows task" in job["error"]["message"]


def test_what_the_protocol_reads():
    from arting_daemon.errors import BadUpstreamResponse, JobFailed, UpstreamRejected
    from arting_daemon.providers.midjourney import protocol as mj

    # new-api: the code may come quoted, a fresh task has an empty status and "0%"
    assert mj.submitted("MJ", {"code": "1", "result": 1689231405853400}).task == \
        "1689231405853400"
    assert mj.submitted("MJ", {"code": 22, "description": "排队中，前面还有3个任务",
                               "result": "7"}).queued == 4
    assert mj.task_view("MJ", "7", {"status": "", "progress": "0%"}) == mj.TaskView(
        False, 0.0, waiting=True, queued=True)
    assert mj.task_view("MJ", "7", {"status": "IN_PROGRESS", "progress": "45%"}).progress == 0.45
    done = mj.task_view("MJ", "7", {"status": "SUCCESS", "imageUrl": "/mj/image/7",
                                    "properties": {"messageHash": "abc"}, "buttons": None})
    assert (done.image_url, mj.upscale_button(done, 2)) == ("/mj/image/7",
                                                            "MJ::JOB::upsample::2::abc")
    with pytest.raises(JobFailed, match="gave no reason"):
        mj.task_view("MJ", "7", {"status": "FAILURE", "failReason": None, "progress": ""})
    with pytest.raises(UpstreamRejected, match="code 21"):
        mj.submitted("MJ", {"code": 21, "description": "任务已存在"})
    # novicezk's queue list: running and waiting tasks in submit order, of every account
    queue = [{"id": i, "status": st, "submitTime": t,
              "properties": {"discordInstanceId": a}} for i, st, t, a in [
        ("4", "NOT_START", 40, "A"), ("1", "IN_PROGRESS", 10, "A"), ("2", "NOT_START", 20, "A"),
        ("3", "NOT_START", 30, "B"), ("5", "SUBMITTED", 50, "A")]]
    assert [mj.queue_place("MJ", i, queue) for i in "12345"] == [None, 1, 1, 2, None]
    assert mj.queue_place("MJ", "9", queue) is None
    with pytest.raises(BadUpstreamResponse):
        mj.queue_place("MJ", "4", {"code": 4})
    assert [mj.aspect_ratio(*s) for s in ((512, 768), (1352, 768), (1024, 1024),
                                          (1000, 333))] == ["2:3", "7:4", "1:1", "3:1"]


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_the_emulator_runs_on_its_own(tmp_path):
    import signal
    import subprocess
    proc = subprocess.Popen([sys.executable, "-m", "arting_daemon.sandbox", "--kind",
                             "midjourney", "--port", "0", "--generation-time", "0.2"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=tmp_path)
    try:
        line = proc.stdout.readline()
        assert line.startswith("midjourney-proxy emulator listening on http://127.0.0.1:"), line
        url = line.split("listening on ", 1)[1].strip()
        secret = {"mj-api-secret": "sk-sandbox"}
        assert httpx.post(url + "/mj/submit/imagine", json={"prompt": "a cat"}).status_code \
            == 401
        answer = httpx.post(url + "/mj/submit/imagine", json={"prompt": "a cat"},
                            headers=secret).json()
        assert answer["code"] == 1 and answer["result"]
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=15)
    assert proc.returncode == 0

