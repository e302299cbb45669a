"""The conformance kit: does a provider keep the contract (``providers/base.py``)?

It makes the provider as the daemon does (its kind's ``make``, from a ``[[providers]]``
entry validated by the daemon's settings) and drives it as the job runner does, against
an emulator of its upstream that the plugin's tests run (``Upstream``). Each rule it
checks has a name, which every failure starts with:

* ``error-mapping``: every failure is an ``ArtingError`` of the taxonomy (``errors.py``):
  refused credentials an ``UpstreamAuthError``, a failing server an ``UpstreamError``;
* ``resume-without-resubmit``: a job the upstream has (``submit`` reached it) is
  ``submitted`` from its ``provider_state`` alone, and after a restart (a new provider,
  the state as the journal keeps it: JSON) it is followed to its images, not sent again;
* ``cancel``: a cancelled ``follow`` lets go, and ``cancel`` returns, within bounds;
* ``progress``: the fractions reported are within 0..1 and never go back;
* ``no-secret``: the entry's secret is in no error, log line, ``health`` or state;
* ``bounded-answers``: an answer larger than any image the provider takes is refused
  with an error, not read to the end (nor waited for forever);
* ``images``: what ``fetch`` returns is an image (PNG, JPEG, WebP or GIF).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import aiohttp

from ..config import Settings
from ..errors import ArtingError, UpstreamAuthError, UpstreamError
from ..generation import Catalog, Generation, Rules
from ..metrics import Metrics
from ..providers.base import LoneWork, Provider
from ..providers.build import Services
from ..providers.kinds import ProviderKind, installed
from ..providers.remote import IMAGE_MAGIC
from ..store import ImageStore
from ..timing import DurationStats, Timing
from ..transport.director import Sessions, plan_of
from ..tasks import wait_for

RULES = ("error-mapping", "resume-without-resubmit", "cancel", "progress", "no-secret",
         "bounded-answers", "images")
#: The faults an emulator makes on ``Upstream.fault``, and what the provider must raise.
FAULTS: dict[str, type[ArtingError]] = {
    "unauthorized": UpstreamAuthError,      # it refuses the credentials (HTTP 401)
    "server_error": UpstreamError,          # it fails (HTTP 500)
    "oversized": ArtingError,               # it answers more than 100 MiB (never ending)
}
#: Seconds any one step may take (a job against an emulator takes far less).
STEP_BOUND = 30.0


class Upstream(Protocol):
    """An emulator of the provider's upstream, as the kit drives it."""

    #: The ``[[providers]]`` entry that reaches it (``kind``, ``base_url``, its credential).
    entry: dict[str, Any]
    #: The credential in ``entry`` that must never show.
    secret: str

    def submissions(self) -> int:
        """How many jobs the upstream has been sent so far (generation requests)."""

    def fault(self, kind: str | None) -> None:
        """From now on answer with ``kind`` (one of ``FAULTS``, or ``hold``: keep jobs
        running until told otherwise); None: answer normally again."""


@dataclass(frozen=True)
class Violation:
    rule: str
    message: str

    def __str__(self) -> str:
        return f"{self.rule}: {self.message}"


class ConformanceError(AssertionError):
    """The provider broke the contract: one line per violation, each naming its rule."""

    def __init__(self, violations: list[Violation]) -> None:
        super().__init__("the provider breaks the contract:\n" +
                         "\n".join(f"  {v}" for v in violations))
        self.violations = violations


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if record.exc_info and record.exc_info[1] is not None:
            text += f" {record.exc_info[1]}"
        self.lines.append(text)


