"""The result cache, through every API: a request that names its seed and matches an
earlier successful generation is answered from the store, with no new upstream job.

Each API is driven by the client people use with it (``openai`` for the OpenAI routes,
plain HTTP for A1111 and the job API), and what went upstream is read from the
emulator's request log."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Callable

import httpx
import openai
import pytest
from PIL import Image



def creates(daemon) -> int:
    return len(daemon.sandbox.requests_for("create")) + \
        len(daemon.sandbox.requests_for("i2i_create"))


def picture(colour: str = "teal") -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (256, 256), colour).save(out, "PNG")
    return out.getvalue()


# Each returns (the X-Arting-Cache header, the images as bytes) of one request.
Call = Callable[..., "tuple[str, list[bytes]]"]


def _openai(daemon, headers: dict) -> openai.OpenAI:
    return openai.OpenAI(base_url=daemon.v1, api_key="unused", max_retries=0,
                         default_headers=headers)


def _seed(seed: int | None) -> dict:
    return {} if seed is None else {"seed": seed}


def openai_images(daemon, seed, headers):
    raw = _openai(daemon, headers).images.with_raw_response.generate(
        prompt="a fox in snow", size="256x256", response_format="b64_json",
        extra_body=_seed(seed))
    return raw.headers["x-arting-cache"], [base64.b64decode(d.b64_json)
                                           for d in raw.parse().data]


def openai_edits(daemon, seed, headers):
    raw = _openai(daemon, headers).images.with_raw_response.edit(
        image=("photo.png", picture(), "image/png"), prompt="as a watercolour",
        response_format="b64_json", extra_body=_seed(seed))
    return raw.headers["x-arting-cache"], [base64.b64decode(d.b64_json)
                                           for d in raw.parse().data]


def openai_chat(daemon, seed, headers):
    raw = _openai(daemon, headers).chat.completions.with_raw_response.create(
        model="asyncsMIX_v7", messages=[{"role": "user", "content": "a red fox"}],
        extra_body={"size": "256x256", **_seed(seed)})
    message = raw.parse().choices[0].message
    urls = [part["image_url"]["url"] for part in message.model_extra["images"]]
    return raw.headers["x-arting-cache"], [base64.b64decode(u.split(",", 1)[1]) for u in urls]


def a1111(daemon, seed, headers):
    resp = httpx.post(f"{daemon.url}/sdapi/v1/txt2img", headers=headers, timeout=30, json={
        "prompt": "a lighthouse <lora:add_detail:0.6>", "width": 256, "height": 256,
        "seed": -1 if seed is None else seed, "batch_size": 1, "n_iter": 2})
    assert resp.status_code == 200, resp.text
    return resp.headers["x-arting-cache"], [base64.b64decode(i) for i in resp.json()["images"]]


def job_api(daemon, seed, headers):
    resp = httpx.post(f"{daemon.url}/arting/v1/jobs", headers=headers, json={
        "prompt": "a castle", "size": "256x256", "n": 2, **_seed(seed)})
    assert resp.status_code == 202, resp.text
    job = daemon.wait_job(resp.json()["id"])
    assert job["cache"] == resp.headers["x-arting-cache"]
    return resp.headers["x-arting-cache"], [httpx.get(i["url"]).content for i in job["images"]]


APIS = [openai_images, openai_edits, openai_chat, a1111, job_api]


@pytest.mark.parametrize("call", APIS, ids=lambda c: c.__name__)
def test_a_seeded_request_repeated_makes_one_upstream_job(daemon, call: Call):
    first, made = call(daemon, 4242, {})
    jobs_upstream = creates(daemon)
    second, again = call(daemon, 4242, {})
    assert (first, second) == ("miss", "hit")
    assert creates(daemon) == jobs_upstream    # nothing new went upstream
    assert again == made                       # the very same images


@pytest.mark.parametrize("call", APIS, ids=lambda c: c.__name__)
def test_a_random_seed_is_never_served_from_the_cache(daemon, call: Call):
    first, made = call(daemon, None, {})
    jobs_upstream = creates(daemon)
    second, again = call(daemon, None, {})
    assert (first, second) == ("bypass", "bypass")
    assert creates(daemon) == 2 * jobs_upstream
    assert again != made


@pytest.mark.parametrize("call", APIS, ids=lambda c: c.__name__)
def test_cache_control_no_cache_makes_a_new_job(daemon, call: Call):
    call(daemon, 77, {})
    jobs_upstream = creates(daemon)
    second, _ = call(daemon, 77, {"Cache-Control": "no-cache"})
    assert second == "bypass"
    assert creates(daemon) == 2 * jobs_upstream
    third, _ = call(daemon, 77, {"Cache-Control": "max-age=0, no-store"})
    assert third == "bypass" and creates(daemon) == 3 * jobs_upstream


def test_the_job_api_says_hit_and_from_which_job(daemon):
    first = daemon.run_job(prompt="a bridge", seed=5, n=2)
    resp = httpx.post(f"{daemon.url}/arting/v1/jobs", json={"prompt": "a bridge", "seed": 5,
                                                             "n": 2})
    hit = resp.json()
    assert resp.status_code == 202 and hit["state"] == "succeeded"   # finished at once
    assert (hit["cache"], hit["cached_from"]) == ("hit", first["id"])
    assert hit["images"] == first["images"] and hit["id"] != first["id"]
    assert len(daemon.sandbox.requests_for("create")) == 1
    assert daemon.wait_job(hit["id"])["cache"] == "hit"               # and it stays so


def test_cache_false_on_the_job_api_makes_a_new_job(daemon):
    daemon.run_job(prompt="a bridge", seed=5)
    job = daemon.run_job(prompt="a bridge", seed=5, cache=False)
    assert job["cache"] == "bypass" and job["state"] == "succeeded"
    assert len(daemon.sandbox.requests_for("create")) == 2


@pytest.mark.parametrize("change", [{"seed": 6}, {"n": 2}, {"steps": 30}, {"guidance": 6.5},
                                    {"prompt": "a bridge."}, {"negative_prompt": "fog"},
                                    {"model": "asyncsMIX_v7"}, {"size": "256x320"},
                                    {"sampler": "DPM++ 2M Karras"}, {"clip_skip": 1},
                                    {"loras": [{"id": "add_detail", "weight": 0.5}]},
                                    {"nsfw": True}])
def test_any_other_value_is_another_generation(daemon, change):
    base = {"prompt": "a bridge", "seed": 5, "size": "256x256"}
    daemon.run_job(**base)
    job = daemon.run_job(**{**base, **change})
    assert job["cache"] == "miss"
    assert len(daemon.sandbox.requests_for("create")) == 2


def test_image_to_image_matches_on_the_init_image_mask_and_strength(daemon):
    def edit(image: bytes, **extra) -> str:
        body = {"prompt": "as a mosaic", "seed": 9, "strength": 0.5,
                "init_image": base64.b64encode(image).decode(), **extra}
        return daemon.run_job(**body)["cache"]

    mask = base64.b64encode(picture("white")).decode()
    assert edit(picture()) == "miss"
    assert edit(picture()) == "hit"
    assert edit(picture("navy")) == "miss"
    assert edit(picture(), strength=0.6) == "miss"
    assert edit(picture(), mask=mask) == "miss"
    assert edit(picture(), mask=mask) == "hit"
    assert len(daemon.sandbox.requests_for("i2i_create")) == 4


def test_a_failed_generation_is_not_reused(daemon):
    daemon.do(daemon.sandbox.add_fault, "fail", route="get", count=1)
    assert daemon.run_job(prompt="unlucky", seed=3)["state"] == "failed"
    job = daemon.run_job(prompt="unlucky", seed=3)
    assert (job["state"], job["cache"]) == ("succeeded", "miss")


def test_a_random_seeded_result_answers_a_request_naming_its_seed(daemon):
    """The web page's "Use these settings" sends the seed the first run drew."""
    first = daemon.run_job(prompt="a harbour")
    again = daemon.run_job(prompt="a harbour", seed=first["request"]["seed"])
    assert (first["cache"], again["cache"]) == ("bypass", "hit")
    assert again["images"] == first["images"]


