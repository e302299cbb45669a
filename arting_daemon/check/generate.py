"""The checks that spend a generation: ``--generate`` (one small text-to-image job) and
``--img2img`` (one image-to-image job on the unconfirmed endpoint).

A job is followed the way the daemon follows one, through the same client, but judged
without the daemon's assumptions: it is done when ``output`` holds images, whatever
``status`` says. What Arting said on the way (the literals while pending and when
done, the image hosts, the image itself) is then held against the settings, and each
difference becomes the ``arting.toml`` line that fixes it.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from PIL import Image

from ..errors import ArtingError, BadUpstreamResponse, JobFailed, UpstreamRejected
from ..generation import Catalog, Generation, Rules, build_generation
from ..store import to_png
from ..recording import Exchange
from ..providers.arting.client import ArtingClient
from .context import (Context, Identity, api_answer, describe, envelope, envelope_data,
                      shape)

PROMPT = "a small red apple on a wooden table, soft daylight"
IMG2IMG_PROMPT = "the same picture as a watercolour painting"
SIZE = "512x512"
#: Polls in a row that must show a finished-or-failed literal with no images before the
#: job counts as failed (a literal the settings misread would change before that).
SETTLE_POLLS = 3
#: Failed polls (no usable answer) in a row before the check gives up on the job.
MAX_POLL_ERRORS = 5


def describe_generation(settings, img2img: bool = False) -> str:
    what = "an image-to-image job" if img2img else "one image"
    return f"{what} ({SIZE}, model {settings.default_model})"


@dataclass
class Fetched:
    """A result image as the check got it, or why it could not."""

    url: str
    data: bytes = b""
    format: str | None = None           # as Pillow names it: PNG, JPEG, WEBP ...
    size: tuple[int, int] = (0, 0)
    problem: str | None = None          # why it is no image the daemon can store


@dataclass
class Run:
    """One job as it went."""

    gen: Generation
    request_id: str | None = None
    to_request_id: float | None = None
    polls: int = 0
    statuses: list = field(default_factory=list)      # data.status of each answered poll
    urls: list[str] = field(default_factory=list)
    ended: str = ""                     # done, failed, timeout, create_failed
    error: ArtingError | None = None
    create_answer: Exchange | None = None
    balance: int | None = None          # the identity's remain_balance at the last poll
    total: float = 0.0
    images: list[Fetched] = field(default_factory=list)


async def run_job(ctx: Context, client: ArtingClient, identity: Identity, gen: Generation,
                  step: str, image_url: str | None = None) -> Run:
    """Create, poll until the images are there (or the job failed, or ``run_timeout``),
    download the images from admitted hosts."""
    settings = ctx.settings
    run = Run(gen)
    started = time.monotonic()
    with ctx.recorder.step(step) as made:
        try:
            run.request_id = await client.create(gen, identity.secret, image_url)
        except ArtingError as exc:
            run.ended, run.error = "create_failed", exc
        run.create_answer = api_answer(made)
        if run.create_answer is not None:
            run.create_answer.outcome = "created" if run.request_id else "refused"
        if run.request_id is None:
            run.total = time.monotonic() - started
            return run
        run.to_request_id = time.monotonic() - started
        await _follow(ctx, client, identity, run, made, started + settings.run_timeout)
        run.total = time.monotonic() - started
        for url in run.urls:
            if url.startswith("data:") or client.outbound.trusted(_host(url)):
                run.images.append(await _fetch(client, url))
    return run


async def _fetch(client: ArtingClient, url: str) -> Fetched:
    """Download one result as the daemon does, and decode it (in a thread) as its store
    would have to."""
    try:
        data = await client.download(url)
    except ArtingError as exc:
        return Fetched(url, problem=exc.message)
    try:
        kind, size = await asyncio.to_thread(_decode, data)
    except Exception as exc:  # Pillow raises many kinds for many formats
        return Fetched(url, data, problem=f"it does not decode ({type(exc).__name__}; "
                                          f"{len(data)} bytes)")
    return Fetched(url, data, kind, size)


def _decode(data: bytes) -> tuple[str, tuple[int, int]]:
    with Image.open(io.BytesIO(data)) as img:
        img.load()
        return img.format or "?", img.size


async def _follow(ctx: Context, client: ArtingClient, identity: Identity, run: Run,
                  made: list[Exchange], deadline: float) -> None:
    settings = ctx.settings
    ends = {s.lower() for s in (*settings.done_statuses, *settings.failed_statuses)}
    interval = min(max(settings.poll_min_interval, 1.0), settings.poll_max_interval)
    delay, settled, errors = interval, 0, 0
    while True:
        if time.monotonic() + delay > deadline:
            run.ended = "timeout"
            return
        await asyncio.sleep(delay)
        delay = interval
        before = len(made)
        failed: ArtingError | None = None
        try:
            result = await client.poll(run.request_id or "", identity.secret,
                                       run.gen.is_img2img)
            run.balance = result.balance if result.balance is not None else run.balance
        except (JobFailed, BadUpstreamResponse, UpstreamRejected) as exc:
            failed = exc                  # answered, and the daemon would stop the job here
        except ArtingError as exc:                        # no usable answer: try again
            errors += 1
            if errors >= MAX_POLL_ERRORS:
                run.ended, run.error = "failed", exc
                return
            continue
        errors = 0
        answer = api_answer(made[before:])
        data = envelope_data(answer)
        status = data.get("status")
        output = data.get("output")
        urls = [u for u in output if isinstance(u, str)] if isinstance(output, list) else []
        run.polls += 1
        run.statuses.append(status)
        if urls:
            run.urls, run.ended = urls, "done"
            _mark(answer, "done")
            return
        if failed is None and str(status).lower() not in ends:
            settled = 0
        elif run.statuses[-2:-1] == [status]:
            settled += 1
        else:
            settled = 1
        if settled >= SETTLE_POLLS:
            run.ended, run.error = "failed", failed
            _mark(answer, "failed")
            return
        _mark(answer, "pending")


def _mark(answer: Exchange | None, outcome: str) -> None:
    if answer is not None:
        answer.outcome = outcome


def _host(url: str) -> str:
    return (urlsplit(url).hostname or "").lower()


# --- judging a run ----------------------------------------------------------------------

def judge(ctx: Context, client: ArtingClient, run: Run, prefix: str = "",
          bad: str = "fail") -> None:
    """Findings for one run: the job, the status literals, the image hosts, the images.
    ``bad`` is the level of what would break the daemon: ``warn`` for a feature it has
    switched off."""
    report, proposal = ctx.report, ctx.report.proposal

    def topic(name: str) -> str:
        return f"{prefix} {name}".strip()

    if run.ended == "create_failed":
        report.add(topic("generate"), bad, f"Arting refused to create the job "
                   f"({describe(run.create_answer)}): "
                   + (run.error.message if run.error else "no reason given"))
        return
    _judge_literals(ctx, run, topic, bad)
    summary = (f"request_id after {run.to_request_id:.2f} s, {run.polls} "
               f"poll{'s' if run.polls != 1 else ''}, {run.total:.1f} s in all")
    data = {"to_request_id": round(run.to_request_id or 0, 3), "polls": run.polls,
            "total": round(run.total, 3), "statuses": _unique(run.statuses)}
    if run.ended == "timeout":
        report.add(topic("generate"), bad, f"no images within run_timeout "
                   f"({ctx.settings.run_timeout:g} s): {summary}; statuses seen: "
                   f"{_shown(run.statuses)}.", **data)
        return
    if run.ended == "failed":
        report.add(topic("generate"), bad, f"the job failed: {summary}; statuses seen: "
                   f"{_shown(run.statuses)}"
                   + (f" ({run.error.message})" if run.error else "") + ".", **data)
        return
    report.add(topic("generate"), "ok", f"{len(run.urls)} image{'s' if len(run.urls) > 1 else ''}"
               f": {summary}.", **data)
    for host in dict.fromkeys(_host(u) for u in run.urls if not u.startswith("data:")):
        if client.outbound.trusted(host):
            report.add(topic("image host"), "ok", f"the images come from {host}, which "
                       "image_hosts admits.", host=host)
        else:
            report.add(topic("image host"), bad, f"the images come from {host}, which "
                       "image_hosts does not admit: the daemon would refuse to download them. "
                       "(Not downloaded; run the check again after adding it.)",
                       [proposal.add("image_hosts", host)], host=host)
    if any(u.startswith("data:") for u in run.urls):
        report.add(topic("image host"), "info", "the images come inline, as data: URLs.")
    for fetched in run.images:
        _judge_image(ctx, run.gen, fetched, topic("image"), bad)
    if run.balance is not None:
        report.add(topic("balance"), "warn" if run.balance <= 0 else "info",
                   f"Arting says {run.balance} remain{'s' if run.balance == 1 else ''} for "
                   "this identity after the job (`remain_balance`)"
                   + (": at 0 it refuses further jobs; add another token." if run.balance <= 0
                      else "."), balance=run.balance)


def _judge_literals(ctx: Context, run: Run, topic, bad: str) -> None:
    report, proposal = ctx.report, ctx.report.proposal
    done_set = {s.lower() for s in proposal.current("done_statuses")}
    failed_set = {s.lower() for s in proposal.current("failed_statuses")}
    running, last = _phases(run)
    findings: list[tuple[str, str, str | None]] = []
    for status in running:
        text = str(status).lower()
        if text in failed_set:
            findings.append((bad, f"Arting said {status!r} while the job was still running, "
                             "but failed_statuses lists it: the daemon would fail every job.",
                             proposal.remove("failed_statuses", str(status))))
        elif text in done_set:
            findings.append((bad, f"Arting said {status!r} while the job was still running, "
                             "but done_statuses lists it: the daemon would fail every job as "
                             "finished without images.",
                             proposal.remove("done_statuses", str(status))))
    if run.ended == "done":
        if last is None:
            findings.append(("info", "the finished job's answer has no `status`: the daemon "
                             "goes by the images.", None))
        elif str(last).lower() not in done_set:
            findings.append(("warn", f"Arting said {last!r} when done, which done_statuses "
                             "does not list (the daemon finishes on the images anyway, but a "
                             "finished job without images would wait for run_timeout).",
                             proposal.add("done_statuses", str(last))))
    elif last is not None and str(last).lower() not in failed_set:
        findings.append((bad, f"the job stopped at {last!r}, which failed_statuses does not "
                         "list: if it means failed, the daemon should stop there too.",
                         proposal.add("failed_statuses", str(last))))
    data = {"pending": running, "last": last, "ended": run.ended}
    for level, message, line in findings:
        report.add(topic("status"), level, message, [line] if line else [], **data)
    if not findings and last is not None:      # (a job still running at the end: see generate)
        said = f"while running {_shown(running)}" if running else "no answer while running"
        report.add(topic("status"), "ok", f"{said}; {run.ended} {last!r}: as the settings "
                   "expect.", **data)


def _phases(run: Run) -> tuple[list, object]:
    """The literals seen while the job ran, and the one it ended on (None: still running)."""
    statuses = run.statuses
    if not statuses:
        return [], None
    if run.ended == "done":
        return _unique(statuses[:-1]), statuses[-1]
    if run.ended == "failed":
        cut = len(statuses)
        while cut and statuses[cut - 1] == statuses[-1]:
            cut -= 1
        return _unique(statuses[:cut]), statuses[-1]
    seen = _unique(statuses)            # timed out: a literal it changed to may be an ending
    return (seen[:-1], seen[-1]) if len(seen) > 1 else (seen, None)


def _judge_image(ctx: Context, gen: Generation, fetched: Fetched, topic: str,
                 bad: str) -> None:
    if fetched.problem is not None:
        problem = fetched.problem.rstrip(".")
        ctx.report.add(topic, bad, f"the result could not be used: {problem}.", url=fetched.url)
        return
    width, height = fetched.size
    facts = {"format": fetched.format, "width": width, "height": height,
             "bytes": len(fetched.data)}
    said = f"{fetched.format}, {width}×{height}, {len(fetched.data) // 1024} kB"
    if (width, height) != (gen.width, gen.height):
        ctx.report.add(topic, "info", f"{said}, where {gen.width}×{gen.height} was asked for: "
                       "clients get the size Arting made.", **facts)
    elif fetched.format != "PNG":
        ctx.report.add(topic, "ok", f"{said} as asked; the daemon keeps it as PNG.", **facts)
    else:
        ctx.report.add(topic, "ok", f"{said}, as asked.", **facts)


def _unique(items: list) -> list:
    out: list = []
    for item in items:
        if item not in out:
            out.append(item)
    return out


def _shown(statuses: list) -> str:
    return ", ".join(repr(s) for s in _unique(statuses)) or "none"


# --- the two runs ---------------------------------------------------------------------------

async def check_generate(ctx: Context, client: ArtingClient, identity: Identity) -> bytes | None:
    """``--generate``: one small image. Returns it (the init image for ``--img2img``)."""
    rules = Rules.of(ctx.settings)
    gen = build_generation(rules, Catalog(rules), prompt=PROMPT, size=SIZE, nsfw=False)
    run = await run_job(ctx, client, identity, gen, "generate")
    judge(ctx, client, run)
    return next((f.data for f in run.images if f.problem is None), None)


async def check_img2img(ctx: Context, client: ArtingClient, identity: Identity,
                        init: bytes | None) -> None:
    """``--img2img``: the unconfirmed endpoint, with the configured transport (inline when
    Arting has no signed upload). Says whether to set ``img2img``."""
    settings, report = ctx.settings, ctx.report
    bad = "fail" if settings.img2img else "warn"      # off, the daemon does not need it
    # The daemon sends its store's PNGs: so does the check (Arting may have sent another type).
    init = await asyncio.to_thread(to_png, init) if init else \
        await asyncio.to_thread(_test_picture)
    rules = Rules.of(settings)
    gen = build_generation(rules, Catalog(rules), prompt=IMG2IMG_PROMPT, size=SIZE, nsfw=False,
                           init_image=hashlib.sha256(init).hexdigest(), strength=0.6)
    image_url, missing = None, None
    if settings.img2img_transport == "signed_url":
        with ctx.recorder.step("img2img upload") as made:
            try:
                image_url, failure = await client.upload(init, identity.secret), None
            except ArtingError as exc:
                failure = exc
        sign = api_answer(made)
        put = next((e for e in made if e.method == "PUT"), None)
        _mark(sign, "signed" if put is not None else
              "missing" if _absent(ctx, sign) else "refused")
        _mark(put, "uploaded" if image_url else "refused")
        if failure is not None and put is None and _absent(ctx, sign):
            missing = f"get_oss_signed_urls: {describe(sign)}"
        elif failure is not None:
            report.add("image-to-image", bad, f"the upload of the init image failed: "
                       f"{failure.message}")
            return
    if image_url is None:
        image_url = "data:image/png;base64," + base64.b64encode(init).decode()
    run = await run_job(ctx, client, identity, gen, "img2img", image_url)
    if run.ended == "create_failed" and _absent(ctx, run.create_answer):
        _mark(run.create_answer, "missing")
        said = f"Arting has no image-to-image endpoint ({describe(run.create_answer)})"
        if settings.img2img:
            report.add("image-to-image", "fail", f"{said}: with img2img on, every edit would "
                       "fail.", [report.proposal.set("img2img", False)])
        else:
            report.add("image-to-image", "ok", f"{said}: keep img2img off.")
        return
    judge(ctx, client, run, prefix="image-to-image", bad=bad)
    if run.ended != "done" or not any(f.problem is None for f in run.images):
        return
    lines = []
    if missing:
        lines.append(report.proposal.set("img2img_transport", "data_url"))
    if not settings.img2img:
        lines.append(report.proposal.set("img2img", True))
    said = "image-to-image works" + (f" with the init image inline (no signed upload: "
                                     f"{missing})" if missing else "")
    report.add("image-to-image", "info" if lines else "ok",
               said + (": switch it on." if not settings.img2img else "."), lines)


def _absent(ctx: Context, answer: Exchange | None) -> bool:
    """An endpoint that is not there: answered as a path that does not exist is, or with
    a bare 404 or 405."""
    if answer is None:
        return False
    if ctx.absent is not None and shape(answer) == ctx.absent.shape:
        return True
    return answer.status in (404, 405) and envelope(answer) is None


def _test_picture() -> bytes:
    """A small init image for ``--img2img`` when ``--generate`` made none."""
    img = Image.linear_gradient("L").resize((512, 512)).convert("RGB")
    out = io.BytesIO()
    img.save(out, "PNG")
    return out.getvalue()
