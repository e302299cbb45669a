"""The native job API: submit (idempotent), follow (poll and SSE), cancel, list, images."""

from __future__ import annotations

import base64
import io
import json
import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from PIL import Image


def jobs_url(daemon, *parts: str) -> str:
    return "/".join([daemon.url + "/arting/v1/jobs", *parts])




def test_submit_then_poll_to_images(daemon):
    resp = httpx.post(jobs_url(daemon), json={"prompt": "a lighthouse", "n": 2, "seed": 42,
                                              "width": 512, "height": 512})
    assert resp.status_code == 202
    assert resp.headers["Location"].endswith(resp.json()["id"])
    job = daemon.wait_job(resp.json()["id"])
    assert job["state"] == "succeeded" and job["progress"] == 1.0
    assert [i["seed"] for i in job["images"]] == [42, 43]
    assert all((i["width"], i["height"]) == (512, 512) for i in job["images"])
    png = httpx.get(job["images"][0]["url"])
    assert png.headers["content-type"] == "image/png"
    assert "immutable" in png.headers["cache-control"]
    again = httpx.get(job["images"][0]["url"], headers={"If-None-Match": png.headers["etag"]})
    assert again.status_code == 304


def test_idempotency_key_never_makes_a_second_generation(daemon):
    headers = {"Idempotency-Key": "retry-me-1"}
    first = httpx.post(jobs_url(daemon), json={"prompt": "p"}, headers=headers)
    second = httpx.post(jobs_url(daemon), json={"prompt": "p"}, headers=headers)
    assert (first.status_code, second.status_code) == (202, 200)
    assert first.json()["id"] == second.json()["id"]
    daemon.wait_job(first.json()["id"])
    third = httpx.post(jobs_url(daemon), json={"prompt": "p"}, headers=headers)
    assert third.json()["id"] == first.json()["id"]
    assert len(daemon.sandbox.requests_for("create")) == 1


def test_concurrent_submits_with_one_key_make_one_job(daemon):
    """Retries racing the first attempt (a client that timed out and tried again)."""
    barrier = threading.Barrier(6)

    def submit(_):
        barrier.wait()
        return httpx.post(jobs_url(daemon), json={"prompt": "p"},
                          headers={"Idempotency-Key": "racing"}).json()["id"]

    with ThreadPoolExecutor(6) as pool:
        ids = set(pool.map(submit, range(6)))
    assert len(ids) == 1
    daemon.wait_job(ids.pop())
    assert len(daemon.sandbox.requests_for("create")) == 1


def test_events_stream_ends_in_a_terminal_state(make_daemon):
    daemon = make_daemon(sandbox_options={"generation_time": 1.2})
    job = httpx.post(jobs_url(daemon), json={"prompt": "p"}).json()
    events = []
    with httpx.stream("GET", jobs_url(daemon, job["id"], "events"), timeout=10) as resp:
        assert resp.headers["content-type"].startswith("text/event-stream")
        for line in resp.iter_lines():
            if line.startswith("data:"):
                events.append(json.loads(line[5:]))
    states = [e["state"] for e in events]
    assert states[-1] == "succeeded" and "running" in states
    running = [e["progress"] for e in events if e["state"] == "running"]
    assert running == sorted(running) and 0 < running[0] < 1


def test_cancel_a_running_job(make_daemon):
    daemon = make_daemon(sandbox_options={"generation_time": 30})
    job = httpx.post(jobs_url(daemon), json={"prompt": "p"}).json()
    daemon.wait_job(job["id"], states=("running",))
    resp = httpx.delete(jobs_url(daemon, job["id"]))
    assert resp.json()["state"] == "cancelled"
    assert resp.json()["error"]["code"] == "cancelled"


def test_queue_positions(make_daemon):
    daemon = make_daemon(max_active_jobs=1, sandbox_options={"generation_time": 30})
    ids = [httpx.post(jobs_url(daemon), json={"prompt": f"p{i}"}).json()["id"]
           for i in range(3)]
    daemon.wait_job(ids[0], states=("running",))
    views = [httpx.get(jobs_url(daemon, i)).json() for i in ids]
    assert [v["queue_position"] for v in views] == [None, 1, 2]
    assert views[2]["eta_seconds"] > views[1]["eta_seconds"]
    httpx.delete(jobs_url(daemon, ids[1]))
    assert httpx.get(jobs_url(daemon, ids[2])).json()["queue_position"] == 1


