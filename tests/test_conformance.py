"""The conformance kit (``arting_daemon.testing``): the built-in kinds pass it against
their emulators and stand-ins, over real sockets (Arting, Midjourney's proxy, Stability AI,
AUTOMATIC1111, an OpenAI-compatible server); providers that break the contract fail it,
each with a message naming the rule broken."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import io
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from aiohttp import web
from PIL import Image

from a1111_standin import A1111StandIn

from arting_daemon.errors import UpstreamAuthError
from arting_daemon.providers import builtin
from arting_daemon.providers.midjourney import provider as mj
from arting_daemon.sandbox import Sandbox
from arting_daemon.sandbox.emulator import oversized
from arting_daemon.sandbox.midjourney import MidjourneyEmulator
from arting_daemon.sandbox.stability import StabilityEmulator
from arting_daemon.testing import ConformanceError, check_provider, conformance

MJ_SECRET = "mj-secret-kit-5150"
SAI_KEY = "sk-stability-kit-8128"
A1111_PASSWORD = "webui-pass-kit-3030"
OPENAI_KEY = "sk-openai-kit-4242"
ARTING_TOKEN = "5e1f7a2b-kit0-4c7d-8e9f-a0b1c2d3e4f5"
HOLD = 120.0     # seconds a held job would take: longer than the kit waits


class MidjourneyUpstream:
    def __init__(self, emulator: MidjourneyEmulator) -> None:
        self.emulator, self.secret = emulator, MJ_SECRET
        self.entry: dict[str, Any] = {"name": "mj", "kind": "midjourney",
                                      "base_url": f"{emulator.url}/mj", "api_key": MJ_SECRET}

    def submissions(self) -> int:
        return len(self.emulator.requests_for("imagine"))

    def fault(self, kind: str | None) -> None:
        self.emulator.clear_faults()
        self.emulator.configure(generation_time=HOLD if kind == "hold" else 0.2)
        if kind in ("unauthorized", "oversized"):
            self.emulator.add_fault(kind)
        elif kind == "server_error":
            self.emulator.add_fault("http_error", status=500)


class StabilityUpstream:
    def __init__(self, emulator: StabilityEmulator) -> None:
        self.emulator, self.secret = emulator, SAI_KEY
        self.entry: dict[str, Any] = {"name": "sai", "kind": "stability",
                                      "base_url": emulator.url, "api_key": SAI_KEY}

    def submissions(self) -> int:
        return len(self.emulator.requests_for("generate"))

    def fault(self, kind: str | None) -> None:
        self.emulator.clear_faults()
        self.emulator.configure(api_keys=["sk-other"] if kind == "unauthorized" else [SAI_KEY])
        if kind == "hold":
            self.emulator.add_fault("slow", route="generate", delay=HOLD)
        elif kind == "oversized":
            self.emulator.add_fault("oversized")
        elif kind == "server_error":
            self.emulator.add_fault("http_error", status=500)


class A1111Upstream:
    def __init__(self, standin: A1111StandIn) -> None:
        self.standin, self.secret = standin, A1111_PASSWORD
        self.entry: dict[str, Any] = {"name": "webui", "kind": "a1111",
                                      "base_url": standin.url, "username": "kit",
                                      "password": A1111_PASSWORD}

    def submissions(self) -> int:
        return len(self.standin.requests)

    def fault(self, kind: str | None) -> None:
        s = self.standin
        s.fail_with = (500, {"error": "OutOfMemoryError", "detail": "CUDA out of memory"}) \
            if kind == "server_error" else None
        s.auth = "Basic " + base64.b64encode(
            f"kit:{'wrong' if kind == 'unauthorized' else A1111_PASSWORD}".encode()).decode()
        s.oversized = kind == "oversized"
        s.hold_at = 1 if kind == "hold" else None
        if kind is None:
            s.release()


class OpenAIImages:
    """A server with OpenAI's Images API (generations and models), at least the part the
    ``openai`` kind uses, with the kit's faults."""

    def __init__(self) -> None:
        self.secret = OPENAI_KEY
        self.made = 0
        self.kind: str | None = None
        self.released = asyncio.Event()
        self.runner: web.AppRunner | None = None
        self.entry: dict[str, Any] = {}

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/v1/images/generations", self.generate)
        app.router.add_get("/v1/models", self.models)
        self.runner = web.AppRunner(app, handler_cancellation=True)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", 0).start()
        url = f"http://127.0.0.1:{self.runner.addresses[0][1]}/v1"
        self.entry = {"name": "relay", "kind": "openai", "base_url": url,
                      "api_key": OPENAI_KEY, "models": ["paint-1"]}
        self.released.set()

    def submissions(self) -> int:
        return self.made

    def fault(self, kind: str | None) -> None:
        self.kind = kind
        (self.released.clear if kind == "hold" else self.released.set)()

    async def generate(self, request: web.Request) -> web.StreamResponse:
        self.made += 1
        if self.kind == "unauthorized" or \
                request.headers.get("Authorization") != f"Bearer {OPENAI_KEY}":
            return web.json_response({"error": {"message": "Incorrect API key provided"}},
                                     status=401)
        if self.kind == "server_error":
            return web.json_response({"error": {"message": "The server had an error"}},
                                     status=500)
        if self.kind == "oversized":
            return await oversized(request)
        await self.released.wait()
        body = await request.json()
        out = io.BytesIO()
        Image.new("RGB", (64, 64), "teal").save(out, "PNG")
        return web.json_response({"data": [{"b64_json": base64.b64encode(out.getvalue())
                                            .decode()}] * int(body.get("n", 1))})

    async def models(self, request: web.Request) -> web.Response:
        return web.json_response({"data": [{"id": "paint-1"}]})