class Harness:
    """Providers of the kind ``upstream.entry`` names, made as the daemon makes them
    (``provider()``; a restart: make another), and jobs for them (``work``), for the kit
    and for a plugin's own tests; ``found``: the violations seen so far."""

    def __init__(self, upstream: Upstream, data: Path, kind: ProviderKind | None = None
                 ) -> None:
        self.upstream = upstream
        self.kind = kind or installed()[str(upstream.entry["kind"])]
        self.data = data
        self.found: list[Violation] = []
        self.errors: list[ArtingError] = []
        self.settings = Settings(data_dir=data, providers=[upstream.entry],
                                 request_timeout=10.0, poll_min_interval=0.02,
                                 poll_max_interval=0.2)
        self.cfg = next(p for p in self.settings.providers if p.name == upstream.entry["name"])
        self.jobs = 0

    def fail(self, rule: str, message: str) -> None:
        self.found.append(Violation(rule, message))

    @contextlib.asynccontextmanager
    async def provider(self) -> AsyncIterator[Provider]:
        """A provider made as the daemon makes it (a restart: make another)."""
        async with contextlib.AsyncExitStack() as stack:
            http = aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar())
            stack.push_async_callback(http.close)
            sessions = Sessions(http, plan_of(self.settings, {}))
            stack.push_async_callback(sessions.close)
            services = Services(self.settings, sessions, ImageStore(self.data / "images"),
                                DurationStats(Timing.of(self.settings)), Metrics(),
                                Catalog(Rules.of(self.settings)))
            yield await stack.enter_async_context(self.kind.make(services, self.cfg))

    def work(self, provider: Provider) -> LoneWork:
        self.jobs += 1
        entry = self.upstream.entry
        models = entry.get("models")
        model = getattr(self.upstream, "model", None) or (
            models[0] if isinstance(models, list) and models else
            next(iter(self.kind.models), ""))
        gen = Generation(prompt="a lighthouse at dusk", model=model, width=512, height=512,
                         seed=1234 + self.jobs, n=1)
        return LoneWork(f"kit-{self.jobs}", gen, provider.name)

    async def step(self, rule: str, what: str, work: Any) -> Any:
        """``work`` within the bound; a failure that is no ``ArtingError`` is reported
        (``error-mapping``), a hang under ``rule``. Raises what it raised."""
        try:
            return await wait_for(work, STEP_BOUND)
        except asyncio.TimeoutError:
            self.fail(rule, f"{what} took longer than {STEP_BOUND:g} s")
            raise
        except ArtingError as exc:
            self.errors.append(exc)
            raise
        except Exception as exc:
            self.fail("error-mapping", f"{what} raised {type(exc).__name__} ({exc}), not an "
                      "ArtingError of the taxonomy (errors.py): map it where the provider "
                      "reads the upstream's answer")
            raise

    def progress(self, seen: list[float]) -> Any:
        def report(fraction: float) -> None:
            if not 0.0 <= fraction <= 1.0:
                self.fail("progress", f"reported {fraction}, outside 0..1")
            elif seen and fraction < seen[-1]:
                self.fail("progress", f"went back from {seen[-1]} to {fraction}")
            seen.append(fraction)
        return report


async def _generate_across_restart(run: Harness) -> None:
    """Submit with one provider, follow and fetch with the next (a restart between)."""
    up = run.upstream
    before = up.submissions()
    async with run.provider() as first:
        work = run.work(first)
        first.admit(work.generation)
        async with first.attempt(work, _deadline()) as attempt:
            work.submitted_at = await run.step("resume-without-resubmit", "submit",
                                               attempt.submit())
        reached = up.submissions() > before
        if reached and not first.submitted(work):
            run.fail("resume-without-resubmit", "the upstream has the job after submit(), "
                     "but submitted() says it has not: after a restart it would be sent "
                     "again (keep what finds it in provider_state)")
    try:
        kept = json.loads(json.dumps(work.provider_state))
    except (TypeError, ValueError) as exc:
        run.fail("resume-without-resubmit", f"provider_state is not JSON ({exc}); the "
                 "journal could not keep it")
        return
    if up.secret in json.dumps(kept):
        run.fail("no-secret", "provider_state holds the secret (the journal is written "
                 "to disk)")
    work.provider_state.clear()
    work.provider_state.update(kept)
    seen: list[float] = []
    async with run.provider() as second:        # the daemon restarted
        resumed = second.submitted(work)
        if reached and not resumed:
            return                              # reported above
        async with second.attempt(work, _deadline()) as attempt:
            if not resumed:
                await run.step("resume-without-resubmit", "submit", attempt.submit())
            outputs = await run.step("progress", "follow", attempt.follow(run.progress(seen)))
        if reached and up.submissions() > before + 1:
            run.fail("resume-without-resubmit", f"the upstream was sent the job "
                     f"{up.submissions() - before} times across a restart; a job that is "
                     "submitted() must be followed, not sent again")
        for output in outputs:
            data = await run.step("images", "fetch", second.fetch(work, output))
            if not isinstance(data, bytes) or not data[:8].startswith(IMAGE_MAGIC):
                run.fail("images", f"fetch({output!r}) returned no image")
        if not outputs:
            run.fail("images", "follow returned no outputs for a job of one image")


async def _cancel(run: Harness) -> None:
    """A job held upstream is cancelled while followed: ``follow`` lets go, ``cancel``
    returns."""
    up = run.upstream
    up.fault("hold")
    try:
        async with run.provider() as provider:
            work = run.work(provider)
            before = up.submissions()
            async with provider.attempt(work, _deadline()) as attempt:
                if not provider.submitted(work):
                    work.submitted_at = await run.step("cancel", "submit", attempt.submit())
                following = asyncio.ensure_future(attempt.follow(lambda fraction: None))
                for _ in range(500):            # until the upstream has it (≤ 5 s)
                    if up.submissions() > before or following.done():
                        break
                    await asyncio.sleep(0.01)
                following.cancel()
                done, _ = await asyncio.wait([following], timeout=10.0)
                if not done:
                    run.fail("cancel", "follow did not stop within 10 s of being cancelled")
                    return
                if not following.cancelled() and following.exception() is not None:
                    exc = following.exception()
                    if not isinstance(exc, ArtingError):
                        run.fail("error-mapping", f"a cancelled follow raised "
                                 f"{type(exc).__name__}, not an ArtingError")
            if provider.submitted(work):
                with contextlib.suppress(ArtingError):
                    await run.step("cancel", "cancel", provider.cancel(work))
    finally:
        up.fault(None)


