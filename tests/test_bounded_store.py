"""A bounded image store (``store_max_images``, ``store_max_gb``): over a cap it is
trimmed to below it, least recently served first, never touching what unfinished jobs
use; the jobs whose images went say so, and the result cache forgets them."""

from __future__ import annotations

import base64
import io
import os
import time
from pathlib import Path

import httpx
from PIL import Image

from arting_daemon.state import RETENTION


def stored(daemon) -> set[str]:
    return {p.stem for p in (daemon.settings.data_dir / "images").rglob("*.png")}


def age(data_dir: Path, seconds: float = 3600) -> None:
    """Make every stored file look ``seconds`` old (as if stored that long ago)."""
    then = time.time() - seconds
    for path in (data_dir / "images").rglob("*.png"):
        os.utime(path, (then, then))


def wait_until(check, timeout: float = 10):
    deadline = time.monotonic() + timeout
    while not (result := check()):
        assert time.monotonic() < deadline, "never happened"
        time.sleep(0.02)
    return result


def trimmed_below(daemon, count: int) -> set[str]:
    """The stored images, once fewer than ``count`` are left."""
    return wait_until(lambda: len(s := stored(daemon)) < count and s)


def job(daemon, seed: int, **body) -> dict:
    done = daemon.run_job(prompt="a lighthouse", size="256x256", seed=seed, **body)
    assert done["state"] == "succeeded", done
    return done


def image_of(job: dict) -> str:
    return job["images"][0]["hash"]


def png(colour: str) -> str:
    out = io.BytesIO()
    Image.new("RGB", (256, 256), colour).save(out, "PNG")
    return base64.b64encode(out.getvalue()).decode()


def test_over_its_cap_the_store_trims_to_below_it_least_recently_served_first(make_daemon):
    daemon = make_daemon(store_max_images=4)
    a, b, c, d = (job(daemon, seed) for seed in (1, 2, 3, 4))
    assert len(stored(daemon)) == 4                          # at the cap, not over it
    age(daemon.settings.data_dir)
    for served in (c, a):                                    # now b, d are the stalest
        assert httpx.get(served["images"][0]["url"]).status_code == 200
    e = job(daemon, 5)                                       # the fifth image: over

    left = trimmed_below(daemon, 4)
    assert left == {image_of(a), image_of(c), image_of(e)}
    view = httpx.get(f"{daemon.url}/arting/v1/jobs/{b['id']}").json()
    assert view["images_expired"] and view["images"][0]["expired"]
    assert httpx.get(b["images"][0]["url"]).status_code == 404
    kept = httpx.get(f"{daemon.url}/arting/v1/jobs/{a['id']}").json()
    assert not kept["images_expired"] and not kept["images"][0]["expired"]
    status = httpx.get(f"{daemon.url}/arting/v1/status").json()["store"]
    assert (status["images"], status["max_images"], status["removed"]) == (3, 4, 2)
    assert "arting_store_images 3.0" in httpx.get(f"{daemon.url}/metrics").text

    # The result cache forgets what went: asked again, b is generated anew.
    creates = len(daemon.sandbox.requests_for("create"))
    again = job(daemon, 2)
    assert again["cache"] == "miss" and len(daemon.sandbox.requests_for("create")) == creates + 1
    assert job(daemon, 1)["cache"] == "hit"                 # a is still there


def test_a_size_cap_counts_bytes(make_daemon):
    cap_bytes = 20_000                                       # a 256² emulator PNG: ~5 kB
    daemon = make_daemon(store_max_gb=cap_bytes / 1e9)
    made = []
    for seed in range(1, 7):
        made.append(image_of(job(daemon, seed)))
        age(daemon.settings.data_dir)

    def size() -> int:
        return sum(p.stat().st_size for p in (daemon.settings.data_dir / "images").rglob("*.png"))
    wait_until(lambda: daemon.app[RETENTION].removed >= 2)
    assert size() < cap_bytes
    assert stored(daemon) == set(made[-len(stored(daemon)):])   # the oldest went


def test_images_an_unfinished_job_uses_are_never_removed(make_daemon):
    daemon = make_daemon(store_max_images=2, sandbox_options={"generation_time": 0.0})
    # An image-to-image job that stays running: its init image and mask are in the store.
    daemon.do(daemon.sandbox.configure, generation_time=60)
    running = httpx.post(f"{daemon.url}/arting/v1/jobs", json={
        "prompt": "slow", "seed": 1, "init_image": png("teal"), "mask": png("white")}).json()
    daemon.wait_job(running["id"], ("running",))
    daemon.do(daemon.sandbox.configure, generation_time=0.0)
    # A job held in its download: one image stored, the other still coming.
    daemon.do(daemon.sandbox.add_fault, "slow", route="image", delay=4.0, count=1)
    downloading = httpx.post(f"{daemon.url}/arting/v1/jobs", json={
        "prompt": "two", "n": 2, "size": "256x256", "seed": 2}).json()
    held = wait_until(lambda: daemon.engine._jobs[downloading["id"]]._held or None)
    inputs = set(stored(daemon))
    assert len(inputs) == 3 and held <= inputs               # init, mask, one result
    age(daemon.settings.data_dir)                            # none of them is fresh

    finished = job(daemon, 3)                                # over the cap
    removed = daemon.call(daemon.app[RETENTION].trim())
    assert removed == [] and inputs <= stored(daemon)        # all in use, or fresh
    assert image_of(finished) in stored(daemon)

    assert daemon.wait_job(downloading["id"])["state"] == "succeeded"
    httpx.delete(f"{daemon.url}/arting/v1/jobs/{running['id']}")
    daemon.wait_job(running["id"])
    age(daemon.settings.data_dir)
    daemon.call(daemon.app[RETENTION].trim())
    assert len(stored(daemon)) == 1                          # now they may go
