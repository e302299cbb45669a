"""Midjourney and Stability AI jobs with replicas: real daemon processes on a real Redis
(the fixtures of ``test_replicas.py``) in front of the providers' emulators. A job whose
replica dies is taken over by another, which follows the task it was given upstream (the
Midjourney task, Stability's creative upscale ids) and never submits it again; a
Stability generation call, which nothing can follow, is failed rather than sent twice."""

from __future__ import annotations

import json
import signal

import httpx
import pytest
from processes import Emulator, emulators
from test_providers import png
from test_replicas import (ADMIN, bearer, cluster, emulator, finished,  # noqa: F401 (fixtures)
                           job_of, pytestmark, redis_server, submit, until)

from arting_daemon.sandbox.midjourney import MidjourneyEmulator
from arting_daemon.sandbox.stability import StabilityEmulator

MJ_SECRET = "mj-replicas-secret-5512"
SAI_KEY = "sk-stability-replicas-0042"


@pytest.fixture
def proxy():
    with emulators(MidjourneyEmulator, generation_time=4.0, upscale_time=4.0,
                   api_secret=MJ_SECRET, quadrant_pixels=64 * 64) as start:
        yield start()


@pytest.fixture
def sai():
    with emulators(StabilityEmulator, api_keys=[SAI_KEY], pixels=64 * 64, upscale_time=4.0,
                   creative_status=202) as start:
        yield start()


def providers(*entries: dict) -> dict[str, str]:
    return {"ARTING_PROVIDERS": json.dumps(list(entries))}


def midjourney(proxy: Emulator) -> dict:
    return {"name": "mj", "kind": "midjourney", "base_url": proxy.url + "/mj",
            "api_key": MJ_SECRET}


def stability(sai: Emulator, **extra) -> dict:
    return {"name": "sai", "kind": "stability", "base_url": sai.url, "api_key": SAI_KEY,
            **extra}


def kill(daemon) -> None:
    daemon.proc.send_signal(signal.SIGKILL)
    daemon.proc.wait(5)


def taken_over(cluster, dead, job_id: str, survivor) -> dict:
    """Kill the replica running the job; the job as it ends on another."""
    kill(dead)
    done = finished(survivor, job_id, timeout=40)
    logs = "".join(d.log.read_text() for d in cluster.started if d is not dead)
    assert "took over job" in logs
    return done


def test_a_midjourney_job_is_followed_by_its_task_on_another_replica(cluster, proxy):
    env = providers(midjourney(proxy))
    a, b = cluster.start(**env), cluster.start(**env)
    job = submit(a, model="midjourney", n=3, seed=9).json()
    until(lambda: job_of(b, job["id"])["state"] == "running" and proxy.sandbox.tasks)
    done = taken_over(cluster, a, job["id"], b)
    assert done["state"] == "succeeded" and len(done["images"]) == 3, done
    assert [i["seed"] for i in done["images"]] == [9] * 3
    assert len(proxy.sandbox.requests_for("imagine")) == 1          # never submitted again
    [task] = proxy.sandbox.tasks
    assert {r.path for r in proxy.sandbox.requests_for("fetch")} == {f"/mj/task/{task}/fetch"}


def test_a_midjourney_upscale_is_followed_by_its_tasks_on_another_replica(cluster, proxy):
    proxy.configure(generation_time=0.2)
    env = providers(midjourney(proxy))
    a, b = cluster.start(**env), cluster.start(**env)
    made = finished(a, submit(a, model="midjourney", n=2, seed=4).json()["id"])
    assert made["state"] == "succeeded", made
    resp = httpx.post(f"{a.url}/arting/v1/jobs", headers=bearer(ADMIN), json={
        "kind": "upscale", "scale": 2, "images": [i["hash"] for i in made["images"]]})
    assert resp.status_code == 202, resp.text
    job = resp.json()
    until(lambda: job_of(b, job["id"])["state"] == "running")
    done = taken_over(cluster, a, job["id"], b)
    assert (done["state"], done["provider"]) == ("succeeded", "mj"), done
    assert [(i["width"], i["height"]) for i in done["images"]] == [(128, 128)] * 2
    assert sorted(r.body["index"] for r in proxy.sandbox.requests_for("change")) == [1, 2]


def test_a_creative_upscale_is_followed_by_its_ids_on_another_replica(cluster, sai):
    env = {**providers(stability(sai, upscale="creative")), "ARTING_UPSCALE": "false"}
    a, b = cluster.start(**env), cluster.start(**env)
    resp = httpx.post(f"{a.url}/arting/v1/jobs", headers=bearer(ADMIN), json={
        "kind": "upscale", "scale": 2, "images": [png(40, 30), png(30, 40)]})
    assert resp.status_code == 202, resp.text
    job = resp.json()
    until(lambda: job_of(b, job["id"])["state"] == "running"
          and len(sai.sandbox.requests_for("upscale")) == 2)
    done = taken_over(cluster, a, job["id"], b)
    assert (done["state"], done["provider"]) == ("succeeded", "sai"), done
    assert [(i["width"], i["height"]) for i in done["images"]] == [(80, 60), (60, 80)]
    assert len(sai.sandbox.requests_for("upscale")) == 2             # never sent again
    assert {r.path.rsplit("/", 1)[1] for r in sai.sandbox.requests_for("results")} == \
        set(sai.sandbox.results)


def test_a_stability_call_in_flight_is_failed_not_sent_twice(cluster, sai):
    sai.do(sai.sandbox.add_fault, "slow", route="generate", delay=30, count=1)
    env = providers(stability(sai))
    a, b = cluster.start(**env), cluster.start(**env)
    job = submit(a, model="core", seed=3).json()
    until(lambda: job_of(b, job["id"])["state"] == "running" and sai.sandbox.in_flight)
    done = taken_over(cluster, a, job["id"], b)
    assert done["state"] == "failed" and "submit it again" in done["error"]["message"], done
    assert len(sai.sandbox.requests_for("generate")) == 1
