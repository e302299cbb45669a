"""Job records expire after ``job_retention``, with their result-cache entries and the
stored images only they named; images no record names are removed after a grace; nothing
a remaining record names is. In one daemon (SQLite) and with replicas (a real
redis-server), the sweep called directly, time moved by a ``ManualClock``."""

from __future__ import annotations

import base64
import io
import shutil
from pathlib import Path

import httpx
import pytest
from PIL import Image

from arting_daemon.state import ENGINE, EXPIRY, JOURNAL
from clock import ManualClock
from test_replicas import RedisServer

DAY = 86400.0


@pytest.fixture(params=["sqlite", "redis"])
def backend(request, tmp_path):
    if request.param == "sqlite":
        yield {}
        return
    if shutil.which("redis-server") is None:
        pytest.skip("needs redis-server (Debian's redis-server; .ci/run installs it)")
    server = RedisServer(tmp_path / "redis").start()
    try:
        yield {"redis_url": server.url}
    finally:
        server.stop()


def picture(colour) -> str:
    buf = io.BytesIO()
    Image.new("RGB", (96, 64), colour).save(buf, "PNG")
    return base64.b64encode(buf.getvalue()).decode()


def stored(daemon) -> set[str]:
    root = Path(daemon.settings.data_dir) / "images"
    return {p.stem for p in root.rglob("*.png")} if root.exists() else set()


def made(daemon, headers: dict | None = None, **body) -> dict:
    resp = httpx.post(f"{daemon.url}/arting/v1/jobs", json={"prompt": "fox", **body},
                      headers=headers, timeout=30)
    assert resp.status_code == 202, resp.text[:300]
    job = daemon.wait_job(resp.json()["id"])
    assert job["state"] == "succeeded", job
    return job


def test_job_retention_removes_old_records_their_cache_entries_and_orphans(make_daemon,
                                                                           backend):
    clock = ManualClock()
    daemon = make_daemon(clock=clock, job_retention=10 * DAY, **backend)
    shared = picture((1, 2, 3))
    old = made(daemon, {"Idempotency-Key": "k-old"}, init_image=shared, seed=7)
    old_only = made(daemon, init_image=picture((200, 0, 0)), seed=8)
    daemon.advance(6 * DAY)
    kept = made(daemon, init_image=shared, seed=9)       # names the same init image
    before = stored(daemon)
    daemon.advance(6 * DAY)                               # `old` ended 12 days ago, `kept` 6

    # stored for no job: an extras upscale's picture and result
    extras = httpx.post(f"{daemon.url}/sdapi/v1/extra-single-image", timeout=30, json={
        "image": picture((0, 0, 250)), "upscaler_1": "Nearest", "upscaling_resize": 2})
    assert extras.status_code == 200, extras.text[:300]
    orphans = stored(daemon) - before
    assert len(orphans) == 2

    expiry, engine = daemon.app[EXPIRY], daemon.app[ENGINE]
    old_key = daemon.call(cache_key(daemon, old["id"]))
    kept_key = daemon.call(cache_key(daemon, kept["id"]))
    daemon.call(expiry.sweep())
    gone, _ = daemon.call(expiry.sweep())                 # a second sweep finds nothing more
    assert gone == []

    for job in (old, old_only):
        resp = httpx.get(f"{daemon.url}/arting/v1/jobs/{job['id']}")
        assert resp.status_code == 404, resp.text[:300]
        assert daemon.call(daemon.app[JOURNAL].get(job["id"])) is None
    assert httpx.get(f"{daemon.url}/arting/v1/jobs/{kept['id']}").status_code == 200

    left = stored(daemon)
    kept_images = {i["hash"] for i in kept["images"]} | {kept["request"]["init_image"]}
    assert kept_images <= left                            # the shared init image too
    for job in (old, old_only):
        assert not {i["hash"] for i in job["images"]} & left
    assert old_only["request"]["init_image"] not in left
    assert not orphans & left

    assert daemon.call(engine.cache.index.find(old_key)) is None
    assert daemon.call(engine.cache.index.find(kept_key)) == kept["id"]
    if "redis_url" in backend:
        import redis
        r = redis.Redis.from_url(backend["redis_url"], decode_responses=True)
        try:
            # every key naming it is gone, but those that lapse by themselves (counters')
            names = [k for k in r.scan_iter("arting:*") if old["id"] in k and r.ttl(k) < 0]
            assert names == []
            assert r.zscore("arting:jobs", old["id"]) is None
            assert r.zscore("arting:jobs", kept["id"]) is not None
        finally:
            r.close()

    # what was kept still answers: the same request is a hit on the kept job
    again = httpx.post(f"{daemon.url}/arting/v1/jobs", timeout=30,
                       json={"prompt": "fox", "init_image": shared, "seed": 9})
    assert again.json()["cache"] == "hit" and again.json()["cached_from"] == kept["id"]
    # and the expired one is made anew, its idempotency key free again
    anew = httpx.post(f"{daemon.url}/arting/v1/jobs", timeout=30,
                      headers={"Idempotency-Key": "k-old"},
                      json={"prompt": "fox", "init_image": shared, "seed": 7})
    assert anew.status_code == 202, anew.text[:300]
    assert anew.json()["id"] != old["id"] and anew.json()["cache"] == "miss"
    daemon.wait_job(anew.json()["id"])


def test_without_job_retention_records_stay_and_only_orphans_go(make_daemon):
    clock = ManualClock()
    daemon = make_daemon(clock=clock, job_retention=None)
    job = made(daemon, init_image=picture((5, 5, 5)))
    daemon.advance(400 * DAY)
    gone, images = daemon.call(daemon.app[EXPIRY].sweep())
    assert gone == [] and images == []
    assert httpx.get(f"{daemon.url}/arting/v1/jobs/{job['id']}").status_code == 200
    assert {i["hash"] for i in job["images"]} <= stored(daemon)


def test_an_orphan_is_kept_through_its_grace(make_daemon):
    clock = ManualClock()
    daemon = make_daemon(clock=clock)
    resp = httpx.post(f"{daemon.url}/sdapi/v1/extra-single-image", timeout=30, json={
        "image": picture((9, 9, 9)), "upscaler_1": "Nearest", "upscaling_resize": 2})
    assert resp.status_code == 200
    made_now = stored(daemon)
    daemon.advance(600)
    assert daemon.call(daemon.app[EXPIRY].sweep())[1] == []
    assert stored(daemon) == made_now
    daemon.advance(3600)            # (the periodic sweep may take them as the clock passes)
    daemon.call(daemon.app[EXPIRY].sweep())
    assert stored(daemon) == set()


async def cache_key(daemon, job_id: str) -> str:
    engine = daemon.app[ENGINE]
    job = await engine.get(job_id)
    return engine.cache.key(job.provider, job.owner, job.generation)


def test_the_bounded_stores_index_forgets_what_the_sweep_removed(make_daemon):
    from arting_daemon.state import RETENTION
    clock = ManualClock()
    daemon = make_daemon(clock=clock, store_max_images=1000)
    resp = httpx.post(f"{daemon.url}/sdapi/v1/extra-single-image", timeout=30, json={
        "image": picture((7, 7, 7)), "upscaler_1": "Nearest", "upscaling_resize": 2})
    assert resp.status_code == 200
    keeper = daemon.app[RETENTION]
    daemon.call(keeper.trim())                 # the index written (a flush)
    assert keeper.images == 2
    daemon.advance(2 * 3600)        # (the periodic sweep may take them as the clock passes)
    daemon.call(daemon.app[EXPIRY].sweep())
    assert stored(daemon) == set()
    assert (keeper.images, keeper.size) == (0, 0)
