"""Every fault the Arting emulator can inject, through every facade: OpenAI images and
chat, the native job API, AUTOMATIC1111.

Each case sets up the emulator (faults, or one of its modes), makes one request the
way that protocol's clients do, and checks what the client sees — the HTTP status in
that protocol's shape, the error code, the error class of the job behind it — and how
long it took to get there. Transient faults must be ridden out (the image arrives);
lasting ones must fail fast, never after a long timeout: every deadline is 20 s unless
a case is about one (then it is 1 s), and every answer must come within 5 s.

A protocol is one entry in ``FACADES``: a driver that makes the request and reports an
``Outcome``, and the status that protocol answers for an error class.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx
import openai
import pytest

from arting_daemon.errors import (ArtingError, BadUpstreamResponse, CloudflareBlocked,
                                  ContentRefused, JobFailed, StageTimeout, UpstreamAuthError,
                                  UpstreamRateLimited, UpstreamRejected, UpstreamServerError,
                                  UpstreamTimeout, UpstreamUnavailable, UpstreamUnreachable)

TERMINAL = ("succeeded", "failed", "cancelled")

#: Long deadlines: a lasting fault waited out instead of failing fast answers after 20 s,
#: four times ``WITHIN``. Cases about a deadline shorten theirs to a second.
SETTINGS = dict(request_timeout=20.0, run_timeout=20.0, retry_budget=20.0,
                submit_timeout=20.0, download_timeout=20.0)
SHORT = 1.0
WITHIN = 5.0        # seconds until the client has its answer, whatever the case


@dataclass
class Outcome:
    status: int                  # what the client got over HTTP
    code: str | None             # the error code in the protocol's body, if it has one
    message: str
    retry_after: float | None
    seconds: float               # until the client had its answer
    error_type: str | None       # the class of the job's error, read from the job record


def newest_job_error(daemon) -> str | None:
    jobs = httpx.get(daemon.url + "/arting/v1/jobs?limit=1").json()["data"]
    error = jobs[0]["error"] if jobs else None
    return error["type"] if error else None


def via_openai(daemon, prompt: str) -> Outcome:
    client = openai.OpenAI(base_url=daemon.v1, api_key="unused", max_retries=0, timeout=30)
    started = time.monotonic()
    try:
        resp = client.images.generate(prompt=prompt, response_format="b64_json")
    except openai.APIStatusError as exc:
        seconds = time.monotonic() - started
        retry_after = exc.response.headers.get("retry-after")
        return Outcome(exc.status_code, exc.code, exc.message,
                       float(retry_after) if retry_after else None, seconds,
                       newest_job_error(daemon))
    seconds = time.monotonic() - started
    assert base64.b64decode(resp.data[0].b64_json).startswith(b"\x89PNG")
    return Outcome(200, None, "", None, seconds, newest_job_error(daemon))


def via_chat(daemon, prompt: str) -> Outcome:
    """A chat app asking for a picture (Open WebUI, NextChat), through the openai SDK."""
    client = openai.OpenAI(base_url=daemon.v1, api_key="unused", max_retries=0, timeout=30)
    started = time.monotonic()
    try:
        resp = client.chat.completions.create(model="oneFORALLAnime",
                                              messages=[{"role": "user", "content": prompt}])
    except openai.APIStatusError as exc:
        retry_after = exc.response.headers.get("retry-after")
        return Outcome(exc.status_code, exc.code, exc.message,
                       float(retry_after) if retry_after else None,
                       time.monotonic() - started, newest_job_error(daemon))
    seconds = time.monotonic() - started
    assert "/arting/v1/images/" in resp.choices[0].message.content
    return Outcome(200, None, "", None, seconds, newest_job_error(daemon))


def via_jobs(daemon, prompt: str) -> Outcome:
    started = time.monotonic()
    resp = httpx.post(daemon.url + "/arting/v1/jobs", json={"prompt": prompt})
    assert resp.status_code == 202, resp.text
    job = resp.json()
    while job["state"] not in TERMINAL:
        assert time.monotonic() - started < 15, job
        time.sleep(0.01)
        job = httpx.get(job["links"]["self"]).json()
    seconds = time.monotonic() - started
    if job["state"] == "succeeded":
        assert httpx.get(job["images"][0]["url"]).content.startswith(b"\x89PNG")
        return Outcome(202, None, "", None, seconds, None)
    error = job["error"]
    return Outcome(202, error["code"], error["message"], error.get("retry_after"), seconds,
                   error["type"])


def via_sdapi(daemon, prompt: str) -> Outcome:
    """What webuiapi and SillyTavern send to A1111's txt2img."""
    started = time.monotonic()
    resp = httpx.post(daemon.url + "/sdapi/v1/txt2img", json={
        "prompt": prompt, "negative_prompt": "", "steps": 5, "batch_size": 1,
        "width": 512, "height": 512, "sampler_name": "Euler a"}, timeout=30)
    seconds = time.monotonic() - started
    body = resp.json()
    if resp.status_code == 200:
        assert base64.b64decode(body["images"][0]).startswith(b"\x89PNG")
        return Outcome(200, None, "", None, seconds, newest_job_error(daemon))
    assert set(body) == {"error", "detail", "body", "errors"}, body
    assert body["error"] == newest_job_error(daemon)    # A1111 names the class itself
    retry_after = resp.headers.get("Retry-After")
    return Outcome(resp.status_code, None, body["detail"],
                   float(retry_after) if retry_after else None, seconds, body["error"])