@pytest.fixture
async def openai_images() -> AsyncIterator[OpenAIImages]:
    server = OpenAIImages()
    await server.start()
    try:
        yield server
    finally:
        server.released.set()
        if server.runner is not None:
            await server.runner.cleanup()


class ArtingUpstream:
    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox, self.secret = sandbox, ARTING_TOKEN
        self.entry: dict[str, Any] = {"name": "arting", "kind": "arting",
                                      "base_url": sandbox.url, "auth_tokens": [ARTING_TOKEN]}

    def submissions(self) -> int:
        return len(self.sandbox.requests_for("create"))

    def fault(self, kind: str | None) -> None:
        self.sandbox.clear_faults()
        if kind == "unauthorized":
            self.sandbox.add_fault("invalid_token")
        elif kind == "server_error":
            self.sandbox.add_fault("http_error", status=500)
        elif kind == "oversized":
            self.sandbox.add_fault("oversized")
        elif kind == "hold":
            self.sandbox.add_fault("never_finish", route="create")


@pytest.fixture
async def arting() -> AsyncIterator[ArtingUpstream]:
    sandbox = Sandbox()
    await sandbox.start()
    try:
        yield ArtingUpstream(sandbox)
    finally:
        await sandbox.close()


@pytest.fixture
def a1111() -> Iterator[A1111Upstream]:
    standin = A1111StandIn(auth=f"kit:{A1111_PASSWORD}").start()
    try:
        yield A1111Upstream(standin)
    finally:
        standin.stop()


@pytest.fixture
async def midjourney() -> AsyncIterator[MidjourneyUpstream]:
    emulator = MidjourneyEmulator(api_secret=MJ_SECRET, generation_time=0.2)
    await emulator.start()
    try:
        yield MidjourneyUpstream(emulator)
    finally:
        await emulator.close()


@pytest.fixture
async def stability() -> AsyncIterator[StabilityUpstream]:
    emulator = StabilityEmulator(api_keys=[SAI_KEY], pixels=128 * 128)
    await emulator.start()
    try:
        yield StabilityUpstream(emulator)
    finally:
        await emulator.close()


async def test_midjourney_keeps_the_contract(midjourney, provider_conformance):
    await provider_conformance(midjourney)


async def test_stability_keeps_the_contract(stability, tmp_path):
    await check_provider(stability, data_dir=tmp_path)


async def test_arting_keeps_the_contract(arting, provider_conformance):
    await provider_conformance(arting)


async def test_a1111_keeps_the_contract(a1111, provider_conformance):
    await provider_conformance(a1111)


async def test_an_openai_compatible_server_keeps_the_contract(openai_images,
                                                             provider_conformance):
    await provider_conformance(openai_images)


# --- providers that break it ---------------------------------------------------------------

def broken(cls: type[mj.MidjourneyProvider]) -> Any:
    """The Midjourney kind with its provider swapped for ``cls``."""
    @asynccontextmanager
    async def make(s: Any, cfg: Any) -> AsyncIterator[mj.MidjourneyProvider]:
        async with mj.make(s, cfg) as provider:
            provider.__class__ = cls
            yield provider
    return dataclasses.replace(builtin.MIDJOURNEY, provider=cls, make=make)


class ForgetsItSubmitted(mj.MidjourneyProvider):
    def submitted(self, work: Any) -> bool:
        return False            # so a restart sends the job again


class RaisesRaw(mj.MidjourneyProvider):
    async def task(self, task: str) -> Any:
        answer = await super().task(task)
        return answer["no-such-field"]          # a KeyError, not the taxonomy


class LeaksTheKey(mj.MidjourneyProvider):
    async def send(self, path: str, body: dict[str, Any]) -> Any:
        try:
            return await super().send(path, body)
        except UpstreamAuthError:
            assert self.options.api_key is not None
            key = self.options.api_key.get_secret_value()
            raise UpstreamAuthError(f"the proxy refused {key}") from None


@pytest.mark.parametrize("cls, rule", [(ForgetsItSubmitted, "resume-without-resubmit"),
                                       (RaisesRaw, "error-mapping"),
                                       (LeaksTheKey, "no-secret")])
async def test_a_provider_breaking_the_contract_fails_naming_the_rule(midjourney, tmp_path,
                                                                     cls, rule):
    with pytest.raises(ConformanceError) as failed:
        await check_provider(midjourney, broken(cls), tmp_path)
    assert rule in {v.rule for v in failed.value.violations}, str(failed.value)
    assert f"  {rule}: " in str(failed.value)
    assert await conformance(midjourney, data_dir=tmp_path / "again") == []