async def _fault(run: Harness, fault: str) -> None:
    """With the upstream answering ``fault``, a job fails with the error that means."""
    up = run.upstream
    rule = "bounded-answers" if fault == "oversized" else "error-mapping"
    up.fault(fault)
    try:
        async with run.provider() as provider:
            work = run.work(provider)
            try:
                async with provider.attempt(work, _deadline()) as attempt:
                    if not provider.submitted(work):
                        await run.step(rule, f"submit ({fault})", attempt.submit())
                    outputs = await run.step(rule, f"follow ({fault})",
                                             attempt.follow(lambda fraction: None))
                    for output in outputs:
                        await run.step(rule, f"fetch ({fault})", provider.fetch(work, output))
            except ArtingError as exc:
                if not isinstance(exc, FAULTS[fault]):
                    run.fail(rule, f"an upstream answering {fault} raised "
                             f"{type(exc).__name__}, not {FAULTS[fault].__name__}")
            except (Exception, asyncio.TimeoutError):
                pass                            # reported by step
            else:
                run.fail(rule, f"the job succeeded though the upstream answered {fault}")
    finally:
        up.fault(None)


def _secrets(run: Harness, records: _Records, health: list[dict[str, Any]]) -> None:
    secret = run.upstream.secret
    for exc in run.errors:
        if secret in str(exc) or secret in json.dumps(exc.to_dict(), default=str):
            run.fail("no-secret", f"an error ({type(exc).__name__}) holds the secret; errors "
                     "reach clients and logs")
            break
    if any(secret in line for line in records.lines):
        run.fail("no-secret", "a log line holds the secret (write what it is, not its value)")
    if any(secret in json.dumps(h, default=str) for h in health):
        run.fail("no-secret", "health() holds the secret; the status shows it")


def _deadline() -> float:
    return time.time() + STEP_BOUND


@contextlib.contextmanager
def _registered(kind: ProviderKind | None, name: str) -> Iterator[ProviderKind]:
    """The kind to check: the one given (registered for the run), else the installed."""
    kinds = installed()
    if kind is None:
        found = kinds.get(name)
        if found is None:
            raise ConformanceError([Violation("installed", kinds.missing(name))])
        yield found
        return
    before = kinds.kinds.get(name)
    kinds.kinds[name] = kind
    try:
        yield kind
    finally:
        if before is None:
            del kinds.kinds[name]
        else:
            kinds.kinds[name] = before


async def conformance(upstream: Upstream, kind: ProviderKind | None = None,
                      data_dir: Path | None = None) -> list[Violation]:
    """Every violation of the contract found (none: it conforms). ``kind``: check this
    one instead of the installed kind the entry names."""
    records = _Records()
    root = logging.getLogger()
    level = root.level
    root.addHandler(records)
    root.setLevel(logging.DEBUG)
    try:
        with contextlib.ExitStack() as stack:
            data = data_dir or Path(stack.enter_context(tempfile.TemporaryDirectory()))
            chosen = stack.enter_context(_registered(kind, str(upstream.entry["kind"])))
            run = Harness(upstream, data, chosen)
            health: list[dict[str, Any]] = []
            for rule, check in (("images", _generate_across_restart), ("cancel", _cancel)):
                try:
                    await check(run)
                except ArtingError as exc:
                    run.fail(rule, f"a job against the emulator failed: {exc.message}")
                except (Exception, asyncio.TimeoutError):
                    pass                        # reported by step
            for fault in FAULTS:
                with contextlib.suppress(Exception, asyncio.TimeoutError):
                    await _fault(run, fault)
            async with run.provider() as provider:
                health.append(provider.health())
            _secrets(run, records, health)
            return run.found
    finally:
        root.removeHandler(records)
        root.setLevel(level)


async def check_provider(upstream: Upstream, kind: ProviderKind | None = None,
                         data_dir: Path | None = None) -> None:
    """Raise ``ConformanceError`` (an ``AssertionError``, naming each rule broken) unless
    the provider keeps the contract."""
    found = await conformance(upstream, kind, data_dir)
    if found:
        raise ConformanceError(found)