@dataclass(frozen=True)
class Facade:
    drive: Callable[..., Outcome]
    #: The HTTP status this protocol answers when a job ends with this error (None: success).
    status: Callable[[type[ArtingError] | None], int]


FACADES = {
    "openai": Facade(via_openai, lambda err: 200 if err is None else err.status),
    "chat": Facade(via_chat, lambda err: 200 if err is None else err.status),
    "jobs": Facade(via_jobs, lambda err: 202),   # the job API answers the submit; the
                                                  # job itself carries the error
    "sdapi": Facade(via_sdapi, lambda err: 200 if err is None else   # A1111: any exception
                    err.status if err.status < 500 else 500),     # is a 500 there
}


def F(kind: str, route: str = "*", **options) -> dict:
    return {"kind": kind, "route": route, **options}


@dataclass(frozen=True)
class Case:
    name: str
    faults: tuple[dict, ...] = ()
    config: dict = field(default_factory=dict)      # emulator modes
    settings: dict = field(default_factory=dict)    # daemon settings beside SETTINGS
    error: type[ArtingError] | None = None         # None: the image must arrive
    words: str = ""                                # must be in the error message
    prompt: str = "a lighthouse"


CASES = [
    # Cloudflare in front of Arting (docs/protocol/arting.md §7, §9.11)
    Case("cf_challenge", (F("cf_challenge"),), error=CloudflareBlocked, words="cf_clearance"),
    Case("cf_challenge_v2", (F("cf_challenge_v2"),), error=CloudflareBlocked,
         words="cf_clearance"),
    Case("cf_html_200", (F("cf_html_200"),), error=CloudflareBlocked, words="cf_clearance"),
    Case("cf_challenge once, passed", (F("cf_challenge", "create", count=1),)),
    Case("cf_1020", (F("cf_1020"),), error=CloudflareBlocked, words="network"),
    Case("cf_5xx 522, retried in the budget", (F("cf_5xx", "create", status=522),),
         settings={"retry_budget": SHORT}, error=UpstreamUnreachable),
    Case("cf_5xx 522 once", (F("cf_5xx", "create", status=522, count=1),)),
    Case("cf_5xx 524, not resent", (F("cf_5xx", "create", status=524),),
         error=UpstreamUnavailable),
    Case("cf_5xx on a poll", (F("cf_5xx", "get", count=2),)),
    Case("cf_rate_limit", (F("cf_rate_limit", "create", retry_after=60),),
         error=UpstreamRateLimited, words="1015"),
    Case("cf_rate_limit once", (F("cf_rate_limit", "create", retry_after=0.2, count=1),)),
    # Arting's own refusals and hiccups (§5, §9.12-13)
    Case("rate_limit", (F("rate_limit", "create", retry_after=60),),
         error=UpstreamRateLimited),
    Case("rate_limit once", (F("rate_limit", "create", retry_after=0.2, count=1),)),
    Case("rate_limit on polls", (F("rate_limit", "get", retry_after=0.1, count=2),)),
    Case("quota", (F("quota", "create"),), error=UpstreamRateLimited, words="credits"),
    Case("http_error 503, retried in the budget", (F("http_error", "create", status=503),),
         settings={"retry_budget": SHORT}, error=UpstreamServerError),
    Case("http_error twice, empty body",
         (F("http_error", "create", status=500, body="empty", count=2),)),
    Case("http_error on polls", (F("http_error", "get", status=502, count=2),)),
    Case("http_error on the image", (F("http_error", "image", status=503, count=2),)),
    Case("slow create", (F("slow", "create", delay=6),), settings={"request_timeout": SHORT},
         error=UpstreamTimeout),
    Case("slow polls", (F("slow", "get", delay=6),), settings={"run_timeout": SHORT},
         error=StageTimeout, words="run_timeout"),
    Case("one slow poll", (F("slow", "get", delay=6, count=1),),
         settings={"request_timeout": SHORT}),
    Case("slow image once", (F("slow", "image", delay=6, count=1),),
         settings={"request_timeout": SHORT}),
    Case("reset on create, not resent", (F("reset", "create"),), error=UpstreamUnavailable),
    Case("reset on a poll", (F("reset", "get", count=1),)),
    Case("reset on the image", (F("reset", "image", count=1),)),
    Case("truncated_json create", (F("truncated_json", "create"),),
         error=BadUpstreamResponse),
    Case("truncated_json poll", (F("truncated_json", "get", count=1),)),
    Case("token_expired", (F("token_expired", "create"),), error=UpstreamAuthError,
         words="ARTING_AUTH_TOKEN"),
    Case("invalid_token", (F("invalid_token", "create"),), error=UpstreamAuthError,
         words="ARTING_AUTH_TOKEN"),
    Case("token refused on one poll", (F("token_expired", "get", count=1),)),
    Case("reject", (F("reject", "create"),), error=UpstreamRejected,
         words="Model not supported"),
    Case("fail on create", (F("fail", "create"),), error=JobFailed),
    Case("fail on a poll", (F("fail", "get"),), error=JobFailed),
    Case("fail_code", (F("fail_code", "get"),), error=UpstreamRejected),
    Case("empty_output_done", (F("empty_output_done", "get"),), error=JobFailed,
         words="no images"),
    Case("never_finish", (F("never_finish", "create"),), settings={"run_timeout": SHORT},
         error=StageTimeout, words="run_timeout"),
    Case("expired_image", (F("expired_image", "image"),), error=BadUpstreamResponse,
         words="expired"),
    # The emulator's modes (§9.3-4, §9.14)
    Case("auth_mode jwt refuses our UUID", config={"auth_mode": "jwt"},
         error=UpstreamAuthError),
    Case("auth refusal as HTTP 401", config={"auth_mode": "jwt", "auth_error_http": True},
         error=UpstreamAuthError),
    Case("nsfw refused", config={"nsfw_mode": "refuse"}, prompt="nsfw art",
         error=ContentRefused),
    Case("errors as HTTP 4xx", config={"errors_as_http": True, "nsfw_mode": "refuse"},
         prompt="nsfw art", error=ContentRefused),
]


@pytest.mark.parametrize("facade", list(FACADES))
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_fault(make_daemon, case: Case, facade: str):
    daemon = make_daemon(**{**SETTINGS, **case.settings})
    if case.config:
        daemon.do(daemon.sandbox.configure, **case.config)
    for fault in case.faults:
        daemon.do(daemon.sandbox.add_fault, **fault)

    out = FACADES[facade].drive(daemon, case.prompt)

    assert out.status == FACADES[facade].status(case.error), out
    assert out.error_type == (case.error.__name__ if case.error else None), out
    if case.error is not None and out.code is not None:
        assert out.code == case.error.code, out
    assert out.seconds < WITHIN, out
    assert case.words in out.message, out
    if case.error is UpstreamRateLimited:
        assert out.retry_after and out.retry_after >= 1, out