def test_a_hit_needs_no_slot_even_when_the_queue_is_full(make_daemon):
    daemon = make_daemon(max_active_jobs=1, max_queued_jobs=0,
                         sandbox_options={"generation_time": 0.0})
    daemon.run_job(prompt="kept", seed=1)
    daemon.do(daemon.sandbox.configure, generation_time=30)
    busy = httpx.post(f"{daemon.url}/arting/v1/jobs", json={"prompt": "long"}).json()
    refused = httpx.post(f"{daemon.url}/arting/v1/jobs", json={"prompt": "another"})
    assert refused.status_code == 429
    hit = httpx.post(f"{daemon.url}/arting/v1/jobs", json={"prompt": "kept", "seed": 1})
    assert hit.status_code == 202 and hit.json()["cache"] == "hit"
    httpx.delete(f"{daemon.url}/arting/v1/jobs/{busy['id']}")


def test_with_result_cache_off_nothing_is_looked_up(make_daemon):
    daemon = make_daemon(result_cache=False)
    daemon.run_job(prompt="a bridge", seed=5)
    job = daemon.run_job(prompt="a bridge", seed=5)
    assert job["cache"] == "bypass"
    assert len(daemon.sandbox.requests_for("create")) == 2


def test_hits_are_counted_apart_and_do_not_vouch_for_the_upstream(daemon):
    first = daemon.run_job(prompt="a bridge", seed=5)
    daemon.run_job(prompt="a bridge", seed=5)
    status = httpx.get(f"{daemon.url}/arting/v1/status").json()
    assert status["jobs"]["succeeded"] == 2 and status["jobs"]["cached"] == 1
    # The upstream was last seen working when the first job finished, not at the hit.
    assert status["last_outcomes"]["succeeded_at"] == first["finished_at"]
    metrics = httpx.get(f"{daemon.url}/metrics").text
    assert 'arting_result_cache_total{result="hit"} 1.0' in metrics
    assert 'arting_result_cache_total{result="miss"} 1.0' in metrics
    assert 'arting_jobs_finished_total{code="",outcome="succeeded"} 1.0' in metrics