def test_list_is_newest_first_and_pages(daemon):
    ids = []
    for i in range(3):
        ids.append(httpx.post(jobs_url(daemon), json={"prompt": f"p{i}"}).json()["id"])
        daemon.wait_job(ids[-1])
    page = httpx.get(jobs_url(daemon), params={"limit": 2}).json()
    assert [j["id"] for j in page["data"]] == ids[::-1][:2]
    rest = httpx.get(jobs_url(daemon), params={"limit": 2,
                                               "before": page["next_before"]}).json()
    assert [j["id"] for j in rest["data"]] == ids[:1] and rest["next_before"] is None


def test_image_to_image_with_a_mask(daemon):
    buf = io.BytesIO()
    Image.new("RGB", (128, 128), (10, 200, 10)).save(buf, "PNG")
    mask = io.BytesIO()
    m = Image.new("L", (128, 128), 0)
    m.paste(255, (0, 0, 64, 128))
    m.save(mask, "PNG")
    job = httpx.post(jobs_url(daemon), json={
        "prompt": "p", "strength": 0.5,
        "init_image": "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode(),
        "mask": base64.b64encode(mask.getvalue()).decode()}).json()
    job = daemon.wait_job(job["id"])
    assert job["state"] == "succeeded", job["error"]
    assert job["images"][0]["width"] == 256  # 128x128 grown to min_side
    body = daemon.sandbox.requests_for("i2i_create")[-1].body
    assert body["strength"] == 0.5
    out = Image.open(io.BytesIO(httpx.get(job["images"][0]["url"]).content)).convert("RGB")
    assert out.getpixel((250, 10)) == (10, 200, 10)


@pytest.mark.parametrize("body, param", [
    ({}, "prompt"), ({"prompt": "p", "n": 9}, "n"), ({"prompt": "p", "colour": 1}, "colour"),
    ({"prompt": "p", "width": "wide"}, "width"), ({"prompt": "p", "mask": "AAAA"}, "mask"),
])
def test_bad_requests_name_the_field(daemon, body, param):
    resp = httpx.post(jobs_url(daemon), json=body)
    assert resp.status_code == 400
    assert resp.json()["error"]["param"] == param


def test_unknown_job_and_unknown_route(daemon):
    assert httpx.get(jobs_url(daemon, "nope")).status_code == 404
    resp = httpx.get(daemon.url + "/arting/v1/nothing-here")
    assert resp.status_code == 404 and "error" in resp.json()


def test_status_and_catalog(make_daemon):
    daemon = make_daemon(api_keys=["k"])
    assert httpx.get(daemon.url + "/arting/v1/status").status_code == 401
    status = httpx.get(daemon.url + "/arting/v1/status",
                       headers={"Authorization": "Bearer k"}).json()
    assert status["tokens"][0]["label"] == "anonymous" and status["tokens"][0]["state"] == "ok"
    catalog = httpx.get(daemon.url + "/arting/v1/catalog").json()   # public
    assert "oneFORALLAnime" in [m["id"] for m in catalog["models"]]
    assert catalog["limits"]["max_images"] == 4


def test_images_are_kept_when_arting_links_expire(daemon):
    job = httpx.post(jobs_url(daemon), json={"prompt": "keep me"}).json()
    job = daemon.wait_job(job["id"])
    daemon.do(daemon.sandbox.configure, image_expiry=0)
    assert httpx.get(daemon.sandbox.jobs[job_request_id(daemon)].outputs[0]).status_code == 404
    assert httpx.get(job["images"][0]["url"]).status_code == 200


def job_request_id(daemon) -> str:
    return next(iter(daemon.sandbox.jobs))


def test_a_watcher_leaving_the_events_does_not_cancel_the_job(make_daemon, caplog):
    daemon = make_daemon(sandbox_options={"generation_time": 1.5})
    job = httpx.post(daemon.url + "/arting/v1/jobs", json={"prompt": "p"}).json()
    with httpx.stream("GET", job["links"]["events"], timeout=10) as resp:
        next(resp.iter_lines())
    assert daemon.wait_job(job["id"])["state"] == "succeeded"
    assert "Error handling request" not in caplog.text