def test_the_streamed_answers_say_hit_too(daemon):
    client = _openai(daemon, {})
    client.images.generate(prompt="a fox", size="256x256", extra_body={"seed": 8})
    with httpx.stream("POST", f"{daemon.v1}/images/generations", json={
            "prompt": "a fox", "size": "256x256", "seed": 8, "stream": True}) as resp:
        assert resp.headers["x-arting-cache"] == "hit"
        events = [line for line in resp.iter_lines() if line.startswith("event:")]
    assert events == ["event: image_generation.completed"]
    with httpx.stream("POST", f"{daemon.v1}/chat/completions", json={
            "messages": [{"role": "user", "content": "a fox"}], "size": "256x256",
            "seed": 8, "stream": True}) as resp:
        # The same generation, asked for through another API: the same images.
        assert resp.headers["x-arting-cache"] == "hit"
        chunks = [json.loads(line[6:]) for line in resp.iter_lines()
                  if line.startswith("data: {")]
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert len(daemon.sandbox.requests_for("create")) == 1


# --- with user keys -----------------------------------------------------------------------

ADMIN = "admin-key-0123456789"


def user_key(daemon, name: str, **limits) -> str:
    resp = httpx.post(f"{daemon.url}/arting/v1/admin/keys", json={"name": name, **limits},
                      headers={"Authorization": f"Bearer {ADMIN}"})
    assert resp.status_code == 201, resp.text
    return resp.json()["key"]


def test_a_hit_costs_no_quota_and_each_user_has_a_cache_of_their_own(make_daemon):
    daemon = make_daemon(api_keys=[ADMIN])
    alice, bob = user_key(daemon, "alice", images_per_day=1), user_key(daemon, "bob")

    def submit(key: str, seed: int) -> httpx.Response:
        return httpx.post(f"{daemon.url}/arting/v1/jobs", json={"prompt": "p", "seed": seed},
                          headers={"Authorization": f"Bearer {key}"})

    made = submit(alice, 5).json()
    assert daemon.wait_job(made["id"], headers={"Authorization": f"Bearer {alice}"})[
        "state"] == "succeeded"
    again = submit(alice, 5)            # her quota is used up, but a hit makes no image
    assert again.status_code == 202 and again.json()["cache"] == "hit"
    refused = submit(alice, 6)
    assert refused.status_code == 429 and refused.json()["error"]["code"] == "quota_exceeded"
    usage = httpx.get(f"{daemon.url}/arting/v1/usage",
                      headers={"Authorization": f"Bearer {alice}"}).json()["data"][0]
    assert usage["today"]["images"] == 1 and usage["totals"]["images"] == 1
    assert usage["totals"]["jobs"]["succeeded"] == 2

    # Bob asking for the very same generation learns nothing of Alice's: a new job.
    theirs = submit(bob, 5).json()
    assert theirs["cache"] == "miss"
    daemon.wait_job(theirs["id"], headers={"Authorization": f"Bearer {bob}"})
    assert len(daemon.sandbox.requests_for("create")) == 2


async def test_migration_3_gives_an_older_journal_the_new_tables(tmp_path, monkeypatch):
    from arting_daemon.engine import journal as journal_module
    from arting_daemon.engine.jobs import Job
    from arting_daemon.engine.journal import Journal

    path = tmp_path / "jobs.sqlite3"
    with monkeypatch.context() as older:          # the daemon before this change
        older.setattr(journal_module, "MIGRATIONS", journal_module.MIGRATIONS[:2])
        older.setattr(journal_module, "VERSION", 2)
        journal = Journal(path, Job.from_record)
        await journal.open()
        await journal.close()
    journal = Journal(path, Job.from_record)
    await journal.open()
    try:
        tables = {name for (name,) in await journal.rows(
            "SELECT name FROM sqlite_master WHERE type = 'table'")}
        [(version,)] = await journal.rows("PRAGMA user_version")
    finally:
        await journal.close()
    assert {"results", "images", "webhooks"} <= tables and version == 3
